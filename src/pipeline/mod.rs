//! The staged real-time pipeline: a [`Source`] runs on its own thread, each [`Stage`] on its
//! own thread, and a [`Sink`] on the last one, joined by bounded queues. Data flows one way:
//! source → stages → sink.
//!
//! ```no_run
//! # use livedepth::pipeline::{Pipeline, PipelineOptions, StageError};
//! # use livedepth::frame::Frame;
//! # fn demo(source: Box<dyn livedepth::source::Source>) -> Result<(), Box<dyn std::error::Error>> {
//! let report = Pipeline::new(source, PipelineOptions::default())?
//!     .stage("brightness", |frame: Frame| {
//!         Ok::<_, StageError>(frame.rgb.data.iter().map(|&v| f64::from(v)).sum::<f64>())
//!     })
//!     .sink("print", |sum: f64| {
//!         println!("{sum}");
//!         Ok::<_, StageError>(())
//!     })
//!     .run()?;
//! println!("{}", serde_json::to_string(&report)?);
//! # Ok(()) }
//! ```
//!
//! * Queue policy: with a live source (or [`QueuePolicy::KeepLatest`]) every full queue drops
//!   its oldest item (counted per queue), so memory and latency stay bounded; with a replay
//!   source (or [`QueuePolicy::Lossless`]) producers wait: no frame is lost, order is kept.
//! * Statistics: per node items, fps, processing-time p50/p99, queue depth and drops, plus
//!   capture-to-sink latency; printed live to stderr (or as a progress bar for replays of known
//!   length) and returned as a serialisable [`RunReport`].
//! * Shutdown: end of stream, a [`StopHandle`], Ctrl-C or a source error or panic (graceful:
//!   the source stops reading and the frames already read drain to the sink), or the first
//!   error or panic of a stage or the sink (abort: every thread stops at once). The first
//!   error is returned.
//!   `run` returns only after every thread it started has been joined.

mod board;
mod nodes;
mod printer;
mod queue;
mod stats;
mod stop;

pub use board::{PipelineStatus, StageStatus, StatusBoard};
pub use stats::{LatencySummary, NodeReport, QueueReport, RunReport, StopReason};
pub use stop::{StopHandle, ctrl_c_count, install_ctrl_c_handler};

use crate::frame::Frame;
use crate::source::{Source, SourceError};
use nodes::{panic_message, run_sink, run_source, run_stage};
use printer::LivePrinter;
use queue::{Item, QueueReceiver, QueueSender};
use serde::{Deserialize, Serialize};
use stats::{LatencyStats, NodeStats, QueueStats};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use stop::InterruptWatch;

/// The error a stage or sink returns: any error type (`?` converts into it).
pub type StageError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the pipeline. Every variant names the node (stage, sink or source) involved.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("pipeline option `{field}` is {value}: expected {expected}")]
    InvalidOption { field: &'static str, value: String, expected: &'static str },
    #[error("source {description} failed after {frames_read} frames: {error}")]
    Source {
        description: String,
        frames_read: u64,
        #[source]
        error: Box<SourceError>,
    },
    #[error("source {description} panicked after {frames_read} frames: {message}")]
    SourcePanic { description: String, frames_read: u64, message: String },
    #[error("pipeline stage `{stage}` failed on frame {frame}: {error}")]
    Stage {
        stage: String,
        frame: u64,
        #[source]
        error: StageError,
    },
    #[error("pipeline stage `{stage}` panicked on frame {frame}: {message}")]
    StagePanic { stage: String, frame: u64, message: String },
    #[error("pipeline sink `{stage}` failed to finish: {error}")]
    Finish {
        stage: String,
        #[source]
        error: StageError,
    },
    #[error("pipeline sink `{stage}` panicked while finishing: {message}")]
    FinishPanic { stage: String, message: String },
    #[error("pipeline thread `{stage}` ended abnormally: {message}")]
    Thread { stage: String, message: String },
    #[error("could not start the thread of pipeline stage `{stage}`: {error}")]
    Spawn {
        stage: String,
        #[source]
        error: std::io::Error,
    },
    #[error("could not install the Ctrl-C handler: {0}")]
    CtrlC(String),
}

