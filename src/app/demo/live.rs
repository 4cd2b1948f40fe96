//! The demo's live part: the scene's mp4 replayed through GStreamer at the camera's frame rate,
//! paced by the pipeline clock like a camera ([`paced_replay_source`], as `bench live-adapt`
//! does), into the live path with depth outputs (colourised video, depth PNGs, point clouds)
//! and online adaptation on its own thread, so the networks adapt while the video plays.

use super::model::DemoModel;
use super::scene::DemoScene;
use crate::adapt::AdaptStats;
use crate::app::adapt::AdaptOptions;
use crate::app::live::{LiveOptions, run_live};
use crate::app::replay::{paced_replay_source, read_adapt_report};
use crate::config::{Config, NetworkConfig, OutputsConfig, PipelineConfig};
use crate::engine::EngineKind;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What the live replay did (in `report.json` as `live`).
#[derive(Clone, Debug, Serialize)]
pub struct LiveReplay {
    /// The GStreamer source URI.
    pub uri: String,
    /// The camera's frame rate, at which the video was replayed.
    pub camera_fps: f64,
    /// Frames in the video.
    pub frames_in_video: usize,
    /// Frames that reached the outputs.
    pub frames_delivered: u64,
    /// Frames dropped because the live path was busy: at the source (the appsink keeps only the
    /// newest frame) and in the keep-latest queues.
    pub frames_dropped: u64,
    /// Delivered frames per second of wall time.
    pub delivered_fps: f64,
    pub wall_seconds: f64,
    /// Adaptation steps the adapter thread took while the video played.
    pub adapt_steps: u64,
    /// The adapter thread's statistics.
    pub adapt: AdaptStats,
    /// The live path's `run_report.json`.
    pub run_report: PathBuf,
}

impl LiveReplay {
    /// One line for the console.
    pub fn summary(&self) -> String {
        format!(
            "live replay at the camera's {:.0} fps (paced by the GStreamer clock): {} of {} \
             frames delivered ({:.1} fps), {} dropped; {} adaptation steps ({:.2}/s, {} \
             published) while the video played ({:.1} s)",
            self.camera_fps,
            self.frames_delivered,
            self.frames_in_video,
            self.delivered_fps,
            self.frames_dropped,
            self.adapt_steps,
            self.adapt_steps as f64 / self.wall_seconds.max(1e-9),
            self.adapt.published,
            self.wall_seconds
        )
    }
}

fn live_config(
    scene: &DemoScene,
    out: &Path,
    model: &DemoModel,
    engine: EngineKind,
) -> crate::Result<Config> {
    let mut config = Config {
        source: paced_replay_source(&scene.video, scene.fps),
        camera: Some(scene.camera.clone()),
        network: NetworkConfig::new(
            model.arch,
            model.width,
            model.height,
            Some(model.depth.clone()),
        ),
        pipeline: PipelineConfig::live_camera(),
        outputs: OutputsConfig {
            dir: out.to_path_buf(),
            depth_png: true,
            colour_png: true,
            video: true,
            pointcloud_every: 25,
            metrics: false,
            foxglove: None,
            mcap: None,
            zenoh: None,
        },
    };
    config.network.engine = engine;
    config.validate(Path::new("<demo>"))?;
    Ok(config)
}

/// Replays the scene's video at its frame rate into the live path with `adapt` on its own
/// thread, writing the outputs into `out`.
pub fn run_live_replay(
    scene: &DemoScene,
    out: &Path,
    model: &DemoModel,
    adapt: &AdaptOptions,
    engine: EngineKind,
) -> crate::Result<LiveReplay> {
    let (frames, fps) = (scene.frames, scene.fps);
    let config = live_config(scene, out, model, engine)?;
    let uri = config.source.uri.clone();
    let report = run_live(&LiveOptions {
        config,
        model: None,
        max_frames: None,
        adapt: Some(adapt.clone()),
    })?;
    let stats = read_adapt_report(out)?;
    Ok(LiveReplay {
        uri,
        camera_fps: fps,
        frames_in_video: frames,
        frames_delivered: report.frames_delivered,
        frames_dropped: (frames as u64).saturating_sub(report.frames_read) + report.frames_dropped,
        delivered_fps: report.fps,
        wall_seconds: report.wall_seconds,
        adapt_steps: stats.steps,
        adapt: stats,
        run_report: out.join("run_report.json"),
    })
}
