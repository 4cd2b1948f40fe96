//! Validation of a parsed config: every field's range and consistency, each mistake a
//! [`ConfigError::Invalid`] naming the file, the dotted field and what was expected; and the
//! source URI check shared with `run --source`.

use super::{Config, ConfigError, MAX_QUEUE_SIZE, MIN_STATS_INTERVAL_S};
use std::path::Path;

/// Dataset spec prefixes a `source.uri` may use (`kitti:DIR`, …).
pub const DATASET_PREFIXES: [&str; 3] = ["kitti:", "kitchen:", "tum:"];

/// Checks a source URI or dataset spec the way the source that opens it will (one parser,
/// [`crate::source::gst_uri::parse_source_uri`], for the config file and `run --source`);
/// `Err` says what was expected. Unlike the command line, a config must name the scheme
/// (`file://PATH` for a file).
pub fn check_source_uri(uri: &str) -> Result<(), String> {
    let uri = uri.trim();
    if uri.is_empty() {
        return Err("a non-empty URI or dataset spec".into());
    }
    if let Some(prefix) = DATASET_PREFIXES.iter().find(|p| uri.starts_with(*p)) {
        if uri.len() == prefix.len() {
            return Err(
                "a dataset folder after the prefix, e.g. `kitchen:../shared/data/kitchen`".into()
            );
        }
        return Ok(());
    }
    if uri.starts_with(crate::source::bag::SCHEME) {
        return crate::source::bag::parse_uri(uri).map(|_| ()).map_err(|e| match e {
            crate::source::SourceError::InvalidUri { reason, .. } => {
                format!("mcap://PATH[?topic=TOPIC] ({reason})")
            }
            other => other.to_string(),
        });
    }
    if !uri.contains("://") {
        return Err(format!(
            "a URI with a scheme ({}), or a dataset spec kitti:DIR, kitchen:DIR or tum:DIR",
            crate::source::gst_uri::ACCEPTED_URIS
        ));
    }
    crate::source::gst_uri::parse_source_uri(uri).map(|_| ()).map_err(|e| {
        let reason = match e {
            crate::source::SourceError::InvalidUri { reason, .. } => reason,
            other => other.to_string(),
        };
        format!("a URI the source can open ({reason})")
    })
}

