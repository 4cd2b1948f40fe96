//! Finds the Python interpreter that has PyTorch: the peer of the benchmarks and the reference
//! of parity checks. Order: an explicit path, `$LIVEDEPTH_PYTHON`, the venv that
//! scripts/setup.sh makes (`$LIVEDEPTH_TORCH_VENV`, else `~/.cache/livedepth/torch-2.11`), and
//! finally `python3` on the PATH.

use std::path::PathBuf;

/// The venv scripts/setup.sh makes: `$LIVEDEPTH_TORCH_VENV`, else
/// `~/.cache/livedepth/torch-2.11` (None without either variable set).
pub fn torch_venv() -> Option<PathBuf> {
    match std::env::var_os("LIVEDEPTH_TORCH_VENV") {
        Some(venv) => Some(PathBuf::from(venv)),
        None => Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/livedepth/torch-2.11")),
    }
}

/// The Python to run PyTorch peers with (see the module docs for the search order).
pub fn torch_python(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os("LIVEDEPTH_PYTHON").map(PathBuf::from))
        .or_else(|| {
            let python = torch_venv()?.join("bin/python");
            python.exists().then_some(python)
        })
        .unwrap_or_else(|| PathBuf::from("python3"))
}
