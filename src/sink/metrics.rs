//! Per-frame metrics as CSV (a header of column names, then one row of numbers per frame,
//! written and flushed as it goes so that a crash loses at most the row being written) and a
//! run summary as pretty JSON (written atomically).

use super::{SinkError, write_atomic};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A CSV log of per-frame metrics with fixed numeric columns.
#[derive(Debug)]
pub struct MetricsCsvWriter {
    path: PathBuf,
    file: File,
    columns: Vec<String>,
    rows: u64,
    line: String,
}

impl MetricsCsvWriter {
    /// Create (or truncate) `path` and write the header. Column names must be non-empty and
    /// free of commas, quotes and line breaks.
    pub fn create(path: &Path, columns: &[&str]) -> Result<Self, SinkError> {
        if columns.is_empty() {
            return Err(SinkError::invalid(path, "CSV columns", "at least one column is needed"));
        }
        for name in columns {
            if name.is_empty() || name.contains([',', '"', '\n', '\r']) {
                return Err(SinkError::invalid(
                    path,
                    "CSV column name",
                    format!("{name:?} must be non-empty without commas, quotes or line breaks"),
                ));
            }
        }
        let file = File::create(path).map_err(|e| SinkError::io(path, e))?;
        let mut writer = Self {
            path: path.to_path_buf(),
            file,
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: 0,
            line: String::new(),
        };
        writer.line = columns.join(",");
        writer.line.push('\n');
        writer.flush_line()?;
        Ok(writer)
    }

    fn flush_line(&mut self) -> Result<(), SinkError> {
        self.file.write_all(self.line.as_bytes()).map_err(|e| SinkError::io(&self.path, e))?;
        self.file.flush().map_err(|e| SinkError::io(&self.path, e))
    }

    /// Append one row: exactly one value per column, in column order. Values are written in
    /// Rust's shortest round-trip form (`NaN` and `inf` for non-finite values).
    pub fn write_row(&mut self, values: &[f64]) -> Result<(), SinkError> {
        if values.len() != self.columns.len() {
            return Err(SinkError::invalid(
                &self.path,
                "CSV row",
                format!(
                    "expected {} values ({}), got {}",
                    self.columns.len(),
                    self.columns.join(","),
                    values.len()
                ),
            ));
        }
        self.line.clear();
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.line.push(',');
            }
            // Writing into a String cannot fail.
            let _ = write!(self.line, "{value}");
        }
        self.line.push('\n');
        self.flush_line()?;
        self.rows += 1;
        Ok(())
    }

    /// The column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The number of rows written after the header.
    pub fn rows_written(&self) -> u64 {
        self.rows
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flush to stable storage and close.
    pub fn finish(self) -> Result<PathBuf, SinkError> {
        self.file.sync_all().map_err(|e| SinkError::io(&self.path, e))?;
        Ok(self.path)
    }
}

/// Write `summary` as pretty-printed JSON to `path`, atomically.
pub fn write_summary_json<T: Serialize + ?Sized>(
    path: &Path,
    summary: &T,
) -> Result<(), SinkError> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, summary)
            .map_err(|source| SinkError::Json { path: path.to_path_buf(), source })?;
        w.write_all(b"\n").map_err(|e| SinkError::io(path, e))
    })
}

/// Read a JSON summary back.
pub fn read_summary_json<T: DeserializeOwned>(path: &Path) -> Result<T, SinkError> {
    let file = File::open(path).map_err(|e| SinkError::io(path, e))?;
    serde_json::from_reader(std::io::BufReader::new(file))
        .map_err(|source| SinkError::Json { path: path.to_path_buf(), source })
}
