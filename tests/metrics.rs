//! Depth metrics: hand-computed cases, masking of invalid pixels, median scaling, clamping,
//! the Garg crop, accumulation over frames, error cases, bilinear resize parity with PyTorch
//! (where the venv exists) and a real KITTI frame (where ../shared exists).

mod common;

use livedepth::eval::{
    EvalError, EvalProtocol, MetricsAccumulator, compute_frame_metrics, format_metrics_table,
    garg_crop_rect,
};
use livedepth::frame::DepthMap;
use livedepth::source::dataset::{Dataset, DatasetKind, KittiDataset};

fn map(width: u32, height: u32, data: &[f32]) -> DepthMap {
    DepthMap::from_data(width, height, data.to_vec())
}

const METRIC: EvalProtocol =
    EvalProtocol { min_depth: 0.1, max_depth: 100.0, garg_crop: false, median_scaling: false };

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn four_pixel_case_matches_hand_computation() {
    // gt 1, 2, 4, 8 against pred 1, 2.8, 2.2, 16: ratios 1, 1.4, 1.818, 2.
    let gt = map(2, 2, &[1.0, 2.0, 4.0, 8.0]);
    let pred = map(2, 2, &[1.0, 2.8, 2.2, 16.0]);
    let m = compute_frame_metrics(&pred, &gt, &METRIC).unwrap();
    assert_eq!(m.valid_pixels, 4);
    assert!(close(m.abs_rel, (0.0 + 0.8 / 2.0 + 1.8 / 4.0 + 8.0 / 8.0) / 4.0), "{}", m.abs_rel);
    assert!(close(m.sq_rel, (0.0 + 0.64 / 2.0 + 3.24 / 4.0 + 64.0 / 8.0) / 4.0), "{}", m.sq_rel);
    assert!(close(m.rmse, ((0.64 + 3.24 + 64.0) / 4.0f64).sqrt()), "{}", m.rmse);
    let logs = [0.0, (2.0f64 / 2.8).ln(), (4.0f64 / 2.2).ln(), (8.0f64 / 16.0).ln()];
    let rmse_log = (logs.iter().map(|l| l * l).sum::<f64>() / 4.0).sqrt();
    assert!(close(m.rmse_log, rmse_log), "{}", m.rmse_log);
    assert_eq!((m.a1, m.a2, m.a3), (0.25, 0.5, 0.75));
    // Without median scaling the ratio median(gt) / median(pred) = 3 / 2.5 is reported, not
    // applied (the metrics above are of the raw prediction).
    assert!(close(m.scale_ratio, 1.2), "{}", m.scale_ratio);
}

#[test]
fn invalid_and_out_of_range_ground_truth_is_ignored() {
    // The same four pixels plus gt 0 (invalid), gt 150 (> max) and gt 0.05 (< min), whose
    // predictions are wild: the metrics do not change.
    let gt = map(7, 1, &[1.0, 2.0, 4.0, 8.0, 0.0, 150.0, 0.05]);
    let pred = map(7, 1, &[1.0, 2.8, 2.2, 16.0, 99.0, 0.5, 60.0]);
    let m = compute_frame_metrics(&pred, &gt, &METRIC).unwrap();
    let reference = compute_frame_metrics(
        &map(4, 1, &[1.0, 2.8, 2.2, 16.0]),
        &map(4, 1, &[1.0, 2.0, 4.0, 8.0]),
        &METRIC,
    )
    .unwrap();
    assert_eq!(m, reference);
    assert_eq!(m.valid_pixels, 4);
}

