//! The one atomic write ([`write_atomic`]: temporary file, fsync, rename, folder fsync), the
//! naming scheme of its temporary files, and the sweep that removes the ones a killed run left
//! behind.
//!
//! Every whole-file output (sinks, checkpoints, datasets, reports) is written to
//! `.<name>.tmp-<pid>-<n>` beside its target, fsynced and renamed onto it. A SIGKILL or a second
//! Ctrl-C between the create and the rename leaves that temporary file behind. The next run
//! that writes into the same folder calls [`sweep_stale`], which removes exactly the files that
//! match the scheme and whose process is gone: never a file we do not own, never a file of a run
//! that is still writing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh temporary path beside `path` (same folder, so the final rename is atomic):
/// `.<name>.tmp-<pid>-<n>`.
pub fn temp_path_for(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Writes `path` atomically: `fill` writes the whole file at the temporary path it is given
/// (beside `path`), which is then fsynced and renamed over `path`, and the folder is fsynced so
/// that the rename survives a power cut. On any error the temporary file is removed and `path`
/// is left as it was. `io_error` turns the helper's own I/O errors into the caller's type.
pub fn write_atomic<E>(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
    io_error: impl Fn(std::io::Error) -> E,
) -> Result<(), E> {
    let temp = temp_path_for(path);
    let result = fill(&temp).and_then(|()| {
        std::fs::File::open(&temp).and_then(|file| file.sync_all()).map_err(&io_error)?;
        commit(&temp, path).map_err(&io_error)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Renames a finished, fsynced temporary file onto `path` and fsyncs the folder (not every
/// file system can sync a folder; that is not an error).
pub fn commit(temp: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::rename(temp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The process id in a name made by [`temp_path_for`], or `None` when the name is not ours.
pub fn owner_pid(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix('.')?;
    let (target, tail) = rest.rsplit_once(".tmp-")?;
    let (pid, n) = tail.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if target.is_empty() || !digits(pid) || !digits(n) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` is running (on Linux, from /proc; elsewhere every process counts as
/// alive, so nothing is swept).
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") { Path::new("/proc").join(pid.to_string()).exists() } else { true }
}

/// Removes the temporary files in `dir` that [`temp_path_for`] made for processes that are
/// gone; returns the paths removed. A folder that cannot be listed sweeps nothing.
pub fn sweep_stale(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = owner_pid(&name.to_string_lossy()) else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !process_alive(pid) && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// [`sweep_stale`], telling the user each file removed.
pub fn sweep_stale_and_tell(dir: &Path) {
    for path in sweep_stale(dir) {
        tracing::info!("removed {} (left by an interrupted run)", path.display());
    }
}

/// Creates the output folder `dir` (and its parents) after checking that it is not a file,
/// and sweeps stale temporary files from it, telling the user what was removed. `flag` names
/// the option or field that chose `dir`, for the error.
pub fn create_output_dir(dir: &Path, flag: &str) -> crate::Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(crate::Error::Other(format!(
            "{flag} {}: expected a folder to write into, but a file of that name exists (choose \
             another path or remove the file)",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    sweep_stale_and_tell(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_names_of_dead_processes_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("depth.mp4");
        let ours_alive = temp_path_for(&target);
        assert_eq!(
            owner_pid(&ours_alive.file_name().unwrap().to_string_lossy()),
            Some(std::process::id())
        );
        // pid_max on Linux is at most 2^22, so this process cannot exist.
        let dead = dir.path().join(".depth.mp4.tmp-99999999-0");
        let not_ours = [".depth.mp4.tmp-abc-0", "depth.mp4.tmp-99999999-0", ".tmp-99999999-0"];
        for path in [&ours_alive, &dead] {
            std::fs::write(path, b"x").unwrap();
        }
        for name in not_ours {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(sweep_stale(dir.path()), vec![dead.clone()]);
        assert!(!dead.exists());
        assert!(ours_alive.exists(), "a live process's temporary file was removed");
        for name in not_ours {
            assert!(dir.path().join(name).exists(), "{name} is not ours and was removed");
        }
    }

    #[test]
    fn an_output_path_that_is_a_file_is_an_error_saying_a_folder_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out");
        std::fs::write(&file, b"x").unwrap();
        let err = create_output_dir(&file, "--out").unwrap_err().to_string();
        assert!(err.contains("--out") && err.contains("expected a folder"), "{err}");
        assert!(err.contains(&file.display().to_string()), "{err}");
        create_output_dir(&dir.path().join("a/b"), "--out").unwrap();
        assert!(dir.path().join("a/b").is_dir());
    }
}
