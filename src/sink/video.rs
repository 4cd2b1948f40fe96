//! [`Mp4Writer`]: H.264 MP4 video from RGB frames through GStreamer
//! (`appsrc ! videoconvert ! I420 ! x264enc ! mp4mux ! filesink`), in one of two modes:
//! - [`Mp4Writer::create`], for artefacts written in one go (the demo's videos, `render --mp4`):
//!   a temporary file beside the target, renamed onto it only when the stream finished cleanly,
//!   with the index first (faststart);
//! - [`Mp4Writer::create_recording`], for recordings of a live run that may be killed at any
//!   moment: fragmented MP4 (an index fragment every [`RECORDING_FRAGMENT_MS`] ms, a key frame
//!   every second, no encoder look-ahead) written in place under the final name, so that a
//!   SIGKILL or a power cut leaves a playable file up to the last finished fragment.

use super::{SinkError, commit_temp, temp_path_for};
use crate::frame::RgbImage;
use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Frames queued in the appsrc before `push` waits for the encoder.
const QUEUED_FRAMES: u64 = 4;
/// The longest wait for the encoder to accept one frame.
const PUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait for the encoder to drain and the muxer to finish after the last frame.
const FINISH_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the bus is polled while waiting.
const POLL_INTERVAL: gst::ClockTime = gst::ClockTime::from_mseconds(10);
/// x264 constant-quality setting (lower = better; ~18-23 is visually near-lossless to good).
const X264_QUALITY: u32 = 18;
/// Fragment length of a crash-safe recording: what a kill can lose at most, beyond the
/// encoder's and the file system's buffers.
pub const RECORDING_FRAGMENT_MS: u32 = 500;

/// Writes RGB frames to an H.264 MP4 file. Call [`Mp4Writer::finish`] to complete the file;
/// dropping the writer unfinished discards it.
pub struct Mp4Writer {
    path: PathBuf,
    temp: PathBuf,
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    bus: gst::Bus,
    info: gst_video::VideoInfo,
    frame_duration: gst::ClockTime,
    last_pts: Option<f64>,
    frames: u64,
    finished: bool,
    /// Written in place as fragmented MP4 ([`Mp4Writer::create_recording`]).
    crash_safe: bool,
}

impl Mp4Writer {
    /// Start writing `path` (a temporary file beside it until [`Mp4Writer::finish`]) for frames
    /// of `width` x `height` (both even) at a nominal `fps`.
    pub fn create(path: &Path, width: u32, height: u32, fps: f64) -> Result<Self, SinkError> {
        Self::open(path, width, height, fps, false)
    }

    /// Start a crash-safe recording at `path`: fragmented MP4 written in place (see the module
    /// documentation). A previous file at `path` is replaced at once. Dropping the writer
    /// unfinished keeps what was recorded.
    pub fn create_recording(
        path: &Path,
        width: u32,
        height: u32,
        fps: f64,
    ) -> Result<Self, SinkError> {
        Self::open(path, width, height, fps, true)
    }

