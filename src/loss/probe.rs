//! The loss file probe behind `livedepth loss`: reads one target frame's inputs from an npz
//! file, runs the loss forward and backward, and writes every output to an npz file (atomically:
//! temporary file, fsync, rename). Array names and shapes are documented in the README (Loss probe).

use super::{
    LossConfig, LossError, LossInputs, LossOutputs, Pose6, SelfSupervisedLoss, target_pyramid,
};
use npyz::WriterBuilder;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

/// One array of the input file, widened to f64.
struct Array {
    shape: Vec<usize>,
    data: Vec<f64>,
}

fn array_error(path: &Path, name: &str, reason: impl std::fmt::Display) -> LossError {
    LossError::File { path: path.to_path_buf(), reason: format!("array `{name}`: {reason}") }
}

/// The input npz file, read array by array.
struct InputFile {
    path: PathBuf,
    archive: npyz::npz::NpzArchive<BufReader<File>>,
}

impl InputFile {
    fn open(path: &Path) -> Result<Self, LossError> {
        let archive = npyz::npz::NpzArchive::open(path).map_err(|e| LossError::File {
            path: path.to_path_buf(),
            reason: format!("not a readable npz archive ({e})"),
        })?;
        Ok(Self { path: path.to_path_buf(), archive })
    }

    fn error(&self, name: &str, reason: impl std::fmt::Display) -> LossError {
        array_error(&self.path, name, reason)
    }

    /// The array `name` if present, as f64 (float, integer and bool dtypes).
    fn optional(&mut self, name: &str) -> Result<Option<Array>, LossError> {
        let path = self.path.clone();
        let file = match self.archive.by_name(name) {
            Ok(Some(file)) => file,
            Ok(None) => return Ok(None),
            Err(e) => return Err(array_error(&path, name, format!("unreadable ({e})"))),
        };
        let shape: Vec<usize> = file.shape().iter().map(|&d| d as usize).collect();
        let dtype = match file.dtype() {
            npyz::DType::Plain(ts) => ts.to_string(),
            other => format!("{other:?}"),
        };
        let read = match dtype.trim_start_matches(['<', '|', '=']) {
            "f4" => file.into_vec::<f32>().map(|v| v.into_iter().map(f64::from).collect()),
            "f8" => file.into_vec::<f64>(),
            "i4" => file.into_vec::<i32>().map(|v| v.into_iter().map(f64::from).collect()),
            "i8" => file.into_vec::<i64>().map(|v| v.into_iter().map(|x| x as f64).collect()),
            "u1" => file.into_vec::<u8>().map(|v| v.into_iter().map(f64::from).collect()),
            "u8" => file.into_vec::<u64>().map(|v| v.into_iter().map(|x| x as f64).collect()),
            "b1" => file
                .into_vec::<bool>()
                .map(|v| v.into_iter().map(|b| f64::from(u8::from(b))).collect()),
            _ => {
                return Err(array_error(
                    &path,
                    name,
                    format!(
                        "dtype {dtype} is not supported (expected float32/64, int32/64, uint8/64 or bool)"
                    ),
                ));
            }
        };
        let data = read.map_err(|e| array_error(&path, name, format!("unreadable data ({e})")))?;
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(array_error(&path, name, format!("non-finite value at flat index {i}")));
        }
        Ok(Some(Array { shape, data }))
    }

    fn required(&mut self, name: &str) -> Result<Array, LossError> {
        self.optional(name)?.ok_or_else(|| self.error(name, "missing"))
    }

    /// Checks the shape after dropping leading singleton dimensions beyond `expected.len()`.
    fn check_shape(&self, name: &str, array: &Array, expected: &[usize]) -> Result<(), LossError> {
        let mut shape = array.shape.as_slice();
        while shape.len() > expected.len() && shape[0] == 1 {
            shape = &shape[1..];
        }
        if shape != expected {
            return Err(
                self.error(name, format!("expected shape {expected:?}, got {:?}", array.shape))
            );
        }
        Ok(())
    }

    fn scalar(&mut self, name: &str) -> Result<Option<f64>, LossError> {
        match self.optional(name)? {
            None => Ok(None),
            Some(a) if a.data.len() == 1 => Ok(Some(a.data[0])),
            Some(a) => Err(self.error(name, format!("expected a scalar, got shape {:?}", a.shape))),
        }
    }
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// What the probe computed, for the command line to print.
#[derive(Debug, Clone)]
pub struct ProbeSummary {
    pub width: usize,
    pub height: usize,
    pub sources: usize,
    pub scales: usize,
    pub total: f32,
    pub photometric: f32,
    pub smoothness: f32,
    pub masked_fraction: f32,
}

