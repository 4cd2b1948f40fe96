//! The `outputs` sink of the live path: writes what the config's `[outputs]` asks for (the
//! colourised mp4, 16-bit depth PNGs, colour PNGs, point clouds, per-frame metrics where the
//! source has ground truth) and feeds the Foxglove live view and MCAP recording.

use super::depth::DepthFrame;
use crate::camera::Intrinsics;
use crate::config::OutputsConfig;
use crate::eval::{EvalProtocol, MetricsAccumulator, score_disparity};
use crate::frame::{DepthMap, RgbImage};
use crate::pipeline::{Sink, StageError};
use crate::pool::Recycler;
use crate::scale::ground::GroundScale;
use crate::scale::tally::ScaleTally;
use crate::scale::{MetricScale, ScaleSummary, SharedScale};
use crate::sink::colour_bar::draw_metric_colour_bar;
use crate::sink::colourise::{colourise_depth_into, write_rgb_png};
use crate::sink::depth_png::write_depth_png;
use crate::sink::foxglove_live::{Telemetry, TelemetryFrame, TelemetryOptions};
use crate::sink::metrics::MetricsCsvWriter;
use crate::sink::pointcloud::write_ply;
use crate::sink::video::Mp4Writer;
use crate::tempfiles::create_output_dir;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The `outputs` sink: writes what the config's `[outputs]` asks for into its folder.
pub struct OutputSink {
    outputs: OutputsConfig,
    /// Intrinsics of the source's frames where the frames don't carry their own.
    camera: Option<Intrinsics>,
    min_depth: f32,
    max_depth: f32,
    fps: f64,
    video: Option<Mp4Writer>,
    metrics_csv: Option<MetricsCsvWriter>,
    accumulator: MetricsAccumulator,
    protocol: EvalProtocol,
    frames: u64,
    /// The Foxglove live view and MCAP recording, when asked for.
    telemetry: Option<Telemetry>,
    /// The metric scale source, when one is active, its estimates so far, and where the
    /// summary goes at the end.
    scale: Option<(MetricScale, LiveScale)>,
    scale_tally: ScaleTally,
    scale_summary: Option<Arc<Mutex<Option<ScaleSummary>>>>,
    /// Per-frame buffers, recycled (the telemetry thread hands its back when it drops them).
    depths: Recycler<DepthMap>,
    colours: Recycler<RgbImage>,
    /// The colour map's percentile scratch, and the video's input-above-depth frame.
    percentile_sample: Vec<f32>,
    stacked: RgbImage,
}

/// Idle depth maps and colour images the sink keeps (the telemetry queue holds a few more).
const SINK_POOL: usize = 4;

/// How the outputs get their scale: measured here per frame, or set by another thread.
enum LiveScale {
    /// `ground`: the road plane of each depth map.
    Ground(GroundScale),
    /// `speed`: the adapter thread's latest estimate.
    Shared(SharedScale),
}

impl OutputSink {
    /// A sink writing into `outputs.dir` (created if missing).
    pub fn new(
        outputs: OutputsConfig,
        min_depth: f32,
        max_depth: f32,
        fps: f64,
        protocol: EvalProtocol,
        camera: Option<Intrinsics>,
    ) -> crate::Result<Self> {
        let field = "outputs.dir (--out)";
        create_output_dir(&outputs.dir, field)?;
        for (wanted, sub) in [
            (outputs.depth_png, "depth"),
            (outputs.colour_png, "colour"),
            (outputs.pointcloud_every > 0, "pointcloud"),
        ] {
            if wanted {
                create_output_dir(&outputs.dir.join(sub), field)?;
            }
        }
        let telemetry_options = TelemetryOptions {
            foxglove: outputs.foxglove.clone(),
            mcap: outputs.mcap.clone(),
            points_stride: 2,
            zenoh: outputs.zenoh.clone(),
        };
        let telemetry = if telemetry_options.enabled() {
            let telemetry = Telemetry::start(&telemetry_options)?;
            if let Some(zenoh) = &outputs.zenoh {
                tracing::info!(
                    "zenoh: publishing under {}/… ({} mode{}{})",
                    zenoh.key_prefix(),
                    zenoh.mode,
                    if zenoh.listen.is_empty() {
                        String::new()
                    } else {
                        format!(", listening on {}", zenoh.listen.join(", "))
                    },
                    if zenoh.connect.is_empty() {
                        String::new()
                    } else {
                        format!(", connecting to {}", zenoh.connect.join(", "))
                    }
                );
            }
            if let Some(port) = telemetry.foxglove_port() {
                tracing::info!(
                    "foxglove: live view on ws://{}:{port} (Foxglove: Open connection → \
                     Foxglove WebSocket)",
                    outputs
                        .foxglove
                        .as_deref()
                        .and_then(|a| a.rsplit_once(':'))
                        .map_or("", |(h, _)| h)
                );
            }
            Some(telemetry)
        } else {
            None
        };
        Ok(Self {
            scale: None,
            scale_tally: ScaleTally::new(),
            scale_summary: None,
            telemetry,
            outputs,
            camera,
            min_depth,
            max_depth,
            fps,
            video: None,
            metrics_csv: None,
            accumulator: MetricsAccumulator::new(),
            protocol,
            frames: 0,
            depths: Recycler::new(SINK_POOL, || DepthMap::new(0, 0)),
            colours: Recycler::new(SINK_POOL, || RgbImage::new(0, 0)),
            percentile_sample: Vec::new(),
            stacked: RgbImage::new(0, 0),
        })
    }

