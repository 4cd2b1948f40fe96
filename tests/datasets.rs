//! Dataset readers on the real recordings in ../shared (skipped with a printed reason where
//! absent) and on small malformed folders built in temp dirs: shapes, metric depth, rigid
//! poses, geometric consistency of depth + pose between frames (which proves the
//! camera-to-world convention), frame selection, and typed errors for bad input.

mod common;

use livedepth::camera::Intrinsics;
use livedepth::frame::Frame;
use livedepth::source::Source;
use livedepth::source::dataset::{
    Dataset, DatasetError, DatasetKind, DatasetSource, FrameSelection, KitchenDataset,
    KittiDataset, PoseSource, TumDataset, open_dataset,
};
use nalgebra::{Isometry3, Matrix3, Vector3};
use std::path::Path;

/// Median relative depth disagreement when the valid pixels of `a` (every `stride`-th) are
/// back-projected with their depth, moved into `b`'s camera by `b_from_a` and compared with
/// `b`'s depth near the pixel they land on (nearest valid within `radius` pixels).
fn reprojection_error(
    a: &Frame,
    b: &Frame,
    b_from_a: &Isometry3<f64>,
    stride: usize,
    radius: i64,
) -> (f64, usize) {
    let (da, db) = (a.gt_depth.as_ref().unwrap(), b.gt_depth.as_ref().unwrap());
    let (ka, kb): (&Intrinsics, &Intrinsics) =
        (a.intrinsics.as_ref().unwrap(), b.intrinsics.as_ref().unwrap());
    let mut errors = Vec::new();
    for v in (0..da.height).step_by(stride) {
        for u in (0..da.width).step_by(stride) {
            let d = da.at(u, v) as f64;
            if d <= 0.0 {
                continue;
            }
            let p_b = b_from_a * nalgebra::Point3::from(ka.unproject(u as f64, v as f64) * d);
            let Some((ub, vb)) = kb.project(&p_b.coords) else { continue };
            let (ub, vb) = (ub.round() as i64, vb.round() as i64);
            let mut best: Option<(i64, f64)> = None;
            for dy in -radius..=radius {
                for dx in -radius..=radius {
                    let (x, y) = (ub + dx, vb + dy);
                    if x < 0 || y < 0 || x >= db.width as i64 || y >= db.height as i64 {
                        continue;
                    }
                    let depth_b = db.at(x as u32, y as u32) as f64;
                    let dist = dx * dx + dy * dy;
                    if depth_b > 0.0 && best.is_none_or(|(bd, _)| dist < bd) {
                        best = Some((dist, depth_b));
                    }
                }
            }
            if let Some((_, depth_b)) = best {
                errors.push((p_b.z - depth_b).abs() / depth_b);
            }
        }
    }
    let n = errors.len();
    assert!(n > 0, "no pixel of frame {} landed on valid depth in frame {}", a.index, b.index);
    errors.sort_by(f64::total_cmp);
    (errors[n / 2], n)
}

/// Checks camera-to-world poses by reprojection between frames `i` and `j`, and that reading
/// them the other way round (world-to-camera) fits clearly worse.
fn check_pose_convention(
    dataset: &dyn Dataset,
    i: usize,
    j: usize,
    stride: usize,
    radius: i64,
    max_error: f64,
) {
    let (a, b) = (dataset.frame(i).unwrap(), dataset.frame(j).unwrap());
    let (ta, tb) = (a.gt_pose.unwrap(), b.gt_pose.unwrap());
    let (err, n) = reprojection_error(&a, &b, &(tb.inverse() * ta), stride, radius);
    let (wrong, _) = reprojection_error(&a, &b, &(tb * ta.inverse()), stride, radius);
    eprintln!(
        "{} frames {i}->{j}: median relative depth error {:.2} % over {n} pixels \
         (world-to-camera reading: {:.2} %)",
        dataset.name(),
        err * 100.0,
        wrong * 100.0
    );
    assert!(err < max_error, "median reprojection error {err} too large");
    assert!(wrong > 1.5 * err, "the inverse convention fits as well ({wrong} vs {err})");
}