#[test]
fn median_scaling_makes_a_scaled_prediction_perfect() {
    let gt: Vec<f32> = (0..64).map(|i| 0.5 + (i * 37 % 64) as f32 * 0.1).collect();
    let pred: Vec<f32> = gt.iter().map(|g| g * 0.37).collect();
    let scaled = EvalProtocol { median_scaling: true, ..METRIC };
    let m = compute_frame_metrics(&map(8, 8, &pred), &map(8, 8, &gt), &scaled).unwrap();
    assert!(m.abs_rel < 1e-6 && m.rmse < 1e-5 && m.rmse_log < 1e-6, "{m:?}");
    assert_eq!((m.a1, m.a2, m.a3), (1.0, 1.0, 1.0));
    assert!((m.scale_ratio - 1.0 / 0.37).abs() < 1e-5, "{}", m.scale_ratio);
    // Without median scaling the same prediction is 63 % off.
    let m = compute_frame_metrics(&map(8, 8, &pred), &map(8, 8, &gt), &METRIC).unwrap();
    assert!((m.abs_rel - 0.63).abs() < 1e-5, "{}", m.abs_rel);
}

#[test]
fn median_of_an_even_count_averages_the_middle_pair() {
    let gt = map(4, 1, &[1.0, 2.0, 3.0, 10.0]);
    let pred = map(4, 1, &[1.0, 1.0, 1.0, 1.0]);
    let scaled = EvalProtocol { median_scaling: true, ..METRIC };
    let m = compute_frame_metrics(&pred, &gt, &scaled).unwrap();
    assert_eq!(m.scale_ratio, 2.5);
}

#[test]
fn predictions_are_clamped_to_the_depth_range() {
    let protocol = EvalProtocol { max_depth: 80.0, ..METRIC };
    let m = compute_frame_metrics(&map(1, 1, &[1000.0]), &map(1, 1, &[50.0]), &protocol).unwrap();
    assert!(close(m.abs_rel, 30.0 / 50.0), "{}", m.abs_rel);
    // A zero prediction is clamped to min_depth, not a division by zero.
    let m = compute_frame_metrics(&map(1, 1, &[0.0]), &map(1, 1, &[1.0]), &METRIC).unwrap();
    assert!(close(m.abs_rel, 0.9), "{}", m.abs_rel);
}

#[test]
fn prediction_is_resized_to_the_ground_truth() {
    let pred = map(4, 2, &[2.0; 8]);
    let gt = map(12, 6, &[4.0; 72]);
    let m = compute_frame_metrics(&pred, &gt, &METRIC).unwrap();
    assert_eq!(m.valid_pixels, 72);
    assert!(close(m.abs_rel, 0.5));
    let resized = map(2, 1, &[1.0, 3.0]).resized_bilinear(4, 2);
    assert_eq!(resized.data, [1.0, 1.5, 2.5, 3.0, 1.0, 1.5, 2.5, 3.0]);
}

#[test]
fn garg_crop_masks_the_expected_rectangle() {
    assert_eq!(garg_crop_rect(1242, 375), (44, 153, 1197, 371));
    let gt = DepthMap::from_data(1242, 375, vec![10.0; 1242 * 375]);
    let pred = DepthMap::from_data(640, 192, vec![10.0; 640 * 192]);
    let kitti = EvalProtocol::for_dataset(DatasetKind::Kitti);
    assert!(kitti.garg_crop && kitti.median_scaling);
    assert_eq!((kitti.min_depth, kitti.max_depth), (1e-3, 80.0));
    let m = compute_frame_metrics(&pred, &gt, &kitti).unwrap();
    assert_eq!(m.valid_pixels, (1197 - 44) * (371 - 153));
    assert_eq!(m.valid_pixels, 251_354);
    let uncropped = EvalProtocol { garg_crop: false, ..kitti };
    assert_eq!(compute_frame_metrics(&pred, &gt, &uncropped).unwrap().valid_pixels, 1242 * 375);
    // Valid ground truth only outside the crop: nothing to evaluate.
    let mut outside = DepthMap::new(1242, 375);
    outside.data[0] = 10.0;
    assert!(matches!(
        compute_frame_metrics(&pred, &outside, &kitti),
        Err(EvalError::NoValidPixels { garg_crop: true, .. })
    ));
    let indoor = EvalProtocol::for_dataset(DatasetKind::Kitchen);
    assert_eq!((indoor.min_depth, indoor.max_depth, indoor.garg_crop), (0.1, 10.0, false));
    assert_eq!(EvalProtocol::for_dataset(DatasetKind::Tum), indoor);
}

