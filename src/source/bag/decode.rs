//! Decoding the image messages an MCAP recording carries into RGB frames:
//! - ROS 2 (`cdr` encoding, as rosbag2 stores them): `sensor_msgs/msg/Image` (rgb8, bgr8,
//!   rgba8, bgra8, mono8, yuv422 = UYVY, yuv422_yuy2 = YUYV), `sensor_msgs/msg/CompressedImage`
//!   (jpeg, png) and `sensor_msgs/msg/CameraInfo` (for the intrinsics);
//! - Foxglove (`protobuf`): `foxglove.RawImage` (the same encodings) and
//!   `foxglove.CompressedImage`.
//!
//! CDR (OMG XCDR1) as ROS 2 writes it: a 4-byte encapsulation header (byte 1 says the byte
//! order: 0 big, 1 little endian), then the fields in order, each primitive aligned to its own
//! size counted from the end of the header; strings are a u32 length (with the NUL) and the
//! bytes; sequences a u32 count and the elements. Every read is bounds-checked; a malformed
//! message is an error naming the field.

use crate::camera::Intrinsics;
use crate::frame::RgbImage;

/// A reader over one CDR-encoded message.
pub struct CdrReader<'a> {
    data: &'a [u8],
    pos: usize,
    little_endian: bool,
}

impl<'a> CdrReader<'a> {
    /// Reads the encapsulation header.
    pub fn new(data: &'a [u8]) -> Result<Self, String> {
        if data.len() < 4 {
            return Err(format!("{} bytes, shorter than the CDR header", data.len()));
        }
        let little_endian = match data[1] {
            0 | 2 => false,
            1 | 3 => true,
            other => return Err(format!("unknown CDR encapsulation kind {other}")),
        };
        Ok(Self { data: &data[4..], pos: 0, little_endian })
    }

    fn align(&mut self, size: usize) {
        self.pos = self.pos.div_ceil(size) * size;
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| {
            format!("field `{field}`: needs {n} bytes at offset {}, message ends first", self.pos)
        })?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    pub fn u8(&mut self, field: &str) -> Result<u8, String> {
        Ok(self.take(1, field)?[0])
    }