fn assert_rigid(pose: &Isometry3<f64>) {
    let r: Matrix3<f64> = *pose.rotation.to_rotation_matrix().matrix();
    assert!((r.transpose() * r - Matrix3::identity()).abs().max() < 1e-9);
    assert!((r.determinant() - 1.0).abs() < 1e-9);
    assert!(pose.translation.vector.iter().all(|t| t.is_finite()));
}

fn valid_fraction_and_range(frame: &Frame) -> (f64, f32, f32) {
    let depth = frame.gt_depth.as_ref().unwrap();
    let mut valid: Vec<f32> = depth.data.iter().copied().filter(|&d| d > 0.0).collect();
    valid.sort_by(f32::total_cmp);
    let n = valid.len();
    (n as f64 / depth.data.len() as f64, valid[n / 100], valid[n * 99 / 100])
}

// ---------------------------------------------------------------------------------- kitchen

#[test]
fn kitchen_frames_are_complete_and_metric() {
    let Some(dir) = common::shared("data/kitchen") else { return };
    let dataset = KitchenDataset::open(&dir).unwrap();
    assert_eq!(dataset.len(), 300);
    assert_eq!(dataset.kind(), DatasetKind::Kitchen);
    let k = dataset.intrinsics();
    assert_eq!((k.fx, k.fy, k.cx, k.cy, k.width, k.height), (585.0, 585.0, 320.0, 240.0, 640, 480));
    for i in [0, 150, 299] {
        let frame = dataset.frame(i).unwrap();
        assert_eq!(frame.index, i as u64);
        assert_eq!(
            (frame.rgb.width, frame.rgb.height, frame.rgb.data.len()),
            (640, 480, 640 * 480 * 3)
        );
        let depth = frame.gt_depth.as_ref().unwrap();
        assert_eq!((depth.width, depth.height), (640, 480));
        let (fraction, p1, p99) = valid_fraction_and_range(&frame);
        assert!((0.3..0.97).contains(&fraction), "valid fraction {fraction}");
        assert!(p1 > 0.4 && p99 < 5.0, "depth percentiles {p1}..{p99} m");
        assert_rigid(&frame.gt_pose.unwrap());
        assert!((frame.timestamp - i as f64 / 30.0).abs() < 1e-9);
    }
    // Hand-held motion: a few centimetres per frame.
    let step =
        (dataset.pose(0).unwrap().inverse() * dataset.pose(1).unwrap()).translation.vector.norm();
    assert!(step > 1e-4 && step < 0.1, "inter-frame motion {step} m");
}

#[test]
fn kitchen_poses_are_camera_to_world() {
    let Some(dir) = common::shared("data/kitchen") else { return };
    let dataset = KitchenDataset::open(&dir).unwrap();
    for (i, j) in [(0, 5), (120, 125), (290, 295), (0, 30)] {
        check_pose_convention(&dataset, i, j, 4, 0, 0.05);
    }
}

