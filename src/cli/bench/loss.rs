//! `livedepth bench loss` times our CPU loss forward + backward at network
//! resolution and, in the same run, the PyTorch peer (scripts/bench/loss_peer.py: the same
//! formulation composed of PyTorch ops with autograd, on the same inputs and thread count),
//! printing both timings, both losses and the speed ratio.

use clap::Args as ClapArgs;
use livedepth::loss::{LossConfig, LossInputs, Pose6, SelfSupervisedLoss, probe, target_pyramid};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(ClapArgs, Debug)]
pub struct LossBenchArgs {
    #[arg(long, default_value_t = 640)]
    pub width: usize,
    #[arg(long, default_value_t = 192)]
    pub height: usize,
    #[arg(long, default_value_t = 2)]
    pub sources: usize,
    #[arg(long, default_value_t = 4)]
    pub scales: usize,
    /// Timed iterations (after 3 warm-up iterations).
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Python with torch and numpy for the peer (default: $LIVEDEPTH_PYTHON, else the setup script's venv, else python3).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Skip the PyTorch peer.
    #[arg(long)]
    pub no_peer: bool,
    /// Also save the benchmark inputs as a probe input file (for `livedepth loss` or the peer).
    #[arg(long)]
    pub save_inputs: Option<PathBuf>,
    /// `cpu` (our Rust loss vs PyTorch CPU autograd) or `cuda` (our fused kernels vs PyTorch CUDA
    /// autograd, at 640x192 and 1024x320, with achieved bandwidth; needs `--features cuda` and
    /// a GPU).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Deterministic pseudo-random values in [0, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / ((1u64 << 24) as f32)
    }
}

/// A textured image of a scene seen with an offset (planar 3 x h x w).
fn scene(w: usize, h: usize, dx: f32, rng: &mut Lcg) -> Vec<f32> {
    let mut img = vec![0f32; 3 * w * h];
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let (xf, yf) = (x as f32 + dx, y as f32);
                let v = 0.5
                    + 0.2 * (0.11 * xf + c as f32).sin() * (0.07 * yf).cos()
                    + 0.15 * (0.03 * (xf + 2.0 * yf) + 1.3 * c as f32).sin()
                    + 0.1 * (0.5 * xf - 0.3 * yf).sin();
                img[c * w * h + y * w + x] = (v + 0.03 * (rng.next() - 0.5)).clamp(0.0, 1.0);
            }
        }
    }
    img
}

