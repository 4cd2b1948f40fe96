//! Bounded queues between pipeline threads, built on crossbeam channels.
//!
//! A queue either keeps the latest items (live sources: when full, the producer removes and
//! counts the oldest item, so memory and latency stay bounded) or is lossless (replay: the
//! producer blocks until there is room). Both ends poll the run's abort flag so that no thread
//! can hang on a queue once the run is failing.

use super::stats::QueueStats;
use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often a blocked queue end re-checks the abort flag.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// One item in flight: the payload plus the frame index and its capture instant (when the
/// source's `next_frame` returned it, the earliest instant the pipeline can know), for
/// end-to-end latency.
pub(crate) struct Item<T> {
    pub(crate) index: u64,
    pub(crate) captured: Instant,
    pub(crate) value: T,
}

/// The queue ends went away or the run is aborting: the caller should stop.
#[derive(Debug)]
pub(crate) struct QueueClosed;

/// Producer end of a bounded queue.
pub(crate) struct QueueSender<T> {
    sender: Sender<Item<T>>,
    /// Present for keep-latest queues: the producer takes the oldest item out when full.
    oldest: Option<Receiver<Item<T>>>,
    stats: Arc<QueueStats>,
}

/// Consumer end of a bounded queue.
pub(crate) struct QueueReceiver<T> {
    receiver: Receiver<Item<T>>,
    pub(crate) stats: Arc<QueueStats>,
}

/// A bounded queue of `capacity` (>= 1) items.
pub(crate) fn bounded<T>(capacity: usize, keep_latest: bool) -> (QueueSender<T>, QueueReceiver<T>) {
    let (sender, receiver) = crossbeam_channel::bounded(capacity);
    let stats = Arc::new(QueueStats::new(capacity));
    let oldest = keep_latest.then(|| receiver.clone());
    (QueueSender { sender, oldest, stats: Arc::clone(&stats) }, QueueReceiver { receiver, stats })
}

impl<T> QueueSender<T> {
    /// Enqueues `item`, dropping the oldest queued item if the queue keeps the latest, or
    /// waiting for room if it is lossless.
    pub(crate) fn push(&self, mut item: Item<T>, abort: &AtomicBool) -> Result<(), QueueClosed> {
        match &self.oldest {
            Some(oldest) => loop {
                match self.sender.try_send(item) {
                    Ok(()) => break,
                    Err(TrySendError::Full(rejected)) => {
                        item = rejected;
                        // The consumer may have taken one meanwhile; then just retry.
                        if oldest.try_recv().is_ok() {
                            self.stats.count_drop();
                        }
                    }
                    Err(TrySendError::Disconnected(_)) => return Err(QueueClosed),
                }
                if abort.load(Ordering::Relaxed) {
                    return Err(QueueClosed);
                }
            },
            None => loop {
                match self.sender.send_timeout(item, POLL_INTERVAL) {
                    Ok(()) => break,
                    Err(SendTimeoutError::Timeout(rejected)) => {
                        if abort.load(Ordering::Relaxed) {
                            return Err(QueueClosed);
                        }
                        item = rejected;
                    }
                    Err(SendTimeoutError::Disconnected(_)) => return Err(QueueClosed),
                }
            },
        }
        self.stats.observe_depth(self.sender.len());
        Ok(())
    }
}

impl<T> QueueReceiver<T> {
    /// The next item, or `None` once the producer has finished and the queue is drained, or
    /// as soon as the run is aborting.
    pub(crate) fn pop(&self, abort: &AtomicBool) -> Option<Item<T>> {
        loop {
            if abort.load(Ordering::Relaxed) {
                return None;
            }
            match self.receiver.recv_timeout(POLL_INTERVAL) {
                Ok(item) => {
                    self.stats.observe_depth(self.receiver.len());
                    if abort.load(Ordering::Relaxed) {
                        return None;
                    }
                    return Some(item);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(index: u64) -> Item<u64> {
        Item { index, captured: Instant::now(), value: index }
    }

    #[test]
    fn keep_latest_drops_the_oldest_and_counts_it() {
        let abort = AtomicBool::new(false);
        let (tx, rx) = bounded::<u64>(2, true);
        for i in 0..5 {
            tx.push(item(i), &abort).unwrap();
        }
        drop(tx);
        let got: Vec<u64> = std::iter::from_fn(|| rx.pop(&abort)).map(|i| i.value).collect();
        assert_eq!(got, vec![3, 4]);
        assert_eq!(rx.stats.dropped(), 3);
        assert_eq!(rx.stats.max_depth(), 2);
    }

    #[test]
    fn lossless_push_gives_up_when_aborted_instead_of_blocking() {
        let abort = AtomicBool::new(false);
        let (tx, rx) = bounded::<u64>(1, false);
        tx.push(item(0), &abort).unwrap();
        abort.store(true, Ordering::Relaxed);
        assert!(tx.push(item(1), &abort).is_err());
        assert!(rx.pop(&abort).is_none());
        assert_eq!(rx.stats.dropped(), 0);
    }

    #[test]
    fn lossless_push_fails_once_the_consumer_is_gone() {
        let abort = AtomicBool::new(false);
        let (tx, rx) = bounded::<u64>(1, false);
        drop(rx);
        assert!(tx.push(item(0), &abort).is_err());
    }
}