#[test]
fn dataset_source_plays_a_selected_range() {
    let Some(dir) = common::shared("data/kitchen") else { return };
    let spec = format!("kitchen:{}", dir.display());
    let selection = FrameSelection::parse("10:21:5").unwrap();
    assert_eq!(selection, FrameSelection { start: 10, end: Some(21), step: 5 });
    let mut source = DatasetSource::open(&spec, selection).unwrap();
    assert_eq!(source.len_hint(), Some(3));
    assert!(!source.is_live());
    assert!(source.describe().contains("kitchen"));
    let reference = source.dataset().frame(15).unwrap();
    let boxed: &mut dyn Source = &mut source;
    let mut frames = Vec::new();
    while let Some(frame) = boxed.next_frame().unwrap() {
        frames.push(frame);
    }
    assert_eq!(frames.len(), 3);
    assert_eq!(frames.iter().map(|f| f.index).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(source.dataset_index(1), Some(15));
    assert_eq!(frames[1].gt_pose, reference.gt_pose);
    assert_eq!(frames[1].rgb, reference.rgb);
    assert!(source.next_frame().unwrap().is_none(), "stays at the end");

    let err = DatasetSource::open(&spec, FrameSelection { start: 300, end: None, step: 1 });
    assert!(matches!(err, Err(DatasetError::BadSelection { len: 300, .. })));
    let dataset = open_dataset(&spec).unwrap();
    assert!(matches!(
        dataset.frame(300),
        Err(DatasetError::OutOfRange { index: 300, len: 300, .. })
    ));
}

#[test]
fn frame_selection_parses_and_rejects() {
    assert_eq!(FrameSelection::parse(":100").unwrap().indices(300).unwrap().len(), 100);
    assert_eq!(FrameSelection::parse("::2").unwrap().indices(5).unwrap(), [0, 2, 4]);
    assert_eq!(FrameSelection::parse("3:").unwrap().indices(5).unwrap(), [3, 4]);
    assert_eq!(FrameSelection::parse("0:1000").unwrap().indices(4).unwrap(), [0, 1, 2, 3]);
    for bad in ["", "5", "a:b", "0:10:0", "1:2:3:4", "-1:5"] {
        assert!(
            matches!(FrameSelection::parse(bad), Err(DatasetError::BadSelection { .. })),
            "{bad:?}"
        );
    }
    assert!(FrameSelection::parse("7:7").unwrap().indices(10).is_err());
    // Rust-style ranges: `..` excludes the end, `..=` includes it.
    assert_eq!(FrameSelection::parse("2..5").unwrap().indices(10).unwrap(), [2, 3, 4]);
    assert_eq!(FrameSelection::parse("2..=5").unwrap().indices(10).unwrap(), [2, 3, 4, 5]);
    assert_eq!(FrameSelection::parse("..2").unwrap().indices(10).unwrap(), [0, 1]);
    // The largest inclusive end means "to the last frame": it neither wraps to an empty
    // selection nor panics (issue #13).
    let to_the_end = FrameSelection::parse("0..=18446744073709551615").unwrap();
    assert_eq!(to_the_end.indices(4).unwrap(), [0, 1, 2, 3]);
    for bad in ["a..5", "1..x", "1..=-2"] {
        assert!(
            matches!(FrameSelection::parse(bad), Err(DatasetError::BadSelection { .. })),
            "{bad:?}"
        );
    }
}

// -------------------------------------------------------------------------------------- TUM

#[test]
fn tum_frames_are_associated_and_metric() {
    let Some(dir) = common::shared("data/tum_fr1_xyz") else { return };
    let dataset = TumDataset::open(&dir).unwrap();
    assert!(dataset.len() >= 30, "{} associated frames", dataset.len());
    let k = dataset.intrinsics();
    assert_eq!((k.fx, k.fy, k.cx, k.cy), (517.3, 516.5, 318.6, 255.3));
    assert_eq!(k.distortion.unwrap().k1, 0.2624);
    let mut last_timestamp = f64::NEG_INFINITY;
    for i in 0..dataset.len() {
        let t = dataset.timestamp(i).unwrap();
        assert!(t > last_timestamp);
        last_timestamp = t;
    }
    let frame = dataset.frame(3).unwrap();
    assert_eq!((frame.rgb.width, frame.rgb.height), (640, 480));
    assert!(frame.intrinsics.unwrap().distortion.is_some());
    let (fraction, p1, p99) = valid_fraction_and_range(&frame);
    assert!(fraction > 0.5, "valid fraction {fraction}");
    assert!(p1 > 0.3 && p99 < 5.0, "depth percentiles {p1}..{p99} m (value / 5000)");
    assert_rigid(&frame.gt_pose.unwrap());
}

#[test]
fn tum_poses_are_camera_to_world() {
    let Some(dir) = common::shared("data/tum_fr1_xyz") else { return };
    let dataset = TumDataset::open(&dir).unwrap();
    check_pose_convention(&dataset, 0, 5, 4, 0, 0.05);
    check_pose_convention(&dataset, 10, 20, 4, 0, 0.05);
    // The undistorted variant is a pinhole camera with the same K and stays consistent.
    let undistorted = TumDataset::open(&dir).unwrap().undistorted();
    let frame = undistorted.frame(0).unwrap();
    assert!(frame.intrinsics.unwrap().distortion.is_none());
    assert_eq!((frame.rgb.width, frame.rgb.height), (640, 480));
    check_pose_convention(&undistorted, 0, 5, 4, 0, 0.05);
}

// ------------------------------------------------------------------------------------ KITTI

#[test]
fn kitti_drive_is_found_below_a_parent_folder() {
    let Some(dir) = common::shared("data/kitti_tiny") else { return };
    let dataset = KittiDataset::open(&dir).unwrap();
    assert!(dataset.drive().ends_with("2011_09_26_drive_0023_sync"));
    assert_eq!(dataset.len(), 7);
    let k = dataset.intrinsics();
    assert_eq!((k.fx, k.cx, k.cy, k.width, k.height), (721.5377, 609.5593, 172.854, 1242, 375));
    let frame = dataset.frame(0).unwrap();
    assert_eq!((frame.rgb.width, frame.rgb.height), (1242, 375));
    let depth = frame.gt_depth.as_ref().unwrap();
    assert_eq!((depth.width, depth.height), (1242, 375));
    let valid: Vec<f32> = depth.data.iter().copied().filter(|&d| d > 0.0).collect();
    assert!((15_000..25_000).contains(&valid.len()), "{} Velodyne points", valid.len());
    assert!(valid.iter().all(|&d| d > 1.0 && d < 100.0));
    // timestamps.txt in KITTI's date format: 10 Hz.
    let dt = dataset.frame(1).unwrap().timestamp - frame.timestamp;
    assert!((dt - 0.1037).abs() < 1e-3, "frame interval {dt}");
}

#[test]
fn kitti_poses_are_camera_to_world_moving_forward() {
    let Some(dir) = common::shared("data/kitti_tiny/2011_09_26/2011_09_26_drive_0023_sync") else {
        return;
    };
    let dataset = KittiDataset::open(&dir).unwrap();
    assert_eq!(dataset.pose_source(), PoseSource::Oxts);
    let (p0, p1) =
        (dataset.frame(0).unwrap().gt_pose.unwrap(), dataset.frame(1).unwrap().gt_pose.unwrap());
    assert!(
        p0.translation.vector.norm() < 1e-9 && p0.rotation.angle() < 1e-9,
        "first frame is the origin"
    );
    assert_rigid(&p1);
    // Camera 1 expressed in camera 0's frame: about 1 m forward (+z) at 8.7 m/s and 10 Hz.
    let motion: Vector3<f64> = (p0.inverse() * p1).translation.vector;
    eprintln!("KITTI frame 0 -> 1 camera motion {motion:?} ({:.3} m)", motion.norm());
    assert!(motion.z > 0.8 && motion.z < 1.2, "forward motion {}", motion.z);
    assert!(motion.x.abs() < 0.1 * motion.z && motion.y.abs() < 0.1 * motion.z);
    // Sparse Velodyne depth (one scan per frame, different scan lines in each frame): compare
    // with the nearest valid point within 1 pixel.
    check_pose_convention(&dataset, 0, 1, 1, 1, 0.03);
    check_pose_convention(&dataset, 1, 3, 1, 1, 0.03);
    check_pose_convention(&dataset, 3, 6, 1, 1, 0.03);
}

#[test]
fn kitti_gps_imu_poses_fit_the_velodyne_better_than_poses_txt() {
    let Some(dir) = common::shared("data/kitti_tiny") else { return };
    let dataset = KittiDataset::open(&dir).unwrap();
    let file_poses = dataset.poses_file_poses().unwrap().expect("kitti_tiny ships poses.txt");
    let (a, b) = (dataset.frame(3).unwrap(), dataset.frame(6).unwrap());
    let oxts = b.gt_pose.unwrap().inverse() * a.gt_pose.unwrap();
    let from_file = file_poses[6].inverse() * file_poses[3];
    let (oxts_err, _) = reprojection_error(&a, &b, &oxts, 1, 0);
    let (file_err, _) = reprojection_error(&a, &b, &from_file, 1, 0);
    eprintln!(
        "frames 3->6: GPS/IMU moves {:.3} m ({:.2} % depth error), poses.txt {:.3} m ({:.2} %)",
        oxts.translation.vector.norm(),
        oxts_err * 100.0,
        from_file.translation.vector.norm(),
        file_err * 100.0
    );
    assert!(oxts_err < 0.02 && oxts_err < 0.5 * file_err);
    // Both agree on the direction: forward along +z.
    assert!(oxts.translation.vector.z < -1.0 && from_file.translation.vector.z < -0.5);
}

#[cfg(unix)]
#[test]
fn kitti_falls_back_to_p_rect_02_without_cam_txt() {
    let Some(root) = common::shared("data/kitti_tiny/2011_09_26") else { return };
    let drive = root.join("2011_09_26_drive_0023_sync");
    let tmp = tempfile::tempdir().unwrap();
    let new_drive = tmp.path().join("2011_09_26/drive_sync");
    std::fs::create_dir_all(new_drive.join("image_02")).unwrap();
    let link = std::os::unix::fs::symlink;
    link(drive.join("image_02/data"), new_drive.join("image_02/data")).unwrap();
    link(root.join("calib_cam_to_cam.txt"), tmp.path().join("2011_09_26/calib_cam_to_cam.txt"))
        .unwrap();
    let dataset = KittiDataset::open(tmp.path()).unwrap();
    let k = dataset.intrinsics();
    assert_eq!((k.fx, k.fy, k.cx, k.cy), (721.5377, 721.5377, 609.5593, 172.854));
    assert_eq!(dataset.pose_source(), PoseSource::None);
    let frame = dataset.frame(6).unwrap();
    assert!(frame.gt_depth.is_none() && frame.gt_pose.is_none());
    assert!((frame.timestamp - 0.6).abs() < 1e-9, "index / 10 Hz");
}

// --------------------------------------------------- synthetic KITTI layout and bad inputs

fn write_rgb(path: &Path, width: u32, height: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]))
        .save(path)
        .unwrap();
}