/// Reads the inputs from `inputs` (npz), runs the loss with gradients and writes the outputs to
/// `out` (npz, atomically).
pub fn run_probe(inputs: &Path, out: &Path) -> Result<ProbeSummary, LossError> {
    let mut file = InputFile::open(inputs)?;
    let target = file.required("target")?;
    let (h, w) = match target.shape.as_slice() {
        [.., 3, h, w] if target.data.len() == 3 * h * w => (*h, *w),
        _ => {
            return Err(
                file.error("target", format!("expected shape [3, H, W], got {:?}", target.shape))
            );
        }
    };
    let sources = file.required("sources")?;
    let n = sources.data.len() / (3 * w * h).max(1);
    file.check_shape("sources", &sources, &[n, 3, h, w])?;
    let mut disparities = Vec::new();
    while let Some(d) = file.optional(&format!("disp_{}", disparities.len()))? {
        let s = disparities.len();
        file.check_shape(&format!("disp_{s}"), &d, &[h >> s, w >> s])?;
        // The network's sigmoid output: the loss maps [0, 1] onto [1/max_depth, 1/min_depth]
        // (non-finite values get their own error from the loss).
        if let Some((i, v)) =
            d.data.iter().enumerate().find(|(_, v)| v.is_finite() && !(0.0..=1.0).contains(*v))
        {
            return Err(file.error(
                &format!("disp_{s}"),
                format!(
                    "expected sigmoid disparities in [0, 1], found {v} at element {i} \
                     (row {}, column {})",
                    i / (w >> s).max(1),
                    i % (w >> s).max(1)
                ),
            ));
        }
        disparities.push(to_f32(&d.data));
    }
    if disparities.is_empty() {
        return Err(file.error("disp_0", "missing (disparities are disp_0, disp_1, …)"));
    }
    let scales = disparities.len();
    let target_f32 = to_f32(&target.data);
    let mut pyramid = target_pyramid(&target_f32, w, h, scales);
    for (s, level) in pyramid.iter_mut().enumerate().skip(1) {
        if let Some(given) = file.optional(&format!("target_{s}"))? {
            file.check_shape(&format!("target_{s}"), &given, &[3, h >> s, w >> s])?;
            *level = to_f32(&given.data);
        }
    }
    let axis_angle = file.required("axis_angle")?;
    file.check_shape("axis_angle", &axis_angle, &[n, 3])?;
    let translation = file.required("translation")?;
    file.check_shape("translation", &translation, &[n, 3])?;
    let invert = match file.optional("invert")? {
        Some(a) => {
            file.check_shape("invert", &a, &[n])?;
            a.data.iter().map(|&v| v != 0.0).collect()
        }
        None => vec![false; n],
    };
    let poses: Vec<Pose6> = (0..n)
        .map(|i| Pose6 {
            axis_angle: [0, 1, 2].map(|k| axis_angle.data[i * 3 + k] as f32),
            translation: [0, 1, 2].map(|k| translation.data[i * 3 + k] as f32),
            invert: invert[i],
        })
        .collect();
    let k = file.required("K")?;
    let intrinsics = match k.shape.as_slice() {
        [4] => [k.data[0], k.data[1], k.data[2], k.data[3]],
        [3, 3] => [k.data[0], k.data[4], k.data[2], k.data[5]],
        [4, 4] => [k.data[0], k.data[5], k.data[2], k.data[6]],
        _ => {
            return Err(file.error(
                "K",
                format!(
                    "expected [fx, fy, cx, cy], a 3x3 or a 4x4 matrix, got shape {:?}",
                    k.shape
                ),
            ));
        }
    }
    .map(|v| v as f32);
    let noise = match file.optional("tie_break_noise")? {
        Some(a) => {
            file.check_shape("tie_break_noise", &a, &[n, h, w])?;
            Some(to_f32(&a.data))
        }
        None => None,
    };
    let mut config = LossConfig::default();
    if let Some(v) = file.scalar("min_depth")? {
        config.min_depth = v as f32;
    }
    if let Some(v) = file.scalar("max_depth")? {
        config.max_depth = v as f32;
    }
    if let Some(v) = file.scalar("smoothness_weight")? {
        config.smoothness_weight = v as f32;
    }
    if let Some(v) = file.scalar("ssim_weight")? {
        config.ssim_weight = v as f32;
    }
    if let Some(v) = file.scalar("tie_break_std")? {
        config.tie_break_std = v as f32;
    }
    if let Some(v) = file.scalar("automask")? {
        config.automask = v != 0.0;
    }
    if let Some(v) = file.scalar("seed")? {
        if v < 0.0 || v.fract() != 0.0 {
            return Err(file.error("seed", format!("expected a non-negative integer, got {v}")));
        }
        config.seed = v as u64;
    }

    let sources_f32 = to_f32(&sources.data);
    let source_refs: Vec<&[f32]> = sources_f32.chunks(3 * w * h).collect();
    let disp_refs: Vec<&[f32]> = disparities.iter().map(Vec::as_slice).collect();
    let pyramid_refs: Vec<&[f32]> = pyramid.iter().map(Vec::as_slice).collect();
    let loss_inputs = LossInputs {
        width: w,
        height: h,
        target: &target_f32,
        sources: &source_refs,
        disparities: &disp_refs,
        target_pyramid: &pyramid_refs,
        poses: &poses,
        intrinsics,
        tie_break_noise: noise.as_deref(),
    };
    let mut loss = SelfSupervisedLoss::new(config);
    let outputs = loss.forward_backward(&loss_inputs)?;
    write_outputs(out, outputs, w, h)?;
    Ok(ProbeSummary {
        width: w,
        height: h,
        sources: n,
        scales,
        total: outputs.total,
        photometric: outputs.photometric,
        smoothness: outputs.smoothness,
        masked_fraction: outputs.masked_fraction,
    })
}