    fn open(
        path: &Path,
        width: u32,
        height: u32,
        fps: f64,
        crash_safe: bool,
    ) -> Result<Self, SinkError> {
        if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(SinkError::invalid(
                path,
                "video size",
                format!(
                    "{width}x{height}: width and height must be positive and even (H.264 4:2:0)"
                ),
            ));
        }
        if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
            return Err(SinkError::invalid(
                path,
                "frame rate",
                format!("{fps} is not in (0, 1000]"),
            ));
        }
        if path.is_dir() {
            // Checked before any work, so that e.g. `render --mp4 DIR` fails at once and not at
            // the final rename after rendering everything.
            return Err(SinkError::invalid(
                path,
                "video path",
                "it is a folder; expected a file name such as drive.mp4",
            ));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| SinkError::io(parent, e))?;
        }
        let missing = |element: &str, reason: String| SinkError::MissingElement {
            path: path.to_path_buf(),
            element: element.to_string(),
            reason,
        };
        gst::init().map_err(|e| missing("gstreamer", e.to_string()))?;
        for (element, package) in [
            ("appsrc", "gst-plugins-base"),
            ("videoconvert", "gst-plugins-base"),
            ("capsfilter", "GStreamer core"),
            ("x264enc", "gst-plugins-ugly"),
            ("mp4mux", "gst-plugins-good"),
            ("filesink", "GStreamer core"),
        ] {
            if gst::ElementFactory::find(element).is_none() {
                return Err(missing(element, format!("not installed; it is part of {package}")));
            }
        }
        let framerate = gst::Fraction::approximate_f64(fps).ok_or_else(|| {
            SinkError::invalid(path, "frame rate", format!("{fps} has no fraction"))
        })?;
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, width, height)
            .fps(framerate)
            .build()
            .map_err(|e| SinkError::invalid(path, "video size", e.to_string()))?;
        let caps =
            info.to_caps().map_err(|e| SinkError::invalid(path, "video caps", e.to_string()))?;
        let temp = if crash_safe { path.to_path_buf() } else { temp_path_for(path) };

        let make = |factory: &str| {
            gst::ElementFactory::make(factory)
                .build()
                .map_err(|e| missing(factory, format!("could not be created: {e}")))
        };
        let appsrc =
            gst_app::AppSrc::builder().caps(&caps).format(gst::Format::Time).is_live(false).build();
        let convert = make("videoconvert")?;
        let filter = make("capsfilter")?;
        filter.set_property(
            "caps",
            gst::Caps::builder("video/x-raw").field("format", "I420").build(),
        );
        let encoder = make("x264enc")?;
        encoder.set_property_from_str("speed-preset", "ultrafast");
        encoder.set_property_from_str("pass", "qual");
        encoder.set_property("quantizer", X264_QUALITY);
        let seconds_per_key_frame = if crash_safe { 1.0 } else { 2.0 };
        encoder.set_property("key-int-max", (fps * seconds_per_key_frame).round().max(1.0) as u32);
        let muxer = make("mp4mux")?;
        if crash_safe {
            // No look-ahead: a frame reaches the file within a fragment of being pushed.
            encoder.set_property_from_str("tune", "zerolatency");
            muxer.set_property("fragment-duration", RECORDING_FRAGMENT_MS);
        } else {
            // Index (moov) before the media data: a reader streaming the file (push mode, as
            // our file source does) never has to seek past the data to find the index and back.
            muxer.set_property("faststart", true);
        }
        let filesink = make("filesink")?;
        filesink.set_property("location", temp.to_string_lossy().as_ref());
        if crash_safe {
            // Every buffer the muxer finishes goes straight to the kernel: filesink's default
            // 64 KiB user-space buffer held about 20 frames of a 320x192 recording, which a
            // SIGKILL lost on top of the unfinished fragment.
            filesink.set_property_from_str("buffer-mode", "unbuffered");
        }

        let pipeline = gst::Pipeline::new();
        let chain =
            [appsrc.upcast_ref::<gst::Element>(), &convert, &filter, &encoder, &muxer, &filesink];
        let link_error = |e: gst::glib::BoolError| SinkError::Gst {
            path: path.to_path_buf(),
            element: "pipeline".into(),
            message: e.to_string(),
            debug: String::new(),
        };
        pipeline.add_many(chain).map_err(link_error)?;
        gst::Element::link_many(chain).map_err(link_error)?;
        let bus = pipeline.bus().ok_or_else(|| SinkError::Gst {
            path: path.to_path_buf(),
            element: "pipeline".into(),
            message: "the pipeline has no bus".into(),
            debug: String::new(),
        })?;
        let frame_duration = gst::ClockTime::from_nseconds(
            (1e9 * f64::from(framerate.denom()) / f64::from(framerate.numer())).round() as u64,
        );
        let writer = Self {
            path: path.to_path_buf(),
            temp,
            pipeline,
            appsrc,
            bus,
            info,
            frame_duration,
            last_pts: None,
            frames: 0,
            finished: false,
            crash_safe,
        };
        if writer.pipeline.set_state(gst::State::Playing).is_err() {
            writer.check_bus(POLL_INTERVAL * 50)?;
            return Err(SinkError::Gst {
                path: path.to_path_buf(),
                element: "pipeline".into(),
                message: format!("could not start writing {}", writer.temp.display()),
                debug: String::new(),
            });
        }
        Ok(writer)
    }

    /// The final path of the video.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames pushed so far.
    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    /// Return the first error waiting on the bus (waiting up to `wait` for one).
    fn check_bus(&self, wait: gst::ClockTime) -> Result<(), SinkError> {
        match self.bus.timed_pop_filtered(wait, &[gst::MessageType::Error]) {
            Some(msg) => match msg.view() {
                gst::MessageView::Error(err) => Err(self.bus_error(err)),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    fn bus_error(&self, err: &gst::message::Error) -> SinkError {
        SinkError::Gst {
            path: self.path.clone(),
            element: err.src().map(|s| s.name().to_string()).unwrap_or_else(|| "unknown".into()),
            message: err.error().to_string(),
            debug: err.debug().map(|d| d.to_string()).unwrap_or_default(),
        }
    }

    /// Encode one frame shown at `pts_seconds` (finite, non-negative, increasing).
    pub fn push(&mut self, image: &RgbImage, pts_seconds: f64) -> Result<(), SinkError> {
        let (width, height) = (self.info.width(), self.info.height());
        if image.width != width
            || image.height != height
            || image.data.len() != width as usize * height as usize * 3
        {
            return Err(SinkError::invalid(
                &self.path,
                "frame",
                format!(
                    "{}x{} with {} bytes, expected {width}x{height} RGB",
                    image.width,
                    image.height,
                    image.data.len()
                ),
            ));
        }
        if !(pts_seconds.is_finite() && pts_seconds >= 0.0)
            || self.last_pts.is_some_and(|last| pts_seconds <= last)
        {
            return Err(SinkError::invalid(
                &self.path,
                "timestamp",
                format!(
                    "{pts_seconds} s must be finite, non-negative and after the previous {:?} s",
                    self.last_pts
                ),
            ));
        }
        self.check_bus(gst::ClockTime::ZERO)?;

        let buffer = self.rgb_buffer(image, pts_seconds)?;
        // Back-pressure: wait (bounded, watching for errors) while the encoder is behind.
        let max_queued = QUEUED_FRAMES * self.info.size() as u64;
        let deadline = Instant::now() + PUSH_TIMEOUT;
        while self.appsrc.current_level_bytes() >= max_queued {
            self.check_bus(POLL_INTERVAL)?;
            if Instant::now() >= deadline {
                return Err(SinkError::Timeout {
                    path: self.path.clone(),
                    what: "waiting for the encoder to take a frame".into(),
                    seconds: PUSH_TIMEOUT.as_secs_f64(),
                });
            }
        }
        if self.appsrc.push_buffer(buffer).is_err() {
            self.check_bus(POLL_INTERVAL * 10)?;
            return Err(SinkError::Gst {
                path: self.path.clone(),
                element: "appsrc".into(),
                message: "the pipeline refused a frame".into(),
                debug: String::new(),
            });
        }
        self.last_pts = Some(pts_seconds);
        self.frames += 1;
        Ok(())
    }

    /// A GStreamer buffer holding `image` laid out with GStreamer's RGB row stride.
    fn rgb_buffer(&self, image: &RgbImage, pts_seconds: f64) -> Result<gst::Buffer, SinkError> {
        let gst_error = |message: String| SinkError::Gst {
            path: self.path.clone(),
            element: "appsrc".into(),
            message,
            debug: String::new(),
        };
        let mut buffer = gst::Buffer::with_size(self.info.size())
            .map_err(|e| gst_error(format!("could not allocate a frame: {e}")))?;
        let buffer_mut =
            buffer.get_mut().ok_or_else(|| gst_error("a fresh buffer is not writable".into()))?;
        buffer_mut.set_pts(gst::ClockTime::from_nseconds((pts_seconds * 1e9).round() as u64));
        buffer_mut.set_duration(self.frame_duration);
        {
            let mut frame =
                gst_video::VideoFrameRef::from_buffer_ref_writable(buffer_mut, &self.info)
                    .map_err(|e| gst_error(format!("could not map a frame: {e}")))?;
            let stride = frame.plane_stride()[0] as usize;
            let row_bytes = image.width as usize * 3;
            let plane = frame
                .plane_data_mut(0)
                .map_err(|e| gst_error(format!("could not map a plane: {e}")))?;
            for (dst, src) in plane.chunks_mut(stride).zip(image.data.chunks_exact(row_bytes)) {
                dst[..row_bytes].copy_from_slice(src);
            }
        }
        Ok(buffer)
    }

    /// End the stream, wait for the muxer to complete the file, fsync it and rename it onto
    /// the target path. Returns the path.
    pub fn finish(mut self) -> Result<PathBuf, SinkError> {
        if self.frames == 0 {
            return Err(SinkError::invalid(&self.path, "video", "no frame was pushed"));
        }
        self.check_bus(gst::ClockTime::ZERO)?;
        let _ = self.appsrc.end_of_stream();
        let deadline = Instant::now() + FINISH_TIMEOUT;
        loop {
            if let Some(msg) = self.bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(100),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            ) {
                match msg.view() {
                    gst::MessageView::Eos(_) => break,
                    gst::MessageView::Error(err) => return Err(self.bus_error(err)),
                    _ => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(SinkError::Timeout {
                    path: self.path.clone(),
                    what: "waiting for the encoder and muxer to finish".into(),
                    seconds: FINISH_TIMEOUT.as_secs_f64(),
                });
            }
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        let file = std::fs::File::open(&self.temp).map_err(|e| SinkError::io(&self.temp, e))?;
        file.sync_all().map_err(|e| SinkError::io(&self.temp, e))?;
        drop(file);
        if !self.crash_safe {
            commit_temp(&self.temp, &self.path)?;
        }
        self.finished = true;
        Ok(self.path.clone())
    }
}

impl Drop for Mp4Writer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        // An unfinished recording keeps what it recorded; an unfinished artefact is discarded.
        if !self.finished && !self.crash_safe {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}