fn write_depth_png(path: &Path, width: u32, height: u32, value: u16) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::ImageBuffer::<image::Luma<u16>, _>::from_pixel(width, height, image::Luma([value]))
        .save(path)
        .unwrap();
}

/// A 2-frame drive in the layout our synthetic renderer writes.
fn write_synthetic_drive(out: &Path) {
    for i in 0..2 {
        write_rgb(&out.join(format!("image_02/data/{i:010}.png")), 64, 32);
        write_depth_png(
            &out.join(format!("proj_depth/groundtruth/image_02/{i:010}.png")),
            64,
            32,
            5 * 256,
        );
    }
    std::fs::write(out.join("image_02/cam.txt"), "40 0 32\n0 40 16\n0 0 1\n").unwrap();
    std::fs::write(
        out.join("image_02/poses.txt"),
        "1 0 0 0 0 1 0 0 0 0 1 0\n1 0 0 0 0 1 0 0 0 0 1 0.5\n",
    )
    .unwrap();
    std::fs::write(out.join("image_02/timestamps.txt"), "0.0\n0.1\n").unwrap();
}

#[test]
fn synthetic_kitti_layout_reads_png_ground_truth() {
    let tmp = tempfile::tempdir().unwrap();
    write_synthetic_drive(tmp.path());
    assert_eq!(KittiDataset::open(tmp.path()).unwrap().pose_source(), PoseSource::PosesFile);
    let dataset = open_dataset(&format!("kitti:{}", tmp.path().display())).unwrap();
    assert_eq!(dataset.len(), 2);
    let frame = dataset.frame(1).unwrap();
    assert_eq!(frame.rgb.pixel(10, 3), [10, 3, 7]);
    let depth = frame.gt_depth.unwrap();
    assert!(depth.data.iter().all(|&d| d == 5.0), "uint16 / 256 m");
    assert_eq!(frame.gt_pose.unwrap().translation.vector, Vector3::new(0.0, 0.0, 0.5));
    assert_eq!(frame.timestamp, 0.1);
    let k = frame.intrinsics.unwrap();
    assert_eq!((k.fx, k.cx, k.width, k.height), (40.0, 32.0, 64, 32));
}