type NpzOut = npyz::npz::NpzWriter<BufWriter<File>>;

fn put_f32(npz: &mut NpzOut, name: &str, shape: &[u64], data: &[f32]) -> std::io::Result<()> {
    let mut writer =
        npz.array::<f32>(name, Default::default())?.default_dtype().shape(shape).begin_nd()?;
    writer.extend(data.iter().copied())?;
    writer.finish()
}

fn put_u8(npz: &mut NpzOut, name: &str, shape: &[u64], data: &[u8]) -> std::io::Result<()> {
    let mut writer =
        npz.array::<u8>(name, Default::default())?.default_dtype().shape(shape).begin_nd()?;
    writer.extend(data.iter().copied())?;
    writer.finish()
}

/// Writes an npz file atomically ([`crate::tempfiles::write_atomic`]): `fill` writes the arrays.
fn write_npz_atomic(
    out: &Path,
    fill: impl FnOnce(&mut NpzOut) -> std::io::Result<()>,
) -> Result<(), LossError> {
    let io_error = |source| LossError::Io { path: out.to_path_buf(), source };
    crate::tempfiles::write_atomic(
        out,
        |temp| {
            let written = (|| -> std::io::Result<()> {
                let mut npz = npyz::npz::NpzWriter::new(BufWriter::new(File::create(temp)?));
                fill(&mut npz)?;
                let buffered = npz.zip_writer().finish().map_err(std::io::Error::other)?;
                buffered.into_inner().map_err(|e| e.into_error())?;
                Ok(())
            })();
            written.map_err(io_error)
        },
        io_error,
    )
}

