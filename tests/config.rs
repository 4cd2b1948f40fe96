//! Config loading and validation: every shipped config loads, and every bad field (one mutation
//! of a valid config at a time), unknown key, wrong type, syntax error and missing file gives a
//! typed error that names the file and the dotted field.

mod common;

use livedepth::config::{Arch, Config, ConfigError, QueuePolicy};
use std::path::Path;

const VALID: &str = r#"
[source]
uri = "kitchen:../shared/data/kitchen"
fps = 30.0

[camera]
fx = 585.0
fy = 585.0
cx = 320.0
cy = 240.0
width = 640
height = 480
distortion = [0.1, -0.2, 0.0, 0.0, 0.05]

[network]
arch = "rtmonodepth-s"
width = 640
height = 192
model = "weights/m_640x192"
min_depth = 0.1
max_depth = 100.0

[pipeline]
queue_size = 4
policy = "keep-latest"
stats_interval_s = 1.0

[outputs]
dir = "out/test"
depth_png = true
colour_png = true
video = false
pointcloud_every = 10
metrics = true
"#;

const FILE: &str = "mutated.toml";

/// The valid config with `section.key` set to `value` (a TOML value literal), or removed when
/// `value` is `None`.
fn mutate(section: &str, key: &str, value: Option<&str>) -> String {
    let mut table: toml::Table = VALID.parse().expect("the base config is valid TOML");
    let section_table =
        table.get_mut(section).and_then(toml::Value::as_table_mut).expect("section exists");
    match value {
        Some(v) => {
            let parsed: toml::Table = format!("v = {v}").parse().expect("value literal is TOML");
            section_table.insert(key.to_string(), parsed["v"].clone());
        }
        None => {
            section_table.remove(key);
        }
    }
    toml::to_string(&table).expect("serialises")
}

#[test]
fn valid_config_parses_with_every_field() {
    let config = Config::from_toml_str(VALID, FILE).expect("valid config");
    assert_eq!(config.network.arch, Arch::RtMonoDepthS);
    assert_eq!(config.pipeline.policy, QueuePolicy::KeepLatest);
    assert_eq!(config.outputs.pointcloud_every, 10);
    let options = config.pipeline.options();
    assert_eq!((options.queue_size, options.policy), (4, QueuePolicy::KeepLatest));
    assert_eq!(options.stats_interval, std::time::Duration::from_secs(1));
    let snake = VALID.replace("keep-latest", "keep_latest");
    assert_eq!(
        Config::from_toml_str(&snake, FILE).unwrap().pipeline.policy,
        QueuePolicy::KeepLatest
    );
    let k = config.intrinsics().expect("has [camera]");
    assert_eq!((k.fx, k.cx, k.width, k.height), (585.0, 320.0, 640, 480));
    assert_eq!(k.distortion.expect("has distortion").k3, 0.05);
    assert!(config.source.is_dataset());
    // Round trip through TOML text.
    let again = Config::from_toml_str(&config.to_toml_string(), FILE).expect("round trip");
    assert_eq!(again, config);
}

#[test]
fn optional_sections_and_fields_take_their_defaults() {
    let minimal = "[source]\nuri = \"test://\"\n[network]\narch = \"monodepth2-r18\"\nwidth = 320\nheight = 96\n";
    let config = Config::from_toml_str(minimal, FILE).expect("minimal config");
    assert_eq!(config.network.min_depth, 0.1);
    assert_eq!(config.network.max_depth, 100.0);
    assert_eq!(config.network.arch, Arch::Monodepth2R18);
    assert!(config.camera.is_none());
    assert_eq!(config.pipeline.queue_size, 4);
    assert_eq!(config.pipeline.policy, QueuePolicy::Auto);
    assert_eq!(config.outputs.pointcloud_every, 0);
    assert!(config.source.live.is_none());
}

