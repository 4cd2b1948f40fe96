//! Helpers shared by the integration tests: locating the real data in ../shared (skipping with
//! a printed reason where it is absent) and the Python venv used for parity fixtures.
#![allow(dead_code)]

pub mod files;

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the livedepth binary with `args` in the repository root.
pub fn livedepth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_livedepth"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("the livedepth binary runs")
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/<rel>` beside the repository (or under `$LIVEDEPTH_SHARED`), or `None` after
/// printing why the calling test skips.
pub fn shared(rel: &str) -> Option<PathBuf> {
    let base = std::env::var_os("LIVEDEPTH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"));
    let path = base.join(rel);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "SKIP: {} is absent (real data lives in ../shared beside the repo)",
            path.display()
        );
        None
    }
}

/// The options of a quiet RT-MonoDepth-S evaluation with libtorch and per-frame median scaling
/// of `selection` of `dataset` (a `kind:path` spec) at `width` x `height`: the options most data
/// tests share. A test that needs another setting changes it by struct update.
pub fn eval_options(
    dataset: String,
    model: PathBuf,
    (width, height): (u32, u32),
    selection: livedepth::source::dataset::FrameSelection,
) -> livedepth::app::eval::EvalOptions {
    livedepth::app::eval::EvalOptions {
        dataset,
        model,
        arch: livedepth::model::Arch::RtMonoDepthS,
        width,
        height,
        selection,
        no_median_scaling: false,
        json: None,
        plot: None,
        progress: false,
        engine: livedepth::engine::EngineKind::Torch,
        metric_scale: Default::default(),
    }
}

/// The Python interpreter of the torch venv that scripts/setup.sh makes (found as the library
/// finds it: `$LIVEDEPTH_PYTHON`, `$LIVEDEPTH_TORCH_VENV`, `~/.cache/livedepth/torch-2.11`).
/// Setup installs it, so a test that needs it fails, saying what to run, where it is missing:
/// it never skips silently.
pub fn python() -> PathBuf {
    let python = livedepth::python::torch_python(None);
    assert!(
        python.is_absolute() && python.exists(),
        "the torch venv's Python is missing (looked for {}): run `scripts/setup.sh` (`make test` \
         runs it), or point LIVEDEPTH_PYTHON at a Python with torch==2.11.0",
        python.display()
    );
    python
}

/// Peak signal-to-noise ratio of two same-size 8-bit RGB images, in dB (infinite when equal).
pub fn psnr(a: &livedepth::frame::RgbImage, b: &livedepth::frame::RgbImage) -> f64 {
    assert_eq!((a.width, a.height), (b.width, b.height));
    let mse = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(&p, &q)| (f64::from(p) - f64::from(q)).powi(2))
        .sum::<f64>()
        / a.data.len() as f64;
    if mse == 0.0 { f64::INFINITY } else { 10.0 * (255.0f64 * 255.0 / mse).log10() }
}

/// A smooth textured image, planar RGB in [0, 1] at `w` x `h`, shifted `shift` pixels to the
/// left: three of them make a triplet with known horizontal motion.
pub fn texture(w: usize, h: usize, shift: f32) -> Vec<f32> {
    let mut out = vec![0f32; 3 * w * h];
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let u = x as f32 + shift;
                let v = y as f32;
                let value = 0.5
                    + 0.25 * (0.31 * u + 0.7 * c as f32).sin() * (0.23 * v).cos()
                    + 0.2 * (0.07 * u * v / 40.0 + c as f32).sin();
                out[c * w * h + y * w + x] = value.clamp(0.0, 1.0);
            }
        }
    }
    out
}

/// A free local TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Zenoh peer listening on a free local port (no scouting), and that endpoint.
pub fn listening_peer() -> (zenoh::Session, String) {
    use zenoh::Wait;
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let mut config = zenoh::Config::default();
    config.insert_json5("mode", "\"peer\"").unwrap();
    config.insert_json5("listen/endpoints", &format!("[\"{endpoint}\"]")).unwrap();
    config.insert_json5("scouting/multicast/enabled", "false").unwrap();
    (zenoh::open(config).wait().unwrap(), endpoint)
}

/// A Zenoh peer connected to `endpoint` (no scouting).
pub fn connecting_peer(endpoint: &str) -> zenoh::Session {
    use zenoh::Wait;
    let mut config = zenoh::Config::default();
    config.insert_json5("mode", "\"peer\"").unwrap();
    config.insert_json5("connect/endpoints", &format!("[\"{endpoint}\"]")).unwrap();
    config.insert_json5("scouting/multicast/enabled", "false").unwrap();
    zenoh::open(config).wait().unwrap()
}

/// A rendered drive of `frames` frames at 320x96 under `dir/drive` (KITTI-like layout with
/// `speed.csv`), as the base model sees it.
pub fn rendered_drive(dir: &std::path::Path, frames: usize, seed: u64) -> PathBuf {
    let renderer = livedepth::synth::Renderer::new(&livedepth::synth::RenderConfig {
        width: 320,
        height: 96,
        frames,
        seed,
        supersample: 1,
        ..livedepth::synth::RenderConfig::default()
    })
    .unwrap();
    let drive = dir.join("drive");
    livedepth::synth::write_dataset(&renderer, &drive, false).unwrap();
    drive
}

/// configs/kitchen.toml with the live 30 fps test camera (`test://ball`) as its source, written
/// to `dir/live.toml`, with each (from, to) of `edits` applied too; returns the file.
pub fn kitchen_config_on_test_camera(dir: &std::path::Path, edits: &[(&str, &str)]) -> PathBuf {
    let mut config = std::fs::read_to_string(repo_root().join("configs/kitchen.toml")).unwrap();
    let source = [("uri = \"kitchen:../shared/data/kitchen\"", "uri = \"test://ball\"")];
    for (from, to) in source.iter().chain(edits) {
        assert!(config.contains(from), "configs/kitchen.toml has no `{from}`");
        config = config.replace(from, to);
    }
    let path = dir.join("live.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// Starts `command` with its stderr piped and collected line by line as it comes, for a test
/// that waits for what a long-running process says.
pub fn spawn_collecting_stderr(
    command: &mut Command,
) -> (std::process::Child, std::sync::Arc<std::sync::Mutex<String>>) {
    use std::io::{BufRead, BufReader};
    let mut child = command.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let lines = BufReader::new(child.stderr.take().unwrap());
    let sink = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            let mut all = sink.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    (child, log)
}
