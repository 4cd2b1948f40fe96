//! Where the adaptation loop evaluates the self-supervised loss: [`LossBackend::Cpu`] copies
//! the disparities and poses to the host and runs our CPU loss (the reference), while
//! [`LossBackend::Cuda`] (feature `cuda`, chosen when the student runs on a CUDA device) runs
//! our fused kernels on libtorch's device tensors: no host copies on the hot path except one
//! small read per step (loss scalars, the live sample's translation and masked fraction for the
//! stationary rule, a gradient finiteness flag, the distillation mask's coverage).
//!
//! The choice is automatic ([`choose_loss_backend`]); `LIVEDEPTH_ADAPT_LOSS=cpu|cuda|auto`
//! overrides it. Asking for CUDA where it cannot run (a CPU student, a build without the `cuda`
//! feature, kernels that do not load) is an error naming the cause: there is no silent fallback.
//!
//! The GPU path draws its auto-mask tie-break noise on the device from a counter-based hash of
//! (seed, stream, pixel index) ([`tie_break_noise_tensor`], twin [`tie_break_noise_value`]), so
//! nothing is uploaded per step and every run with one seed draws the same numbers.

use super::AdaptError;
use super::step::StepOutcome;
use crate::loss::LossConfig;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Environment variable overriding the loss backend: `cpu`, `cuda` or `auto` (the default).
pub const LOSS_BACKEND_ENV: &str = "LIVEDEPTH_ADAPT_LOSS";

/// Which loss implementation a step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossBackendKind {
    /// Our CPU loss on host copies of the network outputs.
    Cpu,
    /// Our fused CUDA kernels on the device tensors.
    Cuda,
}

impl LossBackendKind {
    pub fn name(self) -> &'static str {
        match self {
            LossBackendKind::Cpu => "cpu",
            LossBackendKind::Cuda => "cuda",
        }
    }
}

impl std::fmt::Display for LossBackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The backend for a student on `device`: CUDA kernels when the student is on CUDA and they
/// were built (`cuda_built`), else the CPU loss; `request` (the value of
/// [`LOSS_BACKEND_ENV`]) forces one, and forcing CUDA where it cannot run is an error.
pub fn choose_loss_backend(
    device: Device,
    cuda_built: bool,
    request: Option<&str>,
) -> Result<LossBackendKind, AdaptError> {
    let on_cuda = matches!(device, Device::Cuda(_));
    match request.map(str::trim) {
        None | Some("") | Some("auto") => {
            Ok(if on_cuda && cuda_built { LossBackendKind::Cuda } else { LossBackendKind::Cpu })
        }
        Some("cpu") => Ok(LossBackendKind::Cpu),
        Some("cuda") if !cuda_built => Err(AdaptError::config(
            LOSS_BACKEND_ENV,
            "cpu or auto: this binary was built without the `cuda` feature",
            "cuda",
        )),
        Some("cuda") if !on_cuda => Err(AdaptError::config(
            LOSS_BACKEND_ENV,
            "cpu or auto: the networks run on the CPU (libtorch sees no CUDA device)",
            "cuda",
        )),
        Some("cuda") => Ok(LossBackendKind::Cuda),
        Some(other) => Err(AdaptError::config(LOSS_BACKEND_ENV, "cpu, cuda or auto", other)),
    }
}

/// The loss implementation of an [`super::Adapter`].
pub enum LossBackend {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda(Box<DeviceLoss>),
}

impl std::fmt::Debug for LossBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LossBackend({})", self.kind())
    }
}

impl LossBackend {
    /// The backend for a student on `device` (see [`choose_loss_backend`]; reads
    /// [`LOSS_BACKEND_ENV`]). `config` must already be validated.
    pub fn new(device: Device, config: &LossConfig) -> Result<Self, AdaptError> {
        let request = std::env::var(LOSS_BACKEND_ENV).ok();
        Self::requested(device, config, request.as_deref())
    }