#[test]
fn bad_inputs_give_typed_errors() {
    let gt = map(2, 2, &[1.0, 2.0, 3.0, 4.0]);
    let mut acc = MetricsAccumulator::new();
    let nan = map(2, 2, &[1.0, 2.0, f32::NAN, 4.0]);
    let err = acc.evaluate(7, &nan, &gt, &METRIC).unwrap_err();
    assert!(matches!(err, EvalError::NonFinitePrediction { x: 0, y: 1, .. }), "{err:?}");
    assert!(err.to_string().starts_with("frame 7: "), "{err}");
    let inf = map(2, 2, &[1.0, f32::INFINITY, 1.0, 4.0]);
    assert!(matches!(
        compute_frame_metrics(&inf, &gt, &METRIC),
        Err(EvalError::NonFinitePrediction { x: 1, y: 0, .. })
    ));
    let all_invalid = map(2, 2, &[0.0; 4]);
    let err = acc.evaluate(3, &gt, &all_invalid, &METRIC).unwrap_err();
    assert!(matches!(err, EvalError::NoValidPixels { .. }));
    assert!(err.to_string().contains("frame 3"), "{err}");
    let empty = DepthMap::new(0, 0);
    assert!(matches!(compute_frame_metrics(&empty, &gt, &METRIC), Err(EvalError::BadSize { .. })));
    let short = DepthMap::from_data(2, 2, vec![1.0; 3]);
    assert!(matches!(compute_frame_metrics(&gt, &short, &METRIC), Err(EvalError::BadSize { .. })));
    let scaled = EvalProtocol { median_scaling: true, ..METRIC };
    assert!(matches!(
        compute_frame_metrics(&map(2, 2, &[0.0; 4]), &gt, &scaled),
        Err(EvalError::DegeneratePrediction { .. })
    ));
    let backwards = EvalProtocol { min_depth: 5.0, max_depth: 1.0, ..METRIC };
    assert!(matches!(
        compute_frame_metrics(&gt, &gt, &backwards),
        Err(EvalError::BadProtocol { .. })
    ));
    assert!(acc.is_empty(), "failed frames are not recorded");
}

#[test]
fn accumulator_averages_frames_and_reports_scale_ratios() {
    let scaled = EvalProtocol { median_scaling: true, ..METRIC };
    let gt = map(2, 2, &[1.0, 2.0, 4.0, 8.0]);
    let mut acc = MetricsAccumulator::new();
    assert!(acc.mean().is_none());
    // Frame 0: prediction at half scale (ratio 2, perfect after scaling).
    let perfect = acc.evaluate(0, &map(2, 2, &[0.5, 1.0, 2.0, 4.0]), &gt, &scaled).unwrap();
    // Frame 1: uniform prediction (ratio 3 / 1 = 3).
    let flat = acc.evaluate(1, &map(2, 2, &[1.0; 4]), &gt, &scaled).unwrap();
    assert_eq!((perfect.scale_ratio, flat.scale_ratio), (2.0, 3.0));
    let mean = acc.mean().unwrap();
    assert_eq!(mean.frames, 2);
    assert!(close(mean.abs_rel, (perfect.abs_rel + flat.abs_rel) / 2.0));
    assert!(close(mean.a1, (perfect.a1 + flat.a1) / 2.0));
    assert!(close(mean.scale_ratio_median, 2.5));
    assert!(close(mean.scale_ratio_std, 0.5));
    assert_eq!(acc.rows().len(), 2);
    assert_eq!(acc.rows()[1].0, 1);
    let csv = acc.to_csv();
    assert_eq!(csv.lines().count(), 3);
    assert!(
        csv.starts_with("frame,abs_rel,sq_rel,rmse,rmse_log,a1,a2,a3,scale_ratio,valid_pixels")
    );
    let table = mean.to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2);
    for name in ["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"] {
        assert!(lines[0].contains(name));
    }
    assert_eq!(lines[0].split('|').count(), 7);
    assert!(lines[1].contains(&format!("{:.3}", mean.abs_rel)));
    assert_eq!(
        format_metrics_table(&[0.1, 0.2, 3.0, 0.4, 0.9, 0.95, 0.99]).lines().nth(1).unwrap(),
        "   0.100 |    0.200 |    3.000 |    0.400 |    0.900 |    0.950 |    0.990"
    );
}