/// One processing step, run on its own thread: turns each input into one output.
///
/// Closures `FnMut(In) -> Result<Out, E>` (with `E: Into<StageError>`) are stages too.
pub trait Stage<In>: Send + 'static {
    type Out: Send + 'static;

    /// Processes one item. An error stops the whole pipeline and is reported with the stage's
    /// name and the frame index.
    fn process(&mut self, input: In) -> Result<Self::Out, StageError>;
}

impl<F, In, Out, E> Stage<In> for F
where
    F: FnMut(In) -> Result<Out, E> + Send + 'static,
    Out: Send + 'static,
    E: Into<StageError>,
{
    type Out = Out;

    fn process(&mut self, input: In) -> Result<Out, StageError> {
        self(input).map_err(Into::into)
    }
}

/// The end of a pipeline, run on its own thread: consumes every item that reaches it.
///
/// Closures `FnMut(In) -> Result<(), E>` (with `E: Into<StageError>`) are sinks too.
pub trait Sink<In>: Send + 'static {
    /// Consumes one item. An error stops the whole pipeline.
    fn consume(&mut self, item: In) -> Result<(), StageError>;

    /// Called once after the last item (also after an error elsewhere, so that what was
    /// written can be flushed and closed; not after the sink itself panicked).
    fn finish(&mut self) -> Result<(), StageError> {
        Ok(())
    }
}

impl<F, In, E> Sink<In> for F
where
    F: FnMut(In) -> Result<(), E> + Send + 'static,
    E: Into<StageError>,
{
    fn consume(&mut self, item: In) -> Result<(), StageError> {
        self(item).map_err(Into::into)
    }
}

/// What a full queue does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuePolicy {
    /// `KeepLatest` for live sources, `Lossless` otherwise.
    #[default]
    Auto,
    /// Drop the oldest queued item (counted): bounded memory and latency, for live sources.
    KeepLatest,
    /// Block the producer: no item is ever lost, for replays.
    Lossless,
}

impl std::str::FromStr for QueuePolicy {
    type Err = PipelineError;

    /// Parses `auto`, `keep_latest` (or `keep-latest`, `latest`) and `lossless`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "keep_latest" | "keep-latest" | "latest" => Ok(Self::KeepLatest),
            "lossless" => Ok(Self::Lossless),
            _ => Err(PipelineError::InvalidOption {
                field: "policy",
                value: format!("{text:?}"),
                expected: "one of auto, keep_latest, lossless",
            }),
        }
    }
}

impl std::fmt::Display for QueuePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::KeepLatest => "keep_latest",
            Self::Lossless => "lossless",
        })
    }
}

/// Largest accepted queue size.
const MAX_QUEUE_SIZE: usize = 1 << 16;
/// Shortest accepted live statistics interval.
const MIN_STATS_INTERVAL: Duration = Duration::from_millis(10);
/// How often the progress bar position is refreshed.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

/// How a pipeline runs.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Capacity of every queue between two nodes, in items (1 ..= 65536).
    pub queue_size: usize,
    pub policy: QueuePolicy,
    /// How often live statistics are printed (at least 10 ms).
    pub stats_interval: Duration,
    /// Print live statistics (or a progress bar) and the final summary to stderr.
    pub show_progress: bool,
    /// Stop gracefully on Ctrl-C (installs the process-wide handler on first use).
    pub handle_ctrl_c: bool,
    /// Where the statistics thread also posts each interval's figures (live views).
    pub status_board: Option<StatusBoard>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            queue_size: 4,
            policy: QueuePolicy::Auto,
            stats_interval: Duration::from_secs(1),
            show_progress: true,
            handle_ctrl_c: true,
            status_board: None,
        }
    }
}

