//! The run configuration: a TOML file with `[source]`, `[camera]`, `[network]`, `[pipeline]`
//! and `[outputs]` sections, parsed with serde (unknown keys rejected) and then validated field
//! by field, so that every mistake is reported as a typed [`ConfigError`] naming the file, the
//! dotted field and what was expected.
//!
//! Relative paths inside a config (dataset folders, model paths, output folders, relative
//! `file://` URIs) resolve against the current working directory, not the config file's
//! folder: the shipped configs in `configs/` assume they are used from the repository root.

use crate::camera::{Distortion, Intrinsics};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod validate;
pub use validate::{DATASET_PREFIXES, check_source_uri};

/// Errors reading or validating a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {}: {source}", file.display())]
    Read { file: PathBuf, source: std::io::Error },
    /// TOML syntax error, unknown key or wrong value type (toml's message has line and column).
    #[error("config {}: {message}", file.display())]
    Parse { file: PathBuf, message: String },
    /// A field parsed but its value is out of range or inconsistent.
    #[error("config {}: field `{field}`: expected {expected}, found {found}", file.display())]
    Invalid { file: PathBuf, field: String, expected: String, found: String },
}

/// A whole run configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub source: SourceConfig,
    /// Camera calibration; absent when the source brings its own (datasets).
    #[serde(default)]
    pub camera: Option<CameraConfig>,
    pub network: NetworkConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub outputs: OutputsConfig,
}

/// `[source]`: where frames come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A GStreamer-style URI (`file:///x.mp4`, `v4l2:///dev/video0`, `rtsp://…`, `csi://0`,
    /// `test://`, `gst://<launch line>`) or a dataset spec (`kitti:DIR`, `kitchen:DIR`,
    /// `tum:DIR`).
    pub uri: String,
    /// Overrides whether the source is treated as live (frames dropped, never queued).
    #[serde(default)]
    pub live: Option<bool>,
    /// Frame rate: recordings (datasets, bags, files not marked live) are played at this rate
    /// by `run` ([`crate::source::paced::Paced`]); recorded outputs (the mp4) are written at
    /// it. A live camera delivers at its own rate.
    #[serde(default)]
    pub fps: Option<f64>,
    /// Seconds without a frame before the source counts as stalled (default 10): the run ends
    /// with a timeout error, or, with `reconnect`, the source is reopened.
    #[serde(default)]
    pub stall_timeout_s: Option<f64>,
    /// Reopen the source with backoff when it stalls, errors or ends (default: on for
    /// v4l2://, rtsp:// and csi:// cameras, off otherwise). Reconnects are counted in the
    /// statistics and in run_report.json.
    #[serde(default)]
    pub reconnect: Option<bool>,
    /// Give up reconnecting after this many seconds without a frame (default: never).
    #[serde(default)]
    pub reconnect_give_up_s: Option<f64>,
}

/// `[camera]`: pinhole calibration at the calibration resolution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
    /// Calibration image width in pixels.
    pub width: u32,
    /// Calibration image height in pixels.
    pub height: u32,
    /// Radial-tangential coefficients `[k1, k2, p1, p2, k3]` (OpenCV order).
    #[serde(default)]
    pub distortion: Option<[f64; 5]>,
}

impl CameraConfig {
    /// The calibration of an ideal pinhole camera (a synthetic renderer's, for one).
    pub fn pinhole(k: &crate::camera::Intrinsics) -> Self {
        Self {
            fx: k.fx,
            fy: k.fy,
            cx: k.cx,
            cy: k.cy,
            width: k.width,
            height: k.height,
            distortion: None,
        }
    }
}

/// The depth network architectures (named in configs as `rtmonodepth-s`, `monodepth2-r18`,
/// `monodepth2-r50`).
pub use crate::model::Arch;

/// `[network]`: the depth network and its input size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    pub arch: Arch,
    /// Network input width (a positive multiple of 32).
    pub width: u32,
    /// Network input height (a positive multiple of 32).
    pub height: u32,
    /// Weights: a folder or file; absent = randomly initialised / built-in default.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Nearest depth the network's sigmoid output maps to, metres.
    #[serde(default = "default_min_depth")]
    pub min_depth: f64,
    /// Farthest depth the network's sigmoid output maps to, metres.
    #[serde(default = "default_max_depth")]
    pub max_depth: f64,
    /// The backend serving depth: `torch`, `onnxruntime`, `tensorrt` or `auto` (the fastest
    /// available, measured at start-up). `--engine` overrides it.
    #[serde(default)]
    pub engine: crate::engine::EngineKind,
    /// Intra-op threads of backends that take them per session (onnxruntime); 0: the
    /// backend's default.
    #[serde(default)]
    pub threads: usize,
    /// Where metric scale comes from: `none` (the network's units), `ground` (the road plane,
    /// with `camera_height`) or `speed` (the vehicle's odometry, `speed_file`, with
    /// adaptation). `--metric-scale` overrides it.
    #[serde(default = "default_metric_scale")]
    pub metric_scale: String,
    /// The camera's height above the road in metres (`--camera-height`), for `ground`.
    #[serde(default)]
    pub camera_height: Option<f64>,
    /// The speed sidecar (`--speed-file`) for `speed`: CSV `time,speed` or JSON lines.
    #[serde(default)]
    pub speed_file: Option<PathBuf>,
    /// Live, the Zenoh key the vehicle publishes its speed on (`--speed-key`), for `speed`:
    /// read on the `[outputs.zenoh]` session (see `scale::live_speed`).
    #[serde(default)]
    pub speed_key: Option<String>,
}

