//! Output sinks: depth PNG round trips (synthetic and the real 7-Scenes kitchen depth), the
//! colour map's ordering and invalid handling, metrics CSV/JSON written and parsed back, and
//! PLY point clouds (header, vertex count, back-projected coordinates).

mod common;

use livedepth::camera::Intrinsics;
use livedepth::engine::Disparity;
use livedepth::frame::{DepthMap, RgbImage};
use livedepth::sink::SinkError;
use livedepth::sink::colourise::{
    INVALID_COLOUR, colour_at, colourise_depth, colourise_depth_into, colourise_depth_ranged,
    colourise_disparity, luminance, write_colourised_depth_png,
};
use livedepth::sink::depth_png::{read_depth_png, write_depth_png};
use livedepth::sink::metrics::{MetricsCsvWriter, read_summary_json, write_summary_json};
use livedepth::sink::pointcloud::{PLY_VERTEX_BYTES, write_ply};
use std::path::Path;

fn ramp_depth(width: u32, height: u32) -> DepthMap {
    let mut depth = DepthMap::new(width, height);
    for (i, d) in depth.data.iter_mut().enumerate() {
        *d = 0.5 + (i % 997) as f32 * 0.0731;
    }
    depth.data[0] = 0.0;
    depth.data[1] = f32::NAN;
    depth.data[2] = -3.0;
    depth.data[3] = 400.0; // beyond the 16-bit range: clamped
    depth
}

#[test]
fn depth_png_round_trip_within_a_256th_of_a_metre() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("depth.png");
    let depth = ramp_depth(67, 41);
    write_depth_png(&path, &depth).unwrap();
    let back = read_depth_png(&path).unwrap();
    assert_eq!((back.width, back.height), (67, 41));
    for (i, (&a, &b)) in depth.data.iter().zip(&back.data).enumerate() {
        match i {
            0..=2 => assert_eq!(b, 0.0, "invalid pixel {i} must read back as 0"),
            3 => assert_eq!(b, 65535.0 / 256.0),
            _ => assert!((a - b).abs() <= 0.5 / 256.0 + 1e-6, "pixel {i}: {a} vs {b}"),
        }
    }
    // The file really is a 16-bit grayscale PNG.
    let decoded = image::open(&path).unwrap();
    assert_eq!(decoded.color(), image::ColorType::L16);
}

#[test]
fn depth_png_rejects_wrong_inputs_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let rgb_png = dir.path().join("colour.png");
    image::RgbImage::new(4, 4).save(&rgb_png).unwrap();
    match read_depth_png(&rgb_png) {
        Err(e @ SinkError::Format { .. }) => assert!(e.to_string().contains("colour.png"), "{e}"),
        other => panic!("expected Format, got {other:?}"),
    }
    let garbage = dir.path().join("garbage.png");
    std::fs::write(&garbage, b"not a png at all").unwrap();
    match read_depth_png(&garbage) {
        Err(e @ SinkError::Image { .. }) => assert!(e.to_string().contains("garbage.png"), "{e}"),
        other => panic!("expected Image, got {other:?}"),
    }
    match read_depth_png(&dir.path().join("absent.png")) {
        Err(e @ SinkError::Io { .. }) => assert!(e.to_string().contains("absent.png"), "{e}"),
        other => panic!("expected Io, got {other:?}"),
    }
    let short = DepthMap::from_data(4, 4, vec![1.0; 3]);
    let target = dir.path().join("short.png");
    assert!(matches!(write_depth_png(&target, &short), Err(SinkError::InvalidInput { .. })));
    assert!(!target.exists(), "a failed write must not leave a file");
}