impl Config {
    /// Checks every field's range and consistency; `file` names the config in errors.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &str, expected: &str, found: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            field: field.to_string(),
            expected: expected.to_string(),
            found,
        };

        // [source]
        let uri = self.source.uri.trim();
        if let Err(expected) = check_source_uri(uri) {
            return Err(invalid("source.uri", &expected, format!("{uri:?}")));
        }
        if let Some(fps) = self.source.fps
            && !(fps.is_finite() && fps > 0.0)
        {
            return Err(invalid("source.fps", "a positive frame rate", fps.to_string()));
        }
        for (field, value) in [
            ("source.stall_timeout_s", self.source.stall_timeout_s),
            ("source.reconnect_give_up_s", self.source.reconnect_give_up_s),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && (0.1..=86_400.0).contains(&v))
            {
                return Err(invalid(field, "seconds between 0.1 and 86400", v.to_string()));
            }
        }

        // [camera]
        if let Some(cam) = &self.camera {
            if cam.width == 0 {
                return Err(invalid("camera.width", "a positive width in pixels", "0".into()));
            }
            if cam.height == 0 {
                return Err(invalid("camera.height", "a positive height in pixels", "0".into()));
            }
            for (field, value) in [("camera.fx", cam.fx), ("camera.fy", cam.fy)] {
                if !(value.is_finite() && value > 0.0) {
                    return Err(invalid(
                        field,
                        "a positive focal length in pixels",
                        value.to_string(),
                    ));
                }
            }
            if !(cam.cx.is_finite() && cam.cx > 0.0 && cam.cx < cam.width as f64) {
                return Err(invalid(
                    "camera.cx",
                    "a principal point inside the image (0 < cx < width)",
                    cam.cx.to_string(),
                ));
            }
            if !(cam.cy.is_finite() && cam.cy > 0.0 && cam.cy < cam.height as f64) {
                return Err(invalid(
                    "camera.cy",
                    "a principal point inside the image (0 < cy < height)",
                    cam.cy.to_string(),
                ));
            }
            if let Some(d) = &cam.distortion
                && let Some(i) = d.iter().position(|c| !c.is_finite())
            {
                return Err(invalid(
                    &format!("camera.distortion[{i}]"),
                    "a finite coefficient",
                    d[i].to_string(),
                ));
            }
        }

        // [network]
        let net = &self.network;
        for (field, value) in [("network.width", net.width), ("network.height", net.height)] {
            if value == 0 || value % 32 != 0 {
                return Err(invalid(field, "a positive multiple of 32", value.to_string()));
            }
        }
        if let Some(model) = &net.model
            && model.as_os_str().is_empty()
        {
            return Err(invalid("network.model", "a non-empty path", "\"\"".into()));
        }
        if let Err(reason) = crate::scale::MetricScale::from_flags(
            &net.metric_scale,
            net.camera_height,
            net.speed_file.as_deref(),
            net.speed_key.as_deref(),
        ) {
            return Err(invalid(
                "network.metric_scale / network.camera_height / network.speed_file / \
                 network.speed_key (--metric-scale, --camera-height, --speed-file, --speed-key)",
                "none, ground with a positive camera height in metres, or speed",
                reason,
            ));
        }
        if let (Some(key), None) = (&net.speed_key, &self.outputs.zenoh) {
            return Err(invalid(
                "network.speed_key (--speed-key)",
                "a Zenoh session to read it on: an [outputs.zenoh] table (run --zenoh)",
                format!("{key:?} without one"),
            ));
        }
        if !(net.min_depth.is_finite() && net.min_depth > 0.0) {
            return Err(invalid(
                "network.min_depth",
                "a positive depth in metres",
                net.min_depth.to_string(),
            ));
        }
        if !(net.max_depth.is_finite() && net.max_depth > net.min_depth) {
            return Err(invalid(
                "network.max_depth",
                "a finite depth in metres greater than network.min_depth",
                net.max_depth.to_string(),
            ));
        }

        // [pipeline]
        if !(1..=MAX_QUEUE_SIZE).contains(&self.pipeline.queue_size) {
            return Err(invalid(
                "pipeline.queue_size",
                "a queue size from 1 to 65536",
                self.pipeline.queue_size.to_string(),
            ));
        }
        let interval = self.pipeline.stats_interval_s;
        if !(interval.is_finite() && (MIN_STATS_INTERVAL_S..=86_400.0).contains(&interval)) {
            return Err(invalid(
                "pipeline.stats_interval_s",
                "a number of seconds from 0.01 to 86400",
                interval.to_string(),
            ));
        }

        // [outputs]
        if self.outputs.dir.as_os_str().is_empty() {
            return Err(invalid("outputs.dir", "a non-empty folder path", "\"\"".into()));
        }
        if let Some(address) = &self.outputs.foxglove
            && crate::sink::foxglove_live::parse_address(address).is_err()
        {
            return Err(invalid(
                "outputs.foxglove (--foxglove)",
                "HOST:PORT, e.g. 127.0.0.1:8765 (port 0 picks a free one)",
                format!("{address:?}"),
            ));
        }
        if let Some(zenoh) = &self.outputs.zenoh
            && let Err((field, expected, found)) = zenoh.check()
        {
            return Err(invalid(field, &expected, found));
        }
        if let Some(mcap) = &self.outputs.mcap
            && mcap.exists()
        {
            return Err(invalid(
                "outputs.mcap (--mcap)",
                "a new file (recordings are never overwritten)",
                format!("{} (exists)", mcap.display()),
            ));
        }
        Ok(())
    }

    /// Checks that the paths the config names exist (relative to the current directory): the
    /// folder of a dataset `source.uri`, the file of a `file://` URI and `network.model`.
    /// Separate from [`Config::load`] so that a config can be checked before its data or
    /// weights are in place; call it just before running.
    pub fn check_paths(&self, file: &Path) -> Result<(), ConfigError> {
        let missing = |field: &str, expected: &str, path: &Path| ConfigError::Invalid {
            file: file.to_path_buf(),
            field: field.to_string(),
            expected: expected.to_string(),
            found: format!("{} (does not exist)", path.display()),
        };
        let uri = self.source.uri.trim();
        if let Some((_, dir)) = uri.split_once(':').filter(|_| self.source.is_dataset()) {
            if !Path::new(dir).is_dir() {
                return Err(missing("source.uri", "an existing dataset folder", Path::new(dir)));
            }
        } else if let Some(path) = self.source.resolved_uri().strip_prefix("file://")
            && !Path::new(path).is_file()
        {
            return Err(missing("source.uri", "an existing video file", Path::new(path)));
        }
        if let Some(model) = &self.network.model
            && !model.exists()
        {
            return Err(missing("network.model", "an existing weights file or folder", model));
        }
        Ok(())
    }
}