fn expect_err(result: Result<impl std::fmt::Debug, DatasetError>, needle: &str) -> DatasetError {
    let err = result.expect_err("expected an error");
    let message = err.to_string();
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
    err
}

#[test]
fn malformed_kitti_inputs_give_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    write_synthetic_drive(out);

    // Bad pose line 2.
    std::fs::write(out.join("image_02/poses.txt"), "1 0 0 0 0 1 0 0 0 0 1 0\n1 0 0 zero\n")
        .unwrap();
    let err = expect_err(KittiDataset::open(out).map(|_| ()), "poses.txt");
    assert!(matches!(err, DatasetError::BadLine { line: 2, .. }), "{err:?}");
    // Too few pose lines for the frames.
    std::fs::write(out.join("image_02/poses.txt"), "1 0 0 0 0 1 0 0 0 0 1 0\n").unwrap();
    expect_err(KittiDataset::open(out).map(|_| ()), "frame number 1");
    std::fs::write(
        out.join("image_02/poses.txt"),
        "1 0 0 0 0 1 0 0 0 0 1 0\n1 0 0 0 0 1 0 0 0 0 1 0\n",
    )
    .unwrap();
    // Bad timestamp.
    std::fs::write(out.join("image_02/timestamps.txt"), "0.0\nlater\n").unwrap();
    expect_err(KittiDataset::open(out).map(|_| ()), "timestamps.txt");
    std::fs::write(out.join("image_02/timestamps.txt"), "0.0\n0.1\n").unwrap();

    let dataset = KittiDataset::open(out).unwrap();
    // Depth of the wrong size.
    write_depth_png(&out.join("proj_depth/groundtruth/image_02/0000000001.png"), 32, 32, 256);
    let err = expect_err(dataset.frame(1), "0000000001.png");
    assert!(matches!(err, DatasetError::SizeMismatch { expected: (64, 32), found: (32, 32), .. }));
    // 8-bit depth PNG.
    write_rgb(&out.join("proj_depth/groundtruth/image_02/0000000001.png"), 64, 32);
    expect_err(dataset.frame(1), "16-bit");
    // Corrupt colour image.
    std::fs::write(out.join("image_02/data/0000000000.png"), b"not a png").unwrap();
    let err = expect_err(dataset.frame(0), "0000000000.png");
    assert!(matches!(err, DatasetError::Image { .. }), "{err:?}");
    // An npz without the expected key takes precedence over the PNG and is reported.
    let npz = out.join("proj_depth/velodyne/image_02/0000000001.npz");
    write_npz(&npz, "depth", 32, 64);
    expect_err(dataset.frame(1), "velodyne_depth");
    // Malformed cam.txt.
    write_rgb(&out.join("image_02/data/0000000000.png"), 64, 32);
    std::fs::write(out.join("image_02/cam.txt"), "40 0 32\n0 40\n").unwrap();
    expect_err(KittiDataset::open(out).map(|_| ()), "cam.txt");
}