    /// The backend `request` names (`cpu`, `cuda`, `auto`; None is `auto`), as
    /// [`choose_loss_backend`] decides it for a student on `device`.
    pub fn requested(
        device: Device,
        config: &LossConfig,
        request: Option<&str>,
    ) -> Result<Self, AdaptError> {
        match choose_loss_backend(device, cfg!(feature = "cuda"), request)? {
            LossBackendKind::Cpu => Ok(LossBackend::Cpu),
            LossBackendKind::Cuda => Self::cuda(device, config),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda(device: Device, config: &LossConfig) -> Result<Self, AdaptError> {
        let Device::Cuda(ordinal) = device else {
            return Err(AdaptError::Cuda(format!("the student is on {device:?}, not on CUDA")));
        };
        Ok(LossBackend::Cuda(Box::new(DeviceLoss::new(ordinal, config)?)))
    }

    #[cfg(not(feature = "cuda"))]
    fn cuda(_device: Device, _config: &LossConfig) -> Result<Self, AdaptError> {
        Err(AdaptError::Cuda("this binary was built without the `cuda` feature".into()))
    }

    pub fn kind(&self) -> LossBackendKind {
        match self {
            LossBackend::Cpu => LossBackendKind::Cpu,
            #[cfg(feature = "cuda")]
            LossBackend::Cuda(_) => LossBackendKind::Cuda,
        }
    }
}

/// lowbias32, a 32-bit integer finaliser (Wellons' hash prospector), on u32.
fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// The per-call key of the noise, from the loop's seed and a stream counter.
fn noise_key(seed: u64, stream: u64) -> u32 {
    let seed_key = hash32(seed as u32 ^ hash32((seed >> 32) as u32));
    hash32(stream as u32 ^ hash32((stream >> 32) as u32 ^ seed_key))
}

/// Box–Muller on two 32-bit hashes (in f64, rounded to f32 at the end).
fn gaussian_from_hashes(a: u32, b: u32, std: f32) -> f32 {
    let u1 = (f64::from(a) + 1.0) / 4_294_967_296.0;
    let u2 = f64::from(b) / 4_294_967_296.0;
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * f64::from(std)) as f32
}

/// Element `index` of the tie-break noise of (seed, stream): N(0, std²), the CPU twin of
/// [`tie_break_noise_tensor`].
pub fn tie_break_noise_value(std: f32, seed: u64, stream: u64, index: u32) -> f32 {
    let key = noise_key(seed, stream);
    let a = hash32(key ^ hash32(index.wrapping_mul(2)));
    let b = hash32(key ^ hash32(index.wrapping_mul(2).wrapping_add(1)));
    gaussian_from_hashes(a, b, std)
}

/// (x · c) mod 2³² for int64 tensors holding values in [0, 2³²), without int64 overflow.
fn mul32(x: &Tensor, c: u32) -> Result<Tensor, tch::TchError> {
    let c = i64::from(c);
    let low = x.f_bitwise_and(0xFFFF)?.f_mul_scalar(c)?;
    let high = x.f_bitwise_right_shift_tensor_scalar(16)?.f_mul_scalar(c)?.f_bitwise_and(0xFFFF)?;
    low.f_add(&high.f_bitwise_left_shift_tensor_scalar(16)?)?.f_bitwise_and(0xFFFF_FFFFi64)
}

/// [`hash32`] on an int64 tensor of values in [0, 2³²).
fn hash32_tensor(x: &Tensor) -> Result<Tensor, tch::TchError> {
    let x = x.f_bitwise_xor_tensor(&x.f_bitwise_right_shift_tensor_scalar(16)?)?;
    let x = mul32(&x, 0x7feb_352d)?;
    let x = x.f_bitwise_xor_tensor(&x.f_bitwise_right_shift_tensor_scalar(15)?)?;
    let x = mul32(&x, 0x846c_a68b)?;
    x.f_bitwise_xor_tensor(&x.f_bitwise_right_shift_tensor_scalar(16)?)
}

/// `len` samples of N(0, std²) for (seed, stream), computed on `device` (float32, 1-D): element
/// n equals [`tie_break_noise_value`]`(std, seed, stream, n)` up to the last bits of `ln`/`cos`.
pub fn tie_break_noise_tensor(
    len: usize,
    std: f32,
    seed: u64,
    stream: u64,
    device: Device,
) -> Result<Tensor, AdaptError> {
    let key = i64::from(noise_key(seed, stream));
    let index = Tensor::f_arange(len as i64, (Kind::Int64, device))?.f_mul_scalar(2)?;
    let draw = |offset: i64| -> Result<Tensor, tch::TchError> {
        hash32_tensor(&hash32_tensor(&index.f_add_scalar(offset)?)?.f_bitwise_xor(key)?)
    };
    let u1 = draw(0)?.f_to_kind(Kind::Double)?.f_add_scalar(1.0)? / 4_294_967_296.0;
    let u2 = draw(1)?.f_to_kind(Kind::Double)? / 4_294_967_296.0;
    let radius = (u1.f_log()? * -2.0).f_sqrt()?;
    let noise = radius * (u2 * std::f64::consts::TAU).f_cos()? * f64::from(std);
    Ok(noise.f_to_kind(Kind::Float)?)
}

/// One batch of network outputs on the device, as the trainer has them.
pub struct DeviceBatch<'a> {
    /// Normalised network inputs [B, 3, H, W]; `(x · std + mean)` recovers [0, 1].
    pub x_target: &'a Tensor,
    pub x_prev: &'a Tensor,
    pub x_next: &'a Tensor,
    pub normalisation: (f32, f32),
    /// Disparity per scale, [B, 1, H >> s, W >> s], with autograd.
    pub disps: &'a [Tensor],
    /// Pose outputs for the pairs (prev, target) × B then (target, next) × B, 3 values each.
    pub rot: &'a Tensor,
    pub trans: &'a Tensor,
    /// Each sample's intrinsics (fx, fy, cx, cy) at the network input size.
    pub intrinsics: &'a [[f32; 4]],
    /// Each sample's measured rotations, where its refinement starts (`Triplet::rotation_prior`).
    pub rotation_priors: &'a [Option<[[f32; 3]; 2]>],
    /// Teacher disparity at scale 0 [B, 1, H, W] and the consistency threshold, when the
    /// multi-view distillation mask is on.
    pub multiview: Option<(&'a Tensor, f32)>,
    /// Noise stream base: sample i uses stream `attempt · 1024 + i` (as the CPU path).
    pub attempt: u64,
    pub stationary_masked_fraction: f32,
    pub stationary_translation: f32,
    /// Test-time pose refinement per sample (0 iterations: off), as on the CPU path: the loss
    /// then uses the refined poses and the pose network is pulled toward them.
    pub pose_refinement: crate::adapt::pose_refine::Refinement,
    /// Measure the live sample's translation lengths at the photometric optimum along the
    /// refined directions (for the metric scale and the triplet spacing).
    pub measure_live_length: bool,
}

/// What the trainer needs from the loss of one batch.
pub struct DeviceTerms {
    /// Backward this: Σ output · d(mean loss)/d output (gradients detached).
    pub surrogate: Tensor,
    /// Pseudo-depth supervision mask [B, 1, H, W] (ones without the multi-view filter).
    pub distill_mask: Tensor,
    pub distill_fraction: f64,
    /// Σ over the batch of total, photometric and smoothness.
    pub sums: (f64, f64, f64),
    /// Auto-masked fraction of the live (first) sample.
    pub live_masked_fraction: f64,
    /// A rejection or stationary skip, decided as the CPU path decides it.
    pub verdict: Option<StepOutcome>,
    /// The live (first) sample's pose refinement, when refinement is on.
    pub live_refinement: Option<super::pose_refine::RefinedPoses>,
    /// The live sample's translation lengths, when `measure_live_length` asked for them.
    pub live_lengths: Option<[f32; 2]>,
}

impl LossBackend {
    /// The batch's loss terms computed on the device (CUDA backend), or None for the CPU
    /// backend (the trainer then runs the CPU loss on host copies).
    pub fn device_terms(&mut self, batch: &DeviceBatch) -> Result<Option<DeviceTerms>, AdaptError> {
        match self {
            LossBackend::Cpu => {
                let _ = batch;
                Ok(None)
            }
            #[cfg(feature = "cuda")]
            LossBackend::Cuda(loss) => loss.batch_terms(batch).map(Some),
        }
    }
}

#[cfg(feature = "cuda")]
pub use device::DeviceLoss;

/// Values per sample in the CUDA path's host read: the kernels' twelve loss scalars (total,
/// photometric, smoothness, masked fraction, photometric per scale [4], smoothness per scale [4]).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
const SCALARS_PER_SAMPLE: usize = 12;

/// What the trainer takes from the CUDA path's one host read of a step.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
#[derive(Clone, Debug, PartialEq)]
struct StepSummary {
    sums: (f64, f64, f64),
    live_masked_fraction: f64,
    distill_fraction: f64,
    verdict: Option<StepOutcome>,
}

/// Reads the CUDA path's step summary `host` = [batch × 12 loss scalars, the live sample's two
/// translation norms, the count of non-finite gradient values, the distillation mask coverage]
/// and decides as the CPU path does: a non-finite live loss rejects, then the stationary rule
/// (live sample mostly auto-masked, or both translations short) skips, then a non-finite loss of
/// a replayed sample or any non-finite gradient rejects.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn summarise_step(
    host: &[f32],
    batch: usize,
    stationary_masked_fraction: f32,
    stationary_translation: f32,
) -> Result<StepSummary, AdaptError> {
    let expected = SCALARS_PER_SAMPLE * batch + 4;
    if batch == 0 || host.len() != expected {
        return Err(AdaptError::Frame(format!(
            "CUDA step summary holds {} values, expected {expected} for a batch of {batch}",
            host.len()
        )));
    }
    let row = |i: usize| &host[SCALARS_PER_SAMPLE * i..SCALARS_PER_SAMPLE * (i + 1)];
    let tail = &host[SCALARS_PER_SAMPLE * batch..];
    let (norms, bad_gradients, coverage) = ([tail[0], tail[1]], tail[2], tail[3]);
    let mut sums = (0.0, 0.0, 0.0);
    for i in 0..batch {
        let r = row(i);
        sums.0 += f64::from(r[0]);
        sums.1 += f64::from(r[1]);
        sums.2 += f64::from(r[2]);
    }
    let live_masked = row(0)[3];
    let moving = norms.iter().any(|&t| t >= stationary_translation);
    let finite = |i: usize| row(i)[0].is_finite();
    let verdict = if !finite(0) {
        Some(StepOutcome::Rejected("non-finite loss".into()))
    } else if live_masked > stationary_masked_fraction || !moving {
        Some(StepOutcome::SkippedStationary)
    } else if !(1..batch).all(finite) {
        Some(StepOutcome::Rejected("non-finite loss".into()))
    } else if bad_gradients != 0.0 {
        Some(StepOutcome::Rejected("non-finite loss gradient".into()))
    } else {
        None
    };
    Ok(StepSummary {
        sums,
        live_masked_fraction: f64::from(live_masked),
        distill_fraction: f64::from(coverage),
        verdict,
    })
}

