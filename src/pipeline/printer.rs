//! The live statistics thread of a pipeline: every `stats_interval` it measures each node's fps
//! and processing time and the end-to-end latency, prints them (a table per interval, or for a
//! replay of known length a progress bar whose message carries them) when the pipeline shows
//! progress, and posts them on the status board when one is attached.

use super::board::{PipelineStatus, StageStatus, StatusBoard};
use super::{NodeShared, PROGRESS_TICK, PipelineCore, QueuePolicy, RunContext, lock};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The live statistics thread: a table line per node every `stats_interval`, or, for a replay
/// of known length, a progress bar with fps and ETA whose message carries the statistics.
pub(super) struct LivePrinter {
    done: crossbeam_channel::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl LivePrinter {
    /// Starts the thread: printing when `core.options.show_progress`, posting on `board`.
    pub(super) fn start(
        core: &PipelineCore,
        ctx: &Arc<RunContext>,
        board: Option<StatusBoard>,
    ) -> Self {
        let (done, finished) = crossbeam_channel::bounded::<()>(0);
        let nodes = core.nodes.clone();
        let ctx = Arc::clone(ctx);
        let interval = core.options.stats_interval;
        let print = core.options.show_progress;
        let bar = match (print, core.policy, core.len_hint) {
            (true, QueuePolicy::Lossless, Some(len)) => Some(progress_bar(len as u64)),
            _ => None,
        };
        let tick = if bar.is_some() { interval.min(PROGRESS_TICK) } else { interval };
        let thread = thread::Builder::new()
            .name("ld-stats".to_string())
            .spawn(move || {
                let started = Instant::now();
                let mut window = StatsWindow::new(&nodes);
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    finished.recv_timeout(tick)
                {
                    if let (Some(bar), Some(sink)) = (&bar, nodes.last()) {
                        bar.set_position(lock(&sink.stats).processed);
                    }
                    if window.since.elapsed() >= interval {
                        let lines = window.advance(&nodes, &ctx, started.elapsed());
                        match &bar {
                            Some(bar) => bar.set_message(lines.compact),
                            None if print => eprint!("{}", lines.table(started.elapsed())),
                            None => {}
                        }
                        if let Some(board) = &board {
                            board.set_pipeline(lines.status);
                        }
                    }
                }
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
            })
            .ok();
        if thread.is_none() {
            tracing::warn!("warning: could not start the live statistics thread");
        }
        Self { done, thread }
    }

    pub(super) fn finish(mut self) {
        drop(self.done);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn progress_bar(len: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "[{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta} {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Per-node counts at the previous print, for fps over the last interval.
struct StatsWindow {
    since: Instant,
    processed: Vec<u64>,
}

/// The statistics of one interval, as one table line per node and as one compact line.
struct IntervalStats {
    rows: Vec<String>,
    compact: String,
    status: PipelineStatus,
}

impl IntervalStats {
    fn table(&self, elapsed: Duration) -> String {
        let mut text = String::new();
        for row in &self.rows {
            text.push_str(&format!("[{:>8.2}s] {}\n", elapsed.as_secs_f64(), row.trim_end()));
        }
        text
    }
}

impl StatsWindow {
    fn new(nodes: &[Arc<NodeShared>]) -> Self {
        Self { since: Instant::now(), processed: vec![0; nodes.len()] }
    }

    fn advance(
        &mut self,
        nodes: &[Arc<NodeShared>],
        ctx: &RunContext,
        elapsed: Duration,
    ) -> IntervalStats {
        let now = Instant::now();
        let seconds = now.saturating_duration_since(self.since).as_secs_f64().max(1e-9);
        let mut rows = Vec::with_capacity(nodes.len() + 1);
        let mut compact = String::new();
        let mut stages = Vec::with_capacity(nodes.len());
        for (node, previous) in nodes.iter().zip(self.processed.iter_mut()) {
            let (processed, (p50, p99)) = {
                let stats = lock(&node.stats);
                (stats.processed, stats.latency.recent.p50_p99_ms())
            };
            let fps = (processed - *previous) as f64 / seconds;
            *previous = processed;
            let queue = match &node.input {
                Some(queue) => format!(
                    "queue {:>2}/{:<2} dropped {:>6}",
                    queue.depth(),
                    queue.capacity,
                    queue.dropped()
                ),
                None => String::new(),
            };
            rows.push(format!(
                "{:<14} {:>7.1} fps  p50 {:>8.2} ms  p99 {:>8.2} ms  items {:>8}  {queue}",
                node.name, fps, p50, p99, processed
            ));
            compact.push_str(&format!("{} {:.1}fps {:.1}/{:.1}ms | ", node.name, fps, p50, p99));
            stages.push(StageStatus {
                name: node.name.clone(),
                fps,
                p50_ms: p50,
                p99_ms: p99,
                items: processed,
                queue: node.input.as_ref().map(|q| [q.depth(), q.capacity as u64, q.dropped()]),
            });
        }
        let (e2e_p50, e2e_p99) = lock(&ctx.end_to_end).recent.p50_p99_ms();
        let reconnects = ctx.source_reconnects.load(Ordering::Relaxed);
        let reconnected = if reconnects > 0 {
            format!("  source reconnects {reconnects}")
        } else {
            String::new()
        };
        rows.push(format!(
            "{:<14} p50 {:>8.2} ms  p99 {:>8.2} ms{reconnected}",
            "end-to-end", e2e_p50, e2e_p99
        ));
        compact.push_str(&format!("e2e {e2e_p50:.1}/{e2e_p99:.1}ms"));
        self.since = now;
        let status = PipelineStatus {
            elapsed_s: elapsed.as_secs_f64(),
            stages,
            end_to_end_p50_ms: e2e_p50,
            end_to_end_p99_ms: e2e_p99,
        };
        IntervalStats { rows, compact, status }
    }
}
