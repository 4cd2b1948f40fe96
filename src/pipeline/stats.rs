//! Pipeline statistics: fixed-size latency recorders (a log-linear histogram for whole-run
//! percentiles and a ring of recent samples for the live readout), per-node and per-queue
//! counters, and the serialisable [`RunReport`] with its summary table.
//!
//! Recording a sample never allocates: both recorders are fixed-size arrays.

use serde::Serialize;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// log2 of the number of linear sub-buckets per power of two: 32 sub-buckets bound the
/// relative error of a reported percentile to about 3 % (1.5 % around the bucket midpoint).
const SUB_BUCKET_BITS: u32 = 5;
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
/// Largest recorded value: 2^40 ns (about 18 minutes); longer samples are clamped.
const MAX_VALUE_BITS: u32 = 40;
const HISTOGRAM_BUCKETS: usize =
    SUB_BUCKETS + (MAX_VALUE_BITS - SUB_BUCKET_BITS + 1) as usize * SUB_BUCKETS;
/// Number of most recent samples the live readout summarises.
const RECENT_SAMPLES: usize = 256;

/// Whole-run latency distribution in nanoseconds, HdrHistogram-style buckets (exact below 32 ns,
/// then 32 linear sub-buckets per power of two).
#[derive(Clone)]
pub(crate) struct LatencyHistogram {
    counts: [u64; HISTOGRAM_BUCKETS],
    count: u64,
    sum_ns: u128,
    min_ns: u64,
    max_ns: u64,
}

impl LatencyHistogram {
    pub(crate) fn new() -> Self {
        Self { counts: [0; HISTOGRAM_BUCKETS], count: 0, sum_ns: 0, min_ns: u64::MAX, max_ns: 0 }
    }

    fn bucket_of(value_ns: u64) -> usize {
        let value = value_ns.min((1u64 << MAX_VALUE_BITS) - 1);
        if value < SUB_BUCKETS as u64 {
            return value as usize;
        }
        let exponent = 63 - value.leading_zeros(); // floor(log2), >= SUB_BUCKET_BITS
        let shift = exponent - SUB_BUCKET_BITS;
        let sub = (value >> shift) as usize - SUB_BUCKETS;
        SUB_BUCKETS + shift as usize * SUB_BUCKETS + sub
    }

    /// The midpoint of a bucket's value range.
    fn bucket_midpoint(bucket: usize) -> u64 {
        if bucket < SUB_BUCKETS {
            return bucket as u64;
        }
        let shift = ((bucket - SUB_BUCKETS) / SUB_BUCKETS) as u32;
        let sub = ((bucket - SUB_BUCKETS) % SUB_BUCKETS) as u64;
        let lower = (SUB_BUCKETS as u64 + sub) << shift;
        lower + ((1u64 << shift) >> 1)
    }

    pub(crate) fn record(&mut self, sample: Duration) {
        let ns = u64::try_from(sample.as_nanos()).unwrap_or(u64::MAX);
        self.counts[Self::bucket_of(ns)] += 1;
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// The `q`-quantile (0..=1) in nanoseconds, or 0 when nothing was recorded.
    pub(crate) fn quantile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (bucket, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::bucket_midpoint(bucket).clamp(self.min_ns, self.max_ns);
            }
        }
        self.max_ns
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        if self.count == 0 {
            return LatencySummary::default();
        }
        LatencySummary {
            samples: self.count,
            mean_ms: (self.sum_ns as f64 / self.count as f64) * 1e-6,
            p50_ms: self.quantile_ns(0.50) as f64 * 1e-6,
            p99_ms: self.quantile_ns(0.99) as f64 * 1e-6,
            max_ms: self.max_ns as f64 * 1e-6,
        }
    }
}

/// The most recent [`RECENT_SAMPLES`] latencies, for the live readout.
#[derive(Clone)]
pub(crate) struct RecentLatencies {
    samples_ns: [u64; RECENT_SAMPLES],
    next: usize,
    filled: usize,
}

impl RecentLatencies {
    pub(crate) fn new() -> Self {
        Self { samples_ns: [0; RECENT_SAMPLES], next: 0, filled: 0 }
    }

    pub(crate) fn record(&mut self, sample: Duration) {
        self.samples_ns[self.next] = u64::try_from(sample.as_nanos()).unwrap_or(u64::MAX);
        self.next = (self.next + 1) % RECENT_SAMPLES;
        self.filled = (self.filled + 1).min(RECENT_SAMPLES);
    }

