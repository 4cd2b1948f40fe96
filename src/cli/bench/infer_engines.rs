//! The engine rows of `bench infer`: livedepth's own onnxruntime engine (the `ort` crate over
//! our ONNX export, as `--engine onnxruntime` serves) and TensorRT engine (our shim, as
//! `--engine tensorrt` serves, on a GPU with TensorRT) timed on the same frame as the libtorch
//! engine, and the publish-to-live latency of adapted weights for each engine (publication →
//! first frame served with them, frames served meanwhile).

use livedepth::adapt::weights_exchange;
use livedepth::engine::{DepthEngine, OrtDepthEngine, OrtOptions};
use livedepth::error::Error;
use livedepth::model::network::DepthNetwork;
use std::time::{Duration, Instant};

/// Times and figures of one engine at one size.
pub struct EngineRow {
    /// Median milliseconds per forward.
    pub median_ms: f64,
    /// Largest disparity difference from the libtorch engine's.
    pub max_disp_diff: f32,
    /// Publication of adapted weights → first frame served with them, in milliseconds.
    pub publish_to_live_ms: f64,
}

/// A copy of `network`'s weights in a new network on the same device.
pub fn copy_of(network: &DepthNetwork) -> livedepth::Result<DepthNetwork> {
    let mut copy = DepthNetwork::new(network.arch(), network.device());
    copy.copy_weights_from(network)?;
    Ok(copy)
}

/// Milliseconds from publishing `weights` to the first frame `engine` serves with them, serving
/// frames of `input` (prepared per the engine's normalisation) in between, as the live path does.
pub fn publish_to_live(
    engine: &mut dyn DepthEngine,
    weights: &DepthNetwork,
    input: &[f32],
) -> livedepth::Result<f64> {
    let (w, h) = engine.input_size();
    let mut out = vec![0f32; (w * h) as usize];
    let (mut publisher, receiver) = weights_exchange();
    let start = Instant::now();
    publisher.publish(weights)?;
    while !engine.refresh_weights(&receiver)? {
        if start.elapsed() > Duration::from_secs(120) {
            return Err(Error::Other(format!(
                "the {} engine did not install published weights within 120 s",
                engine.backend()
            )));
        }
        engine.forward_planar(input, &mut out)?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// livedepth's onnxruntime engine on `network`'s weights at `w`×`h` with `threads` intra-op
/// threads, on the RGB-in-\[0, 1\] planar input `unit_rgb`, against the libtorch engine's
/// disparity `torch_disp`.
pub fn onnxruntime_row(
    network: &DepthNetwork,
    (w, h): (u32, u32),
    unit_rgb: &[f32],
    runs: (usize, usize),
    threads: usize,
    torch_disp: &[f32],
) -> livedepth::Result<EngineRow> {
    let options = OrtOptions { threads, ..OrtOptions::default() };
    let mut engine = OrtDepthEngine::new(copy_of(network)?, w, h, options)?;
    engine_row(&mut engine, network, unit_rgb, runs, torch_disp)
}

/// livedepth's TensorRT engine (FP16, refittable, the default engine cache) on `network`'s
/// weights, which must be on a CUDA device; otherwise the error says why it was not measured.
#[cfg(feature = "tensorrt")]
pub fn tensorrt_row(
    network: &DepthNetwork,
    (w, h): (u32, u32),
    unit_rgb: &[f32],
    runs: (usize, usize),
    torch_disp: &[f32],
) -> livedepth::Result<EngineRow> {
    use livedepth::engine::{TensorRtDepthEngine, TensorRtOptions};
    if let Some(why) = livedepth::engine::select::tensorrt_status() {
        return Err(Error::Other(why));
    }
    if !network.device().is_cuda() {
        return Err(Error::Other(
            "TensorRT serves on a CUDA device; this run is on the CPU".into(),
        ));
    }
    let options = TensorRtOptions::default();
    let mut engine = TensorRtDepthEngine::new(copy_of(network)?, w, h, &options)?;
    engine_row(&mut engine, network, unit_rgb, runs, torch_disp)
}

/// Why `bench infer` has no TensorRT row in this build.
#[cfg(not(feature = "tensorrt"))]
pub fn tensorrt_row(
    _: &DepthNetwork,
    _: (u32, u32),
    _: &[f32],
    _: (usize, usize),
    _: &[f32],
) -> livedepth::Result<EngineRow> {
    Err(Error::Other(livedepth::engine::select::tensorrt_status().unwrap_or_default()))
}

/// Median time of `engine` on `unit_rgb` over `iters` runs after `warmup`, its largest
/// disparity difference from `torch_disp`, and its publish-to-live latency for `network`.
fn engine_row(
    engine: &mut dyn DepthEngine,
    network: &DepthNetwork,
    unit_rgb: &[f32],
    (warmup, iters): (usize, usize),
    torch_disp: &[f32],
) -> livedepth::Result<EngineRow> {
    let (w, h) = engine.input_size();
    let mut out = vec![0f32; (w * h) as usize];
    for _ in 0..warmup {
        engine.forward_planar(unit_rgb, &mut out)?;
    }
    let mut ms = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let start = Instant::now();
        engine.forward_planar(unit_rgb, &mut out)?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let max_disp_diff = if out.len() == torch_disp.len() {
        out.iter().zip(torch_disp).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
    } else {
        f32::INFINITY
    };
    let publish_to_live_ms = publish_to_live(engine, network, unit_rgb)?;
    Ok(EngineRow { median_ms: ms[ms.len() / 2], max_disp_diff, publish_to_live_ms })
}