/// An npz archive with one float32 array `name` of shape (h, w).
fn write_npz(path: &Path, name: &str, h: usize, w: usize) {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({h}, {w}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    for _ in 0..h * w {
        npy.extend_from_slice(&2.5f32.to_le_bytes());
    }
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file(format!("{name}.npy"), options).unwrap();
    zip.write_all(&npy).unwrap();
    zip.finish().unwrap();
}

#[test]
fn npz_depth_with_the_right_key_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    write_synthetic_drive(tmp.path());
    write_npz(
        &tmp.path().join("proj_depth/velodyne/image_02/0000000000.npz"),
        "velodyne_depth",
        32,
        64,
    );
    let frame = KittiDataset::open(tmp.path()).unwrap().frame(0).unwrap();
    assert!(frame.gt_depth.unwrap().data.iter().all(|&d| d == 2.5));
}

#[test]
fn malformed_kitchen_and_tum_inputs_give_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    expect_err(open_dataset("kitchen:/definitely/not/here").map(|_| ()), "/definitely/not/here");
    expect_err(open_dataset("nyu:/data").map(|_| ()), "kitti:DIR");
    expect_err(open_dataset("kitchen").map(|_| ()), "kitchen:DIR");

    // Kitchen: empty folder, missing companion file, bad pose, bad intrinsics.
    expect_err(KitchenDataset::open(dir).map(|_| ()), "no frame-NNNNNN.color.jpg");
    write_rgb(&dir.join("frame-000000.color.jpg"), 16, 8);
    expect_err(KitchenDataset::open(dir).map(|_| ()), "frame-000000.depth.png");
    write_depth_png(&dir.join("frame-000000.depth.png"), 16, 8, 1500);
    std::fs::write(dir.join("frame-000000.pose.txt"), "1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
        .unwrap();
    expect_err(KitchenDataset::open(dir).map(|_| ()), "camera-intrinsics.txt");
    std::fs::write(dir.join("camera-intrinsics.txt"), "10 0 8\n0 10 4\n0 0 1\n").unwrap();
    let dataset = KitchenDataset::open(dir).unwrap();
    let frame = dataset.frame(0).unwrap();
    assert!(frame.gt_depth.unwrap().data.iter().all(|&d| (d - 1.5).abs() < 1e-6), "mm -> m");
    std::fs::write(dir.join("frame-000000.pose.txt"), "1 0 0 0\n0 1 0 0\n0 0 1 x\n0 0 0 1\n")
        .unwrap();
    let err = expect_err(dataset.frame(0), "frame-000000.pose.txt");
    assert!(matches!(err, DatasetError::BadLine { line: 3, .. }), "{err:?}");
    std::fs::write(dir.join("frame-000000.pose.txt"), "2 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
        .unwrap();
    expect_err(dataset.frame(0), "rigid");

    // TUM: garbage list line, no association.
    let tum = tmp.path().join("tum");
    std::fs::create_dir_all(&tum).unwrap();
    std::fs::write(tum.join("rgb.txt"), "# colour\n1.0 rgb/1.png\n2.0\n").unwrap();
    std::fs::write(tum.join("depth.txt"), "1.5 depth/1.png\n").unwrap();
    std::fs::write(tum.join("groundtruth.txt"), "1.0 0 0 0 0 0 0 1\n").unwrap();
    let err = expect_err(TumDataset::open(&tum).map(|_| ()), "rgb.txt");
    assert!(matches!(err, DatasetError::BadLine { line: 3, .. }), "{err:?}");
    std::fs::write(tum.join("rgb.txt"), "1.0 rgb/1.png\n").unwrap();
    expect_err(TumDataset::open(&tum).map(|_| ()), "no usable frames");
    std::fs::write(tum.join("groundtruth.txt"), "1.0 0 0 0 0 0 0 7\n").unwrap();
    expect_err(TumDataset::open(&tum).map(|_| ()), "unit quaternion");
}