#[test]
fn every_out_of_range_field_is_named() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("source", "uri", "\"\"", "source.uri"),
        ("source", "uri", "\"ftp://host/x.mp4\"", "source.uri"),
        // Accepted by the config before issue #13 and rejected by the source that opens it.
        ("source", "uri", "\"http://host/x.mp4\"", "source.uri"),
        ("source", "uri", "\"https://host/x.mp4\"", "source.uri"),
        ("source", "uri", "\"v4l2://video0\"", "source.uri"),
        ("source", "uri", "\"test://?frames=3\"", "source.uri"),
        ("source", "uri", "\"kitchen:\"", "source.uri"),
        ("source", "fps", "0.0", "source.fps"),
        ("source", "fps", "-30.0", "source.fps"),
        ("source", "fps", "nan", "source.fps"),
        ("source", "stall_timeout_s", "0.0", "source.stall_timeout_s"),
        ("source", "stall_timeout_s", "nan", "source.stall_timeout_s"),
        ("source", "reconnect_give_up_s", "-1.0", "source.reconnect_give_up_s"),
        ("camera", "fx", "0.0", "camera.fx"),
        ("camera", "fx", "nan", "camera.fx"),
        ("camera", "fy", "-1.0", "camera.fy"),
        ("camera", "cx", "700.0", "camera.cx"),
        ("camera", "cx", "-3.0", "camera.cx"),
        ("camera", "cy", "480.0", "camera.cy"),
        ("camera", "width", "0", "camera.width"),
        ("camera", "height", "0", "camera.height"),
        ("camera", "distortion", "[0.0, nan, 0.0, 0.0, 0.0]", "camera.distortion[1]"),
        ("network", "width", "100", "network.width"),
        ("network", "width", "0", "network.width"),
        ("network", "height", "191", "network.height"),
        ("network", "model", "\"\"", "network.model"),
        ("network", "min_depth", "0.0", "network.min_depth"),
        ("network", "min_depth", "inf", "network.min_depth"),
        ("network", "max_depth", "0.05", "network.max_depth"),
        ("network", "max_depth", "nan", "network.max_depth"),
        ("pipeline", "queue_size", "0", "pipeline.queue_size"),
        ("pipeline", "queue_size", "100000", "pipeline.queue_size"),
        ("pipeline", "stats_interval_s", "0.0", "pipeline.stats_interval_s"),
        ("pipeline", "stats_interval_s", "-1.0", "pipeline.stats_interval_s"),
        ("pipeline", "stats_interval_s", "0.001", "pipeline.stats_interval_s"),
        ("outputs", "dir", "\"\"", "outputs.dir"),
    ];
    for &(section, key, value, field) in cases {
        let text = mutate(section, key, Some(value));
        match Config::from_toml_str(&text, FILE) {
            Err(ConfigError::Invalid { file, field: named, expected, .. }) => {
                assert_eq!(named, field, "{section}.{key} = {value}");
                assert_eq!(file, Path::new(FILE));
                assert!(!expected.is_empty());
                let err = Config::from_toml_str(&text, FILE).unwrap_err().to_string();
                assert!(err.contains(FILE) && err.contains(field), "message {err:?}");
            }
            other => panic!("{section}.{key} = {value}: expected Invalid({field}), got {other:?}"),
        }
    }
}

#[test]
fn wrong_types_unknown_keys_and_bad_enums_are_parse_errors_naming_the_field() {
    let cases: &[(&str, &str, Option<&str>, &[&str])] = &[
        ("network", "arch", Some("\"resnet\""), &["network.arch", "rtmonodepth-s"]),
        ("pipeline", "policy", Some("\"fast\""), &["pipeline.policy", "keep-latest"]),
        ("network", "width", Some("\"wide\""), &["network.width"]),
        ("network", "width", Some("-32"), &["network.width"]),
        ("camera", "distortion", Some("[0.1, 0.2, 0.3]"), &["camera.distortion"]),
        ("outputs", "pointcloud_every", Some("-3"), &["outputs.pointcloud_every"]),
        ("outputs", "video", Some("\"yes\""), &["outputs.video"]),
        ("source", "live", Some("1"), &["source.live"]),
        ("network", "depth_scale", Some("2.0"), &["network.depth_scale", "unknown field"]),
        ("network", "width", None, &["network", "width"]),
        ("source", "uri", None, &["source", "uri"]),
    ];
    for &(section, key, value, needles) in cases {
        let text = mutate(section, key, value);
        match Config::from_toml_str(&text, FILE) {
            Err(err @ ConfigError::Parse { .. }) => {
                let message = err.to_string();
                assert!(message.contains(FILE), "{message}");
                for needle in needles {
                    assert!(
                        message.contains(needle),
                        "{section}.{key}: {needle:?} not in {message:?}"
                    );
                }
            }
            other => panic!("{section}.{key} = {value:?}: expected Parse, got {other:?}"),
        }
    }
}

#[test]
fn unknown_section_is_rejected() {
    let text = format!("{VALID}\n[bogus]\nx = 1\n");
    let err = Config::from_toml_str(&text, FILE).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }));
    assert!(err.to_string().contains("bogus"), "{err}");
}

#[test]
fn syntax_error_reports_the_line() {
    let text = "[source]\nuri = \"test://\"\n[network\nwidth = 64\n";
    let err = Config::from_toml_str(text, FILE).unwrap_err();
    let ConfigError::Parse { message, .. } = &err else { panic!("expected Parse, got {err:?}") };
    assert!(message.contains("line 3"), "{message}");
}

