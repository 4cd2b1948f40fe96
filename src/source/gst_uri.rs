//! Parsing of the source URIs accepted by [`crate::source::gst::GstSource`], in the style of
//! jetson-inference: `file://`, `v4l2://`, `rtsp://`, `csi://`, `test://` and `gst://`.

use super::SourceError;
use std::path::PathBuf;

/// The accepted URI forms, quoted in every [`SourceError::InvalidUri`].
pub const ACCEPTED_URIS: &str = "file:///abs/video.mp4, file://rel/video.mp4 (or a bare path), \
     v4l2:///dev/videoN, rtsp://host[:port]/path, csi://N, test://[PATTERN][?num-buffers=N], \
     gst://<pipeline ending in `appsink name=sink`>, mcap:///abs/file.mcap?topic=/image/topic";

/// A parsed source URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceUri {
    /// A video file of any container and codec GStreamer's decodebin handles.
    File(PathBuf),
    /// A V4L2 camera device node.
    V4l2(PathBuf),
    /// An RTSP stream; the full `rtsp://` or `rtsps://` URI.
    Rtsp(String),
    /// A Jetson CSI camera (nvarguscamerasrc `sensor-id`).
    Csi(u32),
    /// GStreamer's videotestsrc: `pattern` is one of its pattern nicks (`smpte` by default,
    /// `ball`, `snow`, `gradient`...); `num_buffers` ends the stream after that many frames.
    Test { pattern: Option<String>, num_buffers: Option<u32> },
    /// A gst-launch description whose last element is `appsink name=sink`.
    Pipeline(String),
}

impl SourceUri {
    /// Whether this kind of source is live by default (cameras, network, test patterns).
    pub fn default_live(&self) -> bool {
        matches!(self, Self::V4l2(_) | Self::Rtsp(_) | Self::Csi(_) | Self::Test { .. })
    }
}

fn invalid(uri: &str, reason: impl Into<String>) -> SourceError {
    SourceError::InvalidUri {
        uri: uri.to_string(),
        reason: format!("{}; accepted forms: {ACCEPTED_URIS}", reason.into()),
    }
}

/// Parse a source URI (see [`ACCEPTED_URIS`]). A string without `://` is taken as a file path.
/// Nothing is opened here: file existence is checked when the source opens.
pub fn parse_source_uri(uri: &str) -> Result<SourceUri, SourceError> {
    let trimmed = uri.trim();
    if trimmed.is_empty() {
        return Err(invalid(uri, "the URI is empty"));
    }
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Ok(SourceUri::File(PathBuf::from(trimmed)));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "file" => {
            if rest.is_empty() {
                return Err(invalid(uri, "expected a path after `file://`"));
            }
            Ok(SourceUri::File(PathBuf::from(rest)))
        }
        "v4l2" => {
            if rest.is_empty() {
                Err(invalid(uri, "expected a device after `v4l2://`, e.g. v4l2:///dev/video0"))
            } else if rest.bytes().all(|b| b.is_ascii_digit()) {
                Ok(SourceUri::V4l2(PathBuf::from(format!("/dev/video{rest}"))))
            } else if rest.starts_with('/') {
                Ok(SourceUri::V4l2(PathBuf::from(rest)))
            } else {
                Err(invalid(uri, "expected an absolute device path, e.g. v4l2:///dev/video0"))
            }
        }
        "rtsp" | "rtsps" | "rtspt" => {
            if rest.is_empty() || rest.starts_with('/') {
                return Err(invalid(uri, "expected a host after `rtsp://`"));
            }
            Ok(SourceUri::Rtsp(trimmed.to_string()))
        }
        "csi" => {
            if rest.is_empty() {
                return Ok(SourceUri::Csi(0));
            }
            rest.parse::<u32>().map(SourceUri::Csi).map_err(|_| {
                invalid(uri, format!("expected a sensor number after `csi://`, got `{rest}`"))
            })
        }
        "test" => parse_test(uri, rest),
        "gst" => {
            if rest.trim().is_empty() {
                return Err(invalid(uri, "expected a pipeline description after `gst://`"));
            }
            Ok(SourceUri::Pipeline(rest.to_string()))
        }
        other => Err(invalid(uri, format!("unknown scheme `{other}://`"))),
    }
}

/// `test://[PATTERN][?num-buffers=N]`.
fn parse_test(uri: &str, rest: &str) -> Result<SourceUri, SourceError> {
    let (pattern, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let pattern = pattern.trim_end_matches('/');
    let pattern = if pattern.is_empty() {
        None
    } else if pattern.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Some(pattern.to_string())
    } else {
        return Err(invalid(uri, format!("`{pattern}` is not a videotestsrc pattern name")));
    };
    let mut num_buffers = None;
    for param in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some(("num-buffers", value)) => {
                num_buffers = Some(value.parse::<u32>().map_err(|_| {
                    invalid(uri, format!("num-buffers must be a whole number, got `{value}`"))
                })?);
            }
            _ => {
                return Err(invalid(
                    uri,
                    format!("unknown test parameter `{param}` (only num-buffers=N is accepted)"),
                ));
            }
        }
    }
    Ok(SourceUri::Test { pattern, num_buffers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme() {
        assert_eq!(
            parse_source_uri("file:///a/b.mp4").unwrap(),
            SourceUri::File("/a/b.mp4".into())
        );
        assert_eq!(
            parse_source_uri("file://rel/b.mp4").unwrap(),
            SourceUri::File("rel/b.mp4".into())
        );
        assert_eq!(parse_source_uri("clip.mkv").unwrap(), SourceUri::File("clip.mkv".into()));
        assert_eq!(
            parse_source_uri("v4l2:///dev/video2").unwrap(),
            SourceUri::V4l2("/dev/video2".into())
        );
        assert_eq!(parse_source_uri("v4l2://1").unwrap(), SourceUri::V4l2("/dev/video1".into()));
        assert_eq!(
            parse_source_uri("rtsp://cam.local:8554/live").unwrap(),
            SourceUri::Rtsp("rtsp://cam.local:8554/live".into())
        );
        assert_eq!(parse_source_uri("csi://1").unwrap(), SourceUri::Csi(1));
        assert_eq!(
            parse_source_uri("test://").unwrap(),
            SourceUri::Test { pattern: None, num_buffers: None }
        );
        assert_eq!(
            parse_source_uri("test://ball?num-buffers=7").unwrap(),
            SourceUri::Test { pattern: Some("ball".into()), num_buffers: Some(7) }
        );
        assert_eq!(
            parse_source_uri("gst://videotestsrc ! appsink name=sink").unwrap(),
            SourceUri::Pipeline("videotestsrc ! appsink name=sink".into())
        );
    }

    #[test]
    fn rejects_malformed_uris_naming_them() {
        for bad in [
            "",
            "foo://x",
            "file://",
            "v4l2://",
            "v4l2://video0",
            "rtsp://",
            "csi://left",
            "test://ba ll",
            "test://ball?num-buffers=many",
            "test://ball?fps=3",
            "gst://  ",
        ] {
            match parse_source_uri(bad) {
                Err(SourceError::InvalidUri { uri, reason }) => {
                    assert_eq!(uri, bad);
                    assert!(reason.contains("accepted forms"), "{reason}");
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn liveness_defaults() {
        assert!(!SourceUri::File("a".into()).default_live());
        assert!(!SourceUri::Pipeline("x".into()).default_live());
        assert!(SourceUri::Csi(0).default_live());
        assert!(SourceUri::Test { pattern: None, num_buffers: None }.default_live());
    }
}
