//! What the demo reports: [`DemoReport`] (`report.json` and the printed table of the seven
//! metrics, frozen vs adapted), abs_rel per window, and the SVG plot of abs_rel over time.

use super::live::LiveReplay;
use super::model::DemoModel;
use super::scene::DemoScene;
use crate::adapt::{AdaptConfig, AdaptStats};
use crate::app::eval::EvalReport;
use crate::sink::plot::{Series, write_line_plot};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One window of the abs_rel-over-time comparison.
#[derive(Clone, Debug, Serialize)]
pub struct WindowRow {
    pub first_frame: usize,
    pub last_frame: usize,
    pub frozen_abs_rel: f64,
    pub adapted_abs_rel: f64,
}

/// The demo report (written as `report.json`).
#[derive(Clone, Debug, Serialize)]
pub struct DemoReport {
    pub video: PathBuf,
    pub dataset: PathBuf,
    pub model: DemoModel,
    pub scene: DemoScene,
    pub steps_per_frame: usize,
    pub adapt_config: AdaptConfig,
    /// Lock-step, 0 steps per frame.
    pub frozen: EvalReport,
    /// Lock-step, `steps_per_frame` steps per frame, same frames.
    pub adapted: EvalReport,
    /// The adapted run again with `--metric-scale speed` and no median scaling: depth in metres
    /// with no ground truth at run time.
    pub metric: EvalReport,
    pub adapt_stats: AdaptStats,
    pub windows: Vec<WindowRow>,
    /// The paced live replay with adaptation (`None` when skipped).
    pub live: Option<LiveReplay>,
    /// [input | frozen depth | adapted depth] with abs_rel over time, from the lock-step runs.
    pub side_by_side: PathBuf,
    pub report_json: PathBuf,
    pub plot: PathBuf,
    pub outputs: Vec<String>,
}

impl DemoReport {
    /// The table of the seven metrics, frozen and adapted, and the relative change.
    pub fn table(&self) -> String {
        const NAMES: [&str; 7] = ["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"];
        let row = |label: &str, cells: Vec<String>| {
            let cells: Vec<String> = cells.iter().map(|c| format!(" {c:>8} ")).collect();
            format!("{label:>9} |{}\n", cells.join("|").trim_end())
        };
        let (frozen, adapted) = (self.frozen.values(), self.adapted.values());
        let values = |v: [f64; 7]| v.iter().map(|x| format!("{x:.3}")).collect();
        let change = frozen
            .iter()
            .zip(&adapted)
            .map(|(f, a)| format!("{:+.1}%", 100.0 * (a - f) / f.abs().max(1e-12)))
            .collect();
        row("", NAMES.iter().map(|n| n.to_string()).collect())
            + &row("frozen", values(frozen))
            + &row("adapted", values(adapted))
            + &row("change", change)
            + &row("metres", values(self.metric.values()))
            + &self.metric_line()
    }

    /// What the `metres` row is, and how far from metric its scale is.
    fn metric_line(&self) -> String {
        let scale = self.metric.metric_scale.as_ref().map_or(String::new(), |s| {
            format!("; scale {:.3} m per network unit (median)", s.scale_median)
        });
        format!(
            "   metres: adapted with --metric-scale speed, no median scaling: abs_rel {:.3} \
             against {:.3} median-scaled; ground truth / prediction, median {:.3} (1 = \
             metric){scale}\n",
            self.metric.mean.abs_rel,
            self.adapted.mean.abs_rel,
            self.metric.mean.scale_ratio_median
        )
    }
}

/// Mean abs_rel of frozen and adapted per window of `window` frames.
pub fn windows(frozen: &EvalReport, adapted: &EvalReport, window: usize) -> Vec<WindowRow> {
    let mean = |rows: &[crate::app::eval::FrameRow]| {
        rows.iter().map(|r| r.metrics.abs_rel).sum::<f64>() / rows.len() as f64
    };
    frozen
        .per_frame
        .chunks(window.max(1))
        .zip(adapted.per_frame.chunks(window.max(1)))
        .map(|(f, a)| WindowRow {
            first_frame: f[0].frame,
            last_frame: f[f.len() - 1].frame,
            frozen_abs_rel: mean(f),
            adapted_abs_rel: mean(a),
        })
        .collect()
}

/// Writes the SVG plot of abs_rel per frame and its 10-frame trailing mean, frozen and adapted,
/// of `model` on the scene `scene` describes.
pub fn write_abs_rel_plot(
    path: &Path,
    model: &Path,
    scene: &str,
    frozen: &EvalReport,
    adapted: &EvalReport,
) -> crate::Result<()> {
    let per_frame = |report: &EvalReport| -> Vec<(f64, f64)> {
        report.per_frame.iter().map(|r| (r.frame as f64, r.metrics.abs_rel)).collect()
    };
    let rolling = |report: &EvalReport| -> Vec<(f64, f64)> {
        let values: Vec<f64> = report.per_frame.iter().map(|r| r.metrics.abs_rel).collect();
        (0..values.len())
            .map(|i| {
                let lo = i.saturating_sub(9);
                let mean = values[lo..=i].iter().sum::<f64>() / (i + 1 - lo) as f64;
                (report.per_frame[i].frame as f64, mean)
            })
            .collect()
    };
    write_line_plot(
        path,
        &format!("abs_rel over time, {} on {scene}", model.display()),
        "frame",
        "abs_rel",
        &[
            Series { name: "frozen".into(), points: per_frame(frozen) },
            Series { name: "adapted".into(), points: per_frame(adapted) },
            Series { name: "frozen (10-frame mean)".into(), points: rolling(frozen) },
            Series { name: "adapted (10-frame mean)".into(), points: rolling(adapted) },
        ],
    )?;
    Ok(())
}