impl PipelineOptions {
    /// Defaults without any printing and without the Ctrl-C handler (for library use, tests).
    pub fn quiet() -> Self {
        Self { show_progress: false, handle_ctrl_c: false, ..Self::default() }
    }

    fn validate(&self) -> Result<(), PipelineError> {
        if !(1..=MAX_QUEUE_SIZE).contains(&self.queue_size) {
            return Err(PipelineError::InvalidOption {
                field: "queue_size",
                value: self.queue_size.to_string(),
                expected: "an item count from 1 to 65536",
            });
        }
        if self.stats_interval < MIN_STATS_INTERVAL {
            return Err(PipelineError::InvalidOption {
                field: "stats_interval",
                value: format!("{:?}", self.stats_interval),
                expected: "a duration of at least 10 ms",
            });
        }
        Ok(())
    }
}

/// One node's name, statistics and input queue, shared with the statistics printer.
struct NodeShared {
    name: String,
    stats: Mutex<NodeStats>,
    input: Option<Arc<QueueStats>>,
}

/// State shared by all threads of one run.
struct RunContext {
    /// Set on the first error: every thread stops as soon as it sees it.
    abort: AtomicBool,
    stop: StopHandle,
    interrupts: Option<InterruptWatch>,
    first_error: Mutex<Option<PipelineError>>,
    source_ended: AtomicBool,
    /// The source's reconnect count ([`Source::reconnects`]), kept current by its thread.
    source_reconnects: AtomicU64,
    end_to_end: Mutex<LatencyStats>,
}

impl RunContext {
    fn aborting(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    fn stop_requested(&self) -> bool {
        self.stop.is_stop_requested() || self.interrupted()
    }

    fn interrupted(&self) -> bool {
        self.interrupts.is_some_and(|watch| watch.interrupted())
    }

    /// Records `error` if it is the first, and makes every thread stop at once.
    fn fail(&self, error: PipelineError) {
        self.record_error(error);
        self.abort.store(true, Ordering::SeqCst);
    }

    /// Records `error` if it is the first, without aborting: used when the source fails, so
    /// that the frames it read before drain to the sink (no data lost) before `run` fails.
    fn record_error(&self, error: PipelineError) {
        let mut first = lock(&self.first_error);
        if first.is_none() {
            *first = Some(error);
        }
    }
}

type Launcher = Box<dyn FnOnce(Arc<RunContext>) -> std::io::Result<JoinHandle<()>> + Send>;

/// Everything built so far, independent of the item type at the end.
struct PipelineCore {
    options: PipelineOptions,
    /// The resolved policy: `KeepLatest` or `Lossless`.
    policy: QueuePolicy,
    source_description: String,
    len_hint: Option<usize>,
    stop: StopHandle,
    nodes: Vec<Arc<NodeShared>>,
    launchers: Vec<(String, Launcher)>,
}

impl PipelineCore {
    fn add_node(&mut self, name: &str, input: Option<Arc<QueueStats>>) -> Arc<NodeShared> {
        let node = Arc::new(NodeShared {
            name: name.to_string(),
            stats: Mutex::new(NodeStats::new()),
            input,
        });
        self.nodes.push(Arc::clone(&node));
        node
    }

