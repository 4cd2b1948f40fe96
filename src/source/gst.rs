//! [`GstSource`]: frames from any GStreamer pipeline ending in an appsink, opened from a URI
//! (see [`parse_source_uri`]). Frames are negotiated to packed RGB at the requested size, read
//! with gstreamer-video (respecting the row stride) and time-stamped with the buffer PTS.
//!
//! Pipelines built here:
//! - `file://`: `filesrc ! queue ! decodebin` (any container and codec installed) → tail; the
//!   queue keeps the demuxer in push mode, and filesrc's allocation queries are answered at its
//!   own pad (a GStreamer `queue` can drop one without an answer and stall the file's end);
//! - `v4l2://`, `rtsp://`: `uridecodebin` (rtspsrc with a small latency) → tail;
//! - `csi://N`: `nvarguscamerasrc sensor-id=N ! nvvidconv` → tail (Jetson only);
//! - `test://`: `videotestsrc` → tail;
//! - `gst://DESC`: the description as given; its `appsink name=sink` gets RGB caps.
//!
//! The tail is `videoconvert ! videoscale ! capsfilter(video/x-raw,format=RGB[,size]) ! appsink`.
//! Replay sources deliver every decoded frame (appsink `drop=false`, small queue, no clock
//! sync); live sources keep only the latest frame (`drop=true max-buffers=1`).
//!
//! Errors posted on the bus become [`SourceError::Stream`] naming the element, message and
//! debug string; every wait is bounded by [`GstOptions::timeout`], so a stalled or undecodable
//! stream gives an error instead of a hang. Warnings are logged to stderr and counted.

pub use super::gst_uri::{ACCEPTED_URIS, SourceUri, parse_source_uri};

use super::{Source, SourceError};
use crate::frame::{Frame, RgbImage};
use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use std::time::{Duration, Instant};

mod build;
use build::build_pipeline;

/// How long one wait on the appsink lasts before the bus is checked again.
const POLL_INTERVAL: gst::ClockTime = gst::ClockTime::from_mseconds(50);
/// Latency of the RTSP jitter buffer, in milliseconds (small: we want the latest frame).
const RTSP_LATENCY_MS: u32 = 100;
/// Appsink queue length for replay sources (lossless, back-pressured).
const REPLAY_MAX_BUFFERS: u32 = 4;

/// Options of a [`GstSource`].
#[derive(Clone, Debug, PartialEq)]
pub struct GstOptions {
    /// Output width in pixels; `None` keeps the native width (or follows the height's aspect).
    pub width: Option<u32>,
    /// Output height in pixels; `None` keeps the native height (or follows the width's aspect).
    pub height: Option<u32>,
    /// Keep only the latest frame (cameras) instead of delivering every frame (files).
    /// `None`: live for v4l2/rtsp/csi/test, not live for file/gst.
    pub live: Option<bool>,
    /// The longest wait for the pipeline to start or for one frame.
    pub timeout: Duration,
}

impl Default for GstOptions {
    fn default() -> Self {
        Self { width: None, height: None, live: None, timeout: Duration::from_secs(10) }
    }
}

/// An error message read from the bus.
#[derive(Clone, Debug)]
struct BusError {
    element: String,
    message: String,
    debug: String,
}

impl BusError {
    fn from_message(err: &gst::message::Error) -> Self {
        Self {
            element: err.src().map(|s| s.name().to_string()).unwrap_or_else(|| "unknown".into()),
            message: err.error().to_string(),
            debug: err.debug().map(|d| d.to_string()).unwrap_or_default(),
        }
    }

    fn to_source_error(&self, uri: &str) -> SourceError {
        SourceError::Stream {
            uri: uri.to_string(),
            element: self.element.clone(),
            message: self.message.clone(),
            debug: self.debug.clone(),
        }
    }
}