#[test]
fn missing_file_is_a_read_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nope.toml");
    let err = Config::load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.toml"));
}

#[test]
fn load_reads_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, VALID).expect("write");
    assert_eq!(Config::load(&path).expect("loads").network.width, 640);
    std::fs::write(&path, mutate("network", "width", Some("48"))).expect("write");
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("ok.toml") && err.contains("network.width") && err.contains("48"),
        "{err}"
    );
}

#[test]
fn relative_file_uri_resolves_against_the_current_directory() {
    let text = VALID.replace("kitchen:../shared/data/kitchen", "file://out/demo/x.mp4");
    let config = Config::from_toml_str(&text, FILE).expect("valid");
    let cwd = std::env::current_dir().expect("cwd");
    assert_eq!(
        config.source.resolved_uri(),
        format!("file://{}", cwd.join("out/demo/x.mp4").display())
    );
    assert!(!config.source.is_dataset());
    let absolute = VALID.replace("kitchen:../shared/data/kitchen", "file:///tmp/x.mp4");
    let config = Config::from_toml_str(&absolute, FILE).expect("valid");
    assert_eq!(config.source.resolved_uri(), "file:///tmp/x.mp4");
}

#[test]
fn all_shipped_configs_load() {
    let dir = common::repo_root().join("configs");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("configs/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(config.camera.is_some(), "{} has [camera]", path.display());
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    names.sort();
    assert_eq!(
        names,
        [
            "generic.toml",
            "kitchen.toml",
            "kitti.toml",
            "rendered_320x96.toml",
            "synthetic.toml",
            "tum_fr1.toml"
        ]
    );
    // `make jetson` runs our base model on a 320x96 rendered drive with it.
    let rendered = Config::load(dir.join("rendered_320x96.toml")).unwrap();
    let camera = rendered.camera.as_ref().unwrap();
    assert_eq!((camera.width, camera.height), (320, 96));
    let tum = Config::load(dir.join("tum_fr1.toml")).unwrap();
    assert_eq!(tum.intrinsics().unwrap().distortion.unwrap().k1, 0.2624);
    let kitti = Config::load(dir.join("kitti.toml")).unwrap();
    assert_eq!(
        (kitti.camera.as_ref().unwrap().width, kitti.camera.as_ref().unwrap().height),
        (1242, 375)
    );
}

#[test]
fn check_paths_names_missing_data_and_weights() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let weights = tmp.path().join("weights.pth");
    std::fs::write(&weights, b"w").expect("write");
    let with = |uri: &str, model: &Path| {
        let text = mutate("source", "uri", Some(&format!("{uri:?}")));
        let mut config = Config::from_toml_str(&text, FILE).expect("valid");
        config.network.model = Some(model.to_path_buf());
        config
    };
    let dataset = format!("kitchen:{}", tmp.path().display());
    with(&dataset, &weights).check_paths(Path::new(FILE)).expect("all present");
    let err = with("kitchen:/no/such/dir", &weights).check_paths(Path::new(FILE)).unwrap_err();
    assert!(matches!(&err, ConfigError::Invalid { field, .. } if field == "source.uri"), "{err}");
    assert!(err.to_string().contains("/no/such/dir"));
    let err = with("file:///no/such/video.mp4", &weights).check_paths(Path::new(FILE)).unwrap_err();
    assert!(err.to_string().contains("video.mp4"), "{err}");
    let err =
        with(&dataset, &tmp.path().join("nope.pth")).check_paths(Path::new(FILE)).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { field, .. } if field == "network.model"),
        "{err}"
    );
    with("v4l2:///dev/video0", &weights)
        .check_paths(Path::new(FILE))
        .expect("devices are not checked");
}

#[test]
fn cameras_reconnect_by_default_and_the_stall_timeout_is_configurable() {
    use livedepth::config::SourceConfig;
    for (uri, expected) in [
        ("rtsp://cam.local/stream", true),
        ("v4l2:///dev/video0", true),
        ("csi://0", true),
        ("test://ball", false),
        ("file:///x.mp4", false),
        ("kitchen:../shared/data/kitchen", false),
    ] {
        assert_eq!(SourceConfig::new(uri).reconnect_enabled(), expected, "{uri}");
    }
    let explicit = SourceConfig { reconnect: Some(true), ..SourceConfig::new("test://ball") };
    assert!(explicit.reconnect_enabled());
    assert_eq!(SourceConfig::new("test://").stall_timeout(), std::time::Duration::from_secs(10));
    let text = mutate("source", "stall_timeout_s", Some("2.5"));
    let config = Config::from_toml_str(&text, FILE).expect("valid");
    assert_eq!(config.source.stall_timeout(), std::time::Duration::from_millis(2500));
}