fn default_metric_scale() -> String {
    "none".into()
}

fn default_min_depth() -> f64 {
    0.1
}
fn default_max_depth() -> f64 {
    100.0
}

/// How the pipeline queues treat a full queue (the pipeline's own type; configs spell it
/// `auto`, `keep-latest` or `lossless`, and also accept `keep_latest`).
pub use crate::pipeline::QueuePolicy;

fn deserialize_policy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<QueuePolicy, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "unknown queue policy {text:?}, expected one of `auto`, `keep-latest`, `lossless`"
        ))
    })
}

fn serialize_policy<S: serde::Serializer>(policy: &QueuePolicy, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match policy {
        QueuePolicy::Auto => "auto",
        QueuePolicy::KeepLatest => "keep-latest",
        QueuePolicy::Lossless => "lossless",
    })
}

/// Largest queue the pipeline accepts.
pub const MAX_QUEUE_SIZE: usize = 1 << 16;
/// Shortest statistics interval the pipeline accepts, seconds.
pub const MIN_STATS_INTERVAL_S: f64 = 0.01;

/// `[pipeline]`: queueing between stages and statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Capacity of each inter-stage queue (1 ..= 65536).
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    #[serde(default, deserialize_with = "deserialize_policy", serialize_with = "serialize_policy")]
    pub policy: QueuePolicy,
    /// Seconds between statistics lines (at least 0.01).
    #[serde(default = "default_stats_interval")]
    pub stats_interval_s: f64,
}

fn default_queue_size() -> usize {
    4
}
fn default_stats_interval() -> f64 {
    2.0
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            queue_size: default_queue_size(),
            policy: QueuePolicy::Auto,
            stats_interval_s: default_stats_interval(),
        }
    }
}

/// `[outputs]`: what a run writes and where.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsConfig {
    /// Output folder.
    #[serde(default = "default_out_dir")]
    pub dir: PathBuf,
    /// Write each depth map as a 16-bit PNG (value/256 m, the KITTI convention).
    #[serde(default = "default_true")]
    pub depth_png: bool,
    /// Write each depth map colourised as an 8-bit PNG.
    #[serde(default)]
    pub colour_png: bool,
    /// Write a side-by-side colour | depth video.
    #[serde(default = "default_true")]
    pub video: bool,
    /// Write a point cloud every N frames (0 = never).
    #[serde(default)]
    pub pointcloud_every: u32,
    /// Evaluate against ground truth where the source has it.
    #[serde(default = "default_true")]
    pub metrics: bool,
    /// Serve a Foxglove WebSocket live view on this `HOST:PORT` (`run --foxglove`).
    #[serde(default)]
    pub foxglove: Option<String>,
    /// Record the live view's channels into this new MCAP file (`run --mcap`).
    #[serde(default)]
    pub mcap: Option<PathBuf>,
    /// Put the live view's channels on Zenoh under `livedepth/<device>/…` (`run --zenoh`).
    #[serde(default)]
    pub zenoh: Option<crate::sink::zenoh_live::ZenohConfig>,
}

fn default_out_dir() -> PathBuf {
    PathBuf::from("out/run")
}
fn default_true() -> bool {
    true
}

impl Default for OutputsConfig {
    fn default() -> Self {
        Self {
            dir: default_out_dir(),
            depth_png: true,
            colour_png: false,
            video: true,
            pointcloud_every: 0,
            metrics: true,
            foxglove: None,
            mcap: None,
            zenoh: None,
        }
    }
}

impl NetworkConfig {
    /// `arch` at `width` x `height` with `model`'s weights and the default depth range.
    pub fn new(arch: Arch, width: u32, height: u32, model: Option<PathBuf>) -> Self {
        Self {
            arch,
            width,
            height,
            model,
            min_depth: default_min_depth(),
            max_depth: default_max_depth(),
            engine: crate::engine::EngineKind::default(),
            threads: 0,
            metric_scale: default_metric_scale(),
            camera_height: None,
            speed_file: None,
            speed_key: None,
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let file = path.as_ref();
        let text = std::fs::read_to_string(file)
            .map_err(|source| ConfigError::Read { file: file.to_path_buf(), source })?;
        Self::from_toml_str(&text, file)
    }

    /// Parses and validates config text; `file` names it in errors.
    pub fn from_toml_str(text: &str, file: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let file = file.as_ref();
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_path_buf(),
            message: describe_toml_error(text, &e),
        })?;
        config.validate(file)?;
        Ok(config)
    }

    /// The config as TOML text.
    pub fn to_toml_string(&self) -> String {
        // Serialising plain structs of numbers, strings and paths cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The camera calibration as [`Intrinsics`], where the config has a `[camera]` section.
    pub fn intrinsics(&self) -> Option<Intrinsics> {
        self.camera.as_ref().map(CameraConfig::intrinsics)
    }
}

