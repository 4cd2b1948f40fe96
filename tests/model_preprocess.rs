//! The preprocessing stage's Lanczos-3 resize against Pillow's `Image.resize(LANCZOS)`: real
//! KITTI and kitchen frames (when ../shared exists) and synthetic noise images, downscaling,
//! upscaling and one-axis resizes, within ±1 grey level on nearly all pixels.

mod common;
mod model_support;

use livedepth::engine::{Preprocessor, resize_lanczos};
use livedepth::frame::RgbImage;
use model_support::*;
use std::path::{Path, PathBuf};

fn read_u8_npy(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    npyz::NpyFile::new(&bytes[..]).unwrap().into_vec::<u8>().unwrap()
}

fn noise_image(width: u32, height: u32, seed: u32) -> RgbImage {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    let mut img = RgbImage::new(width, height);
    for (i, v) in img.data.iter_mut().enumerate() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        // Mix noise with a gradient so both edges and smooth areas are exercised.
        let gradient = (i as u32 / 3 % width) * 255 / width;
        *v = if (i / 3) % 7 < 3 { (state & 0xff) as u8 } else { gradient as u8 };
    }
    img
}

fn save_png(img: &RgbImage, path: &Path) {
    image::RgbImage::from_raw(img.width, img.height, img.data.clone()).unwrap().save(path).unwrap();
}

#[test]
fn lanczos_resize_matches_pillow() {
    let python = common::python();
    let dir = tempfile::tempdir().unwrap();
    // (source image path, target width, target height)
    let mut cases: Vec<(PathBuf, u32, u32)> = Vec::new();
    for (i, (w, h, tw, th)) in
        [(97, 61, 320, 96), (300, 200, 64, 64), (640, 480, 640, 192), (50, 40, 50, 96)]
            .into_iter()
            .enumerate()
    {
        let path = dir.path().join(format!("noise{i}.png"));
        save_png(&noise_image(w, h, i as u32 + 1), &path);
        cases.push((path, tw, th));
    }
    if let Some(kitti) =
        common::shared("data/kitti_tiny/2011_09_26/2011_09_26_drive_0023_sync/image_02/data")
    {
        cases.push((kitti.join("0000000000.png"), 640, 192));
        cases.push((kitti.join("0000000003.png"), 320, 96));
    }
    if let Some(kitchen) = common::shared("data/kitchen") {
        cases.push((kitchen.join("frame-000000.color.jpg"), 640, 192));
    }
    let mut args: Vec<String> = Vec::new();
    for (i, (src, w, h)) in cases.iter().enumerate() {
        args.extend([src.display().to_string(), w.to_string(), h.to_string()]);
        args.push(dir.path().join(format!("pil{i}.npy")).display().to_string());
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run_python(&python, "pil_resize.py", &arg_refs);

    for (i, (src, w, h)) in cases.iter().enumerate() {
        let pil_path = dir.path().join(format!("pil{i}.npy"));
        let decoded = read_u8_npy(&PathBuf::from(format!("{}.src.npy", pil_path.display())));
        let mut source = load_rgb(src);
        if src.extension().is_some_and(|e| e == "png") {
            assert_eq!(source.data, decoded, "PNG decoding must be identical");
        }
        // Resize Pillow's decoded pixels (JPEG decoders differ by a few levels).
        source.data = decoded;
        let ours = resize_lanczos(&source, *w, *h).unwrap();
        let pil = read_u8_npy(&pil_path);
        assert_eq!(ours.data.len(), pil.len());
        let diffs: Vec<i32> =
            ours.data.iter().zip(&pil).map(|(&a, &b)| (a as i32 - b as i32).abs()).collect();
        let max = diffs.iter().copied().max().unwrap_or(0);
        let off = diffs.iter().filter(|&&d| d > 0).count();
        println!(
            "{} -> {w}x{h}: max |Δ| {max}, {off} of {} values differ",
            src.display(),
            diffs.len()
        );
        assert!(max <= 1, "{}: max difference {max}", src.display());
        assert!(off * 1000 <= diffs.len(), "{}: {off} values differ", src.display());
    }
}

#[test]
fn preprocessor_normalises_planar_and_reuses_tables() {
    let mut pre = Preprocessor::new(64, 32, [0.45; 3], [0.225; 3]).unwrap();
    let img = noise_image(128, 64, 9);
    let mut a = vec![0f32; pre.output_len()];
    let mut b = vec![0f32; pre.output_len()];
    pre.run(&img, &mut a).unwrap();
    pre.run(&noise_image(100, 50, 3), &mut b).unwrap(); // a different size in between
    pre.run(&img, &mut b).unwrap();
    assert_eq!(a, b);
    let resized = resize_lanczos(&img, 64, 32).unwrap();
    // Pixel (5, 7), green channel, lives in plane 1.
    let g = resized.pixel(5, 7)[1] as f32;
    let expected = (g / 255.0 - 0.45) / 0.225;
    assert!((a[64 * 32 + 7 * 64 + 5] - expected).abs() < 1e-6);
    // A truncated buffer is a typed error, not a panic.
    let broken = RgbImage { width: 10, height: 10, data: vec![0; 299] };
    let err = pre.run(&broken, &mut a).unwrap_err().to_string();
    assert!(err.contains("299") && err.contains("300"), "{err}");
}
