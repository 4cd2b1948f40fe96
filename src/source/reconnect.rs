//! [`ReconnectingSource`]: a live GStreamer source that survives its camera. When the stream
//! stalls (no frame within the stall timeout), errors (an rtsp server gone, a USB camera
//! unplugged) or ends, the source is reopened with exponential backoff while the pipeline keeps
//! running; frames keep increasing indices and timestamps across the gap, and every reconnect is
//! counted ([`Source::reconnects`]) and told on the console. A Ctrl-C during the backoff ends the
//! stream instead of waiting for the camera.

use super::gst::{GstOptions, GstSource};
use super::{Source, SourceError};
use crate::frame::Frame;
use std::time::{Duration, Instant};

/// When to retry and when to give up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReconnectPolicy {
    /// The first wait before reopening; doubled after each failed attempt.
    pub initial_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
    /// Give up (and fail with the last error) after this long without a frame; `None` retries
    /// forever.
    pub give_up_after: Option<Duration>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
            give_up_after: None,
        }
    }
}

/// See the module documentation.
pub struct ReconnectingSource {
    uri: String,
    options: GstOptions,
    policy: ReconnectPolicy,
    inner: Option<GstSource>,
    description: String,
    reconnects: u64,
    next_index: u64,
    /// Added to the reopened stream's timestamps so that time never runs backwards.
    timestamp_offset: f64,
    last_timestamp: Option<f64>,
    /// The Ctrl-C count when the source opened.
    interrupts_at_start: u64,
}

impl ReconnectingSource {
    /// Opens `uri` (the first open is not retried: a camera that is not there at start is a
    /// configuration error, reported at once).
    pub fn open(
        uri: &str,
        options: GstOptions,
        policy: ReconnectPolicy,
    ) -> Result<Self, SourceError> {
        let inner = GstSource::open(uri, &options)?;
        Ok(Self {
            uri: uri.to_string(),
            description: format!("{} (reconnecting)", inner.describe()),
            inner: Some(inner),
            options,
            policy,
            reconnects: 0,
            next_index: 0,
            timestamp_offset: 0.0,
            last_timestamp: None,
            interrupts_at_start: crate::pipeline::ctrl_c_count(),
        })
    }

    fn interrupted(&self) -> bool {
        crate::pipeline::ctrl_c_count() > self.interrupts_at_start
    }

    /// Reopens the stream after `reason`, with backoff; `Ok(false)` when Ctrl-C ended the wait.
    fn reconnect(&mut self, reason: &SourceError) -> Result<bool, SourceError> {
        self.inner = None;
        let lost_at = Instant::now();
        let mut backoff = self.policy.initial_backoff;
        let mut attempts = 0u64;
        tracing::warn!("source {}: lost ({reason}); reconnecting", self.uri);
        loop {
            let deadline = Instant::now() + backoff;
            while Instant::now() < deadline {
                if self.interrupted() {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(20).min(backoff));
            }
            attempts += 1;
            match GstSource::open(&self.uri, &self.options) {
                Ok(source) => {
                    self.reconnects += 1;
                    tracing::info!(
                        "source {}: reconnected after {:.1} s ({attempts} attempt{}; {} \
                         reconnects so far)",
                        self.uri,
                        lost_at.elapsed().as_secs_f64(),
                        if attempts == 1 { "" } else { "s" },
                        self.reconnects
                    );
                    self.inner = Some(source);
                    return Ok(true);
                }
                Err(error) => {
                    let gone = lost_at.elapsed();
                    if self.policy.give_up_after.is_some_and(|limit| gone >= limit) {
                        return Err(SourceError::Pipeline {
                            uri: self.uri.clone(),
                            reason: format!(
                                "gave up reconnecting after {:.1} s and {attempts} attempts \
                                 (source.reconnect_give_up_s); last error: {error}",
                                gone.as_secs_f64()
                            ),
                        });
                    }
                    tracing::warn!(
                        "source {}: still lost after {:.1} s (attempt {attempts}: {error}); next \
                         try in {:.1} s",
                        self.uri,
                        gone.as_secs_f64(),
                        backoff.as_secs_f64()
                    );
                    backoff = (backoff * 2).min(self.policy.max_backoff);
                }
            }
        }
    }

    /// Renumbers `frame` and keeps its timestamp after the previous one.
    fn continue_stream(&mut self, mut frame: Frame) -> Frame {
        frame.index = self.next_index;
        self.next_index += 1;
        let mut timestamp = frame.timestamp + self.timestamp_offset;
        if let Some(last) = self.last_timestamp
            && timestamp <= last
        {
            // A reopened stream starts its clock again: continue one frame after the last.
            let fps = self.inner.as_ref().and_then(|s| s.framerate()).unwrap_or(30.0);
            let step = 1.0 / fps;
            self.timestamp_offset += last + step - timestamp;
            timestamp = last + step;
        }
        frame.timestamp = timestamp;
        self.last_timestamp = Some(timestamp);
        frame
    }
}

impl Source for ReconnectingSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        loop {
            let Some(inner) = self.inner.as_mut() else {
                return Ok(None);
            };
            let lost = match inner.next_frame() {
                Ok(Some(frame)) => return Ok(Some(self.continue_stream(frame))),
                Ok(None) => SourceError::Pipeline {
                    uri: self.uri.clone(),
                    reason: "the live stream ended".into(),
                },
                Err(error) => error,
            };
            if !self.reconnect(&lost)? {
                return Ok(None);
            }
        }
    }

    fn is_live(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn reconnects(&self) -> u64 {
        self.reconnects
    }
}
