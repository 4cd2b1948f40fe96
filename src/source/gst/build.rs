//! How each source URI becomes a GStreamer pipeline ending in an appsink (see the parent
//! module's table): the decoder heads per scheme, the RGB tail, the appsink settings for live and
//! replay sources, and the checks that name a missing element and the package that carries it.

use super::{
    ACCEPTED_URIS, GstOptions, REPLAY_MAX_BUFFERS, RTSP_LATENCY_MS, SourceError, SourceUri,
};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::path::Path;

fn pipeline_error(uri: &str, reason: impl Into<String>) -> SourceError {
    SourceError::Pipeline { uri: uri.to_string(), reason: reason.into() }
}

/// Fail with [`SourceError::MissingElement`] unless every named element factory is installed.
fn require_elements(uri: &str, elements: &[(&str, &str)]) -> Result<(), SourceError> {
    for (element, hint) in elements {
        if gst::ElementFactory::find(element).is_none() {
            return Err(SourceError::MissingElement {
                uri: uri.to_string(),
                element: element.to_string(),
                hint: hint.to_string(),
            });
        }
    }
    Ok(())
}

fn make_element(uri: &str, factory: &str) -> Result<gst::Element, SourceError> {
    gst::ElementFactory::make(factory).build().map_err(|_| SourceError::MissingElement {
        uri: uri.to_string(),
        element: factory.to_string(),
        hint: "the plugin could not create it".into(),
    })
}

/// The RGB caps the appsink accepts.
fn rgb_caps(options: &GstOptions) -> gst::Caps {
    let mut caps = gst::Caps::builder("video/x-raw").field("format", "RGB");
    if let Some(width) = options.width {
        caps = caps.field("width", width as i32);
    }
    if let Some(height) = options.height {
        caps = caps.field("height", height as i32);
    }
    if options.width.is_some() || options.height.is_some() {
        caps = caps.field("pixel-aspect-ratio", gst::Fraction::new(1, 1));
    }
    caps.build()
}

fn configure_appsink(appsink: &gst_app::AppSink, caps: Option<&gst::Caps>, live: bool) {
    appsink.set_caps(caps);
    appsink.set_sync(false);
    appsink.set_property("enable-last-sample", false);
    if live {
        appsink.set_max_buffers(1);
        appsink.set_drop(true);
    } else {
        appsink.set_max_buffers(REPLAY_MAX_BUFFERS);
        appsink.set_drop(false);
    }
}

const BASE_HINT: &str = "part of gst-plugins-base";

/// Build the pipeline for a parsed URI: (pipeline, appsink, first element of the RGB tail).
pub(super) fn build_pipeline(
    uri: &str,
    parsed: &SourceUri,
    options: &GstOptions,
    live: bool,
) -> Result<(gst::Pipeline, gst_app::AppSink, Option<gst::Element>), SourceError> {
    if let SourceUri::Pipeline(description) = parsed {
        return build_described_pipeline(uri, description, options, live);
    }
    require_elements(
        uri,
        &[
            ("videoconvert", BASE_HINT),
            ("videoscale", BASE_HINT),
            ("capsfilter", "part of GStreamer core"),
            ("appsink", BASE_HINT),
        ],
    )?;
    let pipeline = gst::Pipeline::new();
    let convert = make_element(uri, "videoconvert")?;
    let scale = make_element(uri, "videoscale")?;
    scale.set_property("add-borders", false);
    let filter = make_element(uri, "capsfilter")?;
    filter.set_property("caps", rgb_caps(options));
    let appsink = gst_app::AppSink::builder().build();
    configure_appsink(&appsink, None, live);
    let tail = [&convert, &scale, &filter, appsink.upcast_ref::<gst::Element>()];
    pipeline.add_many(tail).map_err(|e| pipeline_error(uri, e.to_string()))?;
    gst::Element::link_many(tail).map_err(|e| pipeline_error(uri, e.to_string()))?;

    match parsed {
        SourceUri::File(path) => {
            let path = existing_file(path)?;
            add_file_decoder(uri, &pipeline, &path, &convert)?;
        }
        SourceUri::V4l2(device) => {
            require_elements(uri, &[("v4l2src", "part of gst-plugins-good (video4linux2)")])?;
            if !device.exists() {
                return Err(SourceError::MissingFile { path: device.clone() });
            }
            add_uridecodebin(uri, &pipeline, &format!("v4l2://{}", device.display()), &convert)?;
        }
        SourceUri::Rtsp(rtsp_uri) => {
            require_elements(uri, &[("rtspsrc", "part of gst-plugins-good")])?;
            add_uridecodebin(uri, &pipeline, rtsp_uri, &convert)?;
        }
        SourceUri::Csi(sensor) => {
            require_elements(
                uri,
                &[
                    (
                        "nvarguscamerasrc",
                        "CSI cameras need NVIDIA's Argus plugin (JetPack on Jetson)",
                    ),
                    ("nvvidconv", "CSI cameras need NVIDIA's nvvidconv (JetPack on Jetson)"),
                ],
            )?;
            let head = format!("nvarguscamerasrc sensor-id={sensor} ! nvvidconv");
            add_raw_head(uri, &pipeline, &head, &convert)?;
            // Which memory path frames take (the zero-copy NVMM → CUDA path is not written yet).
            tracing::info!(
                "{uri}: system-memory path (nvvidconv copies each frame out of NVMM; \
                 preprocessing uploads it again)"
            );
        }
        SourceUri::Test { pattern, num_buffers } => {
            require_elements(uri, &[("videotestsrc", BASE_HINT)])?;
            let mut head = format!("videotestsrc is-live={live}");
            if let Some(pattern) = pattern {
                head.push_str(&format!(" pattern={pattern}"));
            }
            if let Some(n) = num_buffers {
                head.push_str(&format!(" num-buffers={n}"));
            }
            add_raw_head(uri, &pipeline, &head, &convert).map_err(|e| match (e, pattern) {
                (SourceError::Pipeline { reason, .. }, Some(p)) => SourceError::InvalidUri {
                    uri: uri.to_string(),
                    reason: format!(
                        "`{p}` is not a videotestsrc pattern (e.g. smpte, ball, snow, gradient, \
                         checkers-8; see `gst-inspect-1.0 videotestsrc`): {reason}"
                    ),
                },
                (e, _) => e,
            })?;
        }
        SourceUri::Pipeline(_) => unreachable!("handled above"),
    }
    Ok((pipeline, appsink, Some(convert)))
}