/// Frames from a GStreamer pipeline. See the module documentation.
pub struct GstSource {
    uri: String,
    live: bool,
    timeout: Duration,
    pipeline: gst::Pipeline,
    appsink: gst_app::AppSink,
    bus: gst::Bus,
    /// First element of our conversion tail, whose sink caps give the native size.
    tail_head: Option<gst::Element>,
    /// The first sample, pulled while opening to learn the caps.
    pending: Option<gst::Sample>,
    /// A fatal bus error, repeated on every later call.
    failed: Option<BusError>,
    ended: bool,
    /// Whether the end of a recording was checked against its declared length.
    end_checked: bool,
    /// Frames a recording declared but did not deliver (set at its end).
    frames_lost: u64,
    warnings: u64,
    next_index: u64,
    video_info: Option<(gst::Caps, gst_video::VideoInfo)>,
    caps_description: String,
    native_size: Option<(u32, u32)>,
    output_size: Option<(u32, u32)>,
    framerate: Option<f64>,
    opened_at: Instant,
}

impl GstSource {
    /// Open the source named by `uri` and start it: returns once the first frame arrived (or the
    /// stream ended empty), so that caps, size and framerate are known.
    pub fn open(uri: &str, options: &GstOptions) -> Result<Self, SourceError> {
        let parsed = parse_source_uri(uri)?;
        Self::open_parsed(uri, parsed, options)
    }

    /// [`GstSource::open`] for an already parsed URI (`uri` is only used in messages).
    pub fn open_parsed(
        uri: &str,
        parsed: SourceUri,
        options: &GstOptions,
    ) -> Result<Self, SourceError> {
        if options.width == Some(0) || options.height == Some(0) {
            return Err(SourceError::Format {
                uri: uri.to_string(),
                reason: "the requested width and height must be positive".into(),
            });
        }
        gst::init().map_err(|e| SourceError::GstInit(e.to_string()))?;
        let live = options.live.unwrap_or_else(|| parsed.default_live());
        let (pipeline, appsink, tail_head) = build_pipeline(uri, &parsed, options, live)?;
        let bus = pipeline.bus().ok_or_else(|| SourceError::Pipeline {
            uri: uri.to_string(),
            reason: "the pipeline has no bus".into(),
        })?;
        let mut source = Self {
            uri: uri.to_string(),
            live,
            timeout: options.timeout,
            pipeline,
            appsink,
            bus,
            tail_head,
            pending: None,
            failed: None,
            ended: false,
            end_checked: false,
            frames_lost: 0,
            warnings: 0,
            next_index: 0,
            video_info: None,
            caps_description: String::new(),
            native_size: None,
            output_size: None,
            framerate: None,
            opened_at: Instant::now(),
        };
        source.start()?;
        Ok(source)
    }

    fn start(&mut self) -> Result<(), SourceError> {
        if self.pipeline.set_state(gst::State::Playing).is_err() {
            // The reason is on the bus; give it a moment to arrive.
            let deadline = Instant::now() + self.timeout.min(Duration::from_secs(2));
            while Instant::now() < deadline {
                self.drain_bus()?;
                if let Some(msg) = self.bus.timed_pop_filtered(
                    POLL_INTERVAL,
                    &[gst::MessageType::Error, gst::MessageType::Warning],
                ) {
                    self.handle_message(&msg)?;
                }
            }
            return Err(SourceError::StateChange {
                uri: self.uri.clone(),
                state: "PLAYING".into(),
            });
        }
        let first = self.pull_sample()?;
        match &first {
            Some(sample) => {
                if let Some(caps) = sample.caps() {
                    self.learn_caps(caps)?;
                }
            }
            None => self.ended = true,
        }
        self.pending = first;
        Ok(())
    }