    /// (p50, p99) in milliseconds over the recent samples; computed on a stack copy.
    pub(crate) fn p50_p99_ms(&self) -> (f64, f64) {
        if self.filled == 0 {
            return (0.0, 0.0);
        }
        let mut scratch = [0u64; RECENT_SAMPLES];
        let values = &mut scratch[..self.filled];
        values.copy_from_slice(&self.samples_ns[..self.filled]);
        let pick = |values: &mut [u64], q: f64| {
            let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            *values.select_nth_unstable(rank).1 as f64 * 1e-6
        };
        (pick(values, 0.50), pick(values, 0.99))
    }
}

/// Latency recorder used for stage processing times and end-to-end latency.
#[derive(Clone)]
pub(crate) struct LatencyStats {
    pub(crate) total: LatencyHistogram,
    pub(crate) recent: RecentLatencies,
}

impl LatencyStats {
    pub(crate) fn new() -> Self {
        Self { total: LatencyHistogram::new(), recent: RecentLatencies::new() }
    }

    pub(crate) fn record(&mut self, sample: Duration) {
        self.total.record(sample);
        self.recent.record(sample);
    }
}

/// Counters of one node (source, stage or sink), updated by its thread under a mutex.
pub(crate) struct NodeStats {
    pub(crate) processed: u64,
    pub(crate) first_started: Option<Instant>,
    pub(crate) last_finished: Option<Instant>,
    pub(crate) busy: Duration,
    pub(crate) latency: LatencyStats,
}

impl NodeStats {
    pub(crate) fn new() -> Self {
        Self {
            processed: 0,
            first_started: None,
            last_finished: None,
            busy: Duration::ZERO,
            latency: LatencyStats::new(),
        }
    }

    /// Records one item processed between `started` and `finished`.
    pub(crate) fn record(&mut self, started: Instant, finished: Instant) {
        let took = finished.saturating_duration_since(started);
        self.processed += 1;
        self.first_started.get_or_insert(started);
        self.last_finished = Some(finished);
        self.busy += took;
        self.latency.record(took);
    }

    /// Items per second between the first item's start and the last item's end.
    pub(crate) fn mean_fps(&self) -> f64 {
        match (self.first_started, self.last_finished) {
            (Some(first), Some(last)) if self.processed > 0 => {
                let span = last.saturating_duration_since(first).as_secs_f64();
                if span > 0.0 { self.processed as f64 / span } else { 0.0 }
            }
            _ => 0.0,
        }
    }
}

/// Counters of one bounded queue, updated lock-free by its producer and consumer.
pub(crate) struct QueueStats {
    pub(crate) capacity: usize,
    depth: AtomicU64,
    max_depth: AtomicU64,
    dropped: AtomicU64,
}

impl QueueStats {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            depth: AtomicU64::new(0),
            max_depth: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe_depth(&self, depth: usize) {
        self.depth.store(depth as u64, Ordering::Relaxed);
        self.max_depth.fetch_max(depth as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    pub(crate) fn max_depth(&self) -> u64 {
        self.max_depth.load(Ordering::Relaxed)
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn report(&self) -> QueueReport {
        QueueReport {
            capacity: self.capacity,
            max_depth: self.max_depth(),
            dropped: self.dropped(),
        }
    }
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub samples: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Final figures of one bounded queue.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct QueueReport {
    /// Configured capacity (items).
    pub capacity: usize,
    /// Largest depth observed right after a push.
    pub max_depth: u64,
    /// Items dropped because the queue was full (keep-latest policy only).
    pub dropped: u64,
}

/// Final figures of one node: the source, a stage, or the sink.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeReport {
    pub name: String,
    /// Items handled successfully (frames read for the source).
    pub processed: u64,
    /// Items per second between the first item's start and the last item's end.
    pub fps: f64,
    /// Fraction of the run's wall time this node spent working (0..=1).
    pub utilisation: f64,
    /// The node's own processing time per item (`next_frame` time for the source).
    pub latency: LatencySummary,
    /// The queue feeding this node (none for the source).
    pub input_queue: Option<QueueReport>,
}

/// Why a run ended without error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The source returned the end of its stream.
    EndOfStream,
    /// A [`super::StopHandle`] asked the pipeline to stop.
    Stopped,
    /// Ctrl-C.
    Interrupted,
}

/// Everything measured in one run; serialisable to JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunReport {
    /// The source's one-line description.
    pub source: String,
    /// The queue policy in effect (`keep_latest` or `lossless`).
    pub policy: super::QueuePolicy,
    pub queue_size: usize,
    pub stop_reason: StopReason,
    pub wall_seconds: f64,
    /// Frames the source produced.
    pub frames_read: u64,
    /// Items the sink consumed.
    pub frames_delivered: u64,
    /// Items dropped by full queues, summed over all queues.
    pub frames_dropped: u64,
    /// Delivered items per second of wall time.
    pub fps: f64,
    /// Capture (source return) to sink-consumed latency.
    pub end_to_end: LatencySummary,
    /// The source first, then each stage in order, then the sink.
    pub nodes: Vec<NodeReport>,
    /// How often the source lost its camera or stream and reopened it.
    pub source_reconnects: u64,
}

impl RunReport {
    /// The report of the sink (the last node).
    pub fn sink(&self) -> Option<&NodeReport> {
        self.nodes.last()
    }