/// Writes `inputs` and `config` as a probe input file (the format [`run_probe`] reads).
pub fn write_probe_inputs(
    path: &Path,
    inputs: &LossInputs,
    config: &LossConfig,
) -> Result<(), LossError> {
    let (w, h) = (inputs.width as u64, inputs.height as u64);
    let n = inputs.sources.len() as u64;
    write_npz_atomic(path, |npz| {
        put_f32(npz, "target", &[3, h, w], inputs.target)?;
        let sources: Vec<f32> = inputs.sources.iter().flat_map(|s| s.iter().copied()).collect();
        put_f32(npz, "sources", &[n, 3, h, w], &sources)?;
        for (s, d) in inputs.disparities.iter().enumerate() {
            put_f32(npz, &format!("disp_{s}"), &[h >> s, w >> s], d)?;
        }
        for (s, level) in inputs.target_pyramid.iter().enumerate().skip(1) {
            put_f32(npz, &format!("target_{s}"), &[3, h >> s, w >> s], level)?;
        }
        let axis: Vec<f32> = inputs.poses.iter().flat_map(|p| p.axis_angle).collect();
        let trans: Vec<f32> = inputs.poses.iter().flat_map(|p| p.translation).collect();
        let invert: Vec<u8> = inputs.poses.iter().map(|p| u8::from(p.invert)).collect();
        put_f32(npz, "axis_angle", &[n, 3], &axis)?;
        put_f32(npz, "translation", &[n, 3], &trans)?;
        put_u8(npz, "invert", &[n], &invert)?;
        put_f32(npz, "K", &[4], &inputs.intrinsics)?;
        if let Some(noise) = inputs.tie_break_noise {
            put_f32(npz, "tie_break_noise", &[n, h, w], noise)?;
        }
        put_f32(npz, "min_depth", &[], &[config.min_depth])?;
        put_f32(npz, "max_depth", &[], &[config.max_depth])?;
        put_f32(npz, "ssim_weight", &[], &[config.ssim_weight])?;
        put_f32(npz, "smoothness_weight", &[], &[config.smoothness_weight])?;
        put_f32(npz, "tie_break_std", &[], &[config.tie_break_std])?;
        put_u8(npz, "automask", &[], &[u8::from(config.automask)])?;
        let mut writer =
            npz.array::<u64>("seed", Default::default())?.default_dtype().shape(&[]).begin_nd()?;
        writer.push(&config.seed)?;
        writer.finish()
    })
}

/// Writes the outputs to `out` atomically.
fn write_outputs(out: &Path, o: &LossOutputs, w: usize, h: usize) -> Result<(), LossError> {
    let (w, h) = (w as u64, h as u64);
    write_npz_atomic(out, |npz| {
        put_f32(npz, "total", &[], &[o.total])?;
        put_f32(npz, "photometric", &[], &[o.photometric])?;
        put_f32(npz, "smoothness", &[], &[o.smoothness])?;
        put_f32(npz, "masked_fraction", &[], &[o.masked_fraction])?;
        let scales = o.per_scale.len() as u64;
        let per_scale_photo: Vec<f32> = o.per_scale.iter().map(|s| s.photometric).collect();
        let per_scale_smooth: Vec<f32> = o.per_scale.iter().map(|s| s.smoothness).collect();
        put_f32(npz, "per_scale_photometric", &[scales], &per_scale_photo)?;
        put_f32(npz, "per_scale_smoothness", &[scales], &per_scale_smooth)?;
        put_f32(npz, "min_error", &[h, w], &o.min_error)?;
        put_u8(npz, "automask", &[h, w], &o.automask)?;
        put_u8(npz, "winner", &[h, w], &o.winner)?;
        for (s, g) in o.grad_disparities.iter().enumerate() {
            put_f32(npz, &format!("grad_disp_{s}"), &[h >> s, w >> s], g)?;
        }
        let n = o.grad_poses.len() as u64;
        let grad_axis: Vec<f32> = o.grad_poses.iter().flat_map(|g| [g[0], g[1], g[2]]).collect();
        let grad_trans: Vec<f32> = o.grad_poses.iter().flat_map(|g| [g[3], g[4], g[5]]).collect();
        put_f32(npz, "grad_axis_angle", &[n, 3], &grad_axis)?;
        put_f32(npz, "grad_translation", &[n, 3], &grad_trans)?;
        put_f32(npz, "grad_intrinsics", &[4], &o.grad_intrinsics)
    })
}
