//! The TensorRT engine cache: a built engine (plan) is serialised to
//! `<cache dir>/<key digest>.engine` and reused while everything that shaped it is the same.
//! The key ([`EngineCacheKey`]) holds the ONNX graph's hash (weights included), TensorRT's
//! version, the GPU's compute capability, the precision, the refit flags and the input profile.
//!
//! A cache file starts with a header that repeats the key's text and the plan's length, so a
//! file from another key (a digest collision) or a truncated one is a miss, never a plan that
//! TensorRT would reject or, worse, run. Files are written atomically.

use super::super::EngineError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The precision an engine is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    Fp32,
    /// FP16 kernels where TensorRT finds them faster (FP32 elsewhere).
    Fp16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
        }
    }
}

/// Which weights an engine can refit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RefitMode {
    /// Not refittable (fastest to build; adapted weights need a rebuild).
    None,
    /// `kREFIT`: every weight.
    All,
    /// `kREFIT_INDIVIDUAL`: only these weights (sorted names).
    Individual(Vec<String>),
}

impl RefitMode {
    /// The flag value of the shim's `BuildOptions::refit`.
    pub fn flag(&self) -> u8 {
        match self {
            RefitMode::None => 0,
            RefitMode::All => 1,
            RefitMode::Individual(_) => 2,
        }
    }

    fn describe(&self) -> String {
        match self {
            RefitMode::None => "none".to_owned(),
            RefitMode::All => "all".to_owned(),
            RefitMode::Individual(names) => {
                let mut h = Sha256::new();
                for n in names {
                    h.update(n.as_bytes());
                    h.update([0]);
                }
                format!("individual:{}:{}", names.len(), hex(&h.finalize()[..8]))
            }
        }
    }
}

/// Everything that decides what TensorRT builds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EngineCacheKey {
    /// sha256 of the ONNX bytes (graph and weights), hex.
    pub onnx_sha256: String,
    /// TensorRT's version (major · 10000 + minor · 100 + patch), as the library reports it.
    pub tensorrt_version: i32,
    /// The GPU's compute capability, major · 10 + minor (87 on Jetson Orin).
    pub compute_capability: i32,
    pub precision: Precision,
    pub refit: RefitMode,
    /// The input's optimisation profile: min, opt and max NCHW shapes.
    pub profile: [[i64; 4]; 3],
    /// The builder's workspace limit in bytes (it can change the tactics chosen).
    pub workspace_bytes: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

impl EngineCacheKey {
    /// The key as one line of text (stored in the cache file's header).
    pub fn describe(&self) -> String {
        let shape = |s: &[i64; 4]| s.map(|v| v.to_string()).join("x");
        format!(
            "onnx={} tensorrt={} sm={} precision={} refit={} profile={},{},{} workspace={}",
            self.onnx_sha256,
            self.tensorrt_version,
            self.compute_capability,
            self.precision.name(),
            self.refit.describe(),
            shape(&self.profile[0]),
            shape(&self.profile[1]),
            shape(&self.profile[2]),
            self.workspace_bytes
        )
    }

    /// The cache file name: the first 128 bits of sha256 of [`Self::describe`], hex.
    pub fn file_name(&self) -> String {
        format!("{}.engine", &sha256_hex(self.describe().as_bytes())[..32])
    }
}

/// What a cache lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum CacheLookup {
    Hit(Vec<u8>),
    Miss,
    /// A file for this digest that is not a plan for this key (truncated, another key, not
    /// ours); the text says what. It is rebuilt and overwritten.
    Invalid(String),
}

const MAGIC: &[u8] = b"livedepth-tensorrt-engine v1\n";

/// Serialised engines in one folder.
#[derive(Clone, Debug)]
pub struct EngineCache {
    dir: PathBuf,
}

impl EngineCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$LIVEDEPTH_TENSORRT_CACHE`, else `~/.cache/livedepth/tensorrt-engines`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("LIVEDEPTH_TENSORRT_CACHE") {
            return dir.into();
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".cache/livedepth/tensorrt-engines")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `key`'s plan lives.
    pub fn path(&self, key: &EngineCacheKey) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// The plan stored for `key`, if a valid one is there.
    pub fn load(&self, key: &EngineCacheKey) -> Result<CacheLookup, EngineError> {
        let path = self.path(key);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CacheLookup::Miss),
            Err(e) => {
                return Err(EngineError::TensorRt(format!(
                    "engine cache {}: cannot read: {e}",
                    path.display()
                )));
            }
        };
        let invalid = |why: &str| Ok(CacheLookup::Invalid(format!("{}: {why}", path.display())));
        let Some(rest) = bytes.strip_prefix(MAGIC) else {
            return invalid("not a livedepth engine cache file");
        };
        let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
            return invalid("header has no key line");
        };
        let (line, rest) = (&rest[..newline], &rest[newline + 1..]);
        if line != key.describe().as_bytes() {
            return invalid("built for another key");
        }
        let Some((length, plan)) = rest.split_first_chunk::<8>() else {
            return invalid("header has no plan length");
        };
        let length = u64::from_le_bytes(*length);
        if plan.len() as u64 != length || length == 0 {
            return invalid(&format!("plan holds {} bytes, header says {length}", plan.len()));
        }
        Ok(CacheLookup::Hit(plan.to_vec()))
    }

    /// Stores `plan` for `key` (atomically; creates the folder).
    pub fn store(&self, key: &EngineCacheKey, plan: &[u8]) -> Result<PathBuf, EngineError> {
        let path = self.path(key);
        let io = |e: std::io::Error| {
            EngineError::TensorRt(format!("engine cache {}: cannot write: {e}", path.display()))
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let mut bytes = Vec::with_capacity(MAGIC.len() + 256 + 8 + plan.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(key.describe().as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(&(plan.len() as u64).to_le_bytes());
        bytes.extend_from_slice(plan);
        crate::tempfiles::write_atomic(&path, |temp| std::fs::write(temp, &bytes), |e| e)
            .map_err(io)?;
        Ok(path)
    }
}