/// The real 7-Scenes kitchen depth (uint16 millimetres) survives the KITTI PNG round trip.
#[test]
fn real_kitchen_depth_round_trip() {
    let Some(kitchen) = common::shared("data/kitchen") else { return };
    let raw = image::open(kitchen.join("frame-000000.depth.png")).unwrap().into_luma16();
    let (width, height) = raw.dimensions();
    let depth = DepthMap::from_data(
        width,
        height,
        raw.pixels().map(|p| if p[0] == 65535 { 0.0 } else { f32::from(p[0]) / 1000.0 }).collect(),
    );
    let valid = depth.data.iter().filter(|&&d| d > 0.0).count();
    assert!(valid > (width * height / 2) as usize, "the kitchen frame has mostly valid depth");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kitchen.png");
    write_depth_png(&path, &depth).unwrap();
    let back = read_depth_png(&path).unwrap();
    let worst =
        depth.data.iter().zip(&back.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 0.5 / 256.0 + 1e-6, "worst error {worst} m");
    assert_eq!(back.data.iter().filter(|&&d| d > 0.0).count(), valid);

    // And its colourised view: invalid pixels black, the rest coloured.
    let colour = colourise_depth(&depth);
    for (d, px) in depth.data.iter().zip(colour.data.chunks_exact(3)) {
        if *d > 0.0 {
            assert_ne!(px, INVALID_COLOUR);
        } else {
            assert_eq!(px, INVALID_COLOUR);
        }
    }
    let colour_png = dir.path().join("kitchen_colour.png");
    write_colourised_depth_png(&colour_png, &depth).unwrap();
    // The file holds exactly the colourised view.
    let back = image::open(&colour_png).expect("the colourised PNG decodes").to_rgb8();
    assert_eq!((back.width(), back.height()), (colour.width, colour.height));
    assert_eq!(back.as_raw(), &colour.data);
}

#[test]
fn colour_map_orders_near_bright_far_dark_and_blackens_invalid() {
    // Luminance rises along the map; its ends are clearly distinct.
    let samples: Vec<f32> = (0..=100).map(|i| luminance(colour_at(i as f32 / 100.0))).collect();
    assert!(samples.windows(2).all(|w| w[1] >= w[0]), "luminance must not fall: {samples:?}");
    assert!(samples[100] - samples[0] > 150.0);

    // A depth map whose depth grows left to right: nearer columns are brighter.
    let (width, height) = (50, 4);
    let mut depth = DepthMap::new(width, height);
    for y in 0..height {
        for x in 0..width {
            depth.data[(y * width + x) as usize] = 1.0 + x as f32 * 0.2;
        }
    }
    depth.data[(width + 10) as usize] = 0.0;
    depth.data[(2 * width + 20) as usize] = f32::NAN;
    let image = colourise_depth(&depth);
    assert_eq!((image.width, image.height), (width, height));
    let lum = |x: u32, y: u32| luminance(image.pixel(x, y));
    for x in 1..width {
        assert!(lum(x, 0) <= lum(x - 1, 0), "column {x} is farther but brighter");
    }
    assert!(lum(0, 0) > lum(width - 1, 0) + 150.0, "near and far ends must be distinct");
    assert_eq!(image.pixel(10, 1), INVALID_COLOUR);
    assert_eq!(image.pixel(20, 2), INVALID_COLOUR);

    // Disparity: larger = nearer = brighter; outliers beyond the percentiles saturate.
    let mut disparity: Vec<f32> = (0..100).map(|i| i as f32).collect();
    disparity[99] = 1e9;
    disparity[0] = -1.0;
    let image = colourise_disparity(100, 1, &disparity);
    assert_eq!(image.pixel(0, 0), INVALID_COLOUR);
    assert!(luminance(image.pixel(90, 0)) > luminance(image.pixel(10, 0)));
    assert_eq!(image.pixel(99, 0), colour_at(1.0));

    // Nothing valid: all black, no panic.
    let empty = colourise_depth(&DepthMap::new(8, 8));
    assert!(empty.data.iter().all(|&v| v == 0));
}

