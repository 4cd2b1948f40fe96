//! What the preprocessing kernel (kernels/preprocess.cu) takes: a packed host frame as
//! GStreamer maps it ([`PackedFrame`], [`PixelFormat`]) with its checks, how it is resized to the
//! network size ([`Resize`]) and normalised ([`Normalization`]). The live CUDA path builds these;
//! the kernel's CPU twin (feature `bench`) takes the same.

use super::CudaError;

/// Pixel layout of the frame handed over by GStreamer / nvvidconv.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed RGB, 3 bytes per pixel.
    Rgb,
    /// Packed RGBA (or RGBx), 4 bytes per pixel; alpha ignored.
    Rgba,
    /// Planar luma (pitch `pitch`) then interleaved UV at half resolution (pitch `uv_pitch`),
    /// BT.601 limited range.
    Nv12 { uv_pitch: usize },
}

/// How the frame is resized to the network size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resize {
    /// Bilinear, align_corners=false.
    Bilinear,
    /// Area averaging (exact fractional box overlap).
    Area,
}

/// Per-channel normalisation: (value / 255 - mean) / std.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for Normalization {
    /// Plain [0, 1] scaling, what the depth and pose networks and the loss take.
    fn default() -> Self {
        Self { mean: [0.0; 3], std: [1.0; 3] }
    }
}

impl Normalization {
    /// Reciprocal standard deviations, rejecting zero or non-finite values.
    pub fn inv_std(&self) -> Result<[f32; 3], CudaError> {
        let mut out = [0.0; 3];
        for (c, (inv, (&mean, &s))) in
            out.iter_mut().zip(self.mean.iter().zip(&self.std)).enumerate()
        {
            if !(s.is_finite() && s != 0.0 && mean.is_finite()) {
                return Err(CudaError::invalid(
                    format!("normalization channel {c}"),
                    format!("mean {mean} std {s}: need finite values and std != 0"),
                ));
            }
            *inv = 1.0 / s;
        }
        Ok(out)
    }
}

/// A frame in host memory as GStreamer maps it.
#[derive(Clone, Copy, Debug)]
pub struct PackedFrame<'a> {
    pub data: &'a [u8],
    pub width: usize,
    pub height: usize,
    /// Bytes per row (of the luma plane for NV12).
    pub pitch: usize,
    pub format: PixelFormat,
}

impl PackedFrame<'_> {
    /// Checks sizes and pitches against the buffer; returns the byte offset of the UV plane
    /// (NV12) or 0.
    pub fn validate(&self) -> Result<usize, CudaError> {
        if self.width == 0 || self.height == 0 {
            return Err(CudaError::invalid(
                "frame size",
                format!("{}x{} is empty", self.width, self.height),
            ));
        }
        let (bpp, uv_rows, uv_pitch) = match self.format {
            PixelFormat::Rgb => (3, 0, 0),
            PixelFormat::Rgba => (4, 0, 0),
            PixelFormat::Nv12 { uv_pitch } => {
                if !self.width.is_multiple_of(2) || !self.height.is_multiple_of(2) {
                    return Err(CudaError::invalid(
                        "NV12 frame size",
                        format!("{}x{}: NV12 needs even width and height", self.width, self.height),
                    ));
                }
                if uv_pitch < self.width {
                    return Err(CudaError::invalid(
                        "NV12 uv_pitch",
                        format!("{uv_pitch} < width {}", self.width),
                    ));
                }
                (1, self.height / 2, uv_pitch)
            }
        };
        if self.pitch < self.width * bpp {
            return Err(CudaError::invalid(
                "frame pitch",
                format!("{} bytes < width {} x {bpp} bytes per pixel", self.pitch, self.width),
            ));
        }
        let luma = self.pitch * (self.height - 1) + self.width * bpp;
        let needed = if uv_rows > 0 {
            self.pitch * self.height + uv_pitch * (uv_rows - 1) + self.width
        } else {
            luma
        };
        if self.data.len() < needed {
            return Err(CudaError::invalid(
                "frame buffer",
                format!(
                    "{} bytes, {:?} {}x{} pitch {} needs {needed}",
                    self.data.len(),
                    self.format,
                    self.width,
                    self.height,
                    self.pitch
                ),
            ));
        }
        Ok(if uv_rows > 0 { self.pitch * self.height } else { 0 })
    }
}
