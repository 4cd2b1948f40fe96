//! Recorded MCAP files as a source: ROS 2 bags (rosbag2's MCAP storage) and Foxglove
//! recordings, `mcap:///path/file.mcap?topic=/camera/image_raw` (`mcap://rel/path.mcap` for a
//! path relative to the current directory). Messages are streamed in file order (memory grows
//! with the largest chunk, not the file) and every image on the topic becomes a frame: replay is
//! lossless, and frames carry the messages' header stamps (their log times where a message has
//! no stamp), in seconds from the first frame.
//!
//! The image topic may be left out when the file has one image topic only. Intrinsics come from
//! a `sensor_msgs/msg/CameraInfo` or `foxglove.CameraCalibration` topic beside it (the same
//! namespace: `/camera/image_raw` → `/camera/camera_info`), the latest one seen before each
//! frame. Errors name the file, the topic and the schema: a topic that is not there (with the
//! image topics that are), an encoding we cannot read, a corrupt or cut-off chunk.

pub mod decode;

use super::{Source, SourceError};
use crate::camera::Intrinsics;
use crate::frame::Frame;
use decode::DecodedImage;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

/// The URI scheme of this source.
pub const SCHEME: &str = "mcap://";

/// How a message of a channel is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    RosImage,
    RosCompressedImage,
    RosCameraInfo,
    FoxgloveRawImage,
    FoxgloveCompressedImage,
    FoxgloveCalibration,
}

impl Kind {
    fn of(schema: &str, encoding: &str) -> Option<Self> {
        match (schema, encoding) {
            ("sensor_msgs/msg/Image", "cdr") => Some(Kind::RosImage),
            ("sensor_msgs/msg/CompressedImage", "cdr") => Some(Kind::RosCompressedImage),
            ("sensor_msgs/msg/CameraInfo", "cdr") => Some(Kind::RosCameraInfo),
            ("foxglove.RawImage", "protobuf") => Some(Kind::FoxgloveRawImage),
            ("foxglove.CompressedImage", "protobuf") => Some(Kind::FoxgloveCompressedImage),
            ("foxglove.CameraCalibration", "protobuf") => Some(Kind::FoxgloveCalibration),
            _ => None,
        }
    }

    fn is_image(self) -> bool {
        !matches!(self, Kind::RosCameraInfo | Kind::FoxgloveCalibration)
    }
}

/// The parts of an `mcap://` URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BagUri {
    pub path: PathBuf,
    pub topic: Option<String>,
}

/// Parses `mcap://PATH[?topic=TOPIC]`.
pub fn parse_uri(uri: &str) -> Result<BagUri, SourceError> {
    let invalid =
        |reason: &str| SourceError::InvalidUri { uri: uri.to_owned(), reason: reason.into() };
    let rest = uri.strip_prefix(SCHEME).ok_or_else(|| invalid("expected mcap://PATH"))?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(invalid(
            "no file after mcap:// (e.g. mcap:///data/run.mcap?topic=/camera/image_raw)",
        ));
    }
    let mut topic = None;
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        match pair.split_once('=') {
            Some(("topic", t)) if !t.is_empty() => topic = Some(t.to_owned()),
            _ => {
                return Err(invalid(&format!(
                    "unknown query `{pair}` (expected topic=/image/topic)"
                )));
            }
        }
    }
    Ok(BagUri { path: PathBuf::from(path), topic })
}

/// A channel of the file, as the summary or the stream showed it.
#[derive(Clone, Debug)]
struct ChannelInfo {
    topic: String,
    schema: String,
    encoding: String,
}

/// Reads the summary of an indexed file (None for an unindexed or cut-off file).
fn read_summary(path: &Path) -> Option<mcap::Summary> {
    use mcap::sans_io::summary_reader::{SummaryReadEvent, SummaryReader};
    let mut file = File::open(path).ok()?;
    let mut reader = SummaryReader::new();
    while let Some(event) = reader.next_event() {
        match event.ok()? {
            SummaryReadEvent::ReadRequest(need) => {
                let n = file.read(reader.insert(need)).ok()?;
                reader.notify_read(n);
            }
            SummaryReadEvent::SeekRequest(to) => {
                let pos = file.seek(to).ok()?;
                reader.notify_seeked(pos);
            }
        }
    }
    reader.finish()
}

/// Messages on channel `id` according to the summary's statistics.
fn message_count(summary: &mcap::Summary, id: u16) -> Option<usize> {
    summary.stats.as_ref()?.channel_message_counts.get(&id).map(|&n| n as usize)
}