/// The live sink's buffers are reused from frame to frame without leaking the previous frame
/// into the next: the forms that write into kept buffers give exactly what fresh buffers give
/// (and the depth exactly Monodepth2's conversion), and keep their allocations.
#[test]
fn live_sink_buffers_are_reused_and_give_the_same_images() {
    let (mut colour, mut sample, mut depth) =
        (RgbImage::new(0, 0), Vec::new(), DepthMap::new(0, 0));
    let mut disparity = Disparity::new(64, 48);
    for frame in 0..3u32 {
        for (i, d) in disparity.data.iter_mut().enumerate() {
            *d = ((i as u32 * 7 + frame * 13) % 97) as f32 / 97.0;
        }
        disparity.data[5] = f32::NAN;
        disparity.to_depth_into(0.1, 100.0, &mut depth);
        // Bit for bit (the NaN pixel included, which `==` would call different).
        let bits = |d: &DepthMap| {
            (d.width, d.height, d.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
        };
        assert!(bits(&depth) == bits(&disparity.to_depth(0.1, 100.0)), "frame {frame}: depth");
        let (min_disp, max_disp) = (1.0f32 / 100.0, 1.0f32 / 0.1);
        let formula = disparity
            .data
            .iter()
            .map(|&d| (1.0 / (min_disp + (max_disp - min_disp) * d)).to_bits());
        assert!(depth.data.iter().map(|v| v.to_bits()).eq(formula), "frame {frame}: conversion");
        let range = colourise_depth_into(&depth, &mut colour, &mut sample);
        let (expected, expected_range) = colourise_depth_ranged(&depth);
        assert!(colour == expected, "frame {frame}: colour");
        assert!(colour == colourise_depth(&depth), "frame {frame}: colour without a range");
        assert_eq!(range, expected_range, "frame {frame}: range");
        if frame == 0 {
            continue;
        }
        // From the second frame on, nothing is reallocated.
        let addresses = (depth.data.as_ptr(), colour.data.as_ptr(), sample.as_ptr());
        disparity.to_depth_into(0.1, 100.0, &mut depth);
        colourise_depth_into(&depth, &mut colour, &mut sample);
        assert_eq!((depth.data.as_ptr(), colour.data.as_ptr(), sample.as_ptr()), addresses);
    }
    // A smaller map reuses the same buffers and is not polluted by the larger one.
    let small = DepthMap::from_data(2, 1, vec![1.0, 0.0]);
    colourise_depth_into(&small, &mut colour, &mut sample);
    assert!(colour == colourise_depth(&small), "the smaller map's colours");
}

#[test]
fn metrics_csv_and_summary_json_parse_back() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("metrics.csv");
    let mut csv = MetricsCsvWriter::create(&csv_path, &["frame", "abs_rel", "fps"]).unwrap();
    let rows = [[0.0, 0.125, 29.5], [1.0, 0.1, 30.25], [2.0, f64::NAN, 31.0]];
    for row in &rows {
        csv.write_row(row).unwrap();
        // Flushed as it goes: the row is on disk before finish.
        let lines = std::fs::read_to_string(&csv_path).unwrap().lines().count();
        assert_eq!(lines as u64, csv.rows_written() + 1);
    }
    match csv.write_row(&[1.0, 2.0]) {
        Err(e @ SinkError::InvalidInput { .. }) => {
            assert!(e.to_string().contains("metrics.csv"), "{e}")
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert_eq!(csv.finish().unwrap(), csv_path);

    let text = std::fs::read_to_string(&csv_path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("frame,abs_rel,fps"));
    for (line, expected) in lines.zip(&rows) {
        let parsed: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(parsed.len(), 3);
        for (a, b) in parsed.iter().zip(expected) {
            assert!(a == b || (a.is_nan() && b.is_nan()), "{line}");
        }
    }
    assert!(MetricsCsvWriter::create(&dir.path().join("bad.csv"), &["a,b"]).is_err());

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Summary {
        frames: u64,
        mean_abs_rel: f64,
        source: String,
    }
    let summary = Summary { frames: 3, mean_abs_rel: 0.1125, source: "test://".into() };
    let json_path = dir.path().join("summary.json");
    write_summary_json(&json_path, &summary).unwrap();
    let back: Summary = read_summary_json(&json_path).unwrap();
    assert_eq!(back, summary);
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(value["frames"], 3);
    // Wrong shape: a typed JSON error naming the file.
    match read_summary_json::<Vec<u32>>(&json_path) {
        Err(e @ SinkError::Json { .. }) => assert!(e.to_string().contains("summary.json"), "{e}"),
        other => panic!("expected Json, got {other:?}"),
    }
}

/// One PLY vertex: position and colour.
type Vertex = ([f32; 3], [u8; 3]);

/// Parse a binary PLY written by `write_ply`: header lines and the vertices.
fn read_ply(path: &Path) -> (Vec<String>, Vec<Vertex>) {
    let bytes = std::fs::read(path).unwrap();
    let marker = b"end_header\n";
    let end = bytes.windows(marker.len()).position(|w| w == marker).unwrap() + marker.len();
    let header: Vec<String> =
        std::str::from_utf8(&bytes[..end]).unwrap().lines().map(String::from).collect();
    let body = &bytes[end..];
    assert_eq!(body.len() % PLY_VERTEX_BYTES, 0);
    let vertices = body
        .chunks_exact(PLY_VERTEX_BYTES)
        .map(|v| {
            let f = |i: usize| f32::from_le_bytes(v[i..i + 4].try_into().unwrap());
            ([f(0), f(4), f(8)], [v[12], v[13], v[14]])
        })
        .collect();
    (header, vertices)
}

#[test]
fn ply_header_count_and_back_projection() {
    let (width, height) = (8u32, 6u32);
    let intrinsics =
        Intrinsics { fx: 10.0, fy: 12.0, cx: 3.5, cy: 2.5, width, height, distortion: None };
    let mut depth = DepthMap::new(width, height);
    let mut rgb = RgbImage::new(width, height);
    for y in 0..height {
        for x in 0..width {
            let i = (y * width + x) as usize;
            depth.data[i] = if (x + y) % 3 == 0 { 0.0 } else { 1.0 + 0.25 * x as f32 };
            rgb.data[i * 3..i * 3 + 3].copy_from_slice(&[x as u8 * 20, y as u8 * 30, 7]);
        }
    }
    depth.data[1] = f32::NAN;
    let expected = depth.data.iter().filter(|d| d.is_finite() && **d > 0.0).count();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud.ply");
    let written = write_ply(&path, &depth, &intrinsics, Some(&rgb)).unwrap();
    assert_eq!(written, expected);
    let (header, vertices) = read_ply(&path);
    assert_eq!(header[0], "ply");
    assert_eq!(header[1], "format binary_little_endian 1.0");
    assert!(header.contains(&format!("element vertex {expected}")));
    for property in ["float x", "float y", "float z", "uchar red", "uchar green", "uchar blue"] {
        assert!(header.contains(&format!("property {property}")), "{property}");
    }
    assert_eq!(vertices.len(), expected);

    // Every vertex re-projects onto a valid pixel with that pixel's depth and colour.
    for ([x, y, z], colour) in vertices {
        let u = (f64::from(x) / f64::from(z) * intrinsics.fx + intrinsics.cx).round() as u32;
        let v = (f64::from(y) / f64::from(z) * intrinsics.fy + intrinsics.cy).round() as u32;
        assert!(u < width && v < height);
        assert!((depth.at(u, v) - z).abs() < 1e-6);
        assert_eq!(colour, rgb.pixel(u, v));
    }

    // A mismatched colour image is refused, naming the file, and nothing is written.
    let other = dir.path().join("bad.ply");
    match write_ply(&other, &depth, &intrinsics, Some(&RgbImage::new(4, 4))) {
        Err(e @ SinkError::InvalidInput { .. }) => {
            assert!(e.to_string().contains("bad.ply"), "{e}")
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert!(!other.exists());
}