    /// Record the negotiated output caps, native size and framerate.
    fn learn_caps(&mut self, caps: &gst::CapsRef) -> Result<(), SourceError> {
        self.caps_description = caps.to_string();
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| SourceError::Format {
            uri: self.uri.clone(),
            reason: format!("caps `{caps}` are not raw video: {e}"),
        })?;
        self.output_size = Some((info.width(), info.height()));
        let fps = info.fps();
        self.framerate = (fps.numer() > 0 && fps.denom() > 0)
            .then(|| f64::from(fps.numer()) / f64::from(fps.denom()));
        let native = self
            .tail_head
            .as_ref()
            .and_then(|e| e.static_pad("sink"))
            .and_then(|pad| pad.current_caps())
            .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok())
            .map(|i| (i.width(), i.height()));
        self.native_size = native.or(self.output_size);
        Ok(())
    }

    /// The URI the source was opened from.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The negotiated caps of the delivered frames (empty if the stream ended before a frame).
    pub fn caps_description(&self) -> &str {
        &self.caps_description
    }

    /// The size of the decoded video before scaling, once a frame arrived.
    pub fn native_size(&self) -> Option<(u32, u32)> {
        self.native_size
    }

    /// The size of the delivered frames, once a frame arrived.
    pub fn output_size(&self) -> Option<(u32, u32)> {
        self.output_size
    }

    /// The nominal framerate in frames per second, where the caps give one (not variable).
    pub fn framerate(&self) -> Option<f64> {
        self.framerate
    }

    /// How many warnings the pipeline posted so far (each is also printed to stderr).
    pub fn warning_count(&self) -> u64 {
        self.warnings
    }

    /// Frames the recording declared but did not deliver (known once it ended; 0 for live
    /// sources and complete files).
    pub fn frames_lost(&self) -> u64 {
        self.frames_lost
    }

    /// At the end of a recording (not a live source): no frame at all is an error; fewer frames
    /// than the container declared (duration times frame rate) is a warning saying what was
    /// lost. Containers that declare no duration (fragmented MP4, pipes) are not judged.
    fn check_end_of_recording(&mut self) -> Result<(), SourceError> {
        if self.live || self.end_checked {
            return Ok(());
        }
        self.end_checked = true;
        let delivered = self.next_index;
        let declared_seconds = self
            .pipeline
            .query_duration::<gst::ClockTime>()
            .map(|d| d.nseconds() as f64 * 1e-9)
            .filter(|s| *s > 0.0);
        if delivered == 0 {
            let declared = declared_seconds
                .map(|s| format!(" although it declares {s:.2} s"))
                .unwrap_or_default();
            return Err(SourceError::Truncated {
                uri: self.uri.clone(),
                reason: format!(
                    "no frame could be decoded{declared}: the file is empty, cut off or not a \
                     video (check that it plays, or re-record it)"
                ),
            });
        }
        let (Some(seconds), Some(fps)) = (declared_seconds, self.framerate) else {
            return Ok(());
        };
        let declared = (seconds * fps).round() as u64;
        let lost = declared.saturating_sub(delivered);
        // One frame of rounding, and 1 % for containers whose duration is approximate.
        if lost >= 2 && lost as f64 > 0.01 * declared as f64 {
            self.frames_lost = lost;
            self.warnings += 1;
            tracing::warn!(
                "warning: {}: the file declares {seconds:.2} s ({declared} frames at {fps:.3} fps) \
                 but only {delivered} frames ({:.2} s) could be decoded: {lost} frames are lost \
                 (the file is cut off or damaged)",
                self.uri,
                delivered as f64 / fps
            );
        }
        Ok(())
    }

    fn handle_message(&mut self, msg: &gst::Message) -> Result<(), SourceError> {
        match msg.view() {
            gst::MessageView::Error(err) => {
                let bus_error = BusError::from_message(err);
                let error = bus_error.to_source_error(&self.uri);
                self.failed = Some(bus_error);
                Err(error)
            }
            gst::MessageView::Warning(warning) => {
                self.warnings += 1;
                let element = warning.src().map(|s| s.name().to_string()).unwrap_or_default();
                tracing::warn!(
                    "warning: {}: GStreamer warning from `{element}`: {} ({})",
                    self.uri,
                    warning.error(),
                    warning.debug().map(|d| d.to_string()).unwrap_or_default()
                );
                Ok(())
            }
            gst::MessageView::Eos(_) => {
                self.ended = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Handle every message waiting on the bus; the first error is returned.
    fn drain_bus(&mut self) -> Result<(), SourceError> {
        if let Some(failed) = &self.failed {
            return Err(failed.to_source_error(&self.uri));
        }
        while let Some(msg) = self.bus.pop() {
            self.handle_message(&msg)?;
        }
        Ok(())
    }

    /// The next sample, `None` at the end of the stream; bounded by the timeout.
    fn pull_sample(&mut self) -> Result<Option<gst::Sample>, SourceError> {
        if let Some(sample) = self.pending.take() {
            return Ok(Some(sample));
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(failed) = &self.failed {
                return Err(failed.to_source_error(&self.uri));
            }
            if let Some(sample) = self.appsink.try_pull_sample(POLL_INTERVAL) {
                return Ok(Some(sample));
            }
            self.drain_bus()?;
            if self.ended || self.appsink.is_eos() {
                // Anything queued before the end is still delivered.
                return Ok(self.appsink.try_pull_sample(gst::ClockTime::ZERO));
            }
            if Instant::now() >= deadline {
                return Err(SourceError::Timeout {
                    uri: self.uri.clone(),
                    seconds: self.timeout.as_secs_f64(),
                });
            }
        }
    }

    /// Copy one RGB sample into a packed [`RgbImage`] frame.
    fn sample_to_frame(&mut self, sample: &gst::Sample) -> Result<Frame, SourceError> {
        let uri = &self.uri;
        let format_error = |reason: String| SourceError::Format { uri: uri.clone(), reason };
        let buffer =
            sample.buffer().ok_or_else(|| format_error("a sample without a buffer".into()))?;
        let caps = sample.caps().ok_or_else(|| format_error("a sample without caps".into()))?;
        let cached = matches!(&self.video_info, Some((c, _)) if c.as_ptr() == caps.as_ptr());
        if !cached {
            let info = gst_video::VideoInfo::from_caps(caps)
                .map_err(|e| format_error(format!("caps `{caps}` are not raw video: {e}")))?;
            if info.format() != gst_video::VideoFormat::Rgb {
                return Err(format_error(format!("expected packed RGB, got caps `{caps}`")));
            }
            self.video_info = Some((caps.to_owned(), info));
        }
        let Some((_, info)) = &self.video_info else {
            return Err(format_error("no video info".into()));
        };
        let mapped = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info)
            .map_err(|e| format_error(format!("could not map a frame: {e}")))?;
        let (width, height) = (mapped.width(), mapped.height());
        let row_bytes = width as usize * 3;
        let stride = usize::try_from(mapped.plane_stride()[0]).unwrap_or(0);
        let plane =
            mapped.plane_data(0).map_err(|e| format_error(format!("unreadable plane: {e}")))?;
        if width == 0
            || height == 0
            || stride < row_bytes
            || plane.len() < stride * (height as usize - 1) + row_bytes
        {
            return Err(format_error(format!(
                "a {width}x{height} RGB frame with stride {stride} in {} bytes",
                plane.len()
            )));
        }
        let mut data = Vec::with_capacity(row_bytes * height as usize);
        if stride == row_bytes {
            data.extend_from_slice(&plane[..row_bytes * height as usize]);
        } else {
            for row in plane.chunks(stride).take(height as usize) {
                data.extend_from_slice(&row[..row_bytes]);
            }
        }
        let timestamp = match buffer.pts() {
            Some(pts) => pts.nseconds() as f64 * 1e-9,
            None => self.opened_at.elapsed().as_secs_f64(),
        };
        let frame = Frame::from_rgb(self.next_index, timestamp, RgbImage { width, height, data });
        self.next_index += 1;
        Ok(frame)
    }
}

impl Source for GstSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        match self.pull_sample()? {
            Some(sample) => self.sample_to_frame(&sample).map(Some),
            None => {
                self.check_end_of_recording()?;
                Ok(None)
            }
        }
    }

    fn is_live(&self) -> bool {
        self.live
    }

    fn describe(&self) -> String {
        match self.output_size {
            Some((w, h)) => format!("{} ({w}x{h}, {})", self.uri, self.caps_description),
            None => format!("{} (no frames)", self.uri),
        }
    }
}

impl Drop for GstSource {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
