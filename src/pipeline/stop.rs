//! Stopping a running pipeline: the [`StopHandle`] that code holds, and the process-wide
//! Ctrl-C handler (installed once per process) that every running pipeline observes.
//!
//! A first Ctrl-C asks running pipelines to stop gracefully (the source stops reading and the
//! frames already read drain to the sink); a second Ctrl-C after that exits the process with
//! status 130, for the case where a source is stuck inside a blocking read.

use super::PipelineError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Ctrl-C presses since the handler was installed.
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);
/// The value of [`INTERRUPTS`] when the most recent pipeline started.
static INTERRUPTS_AT_LAST_START: AtomicU64 = AtomicU64::new(0);
static HANDLER: OnceLock<Result<(), String>> = OnceLock::new();

/// Installs the process-wide Ctrl-C handler (once; later calls return the first outcome).
/// Fails if another handler was installed by other code through the `ctrlc` crate.
pub fn install_ctrl_c_handler() -> Result<(), PipelineError> {
    HANDLER
        .get_or_init(|| {
            ctrlc::set_handler(|| {
                let presses = INTERRUPTS.fetch_add(1, Ordering::SeqCst) + 1;
                if presses >= INTERRUPTS_AT_LAST_START.load(Ordering::SeqCst) + 2 {
                    tracing::info!("\nsecond Ctrl-C: exiting now");
                    std::process::exit(130);
                }
                tracing::info!("\nCtrl-C: stopping (press again to exit immediately)");
            })
            .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(PipelineError::CtrlC)
}

/// Ctrl-C presses seen since [`install_ctrl_c_handler`] succeeded. Code that runs outside a
/// pipeline (a training loop) can compare it with the value it saw when it started.
pub fn ctrl_c_count() -> u64 {
    INTERRUPTS.load(Ordering::SeqCst)
}

/// A snapshot of the Ctrl-C count taken when a pipeline starts; tells whether Ctrl-C was
/// pressed since.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InterruptWatch {
    baseline: u64,
}

impl InterruptWatch {
    pub(crate) fn start() -> Self {
        let baseline = INTERRUPTS.load(Ordering::SeqCst);
        INTERRUPTS_AT_LAST_START.store(baseline, Ordering::SeqCst);
        Self { baseline }
    }

    pub(crate) fn interrupted(&self) -> bool {
        INTERRUPTS.load(Ordering::Relaxed) > self.baseline
    }
}

/// Asks one pipeline to stop: the source stops reading, frames already read drain through the
/// stages to the sink, and `run` returns its report with [`super::StopReason::Stopped`].
/// Cheap to clone and usable from any thread, before or during the run.
#[derive(Clone, Debug, Default)]
pub struct StopHandle {
    requested: Arc<AtomicBool>,
}

impl StopHandle {
    /// A handle not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests the stop; returns at once (the pipeline's `run` returns shortly after).
    pub fn stop(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn is_stop_requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }
}
