//! Live view and recording through the Foxglove SDK (`run --foxglove HOST:PORT`, `run --mcap
//! FILE`): a Foxglove WebSocket server that Foxglove (or any client of its protocol) connects
//! to, and a chunked, indexed MCAP recording of the same channels. Both hang off one Foxglove
//! context on a thread of their own ([`Telemetry`]); the live path only offers each frame
//! through a bounded queue and never waits: when the telemetry thread falls behind, frames are
//! counted as dropped from telemetry, never delayed. A slow WebSocket client loses its oldest
//! queued messages (the server's backlog), not frames.
//!
//! Channels, all Foxglove well-known schemas (protobuf) except the status (JSON):
//! - `/camera/image`: `foxglove.CompressedImage`, the network-size frame as JPEG;
//! - `/depth/image`: `foxglove.RawImage` `32FC1`, depth per pixel in the network's units
//!   (Monodepth2's disparity → depth between the configured min and max depth; metres once
//!   the model is metric);
//! - `/depth/colour`: `foxglove.RawImage` `rgb8`, the colourised depth;
//! - `/depth/points`: `foxglove.PointCloud` (x, y, z float32 and red, green, blue uint8) in the
//!   `camera` frame, every `points_stride`-th pixel in both directions;
//! - `/camera/calibration`: `foxglove.CameraCalibration` at the network size;
//! - `/tf`: `foxglove.FrameTransform`, the camera's pose (`odom → camera`) from the pose
//!   network's motion between published frames, when a pose network is given
//!   ([`super::camera_pose`]; metres with a metric scale);
//! - `/livedepth/status`: JSON, frame index, time, depth range and unit, the frame's metric
//!   scale estimate, telemetry drops, the pipeline's per-stage fps and latency, and the
//!   adaptation status (from the [`StatusBoard`] the statistics and adapter threads post on).
//!
//! The MCAP file is created new (an existing file is never overwritten) and written in chunks
//! of [`MCAP_CHUNK_BYTES`]: a run killed outright leaves every finished chunk readable (the
//! `mcap recover` tool and streaming readers read up to the last whole chunk).

use super::camera_pose::{CameraTrack, MotionSlot};
use super::zenoh_live::{ZenohConfig, ZenohSink};
use crate::camera::Intrinsics;
use crate::frame::{DepthMap, RgbImage};
use crate::pipeline::StatusBoard;
use crate::pool::Pooled;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use foxglove::messages::{
    CameraCalibration, CompressedImage, FrameTransform, PackedElementField, PointCloud, RawImage,
    Timestamp, packed_element_field::NumericType,
};
use foxglove::{Context, McapCompression, McapWriteOptions, Schema, WebSocketServer};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

/// Bytes per MCAP chunk: what a killed run can lose at most.
pub const MCAP_CHUNK_BYTES: u64 = 256 * 1024;

/// Frames the live path may queue for the telemetry thread before it drops them.
const QUEUE_FRAMES: usize = 8;

/// Errors of the live view and recording; each names the flag or file.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("--foxglove {address}: expected HOST:PORT (e.g. 127.0.0.1:8765, port 0 picks one)")]
    Address { address: String },
    #[error("--foxglove {address}: cannot start the WebSocket server: {reason}")]
    Server { address: String, reason: String },
    #[error(
        "--mcap {}: {reason} (recordings are never overwritten: choose a new file name)",
        path.display()
    )]
    Mcap { path: PathBuf, reason: String },
    #[error("--zenoh ({prefix}): {reason}")]
    Zenoh { prefix: String, reason: String },
    #[error("telemetry thread: {0}")]
    Thread(String),
}

/// What to publish and record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TelemetryOptions {
    /// `HOST:PORT` of the Foxglove WebSocket server (port 0: any free port).
    pub foxglove: Option<String>,
    /// The MCAP file to record into (created new).
    pub mcap: Option<PathBuf>,
    /// Point cloud subsampling (1: every pixel).
    pub points_stride: usize,
    /// Also put every channel on a Zenoh session (`sink::zenoh_live`).
    pub zenoh: Option<ZenohConfig>,
}

impl TelemetryOptions {
    pub fn enabled(&self) -> bool {
        self.foxglove.is_some() || self.mcap.is_some() || self.zenoh.is_some()
    }
}

/// One frame's worth of telemetry, owned: the live path hands its buffers over, and they go
/// back to the live path's pools when the telemetry thread drops them.
#[derive(Debug)]
pub struct TelemetryFrame {
    pub index: u64,
    /// Source time in seconds.
    pub timestamp: f64,
    /// The frame at the network size.
    pub image: Pooled<RgbImage>,
    pub depth: Pooled<DepthMap>,
    pub colour: Pooled<RgbImage>,
    /// Intrinsics (any size; rescaled to the network size).
    pub intrinsics: Option<Intrinsics>,
    /// The metric scale applied to `depth` (None: the network's units).
    pub scale: Option<crate::scale::ScaleEstimate>,
}

