//! `livedepth bench infer` times the RT-MonoDepth-S forward of the
//! libtorch engine at several input sizes, on the CPU or (`--device cuda`) on the GPU, against a
//! PyTorch eager peer (scripts/bench/infer_peer.py) on the same weights, input, device and thread
//! count, in the same run, and on the CPU against onnxruntime running our own ONNX export of the
//! same weights (scripts/bench/infer_ort_peer.py) and against livedepth's own onnxruntime engine
//! (`--engine onnxruntime`, [`super::infer_engines`]), with each engine's publish-to-live
//! latency of adapted weights, and shows where the time goes (encoder vs decoder,
//! preprocessing, the peer's top operators). On the GPU a timed forward includes the disparity's copy to the host,
//! as the live path needs it, for both runtimes.

use super::infer_engines;
use clap::Args as ClapArgs;
use livedepth::engine::{Preprocessor, TorchDepthEngine};
use livedepth::error::Error;
use livedepth::frame::RgbImage;
use livedepth::model::Arch;
use livedepth::model::network::DepthNetwork;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Tensor};

#[derive(ClapArgs, Debug)]
pub struct InferArgs {
    /// Input sizes WIDTHxHEIGHT (multiples of 32), comma separated.
    #[arg(long, default_value = "640x192,320x96")]
    pub sizes: String,
    /// Timed iterations per measurement.
    #[arg(long, default_value_t = 50)]
    pub iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// CPU threads for both runtimes (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// RT-MonoDepth-S checkpoint folder (encoder.pth + depth.pth); default: the shared
    /// checkpoint when present, else random weights.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Python with torch for the peer (default: $LIVEDEPTH_PYTHON, else the setup script's venv
    /// ~/.cache/livedepth/torch-2.11, else python3).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Skip the PyTorch peer.
    #[arg(long)]
    pub no_peer: bool,
    /// `cpu`, or `cuda` (GPU 0 for both runtimes; an error that says why where libtorch sees no
    /// GPU).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// The device named by `--device`, or an error naming the flag.
fn bench_device(name: &str) -> livedepth::Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" if livedepth::engine::torch_cuda_available() => Ok(Device::Cuda(0)),
        "cuda" => Err(Error::Other(format!(
            "--device cuda: libtorch sees no CUDA device ({}); run with --device cpu",
            match livedepth::engine::torch_cuda_status() {
                Ok(path) =>
                    format!("its CUDA backend {} loaded, but no GPU answered", path.display()),
                Err(why) => why.clone(),
            }
        ))),
        other => Err(Error::Other(format!("--device: `{other}` is not cpu or cuda"))),
    }
}

/// Waits for the GPU's queued work so that a timing covers it (no-op on the CPU).
fn sync(device: Device) {
    if let Device::Cuda(ordinal) = device {
        tch::Cuda::synchronize(ordinal as i64);
    }
}

/// Median, mean and minimum of per-iteration times in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    median_ms: f64,
    mean_ms: f64,
    min_ms: f64,
}

impl Stats {
    fn of(mut ms: Vec<f64>) -> Self {
        if ms.is_empty() {
            return Self::default();
        }
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let median = if n % 2 == 1 { ms[n / 2] } else { 0.5 * (ms[n / 2 - 1] + ms[n / 2]) };
        Self { median_ms: median, mean_ms: ms.iter().sum::<f64>() / n as f64, min_ms: ms[0] }
    }

    fn from_json(v: &serde_json::Value) -> Option<Self> {
        Some(Self {
            median_ms: v["median_ms"].as_f64()?,
            mean_ms: v["mean_ms"].as_f64()?,
            min_ms: v["min_ms"].as_f64()?,
        })
    }
}

fn timed(
    warmup: usize,
    iters: usize,
    mut f: impl FnMut() -> livedepth::Result<()>,
) -> livedepth::Result<Stats> {
    for _ in 0..warmup {
        f()?;
    }
    let mut ms = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        f()?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Stats::of(ms))
}

