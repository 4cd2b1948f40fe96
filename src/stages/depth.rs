//! The `depth` stage of the live path: any [`DepthEngine`] behind
//! [`LiveDepthEngine`] turns each prepared frame into a disparity map at the network size; a
//! [`FrameHook`] (online adaptation, in `app::live`) runs between frames without ever waiting
//! (except to yield the CPU to an adapter that starves, `app::adapt_share`),
//! and the engine's weight swaps are copied out for the run report.

use super::preprocess::{BufferPool, NetworkInput, PreparedFrame};
use crate::engine::{Disparity, LiveDepthEngine, WeightSwapStats};
use crate::frame::{Frame, RgbImage};
use crate::pipeline::{Stage, StageError};
use crate::pool::Pooled;
use std::sync::{Arc, Mutex};

/// A frame with its predicted disparity at the network size.
pub struct DepthFrame {
    pub frame: Frame,
    pub resized: Pooled<RgbImage>,
    pub disparity: Pooled<Disparity>,
}

/// Work done between frames on the depth stage's thread (e.g. installing adapted weights and
/// offering frames to the adapter); it never waits on other work, and sleeps only to yield the
/// CPU to an adapter that starves (`app::adapt_share`).
pub trait FrameHook: Send {
    /// Before the frame's forward pass; true when new weights went live.
    fn before_frame(&mut self, engine: &mut LiveDepthEngine) -> Result<bool, StageError>;
    /// After it, with the frame and its network-size image.
    fn after_frame(&mut self, frame: &Frame, resized: &RgbImage) -> Result<(), StageError>;
}

/// The `depth` stage.
pub struct DepthStage {
    engine: LiveDepthEngine,
    pool: BufferPool,
    hook: Option<Box<dyn FrameHook>>,
    /// The engine's weight swaps, copied out after each swap for the run report.
    swaps: Arc<Mutex<WeightSwapStats>>,
}

impl DepthStage {
    /// A stage serving `engine`, taking its disparity buffers from `pool`, running `hook` between
    /// frames and copying the engine's weight swaps into `swaps` after each swap.
    pub fn new(
        engine: LiveDepthEngine,
        pool: BufferPool,
        hook: Option<Box<dyn FrameHook>>,
        swaps: Arc<Mutex<WeightSwapStats>>,
    ) -> Self {
        Self { engine, pool, hook, swaps }
    }
}

impl Stage<PreparedFrame> for DepthStage {
    type Out = DepthFrame;

    fn process(&mut self, prepared: PreparedFrame) -> Result<DepthFrame, StageError> {
        let PreparedFrame { frame, resized, input } = prepared;
        if let Some(hook) = self.hook.as_mut()
            && hook.before_frame(&mut self.engine)?
            && let Ok(mut swaps) = self.swaps.lock()
        {
            swaps.clone_from(self.engine.weight_swaps());
        }
        let mut disparity = self.pool.disparities.get();
        disparity.reshape(resized.width, resized.height);
        match &input {
            NetworkInput::Device(x) => self.engine.forward_device_tensor(x, &mut disparity.data)?,
            NetworkInput::Host(planar) => {
                self.engine.forward_planar(planar, &mut disparity.data)?
            }
        }
        // The input buffer goes back to the pool for the next frame.
        drop(input);
        if let Some(hook) = self.hook.as_mut() {
            hook.after_frame(&frame, &resized)?;
        }
        Ok(DepthFrame { frame, resized, disparity })
    }
}