/// What the telemetry thread did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TelemetryReport {
    /// Frames published (and recorded).
    pub frames: u64,
    /// Frames the live path dropped from telemetry because its queue was full.
    pub dropped: u64,
    /// The WebSocket server's port, when it ran.
    pub foxglove_port: Option<u16>,
    pub mcap: Option<PathBuf>,
    /// The Zenoh key prefix (`livedepth/<device>`), when it ran.
    pub zenoh: Option<String>,
}

/// The live path's handle on the telemetry thread.
pub struct Telemetry {
    frames: Option<Sender<TelemetryFrame>>,
    thread: Option<JoinHandle<Result<u64, TelemetryError>>>,
    /// Frames dropped from telemetry (shared with the thread, which reports it in the status).
    dropped: Arc<AtomicU64>,
    foxglove_port: Option<u16>,
    mcap: Option<PathBuf>,
    /// The Zenoh key prefix and session, when Zenoh is on.
    zenoh: Option<(String, zenoh::Session)>,
    board: StatusBoard,
    /// The camera's motion source for `/tf`, set by [`Telemetry::set_camera_motion`].
    motion: MotionSlot,
}

/// `HOST:PORT` (IPv6 hosts in brackets) as host and port; the error names `--foxglove`.
pub fn parse_address(address: &str) -> Result<(String, u16), TelemetryError> {
    let bad = || TelemetryError::Address { address: address.to_owned() };
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

/// The channels of one context.
struct Channels {
    image: foxglove::Channel<CompressedImage>,
    depth: foxglove::Channel<RawImage>,
    colour: foxglove::Channel<RawImage>,
    points: foxglove::Channel<PointCloud>,
    calibration: foxglove::Channel<CameraCalibration>,
    tf: foxglove::Channel<FrameTransform>,
    status: Arc<foxglove::RawChannel>,
}

impl Channels {
    fn new(ctx: &Arc<Context>) -> Result<Self, TelemetryError> {
        let status_schema = Schema::new(
            "livedepth.Status",
            "jsonschema",
            br#"{"type":"object","properties":{"frame":{"type":"integer"},"time":{"type":"number"},"depth_min":{"type":"number"},"depth_median":{"type":"number"},"depth_max":{"type":"number"},"telemetry_dropped":{"type":"integer"}}}"#.to_vec(),
        );
        let status = ctx
            .channel_builder("/livedepth/status")
            .message_encoding("json")
            .schema(status_schema)
            .build_raw()
            .map_err(|e| TelemetryError::Thread(format!("status channel: {e}")))?;
        Ok(Self {
            image: ctx.channel_builder("/camera/image").build(),
            depth: ctx.channel_builder("/depth/image").build(),
            colour: ctx.channel_builder("/depth/colour").build(),
            points: ctx.channel_builder("/depth/points").build(),
            calibration: ctx.channel_builder("/camera/calibration").build(),
            tf: ctx.channel_builder("/tf").build(),
            status,
        })
    }
}

impl Telemetry {
    /// Starts the server and the recording `options` ask for (errors name the flag) and the
    /// thread that feeds them.
    pub fn start(options: &TelemetryOptions) -> Result<Self, TelemetryError> {
        let ctx = Context::new();
        let mut foxglove_port = None;
        let server = match &options.foxglove {
            Some(address) => {
                let (host, port) = parse_address(address)?;
                let handle = WebSocketServer::new()
                    .name("livedepth")
                    .context(&ctx)
                    .bind(host, port)
                    .start_blocking()
                    .map_err(|e| TelemetryError::Server {
                        address: address.clone(),
                        reason: e.to_string(),
                    })?;
                foxglove_port = Some(handle.port());
                Some(handle)
            }
            None => None,
        };
        let mcap = match &options.mcap {
            Some(path) => {
                let write_options = McapWriteOptions::new()
                    .chunk_size(Some(MCAP_CHUNK_BYTES))
                    .compression(Some(McapCompression::Zstd));
                let writer = foxglove::McapWriter::with_options(write_options)
                    .context(&ctx)
                    .create_new_buffered_file(path)
                    .map_err(|e| TelemetryError::Mcap {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                Some(writer)
            }
            None => None,
        };
        let zenoh = match &options.zenoh {
            Some(config) => {
                let prefix = config.key_prefix();
                let session = config
                    .open()
                    .map_err(|reason| TelemetryError::Zenoh { prefix: prefix.clone(), reason })?;
                ctx.add_sink(Arc::new(ZenohSink::new(session.clone(), prefix.clone())));
                Some((prefix, session))
            }
            None => None,
        };
        let channels = Channels::new(&ctx)?;
        let (frames, frames_rx) = crossbeam_channel::bounded::<TelemetryFrame>(QUEUE_FRAMES);
        let stride = options.points_stride.max(1);
        let mcap_path = options.mcap.clone();
        let dropped = Arc::new(AtomicU64::new(0));
        let dropped_seen = Arc::clone(&dropped);
        let board = StatusBoard::new();
        let board_read = board.clone();
        let motion: MotionSlot = Arc::default();
        let motion_read = Arc::clone(&motion);
        let thread = std::thread::Builder::new()
            .name("telemetry".into())
            .spawn(move || {
                let feed = Feed {
                    frames: &frames_rx,
                    stride,
                    dropped: &dropped_seen,
                    board: &board_read,
                    motion: &motion_read,
                };
                let published = publish_loop(&channels, feed);
                if let Some(writer) = mcap {
                    writer.close().map_err(|e| TelemetryError::Mcap {
                        path: mcap_path.unwrap_or_default(),
                        reason: format!("closing: {e}"),
                    })?;
                }
                if let Some(server) = server {
                    server.stop().wait_blocking();
                }
                drop(ctx);
                Ok(published)
            })
            .map_err(|e| TelemetryError::Thread(format!("cannot start: {e}")))?;
        Ok(Self {
            frames: Some(frames),
            thread: Some(thread),
            dropped,
            foxglove_port,
            mcap: options.mcap.clone(),
            zenoh,
            board,
            motion,
        })
    }

    /// Publishes the camera's pose on `/tf` from now on, measured by `motion` (on the
    /// telemetry thread).
    pub fn set_camera_motion(&self, motion: Box<dyn super::camera_pose::CameraMotion>) {
        *self.motion.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(motion);
    }

    /// The board whose newest pipeline statistics and adaptation status each status message
    /// carries: hand it to the pipeline (`PipelineOptions::status_board`) and the adapter.
    pub fn status_board(&self) -> StatusBoard {
        self.board.clone()
    }

    /// The Zenoh session the channels go out on, when Zenoh is on (one per process: others
    /// share it, e.g. the adapter sharing weights with the fleet).
    pub fn zenoh_session(&self) -> Option<zenoh::Session> {
        self.zenoh.as_ref().map(|(_, session)| session.clone())
    }

    /// The WebSocket server's port, when it runs.
    pub fn foxglove_port(&self) -> Option<u16> {
        self.foxglove_port
    }

    /// Offers a frame without waiting; a full queue drops it (counted).
    pub fn offer(&mut self, frame: TelemetryFrame) {
        if let Some(frames) = &self.frames {
            match frames.try_send(frame) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Publishes what is queued, closes the recording and stops the server.
    pub fn finish(&mut self) -> Result<TelemetryReport, TelemetryError> {
        self.frames.take();
        let frames = match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| TelemetryError::Thread("the telemetry thread panicked".into()))??,
            None => 0,
        };
        Ok(TelemetryReport {
            frames,
            dropped: self.dropped.load(Ordering::Relaxed),
            foxglove_port: self.foxglove_port,
            mcap: self.mcap.clone(),
            zenoh: self.zenoh.as_ref().map(|(prefix, _)| prefix.clone()),
        })
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Closes the recording when the live path ends early (an error upstream).
        let _ = self.finish();
    }
}

fn timestamp(seconds: f64) -> Timestamp {
    let seconds = seconds.max(0.0);
    Timestamp::new(seconds.floor() as u32, ((seconds.fract()) * 1e9) as u32)
}

/// What the telemetry thread reads.
struct Feed<'a> {
    frames: &'a Receiver<TelemetryFrame>,
    /// Point cloud subsampling.
    stride: usize,
    dropped: &'a AtomicU64,
    board: &'a StatusBoard,
    motion: &'a MotionSlot,
}

/// Publishes frames until the live path closes the queue; returns how many.
fn publish_loop(channels: &Channels, feed: Feed<'_>) -> u64 {
    let Feed { frames, stride, dropped, board, motion } = feed;
    let (mut pipeline, mut adapt) = (None, None);
    let mut camera = CameraTrack::default();
    let mut published = 0;
    // Messages carry wall-clock time: the source's clock starts at 0 with the stream.
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    for frame in frames {
        let stamp = timestamp(start + frame.timestamp);
        let (w, h) = (frame.depth.width, frame.depth.height);
        let mut jpeg = Vec::new();
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85);
        if image::ImageEncoder::write_image(
            encoder,
            &frame.image.data,
            w,
            h,
            image::ExtendedColorType::Rgb8,
        )
        .is_ok()
        {
            channels.image.log(&CompressedImage {
                timestamp: Some(stamp),
                frame_id: "camera".into(),
                data: jpeg.into(),
                format: "jpeg".into(),
            });
        }
        let depth_bytes: Vec<u8> = frame.depth.data.iter().flat_map(|d| d.to_le_bytes()).collect();
        channels.depth.log(&RawImage {
            timestamp: Some(stamp),
            frame_id: "camera".into(),
            width: w,
            height: h,
            encoding: "32FC1".into(),
            step: 4 * w,
            data: depth_bytes.into(),
        });
        channels.colour.log(&RawImage {
            timestamp: Some(stamp),
            frame_id: "camera".into(),
            width: w,
            height: h,
            encoding: "rgb8".into(),
            step: 3 * w,
            // Copied here, on the telemetry thread, so that the buffer goes back to the live
            // path's pool whole (taking it would leave the live path to allocate a new one).
            data: frame.colour.data.to_vec().into(),
        });
        if let Some(k) = frame.intrinsics.map(|k| k.scaled(w, h)) {
            channels.calibration.log(&calibration(&k, stamp));
            channels.points.log(&point_cloud(&frame, &k, stride, stamp));
        }
        let pose = camera.next(motion, &frame, stamp);
        if let Some(transform) = &pose {
            channels.tf.log(transform);
        }
        let mut sorted: Vec<f32> =
            frame.depth.data.iter().copied().filter(|d| d.is_finite()).collect();
        sorted.sort_by(f32::total_cmp);
        let pick = |q: f64| sorted.get(((sorted.len().max(1) - 1) as f64 * q) as usize).copied();
        // The board's newest figures (kept from the last read when a writer holds it).
        if let Some((p, a)) = board.read() {
            (pipeline, adapt) = (p, a);
        }
        let status = serde_json::json!({
            "frame": frame.index,
            "time": frame.timestamp,
            "depth_unit": if frame.scale.is_some() { "m" } else { "network units" },
            "depth_min": pick(0.0),
            "depth_median": pick(0.5),
            "depth_max": pick(1.0),
            "scale": frame.scale,
            "telemetry_dropped": dropped.load(Ordering::Relaxed),
            "camera_travelled": pose.is_some().then(|| camera.travelled()),
            "pipeline": pipeline,
            "adapt": adapt,
        });
        channels.status.log(status.to_string().as_bytes());
        published += 1;
    }
    published
}

fn calibration(k: &Intrinsics, stamp: Timestamp) -> CameraCalibration {
    CameraCalibration {
        timestamp: Some(stamp),
        frame_id: "camera".into(),
        width: k.width,
        height: k.height,
        distortion_model: "plumb_bob".into(),
        d: vec![0.0; 5],
        k: vec![k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0],
        r: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p: vec![k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    }
}

/// Bytes per point: x, y, z float32 and red, green, blue uint8 (+1 padding).
const POINT_STRIDE_BYTES: usize = 16;

fn point_cloud(
    frame: &TelemetryFrame,
    k: &Intrinsics,
    stride: usize,
    stamp: Timestamp,
) -> PointCloud {
    let (w, h) = (frame.depth.width as usize, frame.depth.height as usize);
    let mut data = Vec::with_capacity((w / stride + 1) * (h / stride + 1) * POINT_STRIDE_BYTES);
    for v in (0..h).step_by(stride) {
        for u in (0..w).step_by(stride) {
            let z = frame.depth.data[v * w + u];
            if !(z.is_finite() && z > 0.0) {
                continue;
            }
            let x = ((u as f64 - k.cx) / k.fx) as f32 * z;
            let y = ((v as f64 - k.cy) / k.fy) as f32 * z;
            for c in [x, y, z] {
                data.extend_from_slice(&c.to_le_bytes());
            }
            let rgb = &frame.image.data[3 * (v * w + u)..3 * (v * w + u) + 3];
            data.extend_from_slice(rgb);
            data.push(0);
        }
    }
    let field = |name: &str, offset: u32, kind: NumericType| PackedElementField {
        name: name.into(),
        offset,
        r#type: kind as i32,
    };
    PointCloud {
        timestamp: Some(stamp),
        frame_id: "camera".into(),
        pose: None,
        point_stride: POINT_STRIDE_BYTES as u32,
        fields: vec![
            field("x", 0, NumericType::Float32),
            field("y", 4, NumericType::Float32),
            field("z", 8, NumericType::Float32),
            field("red", 12, NumericType::Uint8),
            field("green", 13, NumericType::Uint8),
            field("blue", 14, NumericType::Uint8),
        ],
        data: data.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_or_name_the_flag() {
        assert_eq!(parse_address("127.0.0.1:8765").unwrap(), ("127.0.0.1".into(), 8765));
        assert_eq!(parse_address("[::1]:0").unwrap(), ("::1".into(), 0));
        for bad in ["8765", "host:", ":80", "host:99999"] {
            let err = parse_address(bad).unwrap_err().to_string();
            assert!(err.contains("--foxglove") && err.contains(bad), "{err}");
        }
    }
}
