//! `livedepth eval`: runs a depth model over a recorded dataset through the pipeline (the
//! dataset read on one thread, inference on another) and scores every frame with the standard
//! metrics under the Monodepth2 protocol.

use crate::engine::{Disparity, EngineKind, EngineRequest, open_depth_engine};
use crate::eval::score_disparity_scaled;
use crate::scale::{MetricScale, ScaleEstimate, ScaleSummary};

/// A frame on its way to the metrics: its disparity and, with a scale source, its scale.
type ScoredFrame = (Frame, Disparity, Option<ScaleEstimate>);
use crate::eval::{EvalError, EvalProtocol, FrameMetrics, MeanMetrics, MetricsAccumulator};
use crate::frame::Frame;
use crate::model::Arch;
use crate::pipeline::{Pipeline, PipelineOptions, QueuePolicy, StageError};
use crate::sink::metrics::write_summary_json;
use crate::sink::plot::{Series, write_line_plot};
use crate::source::dataset::{DatasetSource, FrameSelection};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What to evaluate and how.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// `kitti:DIR`, `kitchen:DIR` or `tum:DIR`.
    pub dataset: String,
    /// A checkpoint folder (encoder.pth + depth.pth) or a safetensors file.
    pub model: PathBuf,
    pub arch: Arch,
    pub width: u32,
    pub height: u32,
    pub selection: FrameSelection,
    /// Turn median scaling off (metric models).
    pub no_median_scaling: bool,
    /// Where to write the JSON report, if anywhere.
    pub json: Option<PathBuf>,
    /// Where to write an SVG plot of abs_rel and δ<1.25 per frame, if anywhere.
    pub plot: Option<PathBuf>,
    /// Show the progress bar and stage statistics.
    pub progress: bool,
    /// The depth backend (`auto`: the fastest available, measured at start-up).
    pub engine: EngineKind,
    /// Where metric scale comes from (`--metric-scale`); `none` scores the network's units.
    pub metric_scale: MetricScale,
}

/// One frame's row in the report.
#[derive(Clone, Debug, Serialize)]
pub struct FrameRow {
    /// Index of the frame in the dataset.
    pub frame: usize,
    #[serde(flatten)]
    pub metrics: FrameMetrics,
}

/// The whole evaluation, as written to `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    #[serde(flatten)]
    pub mean: MeanMetrics,
    pub protocol: EvalProtocol,
    pub dataset: String,
    pub model: String,
    pub arch: String,
    pub width: u32,
    pub height: u32,
    /// The backend that served depth.
    pub engine: EngineKind,
    /// The scale source's figures, when one was active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric_scale: Option<ScaleSummary>,
    pub per_frame: Vec<FrameRow>,
}

impl EvalReport {
    pub(crate) fn new(
        options: &EvalOptions,
        protocol: EvalProtocol,
        mean: MeanMetrics,
        per_frame: Vec<FrameRow>,
    ) -> Self {
        Self {
            mean,
            protocol,
            dataset: options.dataset.clone(),
            model: options.model.display().to_string(),
            arch: options.arch.name().to_string(),
            width: options.width,
            height: options.height,
            engine: options.engine,
            metric_scale: None,
            per_frame,
        }
    }

    /// The seven metrics in Monodepth2's order.
    pub fn values(&self) -> [f64; 7] {
        self.mean.values()
    }
}

