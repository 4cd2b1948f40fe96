//! Tests of the staged pipeline: replay order and losslessness, live keep-latest dropping with
//! bounded queues, error and panic handling with every thread joined, stopping by handle and
//! by Ctrl-C (SIGINT), and the run report's figures. Sources here are small synthetic ones
//! (8x8 frames with the index encoded in the pixels); real sources are tested elsewhere.

mod common;

use livedepth::frame::{Frame, RgbImage};
use livedepth::pipeline::{
    Pipeline, PipelineError, PipelineOptions, QueuePolicy, RunReport, Sink, Stage, StageError,
    StopReason,
};
use livedepth::source::{Source, SourceError};
use rand::{RngExt, SeedableRng};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

/// Counts drops: each pipeline node in these tests owns one, so after `run` returns the count
/// tells whether every node's thread has finished and released its state.
struct DropGuard(Arc<AtomicUsize>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Writes the frame index into the first 8 bytes of an 8x8 RGB image, the rest a pattern.
fn encoded_image(index: u64) -> RgbImage {
    let mut image = RgbImage::new(8, 8);
    for (i, byte) in image.data.iter_mut().enumerate() {
        *byte = (index as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
    image.data[..8].copy_from_slice(&index.to_le_bytes());
    image
}

fn decode_index(image: &RgbImage) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&image.data[..8]);
    u64::from_le_bytes(bytes)
}

/// A generated stream of `limit` frames (endless when `None`).
struct SyntheticSource {
    next: u64,
    limit: Option<u64>,
    live: bool,
    /// Fails with a source error when asked for this index.
    fail_at: Option<u64>,
    /// Sleep before each frame, like a camera's frame period.
    frame_period: Duration,
    produced: Arc<AtomicU64>,
    _guard: Option<DropGuard>,
}

impl SyntheticSource {
    fn new(limit: Option<u64>, live: bool) -> Self {
        Self {
            next: 0,
            limit,
            live,
            fail_at: None,
            frame_period: Duration::ZERO,
            produced: Arc::new(AtomicU64::new(0)),
            _guard: None,
        }
    }
}

impl Source for SyntheticSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.limit.is_some_and(|limit| self.next >= limit) {
            return Ok(None);
        }
        if self.fail_at == Some(self.next) {
            return Err(SourceError::Format {
                uri: "test-source".into(),
                reason: format!("synthetic read failure at {}", self.next),
            });
        }
        if !self.frame_period.is_zero() {
            thread::sleep(self.frame_period);
        }
        let index = self.next;
        self.next += 1;
        self.produced.fetch_add(1, Ordering::SeqCst);
        Ok(Some(Frame::from_rgb(index, index as f64 / 30.0, encoded_image(index))))
    }

    fn len_hint(&self) -> Option<usize> {
        self.limit.map(|limit| limit as usize)
    }

    fn is_live(&self) -> bool {
        self.live
    }

    fn describe(&self) -> String {
        format!("synthetic 8x8 ({})", if self.live { "live" } else { "replay" })
    }
}

/// A stage (a struct, not a closure) checking that frames arrive complete and in order.
struct IndexCheck {
    expected_next: u64,
}

impl Stage<Frame> for IndexCheck {
    type Out = Frame;

    fn process(&mut self, frame: Frame) -> Result<Frame, StageError> {
        if decode_index(&frame.rgb) != frame.index || frame.index != self.expected_next {
            return Err(format!("frame {} out of order or corrupted", frame.index).into());
        }
        self.expected_next += 1;
        Ok(frame)
    }
}

/// A sink recording the indices it receives.
#[derive(Clone, Default)]
struct RecordingSink {
    indices: Arc<Mutex<Vec<u64>>>,
    finished: Arc<AtomicUsize>,
}

impl Sink<Frame> for RecordingSink {
    fn consume(&mut self, frame: Frame) -> Result<(), StageError> {
        if decode_index(&frame.rgb) != frame.index {
            return Err(format!("frame {} carries pixels of another frame", frame.index).into());
        }
        self.indices.lock().map_err(|_| "poisoned")?.push(frame.index);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), StageError> {
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl RecordingSink {
    fn received(&self) -> Vec<u64> {
        self.indices.lock().unwrap().clone()
    }
}

fn quiet(queue_size: usize, policy: QueuePolicy) -> PipelineOptions {
    PipelineOptions { queue_size, policy, ..PipelineOptions::quiet() }
}

/// Names of this process's threads (Linux), to check that none of a test's threads remain.
fn live_thread_names() -> Option<Vec<String>> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    Some(
        tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_string())
            .collect(),
    )
}