/// The path of an existing regular file, or [`SourceError::MissingFile`].
fn existing_file(path: &Path) -> Result<std::path::PathBuf, SourceError> {
    let missing = || SourceError::MissingFile { path: path.to_path_buf() };
    let absolute = std::path::absolute(path).map_err(|_| missing())?;
    match std::fs::metadata(&absolute) {
        Ok(meta) if meta.is_file() => Ok(absolute),
        _ => Err(missing()),
    }
}

/// Decode a file with `filesrc ! queue ! decodebin`. The queue makes the demuxer work in push
/// mode: in pull mode an error the demuxer raises while decodebin is still activating it (a
/// truncated MP4 without its index) is swallowed by decodebin, and the pipeline would stall.
fn add_file_decoder(
    uri: &str,
    pipeline: &gst::Pipeline,
    path: &Path,
    tail_sink: &gst::Element,
) -> Result<(), SourceError> {
    require_elements(
        uri,
        &[
            ("filesrc", "part of GStreamer core"),
            ("queue", "part of GStreamer core"),
            ("decodebin", BASE_HINT),
        ],
    )?;
    let filesrc = gst::ElementFactory::make("filesrc")
        .property("location", path.to_string_lossy().as_ref())
        .build()
        .map_err(|e| pipeline_error(uri, e.to_string()))?;
    answer_allocation_queries(&filesrc);
    let queue = make_element(uri, "queue")?;
    let decode = make_element(uri, "decodebin")?;
    pipeline.add_many([&filesrc, &queue]).map_err(|e| pipeline_error(uri, e.to_string()))?;
    filesrc.link(&queue).map_err(|e| pipeline_error(uri, e.to_string()))?;
    link_decoder(uri, pipeline, &decode, tail_sink)?;
    queue.link(&decode).map_err(|e| pipeline_error(uri, e.to_string()))
}

/// Answer `filesrc`'s allocation queries at its own pad, so that none waits in `queue`.
///
/// The query is serialized: `queue` holds it behind the buffers already queued, and `filesrc`'s
/// thread waits for the answer. When the demuxer has returned EOS for those buffers (it has every
/// sample of the file), GStreamer's `queue` (1.22 here; Jetson ships 1.20) drops the query without
/// waking that thread, so `filesrc` never sends its EOS and the decoder never drains its last
/// frames: the replay stalls until our timeout. `filesrc` asks again whenever a RECONFIGURE
/// reaches it, and decodebin sends one each time it links a pad while the file is read, so a
/// short file that `filesrc` had already pushed whole hit it (about 1 run in 150 under load). A
/// byte stream needs no downstream pool or allocator, so answering "nothing proposed" loses
/// nothing: `filesrc` keeps its default allocator.
fn answer_allocation_queries(filesrc: &gst::Element) {
    if let Some(pad) = filesrc.static_pad("src") {
        pad.add_probe(gst::PadProbeType::QUERY_DOWNSTREAM, |_, info| match info.query() {
            Some(query) if query.type_() == gst::QueryType::Allocation => {
                gst::PadProbeReturn::Handled
            }
            _ => gst::PadProbeReturn::Ok,
        });
    }
}