    /// The telemetry's status board, when a live view or recording runs: the pipeline's
    /// statistics thread and the adapter post on it, and every status message carries it.
    pub fn status_board(&self) -> Option<crate::pipeline::StatusBoard> {
        self.telemetry.as_ref().map(|t| t.status_board())
    }

    /// True when a live view, recording or Zenoh publishes the frames.
    pub fn has_telemetry(&self) -> bool {
        self.telemetry.is_some()
    }

    /// Publishes the camera's pose (`/tf`) from `motion`, when telemetry runs.
    pub fn set_camera_motion(&self, motion: Box<dyn crate::sink::camera_pose::CameraMotion>) {
        if let Some(telemetry) = &self.telemetry {
            telemetry.set_camera_motion(motion);
        }
    }

    /// The telemetry's Zenoh session, when Zenoh is on.
    pub fn zenoh_session(&self) -> Option<zenoh::Session> {
        self.telemetry.as_ref().and_then(|t| t.zenoh_session())
    }

    /// Per-frame metrics gathered so far (frames with ground truth only).
    pub fn metrics(&self) -> &MetricsAccumulator {
        &self.accumulator
    }

    fn path(&self, sub: &str, index: u64, ext: &str) -> PathBuf {
        self.outputs.dir.join(sub).join(format!("{index:06}.{ext}"))
    }

    fn write_video_frame(
        &mut self,
        resized: &RgbImage,
        colour: &RgbImage,
        t: f64,
    ) -> crate::Result<()> {
        let (w, h) = (resized.width, resized.height);
        if self.video.is_none() {
            let path = self.outputs.dir.join("depth.mp4");
            // Crash-safe: a killed run leaves a playable depth video up to its last second.
            self.video = Some(Mp4Writer::create_recording(&path, w, h * 2, self.fps)?);
        }
        // The input above, its colourised depth below.
        self.stacked.reshape(w, h * 2);
        let half = resized.data.len();
        self.stacked.data[..half].copy_from_slice(&resized.data);
        self.stacked.data[half..].copy_from_slice(&colour.data);
        if let Some(video) = self.video.as_mut() {
            video.push(&self.stacked, t)?;
        }
        Ok(())
    }

    /// The cell the adapter thread writes the `speed` scale into (None for other sources).
    pub fn shared_scale(&self) -> Option<SharedScale> {
        match &self.scale {
            Some((_, LiveScale::Shared(shared))) => Some(shared.clone()),
            _ => None,
        }
    }

    /// Writes every output in metres from the scale `source` gives (none: the network's
    /// units); the sequence's scale summary lands in `summary` when the sink finishes.
    pub fn with_metric_scale(
        mut self,
        source: MetricScale,
        summary: Arc<Mutex<Option<ScaleSummary>>>,
    ) -> Self {
        let live = match &source {
            MetricScale::None => None,
            MetricScale::Ground { .. } => source.ground_estimator().map(LiveScale::Ground),
            MetricScale::Speed { .. } => Some(LiveScale::Shared(SharedScale::default())),
        };
        self.scale = live.map(|live| (source, live));
        self.scale_summary = Some(summary);
        self
    }

