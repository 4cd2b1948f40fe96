//! Helpers shared by the integration tests: locating the real data in ../shared (skipping with
//! a printed reason where it is absent) and the Python venv used for parity fixtures.
#![allow(dead_code)]

use std::path::PathBuf;

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

/// The Python interpreter of the torch venv made by scripts/setup.sh, or `None` after printing
/// why the calling test skips.
pub fn python() -> Option<PathBuf> {
    let py = std::env::var_os("LIVEDEPTH_PYTHON").map(PathBuf::from)?;
    if py.exists() {
        Some(py)
    } else {
        eprintln!("SKIP: LIVEDEPTH_PYTHON={} does not exist (run scripts/setup.sh)", py.display());
        None
    }
}
