//! The fused loss kernels themselves (kernels/loss.cu, unchanged), compiled with the host C++
//! compiler against a small emulation of the CUDA execution model (tests/cuda_emulator/) and
//! compared with their CPU twin: the kernels' tiling, halos, shared-memory reuse, barriers,
//! block reductions and launch sequence are exercised without a GPU. Needs `g++` (installed by
//! scripts/setup.sh; its absence fails the tests).

mod common;
mod cuda_scenes;

use cuda_scenes::{Scene, max_rel_diff, with_loss_inputs};
use livedepth::cuda::sources;
use livedepth::cuda::twin;
use livedepth::loss::LossConfig;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes the emulator header, `harness` (a C++ file under tests/cuda_emulator/) and the
/// kernel `sources` (name, text) into `dir` and compiles them with g++; None (after printing
/// why) without g++.
fn compile_harness(dir: &Path, harness: (&str, &str), sources: &[(&str, &str)]) -> Option<PathBuf> {
    if Command::new("g++").arg("--version").output().is_err() {
        panic!(
            "g++ is needed to run the kernels under CPU emulation (scripts/setup.sh installs it)"
        );
    }
    std::fs::write(dir.join("emu.hpp"), include_str!("cuda_emulator/emu.hpp")).expect("write");
    let (harness_name, harness_text) = harness;
    std::fs::write(dir.join(harness_name), harness_text).expect("write");
    for (name, text) in sources {
        std::fs::write(dir.join(name), text).expect("write");
    }
    let exe = dir.join(harness_name.trim_end_matches(".cpp"));
    let out = Command::new("g++")
        .args(["-std=c++20", "-O1", "-pthread", "-w", "-x", "c++"])
        .arg(dir.join(harness_name))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run g++");
    assert!(
        out.status.success(),
        "the kernels do not compile as C++:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(exe)
}

/// The loss harness, built once per test.
fn build_harness(dir: &Path) -> Option<PathBuf> {
    let loss = sources::LOSS.program_text();
    compile_harness(
        dir,
        ("harness.cpp", include_str!("cuda_emulator/harness.cpp")),
        &[("kernels_loss.cu", &loss)],
    )
}

fn write_floats(f: &mut impl Write, v: &[f32]) {
    for x in v {
        f.write_all(&x.to_le_bytes()).expect("write");
    }
}

struct EmulatedOutputs {
    scalars: Vec<f32>,
    min_error: Vec<f32>,
    winner: Vec<u8>,
    grad_disparities: Vec<Vec<f32>>,
    grad_poses: Vec<f32>,
    grad_intrinsics: Vec<f32>,
}

fn run_emulated(exe: &Path, dir: &Path, sc: &Scene, config: &LossConfig) -> EmulatedOutputs {
    let (w, h, n, scales) = (sc.w, sc.h, sc.sources.len(), sc.disparities.len());
    let input = dir.join("scene.bin");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).expect("create"));
    let invert_mask: i32 = sc.invert.iter().enumerate().map(|(i, &v)| i32::from(v) << i).sum();
    for v in [w as i32, h as i32, n as i32, scales as i32, i32::from(config.automask), invert_mask]
    {
        f.write_all(&v.to_le_bytes()).expect("write");
    }
    let (min_disp, max_disp) =
        livedepth::cuda::loss_contract::disparity_range(config).expect("config");
    let [fx, fy, cx, cy] = sc.intrinsics;
    write_floats(
        &mut f,
        &[fx, fy, cx, cy, min_disp, max_disp, config.ssim_weight, config.smoothness_weight],
    );
    write_floats(&mut f, &sc.target);
    sc.sources.iter().for_each(|s| write_floats(&mut f, s));
    sc.disparities.iter().for_each(|d| write_floats(&mut f, d));
    sc.pyramid.iter().for_each(|p| write_floats(&mut f, p));
    write_floats(&mut f, &sc.poses.iter().flatten().copied().collect::<Vec<f32>>());
    write_floats(&mut f, &sc.noise);
    drop(f);
    let output = dir.join("out.bin");
    let run = Command::new(exe).arg(&input).arg(&output).output().expect("run harness");
    assert!(run.status.success(), "harness failed: {}", String::from_utf8_lossy(&run.stderr));
    let bytes = std::fs::read(&output).expect("read output");
    let all: Vec<f32> =
        bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let mut at = 0;
    let mut take = |len: usize| {
        let v = all[at..at + len].to_vec();
        at += len;
        v
    };
    let hw = w * h;
    EmulatedOutputs {
        scalars: take(12),
        min_error: take(hw),
        winner: take(hw).iter().map(|&v| v as u8).collect(),
        grad_disparities: (0..scales).map(|s| take((w >> s) * (h >> s))).collect(),
        grad_poses: take(6 * n),
        grad_intrinsics: take(4),
    }
}

