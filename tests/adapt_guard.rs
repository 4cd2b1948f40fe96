//! The never-worse guard and the adaptation defaults: on a constructed sequence where
//! adaptation hurts (a destructive learning rate on a rendered drive, scored against its exact
//! depth), the guard must fall back to the frozen weights without seeing the ground truth; and
//! the defaults a user gets must be the ones the README documents.
#![cfg(feature = "torch")]

mod common;

use livedepth::adapt::{AdaptConfig, AdaptStats, Served};
use livedepth::app::adapt::{AdaptOptions, PoseInit, evaluate_adapt};
use livedepth::app::eval::EvalReport;
use livedepth::source::dataset::FrameSelection;
use livedepth::synth::{RenderConfig, Renderer, write_dataset};
use livedepth::train::TrainedModel;
use std::path::Path;

/// Mean abs_rel of the frames from position `from` on.
fn abs_rel_from(report: &EvalReport, from: usize) -> f64 {
    let rows = &report.per_frame[from..];
    rows.iter().map(|r| r.metrics.abs_rel).sum::<f64>() / rows.len() as f64
}

fn lock_step(data: &Path, model: &TrainedModel, config: AdaptConfig) -> (EvalReport, AdaptStats) {
    let options = common::eval_options(
        format!("kitti:{}", data.display()),
        model.depth.clone(),
        (model.sidecar.width, model.sidecar.height),
        FrameSelection::all(),
    );
    let adapt = AdaptOptions {
        config,
        pose_model: Some(model.pose.clone()),
        pose_init: PoseInit::DepthEncoder,
        print_every: 0,
        ..AdaptOptions::default()
    };
    evaluate_adapt(&options, &adapt).expect("lock-step evaluation")
}

#[test]
fn the_never_worse_guard_falls_back_to_frozen_when_adaptation_hurts() {
    let dir = common::repo_root().join(livedepth::app::demo::BASE_MODEL_DIR);
    let model = TrainedModel::open(&dir).expect("the committed base model opens");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("drive");
    let render = RenderConfig {
        width: model.sidecar.width,
        height: model.sidecar.height,
        frames: 24,
        seed: 5150,
        supersample: 1,
        ..RenderConfig::default()
    };
    write_dataset(&Renderer::new(&render).expect("render config"), &data, false).expect("render");

    // Adaptation that hurts: a learning rate 100x the default, no pull back to the start
    // weights, no teacher, several steps per frame on drive frames with car-speed parallax.
    let mut hurting = AdaptConfig {
        seed: 3,
        learning_rate: 1e-2,
        steps_per_frame: 3,
        k_min: 1,
        k_max: 1,
        ..AdaptConfig::default()
    };
    hurting.guards.anchor_pull = 0.0;
    hurting.guards.rollback = false;
    hurting.distill.enabled = false;
    hurting.guards.serve_min_samples = 2;
    hurting.guards.serve_window = 4;
    let frozen = lock_step(&data, &model, AdaptConfig { steps_per_frame: 0, ..hurting.clone() });
    let mut unguarded_config = hurting.clone();
    unguarded_config.guards.serve_guard = false;
    let (unguarded, _) = lock_step(&data, &model, unguarded_config);
    let (guarded, stats) = lock_step(&data, &model, hurting);

    let late = 12;
    let (frozen_late, unguarded_late, guarded_late) = (
        abs_rel_from(&frozen.0, late),
        abs_rel_from(&unguarded, late),
        abs_rel_from(&guarded, late),
    );
    eprintln!(
        "frames {late}..: frozen {frozen_late:.3}, adapted without guard {unguarded_late:.3}, \
         with guard {guarded_late:.3}; guard serving {}, ratio {:.3}, deviation {:.3}, {} switches",
        stats.serving, stats.serve_ratio, stats.serve_deviation, stats.serve_switches
    );
    assert!(
        unguarded_late > 1.05 * frozen_late,
        "the constructed sequence must make adaptation hurt: {unguarded_late} vs {frozen_late}"
    );
    assert_eq!(stats.serving, Served::Frozen, "the guard ends on the frozen weights");
    // The broken depth explains the images about as well as the frozen one (its motion is
    // refined for it), but it left the trust region without the evidence the guard asks for.
    let trust = AdaptConfig::default().guards.serve_trust_deviation;
    assert!(stats.serve_deviation > trust, "deviation {} vs {trust}", stats.serve_deviation);
    assert!(
        stats.serve_ratio > 1.0 - AdaptConfig::default().guards.serve_evidence_margin,
        "no photometric evidence for the broken depth: {}",
        stats.serve_ratio
    );
    assert!(
        guarded_late <= 1.05 * frozen_late,
        "served depth stays within 5 % of frozen: {guarded_late} vs {frozen_late}"
    );
}