#[test]
fn bilinear_resize_matches_pytorch_half_pixel_bilinear() {
    let python = common::python();
    let (w, h) = (48u32, 16u32);
    let data: Vec<f32> = (0..w * h).map(|i| 1.0 + ((i * 7919) % 101) as f32 * 0.37).collect();
    let src = map(w, h, &data);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.f32");
    std::fs::write(&input, data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let sizes = [(1242u32, 375u32), (37, 11), (96, 16)];
    let mut script = format!(
        "import numpy as np, torch\n\
         x = torch.from_numpy(np.fromfile(r'{}', dtype='<f4').reshape(1, 1, {h}, {w}))\n",
        input.display()
    );
    for (ow, oh) in sizes {
        script += &format!(
            "torch.nn.functional.interpolate(x, size=({oh}, {ow}), mode='bilinear', \
             align_corners=False).numpy().astype('<f4').tofile(r'{}')\n",
            tmp.path().join(format!("out_{ow}x{oh}.f32")).display()
        );
    }
    let status = std::process::Command::new(&python).arg("-c").arg(&script).status().unwrap();
    assert!(status.success(), "python failed");
    for (ow, oh) in sizes {
        let bytes = std::fs::read(tmp.path().join(format!("out_{ow}x{oh}.f32"))).unwrap();
        let reference: Vec<f32> =
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let ours = src.resized_bilinear(ow, oh);
        assert_eq!(ours.data.len(), reference.len());
        let max_diff =
            ours.data.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max_diff < 1e-4, "{ow}x{oh}: max difference {max_diff}");
    }
}

#[test]
fn real_kitti_frame_scaled_prediction() {
    let Some(dir) = common::shared("data/kitti_tiny") else { return };
    let dataset = KittiDataset::open(&dir).unwrap();
    let gt = dataset.frame(0).unwrap().gt_depth.unwrap();
    let protocol = EvalProtocol::for_dataset(DatasetKind::Kitti);
    let scaled_by = |factor: f32| {
        DepthMap::from_data(gt.width, gt.height, gt.data.iter().map(|d| d * factor).collect())
    };
    // 10 % too far everywhere: median scaling recovers it exactly.
    let m = compute_frame_metrics(&scaled_by(1.1), &gt, &protocol).unwrap();
    assert!(m.abs_rel < 1e-6 && m.a1 == 1.0, "{m:?}");
    assert!((m.scale_ratio - 1.0 / 1.1).abs() < 1e-6, "{}", m.scale_ratio);
    assert!(m.valid_pixels > 10_000, "{} valid Velodyne pixels in the crop", m.valid_pixels);
    // Without median scaling: |g - 1.1 g| / g = 0.1 (slightly less where 1.1 g is clamped to 80 m).
    let metric = EvalProtocol { median_scaling: false, ..protocol };
    let m = compute_frame_metrics(&scaled_by(1.1), &gt, &metric).unwrap();
    assert!(m.abs_rel > 0.099 && m.abs_rel <= 0.1 + 1e-6, "{}", m.abs_rel);
    // A prediction 1.1 times too near: abs_rel = 1 - 1/1.1 = 0.1/1.1.
    let m = compute_frame_metrics(&scaled_by(1.0 / 1.1), &gt, &metric).unwrap();
    assert!((m.abs_rel - 0.1 / 1.1).abs() < 1e-5, "{}", m.abs_rel);
}