    pub fn u32(&mut self, field: &str) -> Result<u32, String> {
        self.align(4);
        let b: [u8; 4] = self.take(4, field)?.try_into().map_err(|_| field.to_owned())?;
        Ok(if self.little_endian { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
    }

    pub fn f64(&mut self, field: &str) -> Result<f64, String> {
        self.align(8);
        let b: [u8; 8] = self.take(8, field)?.try_into().map_err(|_| field.to_owned())?;
        Ok(if self.little_endian { f64::from_le_bytes(b) } else { f64::from_be_bytes(b) })
    }

    pub fn string(&mut self, field: &str) -> Result<String, String> {
        let len = self.u32(field)? as usize;
        let bytes = self.take(len, field)?;
        let text = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        String::from_utf8(text.to_vec()).map_err(|_| format!("field `{field}`: not UTF-8"))
    }

    pub fn bytes(&mut self, field: &str) -> Result<&'a [u8], String> {
        let len = self.u32(field)? as usize;
        self.take(len, field)
    }

    pub fn f64_seq(&mut self, field: &str, count: Option<usize>) -> Result<Vec<f64>, String> {
        let n = match count {
            Some(n) => n,
            None => self.u32(field)? as usize,
        };
        if n > self.data.len() {
            return Err(format!("field `{field}`: {n} values cannot fit the message"));
        }
        (0..n).map(|_| self.f64(field)).collect()
    }

    /// `std_msgs/Header`: the stamp in seconds (the frame id is read and dropped).
    pub fn header(&mut self) -> Result<f64, String> {
        let sec = self.u32("header.stamp.sec")? as i32;
        let nanosec = self.u32("header.stamp.nanosec")?;
        self.string("header.frame_id")?;
        Ok(f64::from(sec) + f64::from(nanosec) * 1e-9)
    }
}

/// An image message decoded: pixels and the stamp it carries (seconds; 0 when it has none).
#[derive(Debug)]
pub struct DecodedImage {
    pub rgb: RgbImage,
    pub stamp: f64,
}

/// One packed pixel of a raw encoding as RGB.
type PixelToRgb = fn(&[u8]) -> [u8; 3];

/// Raw pixels of `encoding` (rows `step` bytes apart) as RGB8.
pub fn raw_to_rgb(
    encoding: &str,
    width: u32,
    height: u32,
    step: usize,
    data: &[u8],
) -> Result<RgbImage, String> {
    let (bytes_per_pixel, pixel): (usize, PixelToRgb) = match encoding {
        "rgb8" => (3, |p| [p[0], p[1], p[2]]),
        "bgr8" => (3, |p| [p[2], p[1], p[0]]),
        "rgba8" => (4, |p| [p[0], p[1], p[2]]),
        "bgra8" => (4, |p| [p[2], p[1], p[0]]),
        "mono8" | "8UC1" => (1, |p| [p[0], p[0], p[0]]),
        "yuv422" | "uyvy" | "yuv422_yuy2" | "yuyv" => {
            return yuv422_to_rgb(encoding, width, height, step, data);
        }
        other => {
            return Err(format!(
                "encoding `{other}` is not supported (expected rgb8, bgr8, rgba8, bgra8, mono8, \
                 yuv422 or yuv422_yuy2)"
            ));
        }
    };
    let (w, h) = (width as usize, height as usize);
    check_size(w, h, step, bytes_per_pixel, data.len())?;
    let mut rgb = RgbImage::new(width, height);
    for (y, out_row) in rgb.data.chunks_exact_mut(3 * w).enumerate() {
        let row = &data[y * step..y * step + w * bytes_per_pixel];
        for (out, p) in out_row.chunks_exact_mut(3).zip(row.chunks_exact(bytes_per_pixel)) {
            out.copy_from_slice(&pixel(p));
        }
    }
    Ok(rgb)
}

fn check_size(w: usize, h: usize, step: usize, bpp: usize, len: usize) -> Result<(), String> {
    if w == 0 || h == 0 {
        return Err(format!("an empty {w}x{h} image"));
    }
    if step < w * bpp {
        return Err(format!("step {step} is shorter than a {w}-pixel row of {bpp} bytes each"));
    }
    let needed = step * (h - 1) + w * bpp;
    if len < needed {
        return Err(format!(
            "{len} bytes of pixels, a {w}x{h} image with step {step} needs {needed}"
        ));
    }
    Ok(())
}

/// YUV 4:2:2 (UYVY for `yuv422`/`uyvy`, YUYV for `yuv422_yuy2`/`yuyv`), BT.601 video range.
fn yuv422_to_rgb(
    encoding: &str,
    width: u32,
    height: u32,
    step: usize,
    data: &[u8],
) -> Result<RgbImage, String> {
    let (w, h) = (width as usize, height as usize);
    if w % 2 != 0 {
        return Err(format!("{encoding} needs an even width, got {w}"));
    }
    check_size(w, h, step, 2, data.len())?;
    let uyvy = matches!(encoding, "yuv422" | "uyvy");
    let convert = |y: u8, u: u8, v: u8| -> [u8; 3] {
        let (c, d, e) = (f32::from(y) - 16.0, f32::from(u) - 128.0, f32::from(v) - 128.0);
        let clamp = |x: f32| x.round().clamp(0.0, 255.0) as u8;
        [
            clamp(1.164 * c + 1.596 * e),
            clamp(1.164 * c - 0.392 * d - 0.813 * e),
            clamp(1.164 * c + 2.017 * d),
        ]
    };
    let mut rgb = RgbImage::new(width, height);
    for (y, out_row) in rgb.data.chunks_exact_mut(3 * w).enumerate() {
        let row = &data[y * step..y * step + 2 * w];
        for (out, q) in out_row.chunks_exact_mut(6).zip(row.chunks_exact(4)) {
            let (y0, u, y1, v) =
                if uyvy { (q[1], q[0], q[3], q[2]) } else { (q[0], q[1], q[2], q[3]) };
            out[..3].copy_from_slice(&convert(y0, u, v));
            out[3..].copy_from_slice(&convert(y1, u, v));
        }
    }
    Ok(rgb)
}

/// JPEG or PNG bytes as RGB8.
pub fn compressed_to_rgb(format: &str, data: &[u8]) -> Result<RgbImage, String> {
    let kind = match format.to_ascii_lowercase() {
        f if f.contains("jpeg") || f.contains("jpg") => image::ImageFormat::Jpeg,
        f if f.contains("png") => image::ImageFormat::Png,
        other => return Err(format!("format `{other}` is not supported (expected jpeg or png)")),
    };
    let decoded = image::load_from_memory_with_format(data, kind)
        .map_err(|e| format!("{format} data does not decode: {e}"))?
        .to_rgb8();
    let (width, height) = decoded.dimensions();
    Ok(RgbImage { width, height, data: decoded.into_raw() })
}

/// `sensor_msgs/msg/Image`.
pub fn ros_image(data: &[u8]) -> Result<DecodedImage, String> {
    let mut r = CdrReader::new(data)?;
    let stamp = r.header()?;
    let height = r.u32("height")?;
    let width = r.u32("width")?;
    let encoding = r.string("encoding")?;
    let _big_endian = r.u8("is_bigendian")?;
    let step = r.u32("step")? as usize;
    let pixels = r.bytes("data")?;
    Ok(DecodedImage { rgb: raw_to_rgb(&encoding, width, height, step, pixels)?, stamp })
}

/// `sensor_msgs/msg/CompressedImage`.
pub fn ros_compressed_image(data: &[u8]) -> Result<DecodedImage, String> {
    let mut r = CdrReader::new(data)?;
    let stamp = r.header()?;
    let format = r.string("format")?;
    let bytes = r.bytes("data")?;
    Ok(DecodedImage { rgb: compressed_to_rgb(&format, bytes)?, stamp })
}

/// `sensor_msgs/msg/CameraInfo` as intrinsics (plumb_bob / rational_polynomial distortion
/// coefficients are kept where the first five are non-zero).
pub fn ros_camera_info(data: &[u8]) -> Result<Intrinsics, String> {
    let mut r = CdrReader::new(data)?;
    r.header()?;
    let height = r.u32("height")?;
    let width = r.u32("width")?;
    r.string("distortion_model")?;
    r.f64_seq("d", None)?;
    let k = r.f64_seq("k", Some(9))?;
    if !(k[0] > 0.0 && k[4] > 0.0) || width == 0 || height == 0 {
        return Err(format!("k = {k:?} for {width}x{height} is not a calibrated camera"));
    }
    Ok(Intrinsics { fx: k[0], fy: k[4], cx: k[2], cy: k[5], width, height, distortion: None })
}

fn stamp_of(t: Option<&foxglove::messages::Timestamp>) -> f64 {
    t.map_or(0.0, |t| f64::from(t.sec()) + f64::from(t.nsec()) * 1e-9)
}

/// `foxglove.CameraCalibration` (protobuf) as intrinsics.
pub fn foxglove_calibration(data: &[u8]) -> Result<Intrinsics, String> {
    let m = <foxglove::messages::CameraCalibration as prost::Message>::decode(data)
        .map_err(|e| format!("protobuf: {e}"))?;
    match m.k.as_slice() {
        [fx, _, cx, _, fy, cy, ..] if *fx > 0.0 && *fy > 0.0 && m.width > 0 && m.height > 0 => {
            Ok(Intrinsics {
                fx: *fx,
                fy: *fy,
                cx: *cx,
                cy: *cy,
                width: m.width,
                height: m.height,
                distortion: None,
            })
        }
        k => Err(format!("k = {k:?} for {}x{} is not a calibrated camera", m.width, m.height)),
    }
}

/// `foxglove.RawImage` (protobuf).
pub fn foxglove_raw_image(data: &[u8]) -> Result<DecodedImage, String> {
    let m = <foxglove::messages::RawImage as prost::Message>::decode(data)
        .map_err(|e| format!("protobuf: {e}"))?;
    let rgb = raw_to_rgb(&m.encoding, m.width, m.height, m.step as usize, &m.data)?;
    Ok(DecodedImage { rgb, stamp: stamp_of(m.timestamp.as_ref()) })
}

/// `foxglove.CompressedImage` (protobuf).
pub fn foxglove_compressed_image(data: &[u8]) -> Result<DecodedImage, String> {
    let m = <foxglove::messages::CompressedImage as prost::Message>::decode(data)
        .map_err(|e| format!("protobuf: {e}"))?;
    Ok(DecodedImage {
        rgb: compressed_to_rgb(&m.format, &m.data)?,
        stamp: stamp_of(m.timestamp.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian CDR writer for the tests (aligned like the reader).
    struct Writer(Vec<u8>);
    impl Writer {
        fn new() -> Self {
            Self(vec![0, 1, 0, 0])
        }
        fn align(&mut self, n: usize) {
            while !(self.0.len() - 4).is_multiple_of(n) {
                self.0.push(0);
            }
        }
        fn u32(&mut self, v: u32) {
            self.align(4);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        fn string(&mut self, s: &str) {
            self.u32(s.len() as u32 + 1);
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(0);
        }
        fn bytes(&mut self, b: &[u8]) {
            self.u32(b.len() as u32);
            self.0.extend_from_slice(b);
        }
    }

    #[test]
    fn a_ros_image_decodes_with_its_stamp_and_channel_order() {
        let mut w = Writer::new();
        w.u32(12);
        w.u32(500_000_000);
        w.string("camera");
        w.u32(1); // height
        w.u32(2); // width
        w.string("bgr8");
        w.0.push(0);
        w.u32(8); // step, padded rows
        w.bytes(&[1, 2, 3, 4, 5, 6, 0, 0]);
        let image = ros_image(&w.0).unwrap();
        assert_eq!(image.stamp, 12.5);
        assert_eq!(image.rgb.data, vec![3, 2, 1, 6, 5, 4]);
        // Cut anywhere, it says which field ran out.
        let err = ros_image(&w.0[..w.0.len() - 3]).unwrap_err();
        assert!(err.contains("`data`"), "{err}");
    }

    #[test]
    fn yuv422_grey_stays_grey_and_odd_widths_are_refused() {
        let rgb = raw_to_rgb("yuv422", 2, 1, 4, &[128, 126, 128, 235]).unwrap();
        assert_eq!(rgb.data, vec![128, 128, 128, 255, 255, 255]);
        let err = raw_to_rgb("yuv422", 3, 1, 6, &[0; 6]).unwrap_err();
        assert!(err.contains("even width"), "{err}");
        let err = raw_to_rgb("32FC1", 1, 1, 4, &[0; 4]).unwrap_err();
        assert!(err.contains("32FC1") && err.contains("rgb8"), "{err}");
    }
}