/// Frames from the image messages of one topic of an MCAP file.
pub struct BagSource {
    uri: String,
    path: PathBuf,
    /// The image topic; None until the first image message when the URI names none.
    topic: Option<String>,
    /// Where the intrinsics come from (`…/camera_info`), when known.
    calibration_topics: Vec<String>,
    reader: mcap::io::MessageReader<BufReader<File>>,
    intrinsics: Option<Intrinsics>,
    first_stamp: Option<f64>,
    index: u64,
    len_hint: Option<usize>,
    /// Image topics seen (for the error when the asked topic has no message).
    image_topics: BTreeMap<String, String>,
}

/// The calibration topics beside `topic`: same namespace, camera_info or calibration (for an
/// image_transport topic `…/image_raw/compressed`, the namespace of `…/image_raw`).
fn calibration_topics_for(topic: &str) -> Vec<String> {
    let base = topic.strip_suffix("/compressed").unwrap_or(topic);
    let namespace = base.rsplit_once('/').map_or("", |(ns, _)| ns);
    ["camera_info", "calibration"].iter().map(|leaf| format!("{namespace}/{leaf}")).collect()
}

impl BagSource {
    /// Opens `uri` (`mcap://PATH[?topic=…]`); checks the topic against the file's summary
    /// where it has one.
    pub fn open(uri: &str) -> Result<Self, SourceError> {
        let BagUri { path, topic } = parse_uri(uri)?;
        if !path.is_file() {
            return Err(SourceError::MissingFile { path });
        }
        let summary = read_summary(&path);
        let mut len_hint = None;
        let mut topic = topic;
        if let Some(summary) = &summary {
            let channels: Vec<(u16, ChannelInfo)> = summary
                .channels
                .values()
                .map(|c| {
                    let info = ChannelInfo {
                        topic: c.topic.clone(),
                        schema: c.schema.as_ref().map_or(String::new(), |s| s.name.clone()),
                        encoding: c.message_encoding.clone(),
                    };
                    (c.id, info)
                })
                .collect();
            let images: Vec<&ChannelInfo> = channels
                .iter()
                .map(|(_, c)| c)
                .filter(|c| Kind::of(&c.schema, &c.encoding).is_some_and(Kind::is_image))
                .collect();
            let listing = || {
                let mut names: Vec<String> =
                    images.iter().map(|c| format!("{} ({})", c.topic, c.schema)).collect();
                names.sort();
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            };
            match &topic {
                Some(t) => {
                    let channel =
                        channels.iter().find(|(_, c)| &c.topic == t).ok_or_else(|| {
                            SourceError::InvalidUri {
                                uri: uri.to_owned(),
                                reason: format!(
                                    "{}: no topic `{t}`; image topics in the file: {}",
                                    path.display(),
                                    listing()
                                ),
                            }
                        })?;
                    let (id, info) = channel;
                    if !Kind::of(&info.schema, &info.encoding).is_some_and(Kind::is_image) {
                        return Err(SourceError::Format {
                            uri: uri.to_owned(),
                            reason: format!(
                                "topic `{t}` carries `{}` ({}), not an image (expected \
                                 sensor_msgs/msg/Image or CompressedImage in cdr, or \
                                 foxglove.RawImage or CompressedImage in protobuf)",
                                info.schema, info.encoding
                            ),
                        });
                    }
                    len_hint = message_count(summary, *id);
                }
                None if images.len() == 1 => {
                    topic = Some(images[0].topic.clone());
                    let id = channels.iter().find(|(_, c)| c.topic == images[0].topic).map(|c| c.0);
                    len_hint = id.and_then(|id| message_count(summary, id));
                }
                None if images.len() > 1 => {
                    return Err(SourceError::InvalidUri {
                        uri: uri.to_owned(),
                        reason: format!(
                            "{} has several image topics; name one with ?topic=: {}",
                            path.display(),
                            listing()
                        ),
                    });
                }
                None => {
                    return Err(SourceError::Format {
                        uri: uri.to_owned(),
                        reason: format!("{} has no image topic", path.display()),
                    });
                }
            }
        }
        let file =
            File::open(&path).map_err(|_| SourceError::MissingFile { path: path.clone() })?;
        let reader = mcap::io::MessageReader::new(BufReader::with_capacity(1 << 20, file));
        Ok(Self {
            uri: uri.to_owned(),
            calibration_topics: topic.as_deref().map(calibration_topics_for).unwrap_or_default(),
            path,
            topic,
            reader,
            intrinsics: None,
            first_stamp: None,
            index: 0,
            len_hint,
            image_topics: BTreeMap::new(),
        })
    }