/// A joined thread can stay listed in `/proc/self/task` for a moment: `pthread_join` returns
/// when the kernel clears the thread id, a little before the task is reaped. So the check
/// looks again for up to five seconds; a thread that was never joined stays listed forever.
fn assert_no_thread_named(prefix: &str) {
    let mut left = Vec::new();
    for _ in 0..100 {
        let Some(names) = live_thread_names() else {
            panic!("/proc/self/task is unavailable: cannot check for leftover threads");
        };
        left = names.into_iter().filter(|name| name.starts_with(prefix)).collect();
        if left.is_empty() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("pipeline threads left behind: {left:?}");
}

/// Runs `run` on a helper thread and fails the test (instead of hanging) if it never returns.
fn run_with_watchdog<T: Send + 'static>(run: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(run());
    });
    result.recv_timeout(Duration::from_secs(120)).expect("pipeline run did not return (hang)")
}

fn assert_counts_match(report: &RunReport, delivered: usize) {
    assert_eq!(report.frames_delivered, delivered as u64);
    assert_eq!(report.sink().map(|sink| sink.processed), Some(delivered as u64));
    assert_eq!(report.end_to_end.samples, delivered as u64);
    let json = serde_json::to_value(report).expect("report serialises");
    assert_eq!(json["frames_delivered"], delivered as u64);
    assert_eq!(json["nodes"].as_array().map(Vec::len), Some(report.nodes.len()));
}

#[test]
fn replay_delivers_every_frame_in_order_without_drops() {
    let source = SyntheticSource::new(Some(500), false);
    let sink = RecordingSink::default();
    let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
    let pipeline = Pipeline::new(Box::new(source), quiet(2, QueuePolicy::Auto))
        .unwrap()
        .stage("check", IndexCheck { expected_next: 0 })
        .stage("jitter", move |frame: Frame| {
            thread::sleep(Duration::from_micros(rng.random_range(0..300)));
            Ok::<_, StageError>(frame)
        })
        .sink("record", sink.clone());
    assert_eq!(pipeline.policy(), QueuePolicy::Lossless);
    let report = run_with_watchdog(move || pipeline.run()).unwrap();

    let received = sink.received();
    assert_eq!(received, (0..500).collect::<Vec<u64>>());
    assert_eq!(sink.finished.load(Ordering::SeqCst), 1, "finish is called once");
    assert_eq!(report.stop_reason, StopReason::EndOfStream);
    assert_eq!(report.policy, QueuePolicy::Lossless);
    assert_eq!(report.frames_read, 500);
    assert_eq!(report.frames_dropped, 0);
    assert_counts_match(&report, 500);
    let names: Vec<&str> = report.nodes.iter().map(|node| node.name.as_str()).collect();
    assert_eq!(names, ["source", "check", "jitter", "record"]);
    for node in &report.nodes {
        assert_eq!(node.processed, 500, "node {}", node.name);
        if let Some(queue) = node.input_queue {
            assert_eq!(queue.dropped, 0, "node {}", node.name);
            assert!(queue.max_depth <= 2, "node {} queue depth {}", node.name, queue.max_depth);
        }
    }
    let jitter = report.node("jitter").unwrap();
    assert!(jitter.latency.p50_ms <= jitter.latency.p99_ms);
    assert!(jitter.latency.p99_ms <= jitter.latency.max_ms);
}

#[test]
fn live_source_keeps_the_latest_and_counts_drops() {
    let queue_size = 3;
    let source = SyntheticSource::new(Some(300), true);
    let produced = Arc::clone(&source.produced);
    let sink = RecordingSink::default();
    let in_slow_stage = Arc::new(AtomicUsize::new(0));
    let pipeline = Pipeline::new(Box::new(source), quiet(queue_size, QueuePolicy::Auto))
        .unwrap()
        .stage("slow", |frame: Frame| {
            thread::sleep(Duration::from_millis(3));
            Ok::<_, StageError>(frame)
        })
        .stage("pass", move |frame: Frame| {
            in_slow_stage.fetch_add(1, Ordering::SeqCst);
            Ok::<_, StageError>(frame)
        })
        .sink("record", sink.clone());
    assert_eq!(pipeline.policy(), QueuePolicy::KeepLatest);
    let report = run_with_watchdog(move || pipeline.run()).unwrap();

    let received = sink.received();
    let produced = produced.load(Ordering::SeqCst);
    assert_eq!(produced, 300);
    assert_eq!(report.frames_read, produced);
    assert!(report.frames_dropped > 0, "a 3 ms stage behind an unthrottled source must drop");
    assert!(received.windows(2).all(|pair| pair[0] < pair[1]), "indices not increasing");
    assert_eq!(received.last(), Some(&299), "the latest frame survives keep-latest queues");
    assert_eq!(received.len() as u64 + report.frames_dropped, produced, "frames lost uncounted");
    for node in &report.nodes {
        if let Some(queue) = node.input_queue {
            assert!(queue.max_depth <= queue_size as u64, "{} over capacity", node.name);
            assert_eq!(queue.capacity, queue_size);
        }
    }
    let slow = report.node("slow").unwrap();
    assert!(slow.input_queue.unwrap().dropped > 0);
    assert_eq!(report.stop_reason, StopReason::EndOfStream);
    assert_counts_match(&report, received.len());
}