/// Decode `media_uri` (a camera or network stream) with uridecodebin.
fn add_uridecodebin(
    uri: &str,
    pipeline: &gst::Pipeline,
    media_uri: &str,
    tail_sink: &gst::Element,
) -> Result<(), SourceError> {
    require_elements(uri, &[("uridecodebin", BASE_HINT)])?;
    let decode = gst::ElementFactory::make("uridecodebin")
        .property("uri", media_uri)
        .build()
        .map_err(|e| pipeline_error(uri, e.to_string()))?;
    decode.connect("source-setup", false, |args| {
        if let Some(Ok(source)) = args.get(1).map(|v| v.get::<gst::Element>())
            && source.has_property("latency")
            && source.property_type("latency") == Some(u32::static_type())
        {
            source.set_property("latency", RTSP_LATENCY_MS);
        }
        None
    });
    link_decoder(uri, pipeline, &decode, tail_sink)
}

/// Add a decodebin-like element to the pipeline and link its first video pad to `tail_sink`
/// when it appears. A stream without video posts an error on the bus instead of stalling.
fn link_decoder(
    uri: &str,
    pipeline: &gst::Pipeline,
    decode: &gst::Element,
    tail_sink: &gst::Element,
) -> Result<(), SourceError> {
    let sink_pad = tail_sink
        .static_pad("sink")
        .ok_or_else(|| pipeline_error(uri, "videoconvert has no sink pad"))?;
    let pad_for_added = sink_pad.clone();
    decode.connect_pad_added(move |decode, pad| {
        if pad_for_added.is_linked() {
            return;
        }
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let is_video = caps.structure(0).is_some_and(|s| s.name().starts_with("video/"));
        if is_video && let Err(e) = pad.link(&pad_for_added) {
            gst::element_error!(
                decode,
                gst::StreamError::Format,
                ("could not link the decoded video ({caps}) to videoconvert: {e:?}")
            );
        }
    });
    decode.connect_no_more_pads(move |decode| {
        if !sink_pad.is_linked() {
            gst::element_error!(
                decode,
                gst::StreamError::WrongType,
                ("the stream has no video track")
            );
        }
    });
    pipeline.add(decode).map_err(|e| pipeline_error(uri, e.to_string()))?;
    Ok(())
}

/// Add a gst-launch `description` producing raw video and link it to `tail_sink`.
fn add_raw_head(
    uri: &str,
    pipeline: &gst::Pipeline,
    description: &str,
    tail_sink: &gst::Element,
) -> Result<(), SourceError> {
    let head = gst::parse::bin_from_description(description, true)
        .map_err(|e| pipeline_error(uri, format!("`{description}`: {e}")))?;
    pipeline.add(&head).map_err(|e| pipeline_error(uri, e.to_string()))?;
    head.link(tail_sink).map_err(|e| pipeline_error(uri, format!("`{description}`: {e}")))?;
    Ok(())
}

/// A user's gst-launch pipeline whose `appsink name=sink` receives RGB.
fn build_described_pipeline(
    uri: &str,
    description: &str,
    options: &GstOptions,
    live: bool,
) -> Result<(gst::Pipeline, gst_app::AppSink, Option<gst::Element>), SourceError> {
    let element =
        gst::parse::launch(description).map_err(|e| match e.kind::<gst::ParseError>() {
            Some(gst::ParseError::NoSuchElement) => SourceError::MissingElement {
                uri: uri.to_string(),
                element: e.message().to_string(),
                hint: "check the element names with gst-inspect-1.0".into(),
            },
            _ => pipeline_error(uri, e.to_string()),
        })?;
    let no_appsink = || SourceError::InvalidUri {
        uri: uri.to_string(),
        reason: format!(
            "a gst:// pipeline must end in `appsink name=sink` (e.g. gst://videotestsrc ! \
             videoconvert ! appsink name=sink); accepted forms: {ACCEPTED_URIS}"
        ),
    };
    let pipeline = element.downcast::<gst::Pipeline>().map_err(|_| no_appsink())?;
    let appsink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(no_appsink)?;
    configure_appsink(&appsink, Some(&rgb_caps(options)), live);
    Ok((pipeline, appsink, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesrc_allocation_queries_are_answered_before_the_queue() {
        gst::init().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        std::fs::write(&path, b"not decoded here").unwrap();
        let uri = format!("file://{}", path.display());
        let parsed = SourceUri::File(path);
        let (pipeline, _, _) =
            build_pipeline(&uri, &parsed, &GstOptions::default(), false).unwrap();
        let filesrc = pipeline
            .iterate_elements()
            .into_iter()
            .flatten()
            .find(|e| e.factory().is_some_and(|f| f.name() == "filesrc"))
            .expect("the file pipeline has a filesrc");
        let pad = filesrc.static_pad("src").unwrap();
        // Stopped, the queue refuses every serialized query (its pads flush), so `true` can
        // only be the answer given at filesrc's pad: no allocation query waits in the queue.
        let mut query = gst::query::Allocation::new(None, false);
        assert!(pad.peer_query(&mut query));
        assert_eq!(query.allocation_pools().len(), 0);
        // Other queries still go through (a position query is answered by nobody while stopped).
        let mut position = gst::query::Position::new(gst::Format::Time);
        assert!(!pad.peer_query(&mut position));
    }
}