fn compare(exe: &Path, dir: &Path, sc: &Scene, config: &LossConfig) {
    let expected = with_loss_inputs(sc, |i| twin::fused_loss(config, i, true)).expect("twin");
    let got = run_emulated(exe, dir, sc, config);
    let name = format!("{} (automask {})", sc.name, config.automask);
    let rel = |a: f32, b: f32| (a - b).abs() / b.abs().max(1e-12);
    eprintln!("{name}: emulated kernels total {} vs twin {}", got.scalars[0], expected.total);
    assert!(rel(got.scalars[0], expected.total) < 1e-5, "{name}: total");
    assert!(rel(got.scalars[1], expected.photometric) < 1e-5, "{name}: photometric");
    assert!(
        (got.scalars[2] - expected.smoothness).abs() <= 1e-5 * expected.smoothness.abs() + 1e-9
    );
    assert!((got.scalars[3] - expected.masked_fraction).abs() < 1e-6, "{name}: masked fraction");
    for s in 0..sc.disparities.len() {
        assert!(
            rel(got.scalars[4 + s], expected.per_scale[s].photometric) < 1e-5,
            "{name}: photometric {s}"
        );
    }
    assert_eq!(got.winner, expected.winner, "{name}: winners");
    assert!(max_rel_diff(&got.min_error, &expected.min_error) < 1e-6, "{name}: min_error");
    for s in 0..sc.disparities.len() {
        let d = max_rel_diff(&got.grad_disparities[s], &expected.grad_disparities[s]);
        eprintln!("  grad disparity scale {s}: {d:.2e}");
        assert!(d < 1e-4, "{name}: grad disparity scale {s}: {d:e}");
    }
    let poses: Vec<f32> = expected.grad_poses.iter().flatten().copied().collect();
    let d = max_rel_diff(&got.grad_poses, &poses);
    eprintln!("  grad poses: {d:.2e}");
    assert!(d < 1e-4, "{name}: grad poses {d:e}");
    let d = max_rel_diff(&got.grad_intrinsics, &expected.grad_intrinsics);
    assert!(d < 1e-4, "{name}: grad intrinsics {d:e}");
}

#[test]
fn emulated_loss_kernels_match_the_twin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(exe) = build_harness(dir.path()) else { return };
    for automask in [true, false] {
        let config = LossConfig { automask, ..Default::default() };
        // Sizes that are not multiples of the 32 x 8 tile exercise the partial blocks.
        compare(&exe, dir.path(), &cuda_scenes::random_scene(72, 20, 2, 2, 11, 0.05), &config);
        // Large translations: many warps leave the image and sample the border.
        compare(&exe, dir.path(), &cuda_scenes::random_scene(40, 24, 2, 3, 12, 2.0), &config);
    }
    compare(&exe, dir.path(), &cuda_scenes::static_scene(48, 16, 2, 13), &LossConfig::default());
    let four = LossConfig { smoothness_weight: 0.1, ..Default::default() };
    compare(&exe, dir.path(), &cuda_scenes::random_scene(32, 16, 4, 4, 14, 0.1), &four);
}

#[test]
fn emulated_loss_kernels_match_the_twin_on_real_kitchen_frames() {
    let Some(data) = common::shared("data/kitchen") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(exe) = build_harness(dir.path()) else { return };
    let config = LossConfig { max_depth: 10.0, ..Default::default() };
    let sc = cuda_scenes::kitchen_scene(&data, 50, 5, 96, 72, 3, &config).expect("kitchen frames");
    compare(&exe, dir.path(), &sc, &config);
}

