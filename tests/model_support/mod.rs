//! Helpers for the model/engine tests: .npy I/O, running the Python reference scripts in
//! tests/python/, and max-abs-difference comparisons.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Reads a float32 .npy file as (shape, values).
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).expect("npy header");
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<f32>().expect("float32 npy"))
}

/// Writes a float32 .npy file of the given shape.
pub fn write_npy(path: &Path, shape: &[usize], values: &[f32]) {
    use npyz::WriterBuilder;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create npy"));
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(&mut file)
        .begin_nd()
        .unwrap();
    w.extend(values.iter().copied()).unwrap();
    w.finish().unwrap();
}

/// Path of a script in tests/python/.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(name)
}

/// Runs `python script args…`, panicking with its output when it fails; returns stdout.
pub fn run_python(python: &Path, script_name: &str, args: &[&str]) -> String {
    let out =
        Command::new(python).arg(script(script_name)).args(args).output().expect("spawn python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script_name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    // A NaN on either side counts as an infinite difference (f32::max would drop it).
    a.iter()
        .zip(b)
        .map(|(x, y)| if x.is_nan() || y.is_nan() { f32::INFINITY } else { (x - y).abs() })
        .fold(0.0, f32::max)
}

/// A tensor's values on the host.
#[cfg(feature = "torch")]
pub fn values(t: &tch::Tensor) -> Vec<f32> {
    let t = t.to_device(tch::Device::Cpu).contiguous();
    let n = t.numel();
    let mut v = vec![0f32; n];
    t.copy_data(&mut v, n);
    v
}

/// Reads an 8-bit RGB PNG/JPEG into an RgbImage.
pub fn load_rgb(path: &Path) -> livedepth::frame::RgbImage {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    livedepth::frame::RgbImage { width: img.width(), height: img.height(), data: img.into_raw() }
}

/// Stand-in "adapted" weights: every decoder weight (`depth.*weight`) of `network` scaled by
/// `factor`, in place.
#[cfg(feature = "torch")]
pub fn scale_decoder_weights(network: &mut livedepth::model::network::DepthNetwork, factor: f64) {
    tch::no_grad(|| {
        for (name, mut tensor) in network.var_store_mut().variables() {
            if name.starts_with("depth.") && name.ends_with("weight") {
                let scaled = &tensor * factor;
                tensor.copy_(&scaled);
            }
        }
    });
}