fn parse_sizes(s: &str) -> livedepth::Result<Vec<(u32, u32)>> {
    s.split(',')
        .map(|item| {
            let item = item.trim();
            let parsed = item.split_once('x').and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
            match parsed {
                Some((w, h)) if w > 0 && h > 0 && w % 32 == 0 && h % 32 == 0 => Ok((w, h)),
                _ => Err(Error::Other(format!(
                    "--sizes: `{item}` is not WIDTHxHEIGHT with both positive multiples of 32 (e.g. 640x192)"
                ))),
            }
        })
        .collect()
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The first KITTI frame from ../shared when present, else a synthetic 1242x375 pattern.
fn source_frame() -> (RgbImage, &'static str) {
    let path = repo_root()
        .join("../shared/data/kitti_tiny/2011_09_26/2011_09_26_drive_0023_sync/image_02/data/0000000000.png");
    if let Ok(img) = image::open(&path) {
        let img = img.to_rgb8();
        return (
            RgbImage { width: img.width(), height: img.height(), data: img.into_raw() },
            "KITTI frame 0",
        );
    }
    let mut img = RgbImage::new(1242, 375);
    for (i, px) in img.data.chunks_exact_mut(3).enumerate() {
        let (x, y) = (i % 1242, i / 1242);
        px.copy_from_slice(&[(x % 256) as u8, (y % 256) as u8, ((x ^ y) % 256) as u8]);
    }
    (img, "synthetic 1242x375 pattern")
}

fn write_npy(path: &Path, shape: &[u64], values: &[f32]) -> livedepth::Result<()> {
    use npyz::WriterBuilder;
    let io = |e| Error::io(path, e);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut file)
        .begin_nd()
        .map_err(io)?;
    w.extend(values.iter().copied()).map_err(io)?;
    w.finish().map_err(io)
}

fn read_npy(path: &Path) -> livedepth::Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| Error::io(path, e))?;
    npy.into_vec::<f32>().map_err(|e| Error::io(path, e))
}

struct PeerResult {
    total: Stats,
    encoder: Stats,
    decoder: Stats,
    max_disp_diff: Option<f32>,
    ops: Vec<(String, f64)>,
}

/// Runs a Python peer and returns the last JSON line it printed; a failure names the script,
/// what it printed on stderr and `hint`.
fn peer_json(
    mut cmd: std::process::Command,
    python: &Path,
    script: &Path,
    who: &str,
    hint: &str,
) -> livedepth::Result<serde_json::Value> {
    let out = cmd.output().map_err(|e| Error::io(python, e))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "{who} {} failed{hint}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| Error::Other(format!("{who} printed no JSON result: {stdout}")))
}

