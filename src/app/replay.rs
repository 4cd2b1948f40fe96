//! Recorded video replayed like a camera into the live path (`bench live-adapt` and the demo):
//! the file decoded through GStreamer and released at its timestamps by the pipeline clock,
//! as a live source, and what a live run with adaptation leaves behind for the caller
//! (`adapt_report.json`).

use crate::adapt::AdaptStats;
use crate::config::SourceConfig;
use std::path::Path;

/// A `gst://` URI replaying the video file at `path` paced by the pipeline clock, like a camera:
/// `identity sync=true` before the appsink releases each decoded frame at its timestamp (30 fps
/// for a 30 fps file) instead of as fast as the decoder runs. Same frames, same order.
pub fn paced_replay_uri(path: &Path) -> String {
    format!(
        "gst://filesrc location=\"{}\" ! decodebin ! identity sync=true ! videoconvert ! \
         appsink name=sink",
        path.display()
    )
}

/// The source of a camera-like replay of the video file at `path` recorded at `fps`: the paced
/// [`paced_replay_uri`], treated as live (the appsink keeps only the newest frame, so a busy
/// live path drops frames as it would with a camera instead of slowing the video down).
pub fn paced_replay_source(path: &Path, fps: f64) -> SourceConfig {
    SourceConfig { live: Some(true), fps: Some(fps), ..SourceConfig::new(paced_replay_uri(path)) }
}

/// The file in a live run's output folder where `run --adapt` saves the adapter's statistics.
pub const ADAPT_REPORT_FILE: &str = "adapt_report.json";

/// The adapter's statistics that a `run_live` with adaptation saved in `dir`
/// ([`ADAPT_REPORT_FILE`]).
pub fn read_adapt_report(dir: &Path) -> crate::Result<AdaptStats> {
    let path = dir.join(ADAPT_REPORT_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| crate::Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        crate::sink::SinkError::Format {
            path: path.clone(),
            reason: format!("not an adaptation report: {e}"),
        }
        .into()
    })
}