#[test]
fn the_adaptation_defaults_are_the_documented_ones() {
    let d = AdaptConfig::default();
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    // The README's defaults table lists `field = value` for each of these.
    for (field, value) in [
        ("learning_rate", d.learning_rate.to_string()),
        ("pose_learning_rate", d.pose_learning_rate.to_string()),
        ("k_min", d.k_min.to_string()),
        ("k_max", d.k_max.to_string()),
        ("target_parallax_px", d.target_parallax_px.to_string()),
        ("target_parallax_px_with_gyro", d.target_parallax_px_with_gyro.to_string()),
        ("pose_refine_iterations", d.pose_refine_iterations.to_string()),
        ("pose_refine_mirrored", d.pose_refine_mirrored.to_string()),
        ("pose_refine_rotation_step", d.pose_refine_rotation_step.to_string()),
        ("steps_per_frame", d.steps_per_frame.to_string()),
        ("replay_per_step", d.replay_per_step.to_string()),
        ("guards.anchor_pull", d.guards.anchor_pull.to_string()),
        ("guards.serve_guard", d.guards.serve_guard.to_string()),
        ("guards.serve_window", d.guards.serve_window.to_string()),
        ("guards.serve_tolerance", d.guards.serve_tolerance.to_string()),
        ("guards.serve_trust_deviation", d.guards.serve_trust_deviation.to_string()),
        ("guards.serve_evidence_margin", d.guards.serve_evidence_margin.to_string()),
        ("distill.lambda", d.distill.lambda.to_string()),
        ("distill.gamma", d.distill.gamma.to_string()),
    ] {
        let line = format!("`{field} = {value}`");
        assert!(readme.contains(&line), "README.md does not document {line}");
    }
    let (w, h) = livedepth::app::adapt::default_adapt_size(640, 480);
    assert!(readme.contains(&format!("{w}x{h}")), "README.md does not name {w}x{h}");
}

#[test]
fn misspelt_adapt_config_keys_are_errors_naming_the_key() {
    let err = toml::from_str::<AdaptConfig>("learning_rte = 1e-4\n").unwrap_err().to_string();
    assert!(err.contains("learning_rte"), "{err}");
    let err = toml::from_str::<AdaptConfig>("[guards]\nserve_windw = 8\n").unwrap_err().to_string();
    assert!(err.contains("serve_windw"), "{err}");
    // A run config passed by mistake is rejected too, not read as defaults.
    let run_config = std::fs::read_to_string(common::repo_root().join("configs/kitchen.toml"))
        .expect("configs/kitchen.toml");
    assert!(toml::from_str::<AdaptConfig>(&run_config).is_err());
    let partial: AdaptConfig = toml::from_str("k_min = 2\nk_max = 3\n").unwrap();
    assert_eq!((partial.k_min, partial.k_max), (2, 3));
    assert_eq!(partial.learning_rate, AdaptConfig::default().learning_rate);
}

#[test]
fn adaptation_stats_with_non_finite_guard_figures_round_trip_through_json() {
    // Before the first fresh triplet is scored the guard's figures are NaN, which JSON writes
    // as null: the run's adapt_report.json must still read back.
    let stats = AdaptStats { serve_ratio: f64::NAN, ..AdaptStats::default() };
    let mut fresh = stats.fresh;
    fresh.win_fraction = f64::NAN;
    let stats = AdaptStats { fresh, ..stats };
    let json = serde_json::to_string(&stats).unwrap();
    assert!(json.contains("null"), "{json}");
    let back: AdaptStats = serde_json::from_str(&json).unwrap();
    assert!(back.serve_ratio.is_nan() && back.fresh.win_fraction.is_nan());
    assert_eq!(back.steps, stats.steps);
}