    fn new_queue<T>(&self) -> (QueueSender<T>, QueueReceiver<T>) {
        queue::bounded(self.options.queue_size, self.policy == QueuePolicy::KeepLatest)
    }
}

/// A pipeline under construction whose last node produces `T`. Add stages with
/// [`Pipeline::stage`], then end it with [`Pipeline::sink`] and [`ReadyPipeline::run`].
pub struct Pipeline<T> {
    core: PipelineCore,
    upstream: QueueReceiver<T>,
}

/// A complete pipeline, ready to [`run`](ReadyPipeline::run).
pub struct ReadyPipeline {
    core: PipelineCore,
}

impl Pipeline<Frame> {
    /// A pipeline reading `source`. Fails on invalid options.
    pub fn new(source: Box<dyn Source>, options: PipelineOptions) -> Result<Self, PipelineError> {
        options.validate()?;
        let policy = match options.policy {
            QueuePolicy::Auto if source.is_live() => QueuePolicy::KeepLatest,
            QueuePolicy::Auto => QueuePolicy::Lossless,
            explicit => explicit,
        };
        let mut core = PipelineCore {
            options,
            policy,
            source_description: source.describe(),
            len_hint: source.len_hint(),
            stop: StopHandle::new(),
            nodes: Vec::new(),
            launchers: Vec::new(),
        };
        let (output, upstream) = core.new_queue::<Frame>();
        let node = core.add_node("source", None);
        let description = core.source_description.clone();
        let launcher: Launcher = Box::new(move |ctx| {
            spawn_node("source", ctx, move |ctx| {
                run_source(ctx, &node, source, &description, &output);
            })
        });
        core.launchers.push(("source".to_string(), launcher));
        Ok(Self { core, upstream })
    }
}

impl<T: Send + 'static> Pipeline<T> {
    /// Appends a stage, run on its own thread and fed by a bounded queue.
    pub fn stage<S: Stage<T>>(mut self, name: impl Into<String>, stage: S) -> Pipeline<S::Out> {
        let name = name.into();
        let (output, upstream) = self.core.new_queue::<S::Out>();
        let input = self.upstream;
        let node = self.core.add_node(&name, Some(Arc::clone(&input.stats)));
        let thread_name = name.clone();
        let launcher: Launcher = Box::new(move |ctx| {
            spawn_node(&thread_name, ctx, move |ctx| {
                run_stage(ctx, &node, stage, &input, &output);
            })
        });
        self.core.launchers.push((name, launcher));
        Pipeline { core: self.core, upstream }
    }

    /// Ends the pipeline with a sink, run on its own thread.
    pub fn sink<K: Sink<T>>(mut self, name: impl Into<String>, sink: K) -> ReadyPipeline {
        let name = name.into();
        let input = self.upstream;
        let node = self.core.add_node(&name, Some(Arc::clone(&input.stats)));
        let thread_name = name.clone();
        let launcher: Launcher = Box::new(move |ctx| {
            spawn_node(&thread_name, ctx, move |ctx| run_sink(ctx, &node, sink, &input))
        });
        self.core.launchers.push((name, launcher));
        ReadyPipeline { core: self.core }
    }

    /// A handle that stops this pipeline once it runs (or at once if triggered before).
    pub fn stop_handle(&self) -> StopHandle {
        self.core.stop.clone()
    }

    /// The resolved queue policy: [`QueuePolicy::KeepLatest`] or [`QueuePolicy::Lossless`].
    pub fn policy(&self) -> QueuePolicy {
        self.core.policy
    }
}

impl ReadyPipeline {
    /// A handle that stops this pipeline while it runs (or at once if triggered before).
    pub fn stop_handle(&self) -> StopHandle {
        self.core.stop.clone()
    }

    /// The resolved queue policy: [`QueuePolicy::KeepLatest`] or [`QueuePolicy::Lossless`].
    pub fn policy(&self) -> QueuePolicy {
        self.core.policy
    }

