//! Publishing adapted weights to the live engine through a double buffer: the adapter copies
//! its weights into a spare network on its own thread and parks it in a one-slot mailbox; the
//! live thread, between two frames, takes it with a non-blocking `try_lock` and swaps it for
//! the network it was serving (a pointer swap), handing the old one back as the next spare.
//! The live path never waits: if the mailbox is busy it keeps the old weights for one more
//! frame.

use crate::model::network::DepthNetwork;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Instant;

#[derive(Debug, Default)]
struct Mailbox {
    /// The newest published network, not yet taken by the live side, and when it was parked.
    fresh: Mutex<Option<(DepthNetwork, Instant)>>,
    /// Networks the live side swapped out, for reuse as spares.
    returned: Mutex<Option<DepthNetwork>>,
    published: AtomicU64,
    installed: AtomicU64,
}

/// The adapter's end.
#[derive(Debug)]
pub struct WeightsPublisher {
    mailbox: Arc<Mailbox>,
    spare: Option<DepthNetwork>,
}

/// The live engine's end.
#[derive(Clone, Debug)]
pub struct WeightsReceiver {
    mailbox: Arc<Mailbox>,
}

/// A connected publisher / receiver pair.
pub fn weights_exchange() -> (WeightsPublisher, WeightsReceiver) {
    let mailbox = Arc::new(Mailbox::default());
    (WeightsPublisher { mailbox: Arc::clone(&mailbox), spare: None }, WeightsReceiver { mailbox })
}

impl WeightsPublisher {
    /// Copies `student` into a spare network (on this thread) and parks it for the live side;
    /// an older network still parked there is replaced and reused as the next spare.
    pub fn publish(&mut self, student: &DepthNetwork) -> Result<(), crate::model::ModelError> {
        let mut spare = match self.spare.take() {
            Some(net) => net,
            None => match self.mailbox.returned.lock().ok().and_then(|mut slot| slot.take()) {
                Some(net) => net,
                None => DepthNetwork::new(student.arch(), student.device()),
            },
        };
        spare.copy_weights_from(student)?;
        spare.use_channels_last();
        let mut fresh =
            self.mailbox.fresh.lock().map_err(|_| {
                crate::model::ModelError::Torch("weights mailbox lock poisoned".into())
            })?;
        self.spare = fresh.replace((spare, Instant::now())).map(|(older, _)| older);
        self.mailbox.published.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Networks published so far.
    pub fn published(&self) -> u64 {
        self.mailbox.published.load(Ordering::Acquire)
    }

    /// Networks the live side has installed so far.
    pub fn installed(&self) -> u64 {
        self.mailbox.installed.load(Ordering::Acquire)
    }
}

impl WeightsReceiver {
    /// If new weights are waiting (and the mailbox is not being written this instant), swaps
    /// them into `serving` and returns true. Never blocks.
    pub fn try_install(&self, serving: &mut DepthNetwork) -> bool {
        self.try_install_timed(serving).is_some()
    }

    /// [`Self::try_install`], returning when the installed weights were published.
    pub fn try_install_timed(&self, serving: &mut DepthNetwork) -> Option<Instant> {
        let (newer, published_at) = {
            let mut slot = match self.mailbox.fresh.try_lock() {
                Ok(slot) => slot,
                Err(TryLockError::WouldBlock) | Err(TryLockError::Poisoned(_)) => return None,
            };
            slot.take()?
        };
        if newer.arch() != serving.arch() {
            return None;
        }
        let old = std::mem::replace(serving, newer);
        if let Ok(mut returned) = self.mailbox.returned.try_lock() {
            *returned = Some(old);
        }
        self.mailbox.installed.fetch_add(1, Ordering::Release);
        Some(published_at)
    }

    /// Networks installed so far.
    pub fn installed(&self) -> u64 {
        self.mailbox.installed.load(Ordering::Acquire)
    }
}