pub fn bench_loss(a: LossBenchArgs) -> livedepth::Result<()> {
    match a.device.as_str() {
        "cpu" => {}
        "cuda" => return bench_loss_cuda(&a),
        other => {
            return Err(livedepth::Error::Other(format!(
                "bench loss --device {other}: expected cpu or cuda"
            )));
        }
    }
    let (w, h, n, scales) = (a.width, a.height, a.sources, a.scales);
    if n == 0 || scales == 0 || a.iters == 0 {
        return Err(livedepth::Error::Other(
            "bench loss: --sources, --scales and --iters must be at least 1".into(),
        ));
    }
    let mut rng = Lcg(7);
    let target = scene(w, h, 0.0, &mut rng);
    let sources: Vec<Vec<f32>> =
        (0..n).map(|i| scene(w, h, 3.0 * (i as f32 - 0.5), &mut rng)).collect();
    let disparities: Vec<Vec<f32>> = (0..scales)
        .map(|s| {
            let (sw, sh) = (w >> s, h >> s);
            (0..sw * sh)
                .map(|i| {
                    let (x, y) = ((i % sw) as f32 / sw as f32, (i / sw) as f32 / sh as f32);
                    0.02 + 0.25 * (0.5 + 0.5 * (4.0 * x + 3.0 * y).sin()) * (0.3 + 0.7 * y)
                })
                .collect()
        })
        .collect();
    let pyramid = target_pyramid(&target, w, h, scales);
    let poses: Vec<Pose6> = (0..n)
        .map(|i| Pose6 {
            axis_angle: [0.004, -0.01 + 0.005 * i as f32, 0.002],
            translation: [0.05 - 0.1 * (i % 2) as f32, 0.01, 0.4],
            invert: i % 2 == 0,
        })
        .collect();
    let intrinsics = [0.58 * w as f32, 1.92 * h as f32, 0.5 * w as f32, 0.5 * h as f32];
    let noise: Vec<f32> = (0..n * w * h).map(|_| 2e-5 * (rng.next() - 0.5)).collect();
    let source_refs: Vec<&[f32]> = sources.iter().map(Vec::as_slice).collect();
    let disp_refs: Vec<&[f32]> = disparities.iter().map(Vec::as_slice).collect();
    let pyramid_refs: Vec<&[f32]> = pyramid.iter().map(Vec::as_slice).collect();
    let inputs = LossInputs {
        width: w,
        height: h,
        target: &target,
        sources: &source_refs,
        disparities: &disp_refs,
        target_pyramid: &pyramid_refs,
        poses: &poses,
        intrinsics,
        tie_break_noise: Some(&noise),
    };
    let config = LossConfig::default();
    let threads = rayon::current_num_threads();
    if let Some(path) = &a.save_inputs {
        probe::write_probe_inputs(path, &inputs, &config)?;
    }
    // The peer runs first, on an otherwise idle process, then ours.
    let peer = if a.no_peer {
        None
    } else {
        Some(run_peer(a.python.clone(), &inputs, &config, a.iters, threads)?)
    };
    let mut loss = SelfSupervisedLoss::new(config);
    for _ in 0..3 {
        loss.forward_backward(&inputs)?;
    }
    let mut times = Vec::with_capacity(a.iters);
    for _ in 0..a.iters {
        let start = Instant::now();
        loss.forward_backward(&inputs)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let ours_loss = loss.forward_backward(&inputs)?.total;
    times.sort_by(f64::total_cmp);
    let ours_ms = times[times.len() / 2];
    println!(
        "loss forward+backward at {w}x{h}, {n} sources, {scales} scales, {threads} threads, {} iterations",
        a.iters
    );
    println!(
        "  livedepth (Rust, CPU): median {ours_ms:.2} ms (min {:.2}), loss {ours_loss:.7}",
        times[0]
    );
    match peer {
        None => {}
        Some(Err(reason)) => println!("  PyTorch peer not run: {reason}"),
        Some(Ok(report)) => {
            let peer_ms = report["median_ms"].as_f64().unwrap_or(f64::NAN);
            let peer_loss = report["loss"].as_f64().unwrap_or(f64::NAN);
            println!(
                "  PyTorch {} autograd (CPU, {} threads): median {peer_ms:.2} ms, loss {peer_loss:.7}",
                report["torch"].as_str().unwrap_or("?"),
                report["threads"]
            );
            println!(
                "  losses differ by {:.2e}; livedepth is {:.1}x faster",
                (f64::from(ours_loss) - peer_loss).abs(),
                peer_ms / ours_ms
            );
        }
    }
    Ok(())
}

/// Runs the PyTorch peer on `inputs`: its JSON report, or why it could not run.
fn run_peer(
    python: Option<PathBuf>,
    inputs: &LossInputs,
    config: &LossConfig,
    iters: usize,
    threads: usize,
) -> livedepth::Result<Result<serde_json::Value, String>> {
    let python = livedepth::python::torch_python(python);
    let script = peer_script();
    let npz = std::env::temp_dir().join(format!("livedepth-bench-loss-{}.npz", std::process::id()));
    probe::write_probe_inputs(&npz, inputs, config)?;
    let output = Command::new(&python)
        .arg(&script)
        .arg("--inputs")
        .arg(&npz)
        .args(["--iters", &iters.to_string(), "--threads", &threads.to_string()])
        .output();
    let _ = std::fs::remove_file(&npz);
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            return Ok(Err(format!(
                "{} failed ({}): {}",
                script.display(),
                o.status,
                stderr.lines().last().unwrap_or("")
            )));
        }
        Err(e) => return Ok(Err(format!("{} {}: {e}", python.display(), script.display()))),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("the peer printed no JSON result: {stdout}")))
}

/// scripts/bench/loss_peer.py, from the current folder or the source tree.
fn peer_script() -> PathBuf {
    let relative = Path::new("scripts/bench/loss_peer.py");
    if relative.exists() {
        relative.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
    }
}

#[cfg(feature = "cuda")]
fn bench_loss_cuda(a: &LossBenchArgs) -> livedepth::Result<()> {
    use livedepth::cuda::bench::{BenchLossOptions, bench_loss, bench_preprocess};
    let mut options = BenchLossOptions {
        sources: a.sources,
        scales: a.scales,
        iterations: a.iters,
        ..BenchLossOptions::default()
    };
    if let Some(python) = &a.python {
        options.python = Some(python.clone());
    }
    if a.no_peer {
        options.python = None;
    }
    println!("{}", bench_loss(&options)?);
    println!("{}", bench_preprocess((1920, 1080), (640, 192), a.iters.max(10), 0)?);
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn bench_loss_cuda(_: &LossBenchArgs) -> livedepth::Result<()> {
    Err(livedepth::Error::Other(
        "bench loss --device cuda: this binary was built without CUDA support; rebuild with \
         `cargo build --release --features cuda`"
            .into(),
    ))
}
