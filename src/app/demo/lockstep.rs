//! The demo's deterministic lock-step comparison: frames in order, each predicted with the
//! current weights and scored, then S adaptation steps (S = 0: frozen), as
//! [`crate::app::adapt::evaluate_adapt`] runs it, through the same public pieces
//! ([`build_adapter`], [`Adapter::predict`] / [`Adapter::observe`] / [`Adapter::step`],
//! [`score_disparity`]), and in addition handing every frame's prediction to a callback so that
//! the demo can draw it (the side-by-side video).
//!
//! [`Adapter::predict`]: crate::adapt::Adapter::predict
//! [`Adapter::observe`]: crate::adapt::Adapter::observe
//! [`Adapter::step`]: crate::adapt::Adapter::step

use crate::adapt::{AdaptConfig, AdaptStats, NetFrame};
use crate::app::adapt::{AdaptOptions, build_adapter, status_line};
use crate::app::eval::{EvalOptions, EvalReport, FrameRow, score_disparity};
use crate::engine::{Disparity, Preprocessor, default_device};
use crate::eval::{EvalError, EvalProtocol, FrameMetrics, MetricsAccumulator};
use crate::frame::Frame;
use crate::source::SourceError;
use crate::source::dataset::open_dataset;
use serde::Serialize;
use std::time::Instant;

/// One scored frame of a lock-step run, as the callback sees it.
pub struct LockStepFrame<'a> {
    /// Position in the run (0 = first frame).
    pub position: usize,
    /// The dataset frame (RGB, ground truth, intrinsics).
    pub frame: &'a Frame,
    /// The prediction at the network size, made before any step saw this frame.
    pub disparity: &'a Disparity,
    pub metrics: &'a FrameMetrics,
}

/// The per-frame JSON (`eval_frozen.json`, `eval_adapted.json`): the evaluation report, the
/// adapter's statistics and its configuration, the layout of `eval --adapt --json`.
#[derive(Serialize)]
struct LockStepJson<'a> {
    #[serde(flatten)]
    report: &'a EvalReport,
    adapt: &'a AdaptStats,
    config: &'a AdaptConfig,
}

/// Runs the lock-step evaluation of `options.model` on `options.dataset` with `adapt`
/// (`adapt.config.steps_per_frame` steps after each frame), calling `on_frame` with every
/// scored frame in order; writes `options.json` if set. Returns the report and the adapter's
/// statistics.
pub fn lock_step(
    options: &EvalOptions,
    adapt: &AdaptOptions,
    mut on_frame: impl FnMut(LockStepFrame<'_>) -> crate::Result<()>,
) -> crate::Result<(EvalReport, AdaptStats)> {
    let dataset = open_dataset(&options.dataset).map_err(SourceError::from)?;
    let indices = options.selection.indices(dataset.len()).map_err(SourceError::from)?;
    let mut protocol = EvalProtocol::for_dataset(dataset.kind());
    protocol.median_scaling &= !options.no_median_scaling;
    let mut adapter = build_adapter(&options.model, options.arch, adapt, default_device())?;
    let (mean, std) = options.arch.normalisation();
    let mut preprocessor = Preprocessor::new(options.width, options.height, mean, std)?;
    let mut accumulator = MetricsAccumulator::new();
    let started = Instant::now();
    for (position, &index) in indices.iter().enumerate() {
        let frame = dataset.frame(index).map_err(SourceError::from)?;
        let camera = frame.intrinsics.ok_or_else(|| {
            crate::Error::Other(format!(
                "{}: frame {index} has no intrinsics; adaptation needs the camera matrix",
                dataset.name()
            ))
        })?;
        let resized = preprocessor.resize(&frame.rgb)?;
        let net_frame = NetFrame::from_resized(position as u64, resized, &camera);
        let data = adapter.predict(&net_frame)?;
        let disparity = Disparity { width: options.width, height: options.height, data };
        let metrics = score_disparity(&disparity, &frame, &protocol)?;
        accumulator.push(position as u64, metrics);
        on_frame(LockStepFrame {
            position,
            frame: &frame,
            disparity: &disparity,
            metrics: &metrics,
        })?;
        if adapter.observe(net_frame) {
            for _ in 0..adapt.config.steps_per_frame {
                adapter.step()?;
            }
        }
        if adapt.print_every > 0 && (position + 1) % adapt.print_every == 0 {
            let rate = adapter.stats().steps as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let so_far = accumulator.mean().map_or(f64::NAN, |m| m.abs_rel);
            eprintln!(
                "[frame {}/{}] abs_rel {so_far:.4} | {}",
                position + 1,
                indices.len(),
                status_line(adapter.stats(), rate)
            );
        }
    }
    adapter.finish()?;
    let mean = accumulator.mean().ok_or(EvalError::NoFrames)?;
    let per_frame = accumulator
        .rows()
        .iter()
        .map(|&(position, metrics)| FrameRow {
            frame: indices.get(position as usize).copied().unwrap_or(position as usize),
            metrics,
        })
        .collect();
    let report = EvalReport::new(options, protocol, mean, per_frame);
    if let Some(path) = &options.json {
        let json = LockStepJson { report: &report, adapt: adapter.stats(), config: &adapt.config };
        crate::sink::metrics::write_summary_json(path, &json)?;
    }
    Ok((report, adapter.stats().clone()))
}