impl CameraConfig {
    /// These calibration values as [`Intrinsics`].
    pub fn intrinsics(&self) -> Intrinsics {
        Intrinsics {
            fx: self.fx,
            fy: self.fy,
            cx: self.cx,
            cy: self.cy,
            width: self.width,
            height: self.height,
            distortion: self.distortion.map(|[k1, k2, p1, p2, k3]| Distortion {
                k1,
                k2,
                p1,
                p2,
                k3,
            }),
        }
    }
}

impl PipelineConfig {
    /// Like a live camera: queues of 2 that keep the latest frame, statistics every 2 s (the
    /// paced replays of `demo` and `bench live-adapt`).
    pub fn live_camera() -> Self {
        Self { queue_size: 2, policy: QueuePolicy::KeepLatest, stats_interval_s: 2.0 }
    }

    /// The pipeline options these settings select (other options at their defaults).
    pub fn options(&self) -> crate::pipeline::PipelineOptions {
        crate::pipeline::PipelineOptions {
            queue_size: self.queue_size,
            policy: self.policy,
            stats_interval: std::time::Duration::from_secs_f64(
                self.stats_interval_s.clamp(MIN_STATS_INTERVAL_S, 86_400.0),
            ),
            ..crate::pipeline::PipelineOptions::default()
        }
    }
}

/// The stall timeout when `source.stall_timeout_s` is not given.
pub const DEFAULT_STALL_TIMEOUT_S: f64 = 10.0;

impl SourceConfig {
    /// A source config for `uri` with every optional field at its default.
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            live: None,
            fps: None,
            stall_timeout_s: None,
            reconnect: None,
            reconnect_give_up_s: None,
        }
    }

    /// The stall timeout in effect.
    pub fn stall_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.stall_timeout_s.unwrap_or(DEFAULT_STALL_TIMEOUT_S))
    }

    /// Whether the source is reopened when lost: `reconnect`, else on for cameras (v4l2://,
    /// rtsp://, csi://).
    pub fn reconnect_enabled(&self) -> bool {
        if self.is_dataset() {
            return false;
        }
        self.reconnect.unwrap_or_else(|| {
            matches!(
                crate::source::gst_uri::parse_source_uri(&self.uri),
                Ok(crate::source::gst_uri::SourceUri::V4l2(_)
                    | crate::source::gst_uri::SourceUri::Rtsp(_)
                    | crate::source::gst_uri::SourceUri::Csi(_))
            )
        })
    }

    /// Whether `uri` names a recorded dataset (`kitti:`, `kitchen:`, `tum:`).
    pub fn is_dataset(&self) -> bool {
        DATASET_PREFIXES.iter().any(|p| self.uri.trim().starts_with(p))
    }

    /// `uri` with a relative `file://` path (e.g. `file://out/demo/x.mp4`) made absolute
    /// against the current directory, as GStreamer needs; other URIs unchanged.
    pub fn resolved_uri(&self) -> String {
        let uri = self.uri.trim();
        match uri.strip_prefix("file://") {
            Some(path) if !path.starts_with('/') => match std::env::current_dir() {
                Ok(cwd) => format!("file://{}", cwd.join(path).display()),
                Err(_) => uri.to_string(),
            },
            _ => uri.to_string(),
        }
    }
}

/// toml's message (with line and column), prefixed by the dotted key it is about where that
/// can be recovered from the error's position.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.to_string();
    match error.span().and_then(|span| dotted_key_at(text, span.start)) {
        Some(key) => format!("at `{key}`: {message}"),
        None => message,
    }
}

/// The dotted key (`section.key`) of the `key = value` line containing byte `offset`, from the
/// nearest `[section]` header above it; the section alone for an offset inside a header or in
/// an unknown section-level key.
fn dotted_key_at(text: &str, offset: usize) -> Option<String> {
    let mut section: Option<String> = None;
    let mut start = 0usize;
    for line in text.split_inclusive('\n') {
        let end = start + line.len();
        let trimmed = line.trim();
        let is_header = trimmed.starts_with('[') && trimmed.contains(']');
        if is_header {
            let name = trimmed.trim_start_matches('[').split(']').next().unwrap_or("").trim();
            section = Some(name.to_string());
        }
        if offset < end || end == text.len() {
            if is_header {
                return section;
            }
            let key = line
                .split('=')
                .next()
                .map(str::trim)
                .filter(|k| !k.is_empty() && line.contains('='));
            return match (section, key) {
                (Some(s), Some(k)) => Some(format!("{s}.{k}")),
                (None, Some(k)) => Some(k.to_string()),
                (s, None) => s,
            };
        }
        start = end;
    }
    None
}
