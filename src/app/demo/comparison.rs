//! The demo's side-by-side video (`side_by_side.mp4`) from its two lock-step runs: the frozen
//! run's predictions are kept ([`FrozenTrack`]); during the adapted run each frame is drawn as
//! [input | frozen depth | adapted depth] with abs_rel over time below
//! ([`crate::sink::side_by_side`]). Both depths are shown as the metrics see them: the
//! disparity resized to the frame, converted to depth and median-scaled to the ground truth,
//! then colourised through one shared range.

use crate::app::adapt::LockStepFrame;
use crate::engine::Disparity;
use crate::eval::FrameMetrics;
use crate::frame::{DepthMap, Frame};
use crate::sink::side_by_side::{ComparisonFrame, SideBySideLabels, SideBySideWriter};
use std::path::{Path, PathBuf};

/// The frozen run's prediction and metrics of every frame, in order.
#[derive(Default)]
pub struct FrozenTrack {
    frames: Vec<(Disparity, FrameMetrics)>,
}

impl FrozenTrack {
    /// Keeps one frame of the frozen run (frames must come in order).
    pub fn record(&mut self, scored: &LockStepFrame<'_>) -> crate::Result<()> {
        if scored.position != self.frames.len() {
            return Err(crate::Error::Other(format!(
                "frozen lock-step run: frame position {} arrived after {} frames",
                scored.position,
                self.frames.len()
            )));
        }
        self.frames.push((scored.disparity.clone(), *scored.metrics));
        Ok(())
    }

    /// The largest finite abs_rel of the run (0 when there is none).
    pub fn max_abs_rel(&self) -> f64 {
        self.frames.iter().map(|(_, m)| m.abs_rel).filter(|v| v.is_finite()).fold(0.0, f64::max)
    }
}

/// Depth in metres at the frame's size as the metrics score it: bilinear resize, Monodepth2's
/// disparity → depth (0.1–100 m), times the frame's median-scaling ratio.
fn scored_depth(disparity: &Disparity, frame: &Frame, metrics: &FrameMetrics) -> DepthMap {
    let (width, height) = (frame.rgb.width, frame.rgb.height);
    let mut depth = disparity.resized_bilinear(width, height).to_depth(0.1, 100.0);
    let scale = metrics.scale_ratio as f32;
    if scale.is_finite() && scale > 0.0 {
        depth.data.iter_mut().for_each(|d| *d *= scale);
    }
    depth
}

/// Writes `side_by_side.mp4` while the adapted run plays.
pub struct ComparisonVideo {
    writer: SideBySideWriter,
    frozen: FrozenTrack,
    fps: f64,
}

impl ComparisonVideo {
    /// Starts `path` for `frozen.len()` frames of `column` size at `fps`; `input_label` titles
    /// the input column and `steps_per_frame` is the adapted run's S (in its column's title).
    pub fn create(
        path: &Path,
        column: (u32, u32),
        fps: f64,
        frozen: FrozenTrack,
        input_label: &str,
        steps_per_frame: usize,
    ) -> crate::Result<Self> {
        let labels = SideBySideLabels {
            columns: [
                input_label.into(),
                "frozen depth".into(),
                format!(
                    "adapted depth ({steps_per_frame} step{} per frame)",
                    if steps_per_frame == 1 { "" } else { "s" }
                ),
            ],
            series: ["frozen".into(), "adapted".into()],
            metric: "abs_rel".into(),
        };
        let y_max = (1.25 * frozen.max_abs_rel()).max(0.05);
        let writer =
            SideBySideWriter::create(path, column, fps, frozen.frames.len(), y_max, labels)?;
        Ok(Self { writer, frozen, fps })
    }

    /// Draws and encodes one frame of the adapted run beside the frozen run's same frame.
    pub fn push(&mut self, adapted: &LockStepFrame<'_>) -> crate::Result<()> {
        let (frozen_disparity, frozen_metrics) =
            self.frozen.frames.get(adapted.position).ok_or_else(|| {
                crate::Error::Other(format!(
                    "side-by-side video: the adapted run reached frame position {} but the frozen \
                     run had {} frames",
                    adapted.position,
                    self.frozen.frames.len()
                ))
            })?;
        let first = scored_depth(frozen_disparity, adapted.frame, frozen_metrics);
        let second = scored_depth(adapted.disparity, adapted.frame, adapted.metrics);
        let frame = ComparisonFrame {
            rgb: &adapted.frame.rgb,
            first: &first,
            second: &second,
            first_metric: frozen_metrics.abs_rel,
            second_metric: adapted.metrics.abs_rel,
        };
        self.writer.push(&frame, adapted.position as f64 / self.fps)?;
        Ok(())
    }

    /// Completes the file and returns its path.
    pub fn finish(self) -> crate::Result<PathBuf> {
        Ok(self.writer.finish()?)
    }
}