    /// The stamp (seconds, as the messages carry it) of the first frame, once it was read:
    /// frames' timestamps count from it.
    pub fn first_stamp(&self) -> Option<f64> {
        self.first_stamp
    }

    fn corrupt(&self, reason: String) -> SourceError {
        SourceError::Truncated {
            uri: self.uri.clone(),
            reason: format!(
                "{}: corrupt or cut-off MCAP data after {} frames: {reason}",
                self.path.display(),
                self.index
            ),
        }
    }

    fn undecodable(&self, topic: &str, schema: &str, reason: String) -> SourceError {
        SourceError::Format {
            uri: self.uri.clone(),
            reason: format!("topic `{topic}` ({schema}), message {}: {reason}", self.index),
        }
    }
}

impl Source for BagSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        loop {
            let message = match self.reader.next() {
                None => break,
                Some(Err(e)) => return Err(self.corrupt(e.to_string())),
                Some(Ok(m)) => m,
            };
            let channel = &message.channel;
            let schema = channel.schema.as_ref().map_or("", |s| s.name.as_str());
            let Some(kind) = Kind::of(schema, &channel.message_encoding) else { continue };
            let topic = channel.topic.as_str();
            if !kind.is_image() {
                if self.calibration_topics.iter().any(|t| t == topic) || self.topic.is_none() {
                    let k = match kind {
                        Kind::RosCameraInfo => decode::ros_camera_info(&message.data),
                        _ => decode::foxglove_calibration(&message.data),
                    };
                    // A calibration that does not decode is skipped: frames simply carry none.
                    if let Ok(k) = k {
                        self.intrinsics = Some(k);
                    }
                }
                continue;
            }
            self.image_topics.entry(topic.to_owned()).or_insert_with(|| schema.to_owned());
            match &self.topic {
                Some(t) if t != topic => continue,
                Some(_) => {}
                None => {
                    tracing::info!("{}: replaying image topic `{topic}` ({schema})", self.uri);
                    self.topic = Some(topic.to_owned());
                    self.calibration_topics = calibration_topics_for(topic);
                }
            }
            let decoded = match kind {
                Kind::RosImage => decode::ros_image(&message.data),
                Kind::RosCompressedImage => decode::ros_compressed_image(&message.data),
                Kind::FoxgloveRawImage => decode::foxglove_raw_image(&message.data),
                _ => decode::foxglove_compressed_image(&message.data),
            };
            let DecodedImage { rgb, stamp } =
                decoded.map_err(|reason| self.undecodable(topic, schema, reason))?;
            let stamp = if stamp > 0.0 { stamp } else { message.log_time as f64 * 1e-9 };
            let first = *self.first_stamp.get_or_insert(stamp);
            let mut frame = Frame::from_rgb(self.index, stamp - first, rgb);
            let (w, h) = (frame.rgb.width, frame.rgb.height);
            frame.intrinsics = self
                .intrinsics
                .map(|k| if (k.width, k.height) == (w, h) { k } else { k.scaled(w, h) });
            self.index += 1;
            return Ok(Some(frame));
        }
        if self.index == 0 {
            let topic = self.topic.clone().unwrap_or_else(|| "(any image topic)".into());
            let seen: Vec<String> =
                self.image_topics.iter().map(|(t, s)| format!("{t} ({s})")).collect();
            return Err(SourceError::Format {
                uri: self.uri.clone(),
                reason: format!(
                    "{}: no image message on `{topic}`; image topics seen: {}",
                    self.path.display(),
                    if seen.is_empty() { "none".to_owned() } else { seen.join(", ") }
                ),
            });
        }
        Ok(None)
    }

    fn len_hint(&self) -> Option<usize> {
        self.len_hint
    }

    fn is_live(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!(
            "MCAP {} topic {}",
            self.path.display(),
            self.topic.as_deref().unwrap_or("(first image topic)")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_a_file_and_optionally_a_topic() {
        let u = parse_uri("mcap:///data/run.mcap?topic=/camera/image_raw").unwrap();
        assert_eq!(u.path, PathBuf::from("/data/run.mcap"));
        assert_eq!(u.topic.as_deref(), Some("/camera/image_raw"));
        assert_eq!(parse_uri("mcap://rel/run.mcap").unwrap().path, PathBuf::from("rel/run.mcap"));
        for bad in ["mcap://", "mcap:///a.mcap?frames=3", "mcap:///a.mcap?topic="] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
        let beside = vec!["/camera/camera_info".to_owned(), "/camera/calibration".to_owned()];
        assert_eq!(calibration_topics_for("/camera/image_raw"), beside);
        assert_eq!(calibration_topics_for("/camera/image_raw/compressed"), beside);
    }
}