#[allow(clippy::too_many_arguments)]
fn run_peer(
    python: &Path,
    model: Option<&Path>,
    input: &Path,
    disp_out: &Path,
    args: &InferArgs,
    threads: usize,
    profile: bool,
    channels_last: bool,
    rust_disp: &[f32],
    device: Device,
) -> livedepth::Result<PeerResult> {
    let script = repo_root().join("scripts/bench/infer_peer.py");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(&script)
        .arg("--input")
        .arg(input)
        .args(["--iters", &args.iters.to_string(), "--warmup", &args.warmup.to_string()])
        .args(["--threads", &threads.to_string()])
        .arg("--out-disp")
        .arg(disp_out);
    if let Some(m) = model {
        cmd.arg("--model").arg(m);
    }
    if profile {
        cmd.arg("--profile");
    }
    if channels_last {
        cmd.arg("--channels-last");
    }
    if device.is_cuda() {
        cmd.args(["--device", "cuda"]);
    }
    let json = peer_json(cmd, python, &script, "PyTorch peer", "")?;
    let stats = |k: &str| {
        Stats::from_json(&json[k])
            .ok_or_else(|| Error::Other(format!("PyTorch peer JSON lacks `{k}` timings")))
    };
    let max_disp_diff = if model.is_some() {
        let theirs = read_npy(disp_out)?;
        (theirs.len() == rust_disp.len())
            .then(|| theirs.iter().zip(rust_disp).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max))
    } else {
        None
    };
    let ops = json["ops"]
        .as_array()
        .map(|ops| {
            ops.iter()
                .filter_map(|o| Some((o["name"].as_str()?.to_owned(), o["share"].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    Ok(PeerResult {
        total: stats("total")?,
        encoder: stats("encoder")?,
        decoder: stats("decoder")?,
        max_disp_diff,
        ops,
    })
}

/// The onnxruntime peer (scripts/bench/infer_ort_peer.py, CPU execution provider): our own ONNX
/// export of `net` at `w`×`h`, fed the same preprocessed frame un-normalised back to RGB in
/// [0, 1] (the graph normalises inside). Returns its timings, its version and the largest
/// disparity difference from the engine's.
#[allow(clippy::too_many_arguments)]
fn run_ort_peer(
    python: &Path,
    net: &DepthNetwork,
    (w, h): (u32, u32),
    unit_rgb: &[f32],
    tmp: &Path,
    args: &InferArgs,
    threads: usize,
    rust_disp: &[f32],
) -> livedepth::Result<(Stats, String, f32)> {
    use livedepth::export::{InputShape, depth_model};
    let shape = InputShape { width: w, height: h, dynamic: false };
    let model = depth_model(net, shape).map_err(|e| Error::Other(format!("ONNX export: {e}")))?;
    let onnx = tmp.join(format!("depth_{w}x{h}.onnx"));
    std::fs::write(&onnx, model.encode()).map_err(|e| Error::io(&onnx, e))?;
    let input = tmp.join(format!("raw_{w}x{h}.npy"));
    write_npy(&input, &[1, 3, u64::from(h), u64::from(w)], unit_rgb)?;
    let disp_out = tmp.join(format!("ort_disp_{w}x{h}.npy"));
    let script = repo_root().join("scripts/bench/infer_ort_peer.py");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(&script)
        .arg("--onnx")
        .arg(&onnx)
        .arg("--input")
        .arg(&input)
        .args(["--iters", &args.iters.to_string(), "--warmup", &args.warmup.to_string()])
        .args(["--threads", &threads.to_string()])
        .arg("--out-disp")
        .arg(&disp_out);
    let hint = " (scripts/setup.sh installs onnxruntime into the torch venv)";
    let json = peer_json(cmd, python, &script, "onnxruntime peer", hint)?;
    let stats = Stats::from_json(&json["total"])
        .ok_or_else(|| Error::Other("onnxruntime peer JSON lacks `total` timings".into()))?;
    let version = json["onnxruntime"].as_str().unwrap_or("?").to_owned();
    let theirs = read_npy(&disp_out)?;
    let diff = if theirs.len() == rust_disp.len() {
        theirs.iter().zip(rust_disp).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
    } else {
        f32::INFINITY
    };
    Ok((stats, version, diff))
}

pub fn run_infer(args: InferArgs) -> livedepth::Result<()> {
    let sizes = parse_sizes(&args.sizes)?;
    if args.iters == 0 {
        return Err(Error::Other("--iters must be at least 1".into()));
    }
    if args.threads > 0 {
        tch::set_num_threads(args.threads as i32);
    }
    let threads = tch::get_num_threads().max(1) as usize;
    let model = args.model.clone().or_else(|| {
        let shared = repo_root().join("../shared/models/rtmonodepth_s/m_640x192");
        shared.join("encoder.pth").exists().then_some(shared)
    });
    let device = bench_device(&args.device)?;
    let network = match &model {
        Some(dir) => DepthNetwork::load(dir, Arch::RtMonoDepthS, device)?,
        None => DepthNetwork::new(Arch::RtMonoDepthS, device),
    };
    let python = livedepth::python::torch_python(args.python.clone());
    let (frame, frame_name) = source_frame();
    let tmp = std::env::temp_dir().join(format!("livedepth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;

    let on = match device {
        Device::Cuda(_) => {
            "GPU 0 (disparity copied back to the host in each timed forward)".to_owned()
        }
        _ => format!("the CPU, {threads} threads"),
    };
    println!(
        "RT-MonoDepth-S forward on {on}, batch 1, {} iterations after {} warm-up",
        args.iters, args.warmup
    );
    println!(
        "weights: {}; input: {frame_name} resized (Lanczos-3) and normalised",
        model
            .as_ref()
            .map_or("random (no checkpoint found)".to_owned(), |m| m.display().to_string())
    );
    println!();
    println!(
        "median ms per forward; torch = PyTorch eager (NCHW, its default), torch-cl = PyTorch eager"
    );
    println!(
        "with channels_last (the engine's layout); ratio = torch time / rust time (> 1: engine faster)"
    );
    println!(
        "{:>9} | {:>9} {:>8} {:>8} | {:>9} {:>8} {:>8} | {:>9} | {:>6} {:>6} | {:>8} | {:>8}",
        "size",
        "rust",
        "enc",
        "dec",
        "torch",
        "enc",
        "dec",
        "torch-cl",
        "ratio",
        "r(cl)",
        "preproc",
        "max|Δd|"
    );
    let mut network = Some(network);
    let mut peer_ops = Vec::new();
    for (index, &(w, h)) in sizes.iter().enumerate() {
        let net = network.take().ok_or_else(|| Error::Other("network lost".into()))?;
        let mut engine = TorchDepthEngine::new(net, w, h, 1)?;
        let (mean, std) = Arch::RtMonoDepthS.normalisation();
        let mut pre = Preprocessor::new(w, h, mean, std)?;
        let mut input = vec![0f32; pre.output_len()];
        let preprocess =
            timed(args.warmup.min(2), args.iters, || Ok(pre.run(&frame, &mut input)?))?;
        let total = timed(args.warmup, args.iters, || {
            engine.forward_normalised(&input, 1).map(|_| ()).map_err(Error::from)
        })?;
        let rust_disp = engine.forward_normalised(&input, 1)?.to_vec();
        // The same frame as RGB in [0, 1], what the ONNX graphs take (they normalise inside).
        let plane = (w * h) as usize;
        let unit_rgb: Vec<f32> =
            input.iter().enumerate().map(|(i, v)| v * std[i / plane] + mean[i / plane]).collect();
        let x = Tensor::from_slice(&input).reshape([1, 3, h as i64, w as i64]).to_device(device);
        let (encoder, decoder) = tch::no_grad(|| -> livedepth::Result<(Stats, Stats)> {
            let net = engine.network();
            let enc = timed(args.warmup, args.iters, || {
                net.encode(&x, false);
                sync(device);
                Ok(())
            })?;
            let features = net.encode(&x, false);
            let dec = timed(args.warmup, args.iters, || {
                net.decode(&features);
                sync(device);
                Ok(())
            })?;
            Ok((enc, dec))
        })?;
        let peer = if args.no_peer {
            None
        } else {
            let input_path = tmp.join(format!("input_{w}x{h}.npy"));
            write_npy(&input_path, &[1, 3, h as u64, w as u64], &input)?;
            let disp_path = tmp.join(format!("disp_{w}x{h}.npy"));
            let model = model.as_deref();
            let (py, a) = (&python, &args);
            let eager = run_peer(
                py,
                model,
                &input_path,
                &disp_path,
                a,
                threads,
                index == 0 && !device.is_cuda(),
                false,
                &rust_disp,
                device,
            )?;
            let eager_cl = run_peer(
                py,
                model,
                &input_path,
                &disp_path,
                a,
                threads,
                false,
                true,
                &rust_disp,
                device,
            )?;
            Some((eager, eager_cl))
        };
        let fmt = |s: Option<Stats>| s.map_or("-".to_owned(), |s| format!("{:.2}", s.median_ms));
        let ratio = |s: Option<Stats>| {
            s.map_or("-".to_owned(), |s| format!("{:.2}", s.median_ms / total.median_ms))
        };
        let eager = peer.as_ref().map(|p| &p.0);
        let eager_cl = peer.as_ref().map(|p| &p.1);
        println!(
            "{:>9} | {:>9.2} {:>8.2} {:>8.2} | {:>9} {:>8} {:>8} | {:>9} | {:>6} {:>6} | {:>8.2} | {:>8}",
            format!("{w}x{h}"),
            total.median_ms,
            encoder.median_ms,
            decoder.median_ms,
            fmt(eager.map(|p| p.total)),
            fmt(eager.map(|p| p.encoder)),
            fmt(eager.map(|p| p.decoder)),
            fmt(eager_cl.map(|p| p.total)),
            ratio(eager.map(|p| p.total)),
            ratio(eager_cl.map(|p| p.total)),
            preprocess.median_ms,
            eager.and_then(|p| p.max_disp_diff).map_or("-".to_owned(), |d| format!("{d:.1e}")),
        );
        if let Some((p, cl)) = peer {
            println!(
                "{:>9}   min: rust {:.2}, torch {:.2}, torch-cl {:.2}; mean: rust {:.2}, torch {:.2}, torch-cl {:.2}",
                "",
                total.min_ms,
                p.total.min_ms,
                cl.total.min_ms,
                total.mean_ms,
                p.total.mean_ms,
                cl.total.mean_ms
            );
            if !p.ops.is_empty() {
                peer_ops = p.ops;
            }
            if !device.is_cuda() {
                let (ort, version, diff) = run_ort_peer(
                    &python,
                    engine.network(),
                    (w, h),
                    &unit_rgb,
                    &tmp,
                    &args,
                    threads,
                    &rust_disp,
                )?;
                println!(
                    "{:>9}   onnxruntime {version} CPU, our exported graph: {:.2} ms; ratio ort / \
                     rust {:.2} (> 1: engine faster); max|Δd| {diff:.1e}",
                    "",
                    ort.median_ms,
                    ort.median_ms / total.median_ms
                );
            }
        }
        let weights = infer_engines::copy_of(engine.network())?;
        let torch_publish = infer_engines::publish_to_live(&mut engine, &weights, &input)?;
        let ort = if device.is_cuda() {
            Err("CPU only here".to_owned())
        } else {
            infer_engines::onnxruntime_row(
                engine.network(),
                (w, h),
                &unit_rgb,
                (args.warmup, args.iters),
                threads,
                &rust_disp,
            )
            .map_err(|e| e.to_string())
        };
        match &ort {
            Ok(row) => println!(
                "{:>9}   livedepth engines: onnxruntime (ort crate, our export) {:.2} ms, ratio \
                 torch engine / onnxruntime engine {:.2} (> 1: onnxruntime faster), max|Δd| \
                 {:.1e}; publish → live: torch {torch_publish:.1} ms, onnxruntime {:.1} ms \
                 (background session rebuild)",
                "",
                row.median_ms,
                total.median_ms / row.median_ms,
                row.max_disp_diff,
                row.publish_to_live_ms
            ),
            Err(why) => println!(
                "{:>9}   livedepth engines: onnxruntime not measured ({why}); publish → live: \
                 torch {torch_publish:.1} ms",
                ""
            ),
        }
        match infer_engines::tensorrt_row(
            engine.network(),
            (w, h),
            &unit_rgb,
            (args.warmup, args.iters),
            &rust_disp,
        ) {
            Ok(row) => println!(
                "{:>9}   livedepth engines: tensorrt (our shim, FP16) {:.2} ms, ratio torch \
                 engine / tensorrt engine {:.2} (> 1: tensorrt faster), max|Δd| {:.1e}; \
                 publish → live {:.1} ms (refit)",
                "",
                row.median_ms,
                total.median_ms / row.median_ms,
                row.max_disp_diff,
                row.publish_to_live_ms
            ),
            Err(why) => println!("{:>9}   livedepth engines: tensorrt not measured ({why})", ""),
        }
        network = Some(engine.into_network());
    }
    if !peer_ops.is_empty() {
        println!();
        println!(
            "where the time goes (PyTorch profiler, first size; the engine runs the same ATen ops):"
        );
        for (name, share) in peer_ops {
            println!("  {:>5.1}%  {name}", share * 100.0);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