    /// The report of the node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeReport> {
        self.nodes.iter().find(|node| node.name == name)
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EndOfStream => "ended (end of stream)",
            Self::Stopped => "stopped",
            Self::Interrupted => "interrupted (Ctrl-C)",
        })
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pipeline {} after {:.2} s ({}): read {}, delivered {}, dropped {}, {:.1} fps; \
             end-to-end p50 {:.1} ms p99 {:.1} ms{}",
            self.stop_reason,
            self.wall_seconds,
            self.source,
            self.frames_read,
            self.frames_delivered,
            self.frames_dropped,
            self.fps,
            self.end_to_end.p50_ms,
            self.end_to_end.p99_ms,
            if self.source_reconnects > 0 {
                format!("; source reconnects {}", self.source_reconnects)
            } else {
                String::new()
            },
        )?;
        writeln!(
            f,
            "  {:<14} {:>8} {:>8} {:>6} {:>9} {:>9} {:>9} {:>7} {:>8}",
            "node", "items", "fps", "busy", "mean ms", "p50 ms", "p99 ms", "queue", "dropped"
        )?;
        for node in &self.nodes {
            let (queue, dropped) = match node.input_queue {
                Some(q) => (format!("{}/{}", q.max_depth, q.capacity), q.dropped.to_string()),
                None => ("-".to_string(), "-".to_string()),
            };
            writeln!(
                f,
                "  {:<14} {:>8} {:>8.1} {:>5.0}% {:>9.2} {:>9.2} {:>9.2} {:>7} {:>8}",
                node.name,
                node.processed,
                node.fps,
                node.utilisation * 100.0,
                node.latency.mean_ms,
                node.latency.p50_ms,
                node.latency.p99_ms,
                queue,
                dropped
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_bucket_error() {
        let mut histogram = LatencyHistogram::new();
        for ms in 1..=1000u64 {
            histogram.record(Duration::from_micros(ms * 1000));
        }
        let p50 = histogram.quantile_ns(0.5) as f64 * 1e-6;
        let p99 = histogram.quantile_ns(0.99) as f64 * 1e-6;
        assert!((p50 - 500.0).abs() / 500.0 < 0.02, "p50 {p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.02, "p99 {p99}");
        assert_eq!(histogram.summary().samples, 1000);
        assert!((histogram.summary().max_ms - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn histogram_buckets_are_monotonic_and_cover_small_values() {
        let mut previous = 0;
        for value in [0u64, 1, 31, 32, 33, 63, 64, 1000, 1 << 20, 1 << 39, u64::MAX] {
            let bucket = LatencyHistogram::bucket_of(value);
            assert!(bucket >= previous && bucket < HISTOGRAM_BUCKETS, "value {value}");
            previous = bucket;
        }
        assert_eq!(LatencyHistogram::bucket_midpoint(LatencyHistogram::bucket_of(17)), 17);
    }

    #[test]
    fn recent_latencies_keep_only_the_newest_samples() {
        let mut recent = RecentLatencies::new();
        for _ in 0..RECENT_SAMPLES {
            recent.record(Duration::from_millis(100));
        }
        for _ in 0..RECENT_SAMPLES {
            recent.record(Duration::from_millis(2));
        }
        let (p50, p99) = recent.p50_p99_ms();
        assert_eq!((p50, p99), (2.0, 2.0));
    }
}
