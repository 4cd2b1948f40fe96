//! File reading shared by the dataset readers: colour images, 16-bit depth PNGs, npz depth,
//! whitespace-separated number lines, rigid poses and KITTI timestamps, each with errors that
//! name the file (and line) and what was expected.

use super::DatasetError;
use crate::frame::{DepthMap, RgbImage};
use nalgebra::{Isometry3, Matrix3, Rotation3, Translation3, UnitQuaternion, Vector3};
use std::path::{Path, PathBuf};

/// The whole text of a file.
pub fn read_text(path: &Path) -> Result<String, DatasetError> {
    std::fs::read_to_string(path).map_err(|source| io_error(path, source))
}

/// An I/O error on `path`, as [`DatasetError::Missing`] when the file does not exist.
pub fn io_error(path: &Path, source: std::io::Error) -> DatasetError {
    if source.kind() == std::io::ErrorKind::NotFound {
        DatasetError::Missing { path: path.to_path_buf(), expected: "a file".into() }
    } else {
        DatasetError::Io { path: path.to_path_buf(), source }
    }
}

/// Fails with [`DatasetError::Missing`] unless `path` is an existing folder.
pub fn require_dir(path: &Path, expected: &str) -> Result<(), DatasetError> {
    if path.is_dir() {
        Ok(())
    } else {
        Err(DatasetError::Missing { path: path.to_path_buf(), expected: expected.to_string() })
    }
}

fn decode(path: &Path) -> Result<image::DynamicImage, DatasetError> {
    let reader = image::ImageReader::open(path).map_err(|source| io_error(path, source))?;
    let reader = reader.with_guessed_format().map_err(|source| io_error(path, source))?;
    reader
        .decode()
        .map_err(|e| DatasetError::Image { path: path.to_path_buf(), message: e.to_string() })
}

/// The size of an image from its header, without decoding the pixels.
pub fn image_size(path: &Path) -> Result<(u32, u32), DatasetError> {
    image::image_dimensions(path).map_err(|e| match e {
        image::ImageError::IoError(source) => io_error(path, source),
        other => DatasetError::Image { path: path.to_path_buf(), message: other.to_string() },
    })
}

/// A colour image (any 8/16-bit format, converted to packed RGB8).
pub fn read_rgb(path: &Path) -> Result<RgbImage, DatasetError> {
    let rgb = match decode(path)? {
        image::DynamicImage::ImageRgb8(buf) => buf,
        other => other.to_rgb8(),
    };
    let (width, height) = rgb.dimensions();
    Ok(RgbImage { width, height, data: rgb.into_raw() })
}

/// A 16-bit single-channel depth PNG, converted to metres as `value * metres_per_unit`
/// (0 stays invalid).
pub fn read_depth_png(path: &Path, metres_per_unit: f32) -> Result<DepthMap, DatasetError> {
    let image = decode(path)?;
    let image::DynamicImage::ImageLuma16(buf) = image else {
        return Err(DatasetError::Image {
            path: path.to_path_buf(),
            message: format!("expected a 16-bit greyscale depth PNG, found {:?}", image.color()),
        });
    };
    let (width, height) = buf.dimensions();
    let data = buf.as_raw().iter().map(|&v| v as f32 * metres_per_unit).collect();
    Ok(DepthMap::from_data(width, height, data))
}

/// A float32 `H x W` depth array `key` in metres from an npz archive; non-finite or negative
/// values are treated as invalid (0).
pub fn read_npz_depth(path: &Path, key: &str) -> Result<DepthMap, DatasetError> {
    let npz_error = |message: String| DatasetError::Npz { path: path.to_path_buf(), message };
    let mut archive = npyz::npz::NpzArchive::open(path).map_err(|source| io_error(path, source))?;
    let Some(array) =
        archive.by_name(key).map_err(|e| npz_error(format!("unreadable archive: {e}")))?
    else {
        let names: Vec<String> = archive.array_names().map(str::to_string).collect();
        return Err(npz_error(format!("no array {key:?} (arrays: {names:?})")));
    };
    let shape = array.shape().to_vec();
    if shape.len() != 2 {
        return Err(npz_error(format!("array {key:?}: expected shape [H, W], found {shape:?}")));
    }
    if array.order() != npyz::Order::C {
        return Err(npz_error(format!("array {key:?}: expected C (row-major) order")));
    }
    let (height, width) = (shape[0] as u32, shape[1] as u32);
    let data: Vec<f32> = array
        .into_vec::<f32>()
        .map_err(|e| npz_error(format!("array {key:?}: expected float32 data: {e}")))?;
    if data.len() != width as usize * height as usize {
        return Err(npz_error(format!("array {key:?}: {} values for shape {shape:?}", data.len())));
    }
    let data = data.into_iter().map(|v| if v.is_finite() && v > 0.0 { v } else { 0.0 }).collect();
    Ok(DepthMap::from_data(width, height, data))
}

