//! The status board: the newest per-stage statistics of a running pipeline (written by the
//! statistics thread every `stats_interval`) and the newest adaptation status (written by the
//! adapter thread), for live consumers such as the Foxglove / MCAP status channel. Writers and
//! readers never wait on each other: a reader that finds the board busy skips it this time.

use serde::Serialize;
use std::sync::{Arc, Mutex, TryLockError};

/// One stage over the last statistics interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageStatus {
    pub name: String,
    pub fps: f64,
    /// Processing time per item, median and 99th percentile over recent items, ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Items processed since the start.
    pub items: u64,
    /// The stage's input queue (none for the source): items waiting, capacity, dropped so far.
    pub queue: Option<[u64; 3]>,
}

/// The whole pipeline over the last statistics interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PipelineStatus {
    /// Seconds since the pipeline started.
    pub elapsed_s: f64,
    pub stages: Vec<StageStatus>,
    /// Capture-to-sink latency over recent frames, ms.
    pub end_to_end_p50_ms: f64,
    pub end_to_end_p99_ms: f64,
}

#[derive(Default)]
struct Board {
    pipeline: Option<PipelineStatus>,
    adapt: Option<serde_json::Value>,
}

/// A shared board (clones share it).
#[derive(Clone, Default)]
pub struct StatusBoard {
    board: Arc<Mutex<Board>>,
}

impl std::fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusBoard").finish_non_exhaustive()
    }
}

impl StatusBoard {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Board) -> T) -> Option<T> {
        match self.board.try_lock() {
            Ok(mut board) => Some(f(&mut board)),
            // A poisoned board only means a writer panicked mid-update: the data is still whole.
            Err(TryLockError::Poisoned(p)) => Some(f(&mut p.into_inner())),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Replaces the pipeline statistics (skipped when a reader holds the board).
    pub fn set_pipeline(&self, status: PipelineStatus) {
        self.with(|b| b.pipeline = Some(status));
    }

    /// Replaces the adaptation status (any serialisable summary).
    pub fn set_adapt(&self, status: serde_json::Value) {
        self.with(|b| b.adapt = Some(status));
    }

    /// The newest statistics and adaptation status, or None when a writer holds the board.
    pub fn read(&self) -> Option<(Option<PipelineStatus>, Option<serde_json::Value>)> {
        self.with(|b| (b.pipeline.clone(), b.adapt.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_keeps_the_newest_of_each_and_shares_between_clones() {
        let board = StatusBoard::new();
        assert_eq!(board.read(), Some((None, None)));
        let reader = board.clone();
        board.set_pipeline(PipelineStatus { elapsed_s: 1.0, ..Default::default() });
        board.set_pipeline(PipelineStatus { elapsed_s: 2.0, ..Default::default() });
        board.set_adapt(serde_json::json!({"steps": 3}));
        let (pipeline, adapt) = reader.read().unwrap();
        assert_eq!(pipeline.unwrap().elapsed_s, 2.0);
        assert_eq!(adapt.unwrap()["steps"], 3);
        // A held board is skipped, never waited for.
        let guard = board.board.lock().unwrap();
        assert!(reader.read().is_none());
        board.set_adapt(serde_json::json!({"steps": 4}));
        drop(guard);
        assert_eq!(reader.read().unwrap().1.unwrap()["steps"], 3, "the busy write was skipped");
    }
}
