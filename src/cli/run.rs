//! `livedepth run`: live depth from any source described by a config, with per-stage statistics
//! and the configured outputs.

use clap::Args as ClapArgs;
use livedepth::app::live::{LiveOptions, describe_outputs, run_live};
use livedepth::config::Config;
use std::path::PathBuf;

/// Run live depth from a camera, stream, file or dataset.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The TOML config (see configs/).
    #[arg(long)]
    pub config: PathBuf,
    /// Override the config's source URI (file://, v4l2://, rtsp://, csi://, test://, gst://,
    /// kitti:DIR, kitchen:DIR, tum:DIR).
    #[arg(long)]
    pub source: Option<String>,
    /// Override the model (a folder with encoder.pth + depth.pth, or a .safetensors file).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Override the output folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Stop after this many frames.
    #[arg(long)]
    pub frames: Option<usize>,
    /// Override the config's depth backend (`network.engine`): torch, onnxruntime, tensorrt, or
    /// auto (the fastest available here, measured at start-up; the choice is printed and saved
    /// in run_report.json).
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<livedepth::engine::EngineKind>,
    /// Serve a Foxglove live view on this WebSocket address (HOST:PORT, e.g. 127.0.0.1:8765):
    /// camera image, depth, colourised depth, point cloud, calibration and status.
    #[arg(long, value_name = "HOST:PORT")]
    pub foxglove: Option<String>,
    /// Record the same channels into this new MCAP file (chunked and indexed; a killed run
    /// keeps every finished chunk).
    #[arg(long, value_name = "FILE")]
    pub mcap: Option<PathBuf>,
    /// Put the live view's channels on Zenoh under livedepth/<device>/… (Foxglove protobuf
    /// schemas, status in JSON); with no endpoint, peers on the LAN find each other.
    #[arg(long)]
    pub zenoh: bool,
    /// Zenoh endpoint to listen on, e.g. tcp/0.0.0.0:7447 (repeatable; implies --zenoh).
    #[arg(long, value_name = "ENDPOINT")]
    pub zenoh_listen: Vec<String>,
    /// Zenoh endpoint to connect to, e.g. tcp/192.168.1.10:7447 (repeatable; implies --zenoh).
    #[arg(long, value_name = "ENDPOINT")]
    pub zenoh_connect: Vec<String>,
    /// This device's name in the Zenoh keys (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub device_name: Option<String>,
    /// The fleet to share adapted weights with (`--adapt`): livedepth/<fleet>/weights/<device>
    /// (default: `default`; implies --zenoh).
    #[arg(long, value_name = "NAME")]
    pub fleet: Option<String>,
    /// Install the fleet's merged weights (livedepth/<fleet>/weights/merged, and at start the
    /// newest merge the fleet holds): with --adapt, adaptation continues from each merge;
    /// without, the live engine serves it. Implies --zenoh.
    #[arg(long)]
    pub zenoh_pull_weights: bool,
    /// Write every output in metres: `ground` fits the road plane in each depth map (needs
    /// --camera-height); `speed` takes metres travelled from --speed-file or --speed-key (or the
    /// source's ground-truth positions) against the adapter's motion (needs --adapt); `none` keeps the
    /// network's units. Overrides network.metric_scale.
    #[arg(long, value_name = "SOURCE")]
    pub metric_scale: Option<String>,
    /// The camera's height above the road in metres, for --metric-scale ground.
    #[arg(long, value_name = "M")]
    pub camera_height: Option<f64>,
    /// The vehicle's speed for --metric-scale speed: CSV `time,speed` (seconds on the
    /// stream's clock, metres per second) or JSON lines. Overrides network.speed_file.
    #[arg(long, value_name = "FILE")]
    pub speed_file: Option<PathBuf>,
    /// Live speed for --metric-scale speed: the Zenoh key the vehicle publishes it on, one
    /// sample per message (JSON {"time": s, "speed": m/s}, or {"speed": m/s} timed on arrival).
    /// Implies --zenoh. Overrides network.speed_key.
    #[arg(long, value_name = "KEY")]
    pub speed_key: Option<String>,
    /// Online adaptation beside the live path (`--adapt` and its settings); frames never wait
    /// for it.
    #[command(flatten)]
    pub adapt: Box<super::eval::AdaptArgs>,
}

pub fn run(args: Args) -> livedepth::Result<()> {
    let mut config = Config::load(&args.config)?;
    if let Some(uri) = args.source {
        // Checked here, so that an error names the flag and not the config file's field.
        livedepth::config::check_source_uri(&uri).map_err(|expected| {
            livedepth::Error::Other(format!("--source: expected {expected}, found {uri:?}"))
        })?;
        config.source.uri = uri;
    }
    if let Some(out) = args.out {
        config.outputs.dir = out;
    }
    if let Some(engine) = args.engine {
        config.network.engine = engine;
    }
    if let Some(address) = args.foxglove {
        config.outputs.foxglove = Some(address);
    }
    if let Some(path) = args.mcap {
        config.outputs.mcap = Some(path);
    }
    if args.zenoh
        || !args.zenoh_listen.is_empty()
        || !args.zenoh_connect.is_empty()
        || args.device_name.is_some()
        || args.fleet.is_some()
        || args.zenoh_pull_weights
        || args.speed_key.is_some()
    {
        let zenoh = config.outputs.zenoh.get_or_insert_with(Default::default);
        zenoh.listen.extend(args.zenoh_listen);
        zenoh.connect.extend(args.zenoh_connect);
        if let Some(name) = args.device_name {
            zenoh.device = name;
        }
        if let Some(fleet) = args.fleet {
            zenoh.fleet = fleet;
        }
        zenoh.pull_weights |= args.zenoh_pull_weights;
    }
    if let Some(source) = args.metric_scale {
        config.network.metric_scale = source;
    }
    if let Some(height) = args.camera_height {
        config.network.camera_height = Some(height);
    }
    if let Some(file) = args.speed_file {
        config.network.speed_file = Some(file);
    }
    if let Some(key) = args.speed_key {
        config.network.speed_key = Some(key);
    }
    // The overrides are checked like the file was.
    config.validate(&args.config)?;
    let dir = config.outputs.dir.clone();
    args.adapt.check_gyro(true)?;
    let adapt = if args.adapt.adapt { Some(args.adapt.options()?) } else { None };
    let options = LiveOptions { config, model: args.model, max_frames: args.frames, adapt };
    run_live(&options)?;
    for path in describe_outputs(&dir) {
        println!("wrote {path}");
    }
    Ok(())
}