#[cfg(feature = "cuda")]
mod device;

#[cfg(test)]
mod tests {
    use super::*;

    /// A step summary of `rows` (total, masked fraction) with the given tail values.
    fn host(rows: &[(f32, f32)], norms: [f32; 2], bad: f32, coverage: f32) -> Vec<f32> {
        let mut out = Vec::new();
        for &(total, masked) in rows {
            let mut row = [0f32; SCALARS_PER_SAMPLE];
            row[0] = total;
            row[1] = 0.9 * total;
            row[2] = 0.1 * total;
            row[3] = masked;
            out.extend(row);
        }
        out.extend([norms[0], norms[1], bad, coverage]);
        out
    }

    #[test]
    fn step_summary_decides_like_the_cpu_path() {
        let decide = |h: &[f32], b| summarise_step(h, b, 0.9, 1e-3).unwrap();
        let ok = decide(&host(&[(2.0, 0.3), (4.0, 0.5)], [0.0, 0.01], 0.0, 0.25), 2);
        assert_eq!(ok.verdict, None);
        assert!((ok.sums.0 - 6.0).abs() < 1e-6 && (ok.sums.1 - 5.4).abs() < 1e-5);
        assert!((ok.live_masked_fraction - 0.3).abs() < 1e-6);
        assert!((ok.distill_fraction - 0.25).abs() < 1e-6);
        let rejected = |v: &Option<StepOutcome>, what: &str| matches!(v, Some(StepOutcome::Rejected(r)) if r == what);
        // A non-finite live loss is rejected before the stationary rule looks at it.
        let s = decide(&host(&[(f32::NAN, 0.99), (1.0, 0.0)], [0.0, 0.0], 0.0, 0.0), 2);
        assert!(rejected(&s.verdict, "non-finite loss"), "{s:?}");
        // Stationary: mostly auto-masked, or both translations short; it wins over a bad replay.
        let s = decide(&host(&[(1.0, 0.95), (f32::NAN, 0.0)], [1.0, 1.0], 0.0, 0.0), 2);
        assert_eq!(s.verdict, Some(StepOutcome::SkippedStationary));
        let s = decide(&host(&[(1.0, 0.1)], [1e-4, 5e-4], 0.0, 0.0), 1);
        assert_eq!(s.verdict, Some(StepOutcome::SkippedStationary));
        let s = decide(&host(&[(1.0, 0.1), (f32::INFINITY, 0.1)], [1.0, 0.0], 0.0, 0.0), 2);
        assert!(rejected(&s.verdict, "non-finite loss"), "{s:?}");
        let s = decide(&host(&[(1.0, 0.1)], [1.0, 0.0], 3.0, 0.0), 1);
        assert!(rejected(&s.verdict, "non-finite loss gradient"), "{s:?}");
        // A summary of the wrong length is an error naming both sizes.
        let e = summarise_step(&[0.0; 5], 1, 0.9, 1e-3).unwrap_err().to_string();
        assert!(e.contains('5') && e.contains("16"), "{e}");
    }

    #[test]
    fn hash32_tensor_matches_the_scalar_hash() {
        let values: Vec<i64> = [0u32, 1, 2, 0xFFFF, 0x1_0000, 0xDEAD_BEEF, u32::MAX]
            .iter()
            .map(|&v| i64::from(v))
            .collect();
        let t = hash32_tensor(&Tensor::from_slice(&values)).unwrap();
        let got: Vec<i64> = Vec::<i64>::try_from(t).unwrap();
        for (v, g) in values.iter().zip(got) {
            assert_eq!(g, i64::from(hash32(*v as u32)), "hash of {v:#x}");
        }
    }
}