/// Runs the evaluation and returns the report (also written to `options.json` if set).
pub fn evaluate(options: &EvalOptions) -> crate::Result<EvalReport> {
    let source = DatasetSource::open(&options.dataset, options.selection)
        .map_err(crate::source::SourceError::from)?;
    let mut protocol = EvalProtocol::for_dataset(source.dataset().kind());
    protocol.median_scaling &= !options.no_median_scaling;
    let positions = source.indices().to_vec();
    let opened = open_depth_engine(&EngineRequest {
        kind: options.engine,
        model: &options.model,
        arch: options.arch,
        width: options.width,
        height: options.height,
        threads: 0,
    })?;
    if options.progress || options.engine == EngineKind::Auto {
        tracing::info!("engine: {}", opened.choice);
    }
    let engine = opened.engine;

    let accumulator = Arc::new(Mutex::new(MetricsAccumulator::new()));
    let sink_accumulator = Arc::clone(&accumulator);
    let pipeline_options = PipelineOptions {
        policy: QueuePolicy::Lossless,
        show_progress: options.progress,
        ..PipelineOptions::quiet()
    };
    let mut engine = engine;
    if let MetricScale::Speed { .. } = options.metric_scale {
        return Err(crate::Error::Other(crate::scale::speed::NEEDS_ADAPT.into()));
    }
    let mut scale_source = options.metric_scale.ground_estimator();
    let estimates = Arc::new(Mutex::new(Vec::new()));
    let sink_estimates = Arc::clone(&estimates);
    Pipeline::new(Box::new(source), pipeline_options)?
        .stage("depth", move |frame: Frame| {
            let disparity = engine.predict_disparity(&frame.rgb)?;
            let estimate = match (scale_source.as_mut(), &frame.intrinsics) {
                (Some(source), Some(k)) => Some(source.update(&disparity.to_depth(0.1, 100.0), k)),
                (Some(_), None) => {
                    return Err(format!(
                        "frame {}: --metric-scale needs the camera's intrinsics, and this \
                         dataset gives none",
                        frame.index
                    )
                    .into());
                }
                (None, _) => None,
            };
            Ok::<_, StageError>((frame, disparity, estimate))
        })
        .sink("metrics", move |(frame, disparity, estimate): ScoredFrame| {
            let scale = estimate.map_or(1.0, |e| e.scale);
            let metrics = score_disparity_scaled(&disparity, &frame, &protocol, scale)?;
            let mut acc = sink_accumulator.lock().map_err(|_| "metrics lock poisoned")?;
            acc.push(frame.index, metrics);
            if let (Some(e), Ok(mut all)) = (estimate, sink_estimates.lock()) {
                all.push(e);
            }
            Ok::<_, StageError>(())
        })
        .run()?;

    let accumulator =
        accumulator.lock().map_err(|_| crate::Error::Other("metrics lock poisoned".into()))?;
    let mean = accumulator.mean().ok_or(EvalError::NoFrames)?;
    let per_frame = accumulator
        .rows()
        .iter()
        .map(|&(position, metrics)| FrameRow {
            frame: positions.get(position as usize).copied().unwrap_or(position as usize),
            metrics,
        })
        .collect();
    let mut report = EvalReport::new(
        &EvalOptions { engine: opened.backend, ..options.clone() },
        protocol,
        mean,
        per_frame,
    );
    if !options.metric_scale.is_none() {
        let estimates = estimates.lock().map(|e| e.clone()).unwrap_or_default();
        report.metric_scale = Some(ScaleSummary::of(options.metric_scale.clone(), &estimates));
    }
    if let Some(path) = &options.json {
        write_summary_json(path, &report)?;
    }
    if let Some(path) = &options.plot {
        write_per_frame_plot(path, &report)?;
    }
    Ok(report)
}

/// Plots abs_rel and δ<1.25 of every frame of `report` (SVG).
pub fn write_per_frame_plot(path: &std::path::Path, report: &EvalReport) -> crate::Result<()> {
    let series = |name: &str, pick: fn(&FrameMetrics) -> f64| Series {
        name: name.to_string(),
        points: report.per_frame.iter().map(|r| (r.frame as f64, pick(&r.metrics))).collect(),
    };
    write_line_plot(
        path,
        &format!("{} on {}", report.arch, report.dataset),
        "frame",
        "metric",
        &[series("abs_rel", |m| m.abs_rel), series("δ<1.25", |m| m.a1)],
    )?;
    Ok(())
}