    /// Runs until the end of the stream, a stop request, Ctrl-C or the first error; joins
    /// every thread before returning. Returns the first error (naming its stage) or the report.
    pub fn run(self) -> Result<RunReport, PipelineError> {
        let core = self.core;
        if core.options.handle_ctrl_c {
            warn_once_if_ctrl_c_unavailable();
        }
        let ctx = Arc::new(RunContext {
            abort: AtomicBool::new(false),
            stop: core.stop.clone(),
            interrupts: core.options.handle_ctrl_c.then(InterruptWatch::start),
            first_error: Mutex::new(None),
            source_ended: AtomicBool::new(false),
            source_reconnects: AtomicU64::new(0),
            end_to_end: Mutex::new(LatencyStats::new()),
        });
        let started = Instant::now();
        let board = core.options.status_board.clone();
        let printer = (core.options.show_progress || board.is_some())
            .then(|| LivePrinter::start(&core, &ctx, board));

        let mut threads = Vec::with_capacity(core.launchers.len());
        for (name, launch) in core.launchers {
            match launch(Arc::clone(&ctx)) {
                Ok(handle) => threads.push((name, handle)),
                Err(error) => {
                    ctx.fail(PipelineError::Spawn { stage: name, error });
                    break;
                }
            }
        }
        for (name, handle) in threads {
            if let Err(payload) = handle.join() {
                ctx.fail(PipelineError::Thread { stage: name, message: panic_message(&*payload) });
            }
        }
        let wall = started.elapsed();
        if let Some(printer) = printer {
            printer.finish();
        }
        if let Some(error) = lock(&ctx.first_error).take() {
            return Err(error);
        }

        let stop_reason = if ctx.source_ended.load(Ordering::SeqCst) {
            StopReason::EndOfStream
        } else if ctx.interrupted() {
            StopReason::Interrupted
        } else {
            StopReason::Stopped
        };
        let mut report = build_report(
            &core.source_description,
            core.policy,
            core.options.queue_size,
            stop_reason,
            wall,
            &core.nodes,
            &lock(&ctx.end_to_end),
        );
        report.source_reconnects = ctx.source_reconnects.load(Ordering::Relaxed);
        if core.options.show_progress {
            eprint!("{report}");
        }
        Ok(report)
    }
}

fn warn_once_if_ctrl_c_unavailable() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(error) = install_ctrl_c_handler()
        && !WARNED.swap(true, Ordering::SeqCst)
    {
        tracing::warn!("warning: {error}; Ctrl-C will end the process without a graceful stop");
    }
}

fn spawn_node(
    name: &str,
    ctx: Arc<RunContext>,
    body: impl FnOnce(&RunContext) + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    // Thread names cannot hold NUL bytes (spawning would panic).
    let thread_name = format!("ld-{}", name.replace('\0', "?"));
    thread::Builder::new().name(thread_name).spawn(move || body(&ctx))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn build_report(
    source_description: &str,
    policy: QueuePolicy,
    queue_size: usize,
    stop_reason: StopReason,
    wall: Duration,
    nodes: &[Arc<NodeShared>],
    end_to_end: &LatencyStats,
) -> RunReport {
    let wall_seconds = wall.as_secs_f64();
    let nodes: Vec<NodeReport> = nodes
        .iter()
        .map(|node| {
            let stats = lock(&node.stats);
            NodeReport {
                name: node.name.clone(),
                processed: stats.processed,
                fps: stats.mean_fps(),
                utilisation: if wall_seconds > 0.0 {
                    (stats.busy.as_secs_f64() / wall_seconds).min(1.0)
                } else {
                    0.0
                },
                latency: stats.latency.total.summary(),
                input_queue: node.input.as_ref().map(|queue| queue.report()),
            }
        })
        .collect();
    let frames_read = nodes.first().map_or(0, |node| node.processed);
    let frames_delivered = nodes.last().map_or(0, |node| node.processed);
    let frames_dropped =
        nodes.iter().filter_map(|node| node.input_queue).map(|queue| queue.dropped).sum();
    RunReport {
        source: source_description.to_string(),
        policy,
        queue_size,
        stop_reason,
        wall_seconds,
        frames_read,
        frames_delivered,
        frames_dropped,
        fps: if wall_seconds > 0.0 { frames_delivered as f64 / wall_seconds } else { 0.0 },
        end_to_end: end_to_end.total.summary(),
        nodes,
        source_reconnects: 0,
    }
}