    fn consume_frame(&mut self, item: DepthFrame) -> crate::Result<()> {
        let DepthFrame { frame, resized, disparity } = item;
        let index = frame.index;
        let mut depth = self.depths.get();
        disparity.to_depth_into(self.min_depth, self.max_depth, &mut depth);
        let intrinsics = frame.intrinsics.or(self.camera);
        let mut scale = None;
        if let Some((_, live)) = self.scale.as_mut() {
            let estimate = match live {
                LiveScale::Ground(estimator) => {
                    let k = intrinsics.ok_or_else(|| {
                        crate::Error::Other(
                            "--metric-scale ground needs the camera's intrinsics: add [camera] \
                             to the config"
                                .into(),
                        )
                    })?;
                    estimator.update(&depth, &k)
                }
                LiveScale::Shared(shared) => shared.get(),
            };
            let factor = estimate.scale as f32;
            depth.data.iter_mut().for_each(|d| *d *= factor);
            self.scale_tally.push(&estimate);
            scale = Some(estimate);
        }
        let needs_colour =
            self.outputs.colour_png || self.outputs.video || self.telemetry.is_some();
        let colour = needs_colour.then(|| {
            let mut colour = self.colours.get();
            let range = colourise_depth_into(&depth, &mut colour, &mut self.percentile_sample);
            // In metres, the colours get a scale to read distances off.
            if let (Some(_), Some((near, far))) = (scale, range) {
                draw_metric_colour_bar(&mut colour, near, far);
            }
            colour
        });
        if self.outputs.depth_png {
            write_depth_png(&self.path("depth", index, "png"), &depth)?;
        }
        if let Some(colour) = &colour {
            if self.outputs.colour_png {
                write_rgb_png(&self.path("colour", index, "png"), colour)?;
            }
            if self.outputs.video {
                self.write_video_frame(&resized, colour, frame.timestamp)?;
            }
        }
        let every = self.outputs.pointcloud_every as u64;
        if let (true, Some(k)) = (every > 0 && index % every == 0, &intrinsics) {
            write_ply(&self.path("pointcloud", index, "ply"), &depth, k, Some(&*resized))?;
        }
        // The last use of the frame's images: handed over, not copied.
        if let (Some(telemetry), Some(colour)) = (self.telemetry.as_mut(), colour) {
            telemetry.offer(TelemetryFrame {
                index,
                timestamp: frame.timestamp,
                image: resized,
                depth,
                colour,
                intrinsics,
                scale,
            });
        }
        if self.outputs.metrics && frame.gt_depth.is_some() {
            let metrics = score_disparity(&disparity, &frame, &self.protocol)?;
            if self.metrics_csv.is_none() {
                let path = self.outputs.dir.join("metrics.csv");
                self.metrics_csv = Some(MetricsCsvWriter::create(
                    &path,
                    &["frame", "abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "scale"],
                )?);
            }
            if let Some(csv) = self.metrics_csv.as_mut() {
                let v = metrics.values();
                csv.write_row(&[
                    index as f64,
                    v[0],
                    v[1],
                    v[2],
                    v[3],
                    v[4],
                    v[5],
                    v[6],
                    metrics.scale_ratio,
                ])?;
            }
            self.accumulator.push(index, metrics);
        }
        self.frames += 1;
        Ok(())
    }
}

impl Sink<DepthFrame> for OutputSink {
    fn consume(&mut self, item: DepthFrame) -> Result<(), StageError> {
        Ok(self.consume_frame(item)?)
    }

    fn finish(&mut self) -> Result<(), StageError> {
        if let Some(video) = self.video.take() {
            video.finish()?;
        }
        if let Some(csv) = self.metrics_csv.take() {
            csv.finish()?;
        }
        if let (Some((source, _)), Some(slot)) = (&self.scale, &self.scale_summary) {
            let summary = self.scale_tally.summary(source.clone());
            tracing::info!(
                "metric scale ({}): median {:.3} m per unit; {} frames measured, {} \
                 used the previous scale, {} unscaled",
                source.name(),
                summary.scale_median,
                summary.measured,
                summary.previous,
                summary.unscaled
            );
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(summary);
            }
        }
        if let Some(mut telemetry) = self.telemetry.take() {
            let report = telemetry.finish()?;
            tracing::info!(
                "foxglove/mcap: {} frames published, {} dropped from telemetry (its thread fell \
                 behind){}{}",
                report.frames,
                report.dropped,
                report.mcap.map_or(String::new(), |p| format!("; recorded {}", p.display())),
                report.zenoh.map_or(String::new(), |k| format!("; on zenoh under {k}/…"))
            );
        }
        Ok(())
    }
}