#[test]
fn stage_error_stops_everything_and_names_the_stage() {
    let queue_size = 4;
    let dropped_guards = Arc::new(AtomicUsize::new(0));
    let mut source = SyntheticSource::new(Some(500), false);
    source._guard = Some(DropGuard(Arc::clone(&dropped_guards)));
    let first_seen = Arc::new(AtomicU64::new(0));
    let failing_seen = Arc::new(AtomicU64::new(0));
    let sink = RecordingSink::default();

    let first_guard = DropGuard(Arc::clone(&dropped_guards));
    let first_counter = Arc::clone(&first_seen);
    let failing_guard = DropGuard(Arc::clone(&dropped_guards));
    let failing_counter = Arc::clone(&failing_seen);
    let sink_guard = DropGuard(Arc::clone(&dropped_guards));
    let mut recording = sink.clone();
    let pipeline = Pipeline::new(Box::new(source), quiet(queue_size, QueuePolicy::Lossless))
        .unwrap()
        .stage("e50first", move |frame: Frame| {
            let _ = &first_guard;
            first_counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, StageError>(frame)
        })
        .stage("e50failing", move |frame: Frame| {
            let _ = &failing_guard;
            failing_counter.fetch_add(1, Ordering::SeqCst);
            if frame.index == 50 {
                return Err(StageError::from("simulated inference failure"));
            }
            Ok(frame)
        })
        .sink("e50sink", move |frame: Frame| {
            let _ = &sink_guard;
            recording.consume(frame)
        });
    let error = run_with_watchdog(move || pipeline.run()).unwrap_err();

    match &error {
        PipelineError::Stage { stage, frame, .. } => {
            assert_eq!(stage, "e50failing");
            assert_eq!(*frame, 50);
        }
        other => panic!("expected a stage error, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("e50failing") && message.contains("50"), "{message}");
    assert!(message.contains("simulated inference failure"), "{message}");
    assert_eq!(dropped_guards.load(Ordering::SeqCst), 4, "every node's state was released");
    assert_no_thread_named("ld-e50");
    // Nothing past the failing frame reaches the sink, and upstream stops within what was in
    // flight: the queue between the stages plus the item in hand.
    assert_eq!(failing_seen.load(Ordering::SeqCst), 51);
    let received = sink.received();
    assert!(received.iter().all(|&index| index < 50), "sink got frames past the error");
    assert!(first_seen.load(Ordering::SeqCst) <= 51 + queue_size as u64 + 1);
}

#[test]
fn stage_panic_becomes_an_error() {
    let dropped_guards = Arc::new(AtomicUsize::new(0));
    let guard = DropGuard(Arc::clone(&dropped_guards));
    let pipeline =
        Pipeline::new(Box::new(SyntheticSource::new(Some(100), false)), PipelineOptions::quiet())
            .unwrap()
            .stage("boom", move |frame: Frame| {
                let _ = &guard;
                if frame.index == 10 {
                    panic!("boom at frame {}", frame.index);
                }
                Ok::<_, StageError>(frame)
            })
            .sink("count", |_: Frame| Ok::<_, StageError>(()));
    let error = run_with_watchdog(move || pipeline.run()).unwrap_err();
    match &error {
        PipelineError::StagePanic { stage, frame, message } => {
            assert_eq!(stage, "boom");
            assert_eq!(*frame, 10);
            assert!(message.contains("boom at frame 10"), "{message}");
        }
        other => panic!("expected a stage panic, got {other:?}"),
    }
    assert_eq!(dropped_guards.load(Ordering::SeqCst), 1);
}

#[test]
fn sink_panic_becomes_an_error() {
    let pipeline =
        Pipeline::new(Box::new(SyntheticSource::new(Some(20), false)), PipelineOptions::quiet())
            .unwrap()
            .sink("frag\0ile", |frame: Frame| {
                assert!(frame.index < 5, "sink cannot take frame {}", frame.index);
                Ok::<_, StageError>(())
            });
    let error = run_with_watchdog(move || pipeline.run()).unwrap_err();
    assert!(
        matches!(&error, PipelineError::StagePanic { stage, frame: 5, .. } if stage == "frag\0ile")
    );
}

#[test]
fn source_error_drains_frames_already_read_then_fails() {
    let mut source = SyntheticSource::new(Some(100), false);
    source.fail_at = Some(20);
    let sink = RecordingSink::default();
    let pipeline = Pipeline::new(Box::new(source), quiet(2, QueuePolicy::Auto))
        .unwrap()
        .stage("pass", |frame: Frame| Ok::<_, StageError>(frame))
        .sink("record", sink.clone());
    let error = run_with_watchdog(move || pipeline.run()).unwrap_err();
    match &error {
        PipelineError::Source { description, frames_read, .. } => {
            assert_eq!(*frames_read, 20);
            assert!(description.contains("synthetic"));
        }
        other => panic!("expected a source error, got {other:?}"),
    }
    assert!(error.to_string().contains("synthetic read failure at 20"), "{error}");
    assert_eq!(sink.received(), (0..20).collect::<Vec<u64>>(), "frames read before were lost");
    assert_eq!(sink.finished.load(Ordering::SeqCst), 1);
}

#[test]
fn stop_handle_ends_an_endless_live_pipeline() {
    let dropped_guards = Arc::new(AtomicUsize::new(0));
    let mut source = SyntheticSource::new(None, true);
    source._guard = Some(DropGuard(Arc::clone(&dropped_guards)));
    let produced = Arc::clone(&source.produced);
    let sink = RecordingSink::default();
    let stage_guard = DropGuard(Arc::clone(&dropped_guards));
    let pipeline = Pipeline::new(Box::new(source), quiet(2, QueuePolicy::Auto))
        .unwrap()
        .stage("stopslow", move |frame: Frame| {
            let _ = &stage_guard;
            thread::sleep(Duration::from_millis(1));
            Ok::<_, StageError>(frame)
        })
        .sink("stopsink", sink.clone());
    let stop = pipeline.stop_handle();
    let watcher_sink = sink.clone();
    let stopper = thread::spawn(move || {
        // Stop once frames flow (or after a while, so that a broken pipeline cannot hang us).
        for _ in 0..20_000 {
            if watcher_sink.indices.lock().unwrap().len() >= 20 {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        stop.stop();
    });
    let report = run_with_watchdog(move || pipeline.run()).unwrap();
    stopper.join().unwrap();

    assert_eq!(report.stop_reason, StopReason::Stopped);
    let received = sink.received();
    assert!(received.len() >= 20, "only {} frames before the stop", received.len());
    assert!(received.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(report.frames_read, produced.load(Ordering::SeqCst));
    assert_eq!(received.len() as u64 + report.frames_dropped, report.frames_read);
    assert_eq!(dropped_guards.load(Ordering::SeqCst), 2);
    assert_no_thread_named("ld-stop");
    assert_counts_match(&report, received.len());
}

#[test]
fn stop_before_run_reads_nothing() {
    let pipeline =
        Pipeline::new(Box::new(SyntheticSource::new(None, true)), PipelineOptions::quiet())
            .unwrap()
            .sink("never", |_: Frame| Err::<(), _>("the sink must not be called"));
    pipeline.stop_handle().stop();
    let report = run_with_watchdog(move || pipeline.run()).unwrap();
    assert_eq!(report.stop_reason, StopReason::Stopped);
    assert_eq!(report.frames_read, 0);
    assert_eq!(report.frames_delivered, 0);
}

#[test]
fn ctrl_c_stops_gracefully() {
    let kill = std::process::Command::new("kill")
        .arg("-0")
        .arg(std::process::id().to_string())
        .status()
        .expect("a `kill` command to send SIGINT with");
    assert!(kill.success());
    let sink = RecordingSink::default();
    let options = PipelineOptions {
        queue_size: 2,
        handle_ctrl_c: true,
        show_progress: false,
        ..PipelineOptions::default()
    };
    let pipeline = Pipeline::new(Box::new(SyntheticSource::new(None, true)), options)
        .unwrap()
        .stage("ctrlc", |frame: Frame| {
            thread::sleep(Duration::from_millis(1));
            Ok::<_, StageError>(frame)
        })
        .sink("record", sink.clone());
    let watcher_sink = sink.clone();
    let interrupter = thread::spawn(move || {
        for _ in 0..20_000 {
            if watcher_sink.indices.lock().unwrap().len() >= 10 {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        std::process::Command::new("kill")
            .arg("-INT")
            .arg(std::process::id().to_string())
            .status()
            .map(|status| status.success())
    });
    let report = run_with_watchdog(move || pipeline.run()).unwrap();
    assert!(interrupter.join().unwrap().unwrap(), "kill -INT failed");
    assert_eq!(report.stop_reason, StopReason::Interrupted);
    assert!(sink.received().len() >= 10);
}

#[test]
fn invalid_options_are_rejected_with_the_field_named() {
    let source = || Box::new(SyntheticSource::new(Some(1), false));
    let error = Pipeline::new(source(), quiet(0, QueuePolicy::Auto)).err().unwrap();
    assert!(matches!(error, PipelineError::InvalidOption { field: "queue_size", .. }));
    assert!(error.to_string().contains("queue_size"));
    let options = PipelineOptions { stats_interval: Duration::ZERO, ..PipelineOptions::quiet() };
    let error = Pipeline::new(source(), options).err().unwrap();
    assert!(error.to_string().contains("stats_interval"), "{error}");
    let error = "fastest".parse::<QueuePolicy>().unwrap_err();
    assert!(error.to_string().contains("policy") && error.to_string().contains("lossless"));
    assert_eq!("keep-latest".parse::<QueuePolicy>().unwrap(), QueuePolicy::KeepLatest);
}

#[test]
fn live_statistics_and_progress_output_do_not_disturb_the_run() {
    // Exercises the printing paths (table lines for live, progress bar for replay); what they
    // print is for humans, the checks are that the run completes with the right counts.
    for live in [false, true] {
        let options = PipelineOptions {
            queue_size: 2,
            policy: QueuePolicy::Auto,
            stats_interval: Duration::from_millis(10),
            show_progress: true,
            handle_ctrl_c: false,
            status_board: None,
        };
        let sink = RecordingSink::default();
        let mut source = SyntheticSource::new(Some(40), live);
        source.frame_period = Duration::from_millis(1);
        let pipeline = Pipeline::new(Box::new(source), options)
            .unwrap()
            .stage("sleepy", |frame: Frame| {
                thread::sleep(Duration::from_millis(2));
                Ok::<_, StageError>(frame)
            })
            .sink("record", sink.clone());
        let report = run_with_watchdog(move || pipeline.run()).unwrap();
        let received = sink.received().len();
        assert_eq!(received as u64 + report.frames_dropped, 40);
        if !live {
            assert_eq!(received, 40);
        }
        assert_counts_match(&report, received);
        assert!(report.to_string().contains("sleepy"));
    }
}

#[test]
fn the_statistics_thread_posts_every_stage_on_a_status_board_without_printing() {
    let board = livedepth::pipeline::StatusBoard::new();
    let options = PipelineOptions {
        stats_interval: Duration::from_millis(10),
        status_board: Some(board.clone()),
        ..PipelineOptions::quiet()
    };
    let sink = RecordingSink::default();
    let mut source = SyntheticSource::new(Some(40), false);
    source.frame_period = Duration::from_millis(1);
    let pipeline = Pipeline::new(Box::new(source), options)
        .unwrap()
        .stage("sleepy", |frame: Frame| {
            thread::sleep(Duration::from_millis(3));
            Ok::<_, StageError>(frame)
        })
        .sink("record", sink.clone());
    run_with_watchdog(move || pipeline.run()).unwrap();
    // 40 frames of at least 3 ms each span many 10 ms intervals.
    let (status, adapt) = board.read().expect("nobody holds the board after the run");
    let status = status.expect("the statistics thread posted");
    assert!(adapt.is_none());
    let names: Vec<&str> = status.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(&names[1..], ["sleepy", "record"]);
    let sleepy = &status.stages[1];
    assert!(sleepy.items > 0 && sleepy.p50_ms >= 2.5, "{sleepy:?}");
    assert!(sleepy.queue.is_some_and(|[_, capacity, _]| capacity > 0), "{sleepy:?}");
    assert!(status.stages[0].queue.is_none(), "the source has no input queue");
    assert!(status.elapsed_s > 0.0 && status.end_to_end_p50_ms > 0.0, "{status:?}");
}
