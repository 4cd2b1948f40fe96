//! A device's side of the fleet's merges (`run --zenoh-pull-weights`):
//! - [`MergeInbox`]: the merges `livedepth fleet` republishes under
//!   `livedepth/<fleet>/weights/merged` while the device runs, and at start the newest one the
//!   fleet holds (it answers queries on the same key), so that a device started or restarted
//!   after a merge catches up;
//! - [`spawn_merge_installer`]: a device that does not adapt installs each merge in its live
//!   engine through the same mailbox adaptation publishes into, so a frame never waits for it.
//!   (A device that adapts continues from the merge instead: `FleetShare::adopt_merge`.)

use crate::adapt::WeightsPublisher;
use crate::fleet::{DeviceWeights, MERGED_DEVICE, decode_weights, weights_key};
use crate::model::Arch;
use crate::model::network::{DepthNetwork, load_group};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use zenoh::Wait;
use zenoh::handlers::FifoChannelHandler;

/// How long the start-up query for the fleet's newest merge waits for an answer.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// How a merge the fleet held before this device asked is named in the logs.
const CAUGHT_UP: &str = "newest merge the fleet holds (catching up)";

/// A merge taken from a [`MergeInbox`].
pub struct TakenMerge {
    pub weights: DeviceWeights,
    /// How it came, for the logs: `merge` (published while the device runs) or the fleet's
    /// answer to the start-up query ("newest merge the fleet holds (catching up)").
    pub origin: &'static str,
}

/// The fleet's merges for one base model (see the module docs).
pub struct MergeInbox {
    key: String,
    /// The fleet hash (`crate::fleet::base_hash`) of this device's base: merges of another base are skipped.
    base: String,
    live: zenoh::pubsub::Subscriber<FifoChannelHandler<zenoh::sample::Sample>>,
    /// Answers to the start-up query, until they end (or a live merge came first).
    catch_up: Option<FifoChannelHandler<zenoh::query::Reply>>,
    /// A digest of the last merge taken, so that the query and the subscription never hand
    /// the same merge over twice.
    last_taken: Option<u64>,
}

impl MergeInbox {
    /// Subscribes to `fleet`'s merges and asks the fleet for its newest one.
    pub fn open(session: &zenoh::Session, fleet: &str, base: String) -> crate::Result<Self> {
        let key = weights_key(fleet, MERGED_DEVICE);
        let fail = |what: &str, e: zenoh::Error| {
            crate::Error::Other(format!("--zenoh-pull-weights: {what} {key}: {e}"))
        };
        let live =
            session.declare_subscriber(&key).wait().map_err(|e| fail("subscribing to", e))?;
        let catch_up = session
            .get(&key)
            .timeout(CATCH_UP_TIMEOUT)
            .wait()
            .map_err(|e| fail("asking the fleet for the newest merge on", e))?;
        Ok(Self { key, base, live, catch_up: Some(catch_up), last_taken: None })
    }

    /// The newest merge of this base not taken yet; never waits. A merge that cannot be
    /// decoded or was made from another base is logged and skipped.
    pub fn newest(&mut self) -> Option<TakenMerge> {
        let mut newest = None;
        let mut caught_up = false;
        if let Some(replies) = &self.catch_up {
            loop {
                match replies.try_recv() {
                    Ok(Some(reply)) => {
                        if let Ok(sample) = reply.result() {
                            newest = Some(sample.payload().to_bytes().into_owned());
                            caught_up = true;
                        }
                    }
                    Ok(None) => break,
                    // The query is over (answered, or nobody answered in time).
                    Err(_) => {
                        self.catch_up = None;
                        break;
                    }
                }
            }
        }
        while let Ok(Some(sample)) = self.live.try_recv() {
            // A merge published while running is newer than any answer still to come.
            self.catch_up = None;
            newest = Some(sample.payload().to_bytes().into_owned());
            caught_up = false;
        }
        let bytes = newest?;
        let mut digest = std::hash::DefaultHasher::new();
        bytes.hash(&mut digest);
        let digest = digest.finish();
        if self.last_taken == Some(digest) {
            return None;
        }
        self.last_taken = Some(digest);
        match decode_weights(&bytes, &self.key) {
            Ok(weights) if weights.base == self.base => {
                let origin = if caught_up { CAUGHT_UP } else { "merge" };
                Some(TakenMerge { weights, origin })
            }
            Ok(w) => {
                tracing::warn!(
                    "fleet: the merge on {} was made from base {}, this device runs {}; skipped",
                    self.key,
                    w.base,
                    self.base
                );
                None
            }
            Err(e) => {
                tracing::warn!("fleet: {}: {e}", self.key);
                None
            }
        }
    }

    /// The key merges come on.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// What the installer thread needs.
pub struct MergeInstaller {
    pub session: zenoh::Session,
    pub fleet: String,
    /// The live engine's model, which the merges must have been made from.
    pub model: PathBuf,
    pub arch: Arch,
    pub device: tch::Device,
    pub publisher: WeightsPublisher,
}

/// Starts the thread that installs the fleet's merges in a device that does not adapt; it
/// checks every 100 ms until `stop` is set, and returns how many merges it handed over.
pub fn spawn_merge_installer(
    installer: MergeInstaller,
    stop: Arc<AtomicBool>,
) -> crate::Result<JoinHandle<crate::Result<u64>>> {
    std::thread::Builder::new()
        .name("fleet-pull".into())
        .spawn(move || install_merges(installer, &stop))
        .map_err(|e| crate::Error::Other(format!("cannot start the fleet-pull thread: {e}")))
}

fn install_merges(installer: MergeInstaller, stop: &AtomicBool) -> crate::Result<u64> {
    let MergeInstaller { session, fleet, model, arch, device, mut publisher } = installer;
    let mut network = DepthNetwork::load(&model, arch, device)?;
    let base = super::fleet::network_hash(&network)?;
    let mut inbox = MergeInbox::open(&session, &fleet, base)?;
    tracing::info!("fleet: installing the merges on {} as they come", inbox.key());
    let mut installed = 0;
    while !stop.load(Ordering::Acquire) {
        if let Some(merge) = inbox.newest() {
            load_group(network.var_store_mut(), "", &merge.weights.checkpoint, arch.name())?;
            publisher.publish(&network)?;
            installed += 1;
            tracing::info!(
                "fleet: installing the {} on {} ({} steps across the fleet)",
                merge.origin,
                inbox.key(),
                merge.weights.accepted_steps
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(installed)
}