/// The non-empty, non-comment (`#`) lines of a text, with their 1-based line numbers.
pub fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Exactly `count` finite numbers from a whitespace-separated line.
pub fn parse_numbers(
    line: &str,
    count: usize,
    path: &Path,
    line_number: usize,
    expected: &str,
) -> Result<Vec<f64>, DatasetError> {
    let bad = || DatasetError::BadLine {
        path: path.to_path_buf(),
        line: line_number,
        expected: expected.to_string(),
        found: line.chars().take(120).collect(),
    };
    let values: Vec<f64> = line
        .split_whitespace()
        .map(|t| t.parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    if values.len() != count || values.iter().any(|v| !v.is_finite()) {
        return Err(bad());
    }
    Ok(values)
}

/// A rigid transform from the first three rows `[R | t]` of a 4x4 or 3x4 matrix, row-major;
/// rejects a rotation part that is not orthonormal with determinant +1 (to 1e-3).
pub fn isometry_from_rows(
    rows: &[f64],
    path: &Path,
    line_number: usize,
) -> Result<Isometry3<f64>, DatasetError> {
    let r = Matrix3::new(
        rows[0], rows[1], rows[2], rows[4], rows[5], rows[6], rows[8], rows[9], rows[10],
    );
    let t = Vector3::new(rows[3], rows[7], rows[11]);
    let orthonormality = (r.transpose() * r - Matrix3::identity()).abs().max();
    if orthonormality > 1e-3 || (r.determinant() - 1.0).abs() > 1e-3 {
        return Err(DatasetError::BadLine {
            path: path.to_path_buf(),
            line: line_number,
            expected: "a rigid transform (rotation part orthonormal with determinant 1)".into(),
            found: format!("{rows:?}"),
        });
    }
    let rotation = UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix(&r));
    Ok(Isometry3::from_parts(Translation3::from(t), rotation))
}

/// A KITTI timestamp `YYYY-MM-DD HH:MM:SS.fraction` as seconds since the Unix epoch (UTC),
/// or a plain number of seconds.
pub fn parse_timestamp(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds.is_finite().then_some(seconds);
    }
    let (date, time) = text.split_once(' ')?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>());
    let (year, month, day) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let mut hms = time.trim().split(':');
    let (hours, minutes) = (hms.next()?.parse::<i64>().ok()?, hms.next()?.parse::<i64>().ok()?);
    let seconds = hms.next()?.parse::<f64>().ok()?;
    if hms.next().is_some()
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&hours)
        || !(0..60).contains(&minutes)
        || !(0.0..61.0).contains(&seconds)
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86400 + hours * 3600 + minutes * 60) as f64 + seconds)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The numeric value of a file stem like `0000000042`, `frame-000042` or `1305031102.175304`.
pub fn stem_number(path: &Path) -> Option<u64> {
    let stem = path.file_stem()?.to_str()?;
    let digits: String = stem.chars().filter(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// The files in `dir` whose names end with `suffix`, sorted by name.
pub fn list_files(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>, DatasetError> {
    let entries = std::fs::read_dir(dir).map_err(|source| io_error(dir, source))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| io_error(dir, source))?;
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.ends_with(suffix)) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Fails with [`DatasetError::SizeMismatch`] unless a depth map has the rgb size.
pub fn check_size(
    path: &Path,
    expected: (u32, u32),
    found: (u32, u32),
) -> Result<(), DatasetError> {
    if expected == found {
        Ok(())
    } else {
        Err(DatasetError::SizeMismatch { path: path.to_path_buf(), expected, found })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kitti_timestamps_parse_to_unix_seconds() {
        // 2011-09-26 is day 15243 since the epoch.
        let t = parse_timestamp("2011-09-26 13:17:59.287203584").unwrap();
        assert!(
            (t - (15243.0 * 86400.0 + 13.0 * 3600.0 + 17.0 * 60.0 + 59.287203584)).abs() < 1e-5
        );
        assert_eq!(parse_timestamp("12.5"), Some(12.5));
        assert_eq!(parse_timestamp("2011-13-26 13:17:59.2"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn non_rigid_rows_are_rejected() {
        let path = Path::new("poses.txt");
        let identity = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 1.0, 3.0];
        let iso = isometry_from_rows(&identity, path, 1).unwrap();
        assert_eq!(iso.translation.vector, Vector3::new(1.0, 2.0, 3.0));
        let scaled = [2.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 1.0, 3.0];
        assert!(matches!(
            isometry_from_rows(&scaled, path, 7),
            Err(DatasetError::BadLine { line: 7, .. })
        ));
    }
}