/// The preprocessing and upsampling harness.
fn build_image_harness(dir: &Path) -> Option<PathBuf> {
    let preprocess = sources::PREPROCESS.program_text();
    compile_harness(
        dir,
        ("harness_image.cpp", include_str!("cuda_emulator/harness_image.cpp")),
        &[("kernels_preprocess.cu", &preprocess), ("upsample_body.cu", sources::UPSAMPLE.body)],
    )
}

fn run_image(exe: &Path, dir: &Path, mode: &str, input: &[u8]) -> Vec<f32> {
    let (i, o) = (dir.join("in.bin"), dir.join("out.bin"));
    std::fs::write(&i, input).expect("write");
    let run = Command::new(exe).arg(mode).arg(&i).arg(&o).output().expect("run");
    assert!(run.status.success(), "harness failed: {}", String::from_utf8_lossy(&run.stderr));
    std::fs::read(&o)
        .expect("read")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn emulated_preprocess_and_upsample_kernels_match_the_twins() {
    use livedepth::cuda::{Normalization, PackedFrame, PixelFormat, Resize};
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(exe) = build_image_harness(dir.path()) else { return };
    let mut rng = cuda_scenes::Rng(21);
    let norm = Normalization { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
    for format in [PixelFormat::Rgb, PixelFormat::Rgba, PixelFormat::Nv12 { uv_pitch: 72 }] {
        let (w, h) = (66, 40);
        let (pitch, len, channels, code, uv_pitch) = match format {
            PixelFormat::Rgb => (w * 3 + 2, (w * 3 + 2) * h, 3, 0, 0),
            PixelFormat::Rgba => (w * 4 + 8, (w * 4 + 8) * h, 4, 0, 0),
            PixelFormat::Nv12 { uv_pitch } => (70, 70 * h + uv_pitch * h / 2, 1, 1, uv_pitch),
        };
        let data: Vec<u8> = (0..len).map(|_| (rng.next() * 255.0) as u8).collect();
        let frame = PackedFrame { data: &data, width: w, height: h, pitch, format };
        for (dw, dh) in [(32, 12), (66, 40), (100, 50)] {
            for resize in [Resize::Bilinear, Resize::Area] {
                let mut expected = vec![0.0; 3 * dw * dh];
                twin::preprocess(&frame, dw, dh, resize, &norm, &mut expected).expect("twin");
                let mut input = Vec::new();
                let ints = [
                    code,
                    channels,
                    w,
                    h,
                    pitch,
                    uv_pitch,
                    dw,
                    dh,
                    usize::from(resize == Resize::Area),
                ];
                ints.iter().for_each(|&v| input.extend((v as i32).to_le_bytes()));
                let inv = norm.inv_std().expect("norm");
                norm.mean.iter().chain(&inv).for_each(|v| input.extend(v.to_le_bytes()));
                input.extend(&data);
                let got = run_image(&exe, dir.path(), "preprocess", &input);
                let d = got.iter().zip(&expected).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(d < 1e-5, "{format:?} {resize:?} {dw}x{dh}: {d}");
            }
        }
    }
    for &(lw, lh, hw, hh) in &[(10, 3, 80, 24), (7, 5, 28, 20), (5, 3, 13, 7)] {
        let planes = 2;
        let lo = rng.vec(lw * lh * planes, 0.0, 1.0);
        let g = rng.vec(hw * hh * planes, -1.0, 1.0);
        let mut up = vec![0.0; hw * hh * planes];
        twin::upsample_bilinear(&lo, (lw, lh), &mut up, (hw, hh), planes).expect("twin");
        let mut adj = vec![0.0; lw * lh * planes];
        twin::upsample_bilinear_adjoint(&g, (hw, hh), &mut adj, (lw, lh), planes, false)
            .expect("twin");
        let mut input = Vec::new();
        [lw, lh, hw, hh, planes].iter().for_each(|&v| input.extend((v as i32).to_le_bytes()));
        lo.iter().chain(&g).for_each(|v| input.extend(v.to_le_bytes()));
        let got = run_image(&exe, dir.path(), "upsample", &input);
        let (hi, ad) = got.split_at(hw * hh * planes);
        assert_eq!(hi, up.as_slice(), "upsample {lw}x{lh}");
        assert!(max_rel_diff(ad, &adj) < 1e-6, "adjoint {lw}x{lh}");
    }
}
