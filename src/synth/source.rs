//! [`SyntheticSource`]: a synthetic drive as a frame [`Source`], rendering each frame on demand
//! with its ground-truth depth, pose and intrinsics filled in.

use super::SynthError;
use super::config::RenderConfig;
use super::render::Renderer;
use crate::frame::Frame;
use crate::source::{Source, SourceError};

/// Frames of a synthetic drive, rendered when asked for. Not live: the pipeline may block on it.
#[derive(Clone, Debug)]
pub struct SyntheticSource {
    renderer: Renderer,
    next_index: usize,
}

impl SyntheticSource {
    /// A source over the drive described by `config`.
    pub fn new(config: &RenderConfig) -> Result<Self, SynthError> {
        Ok(Self::from_renderer(Renderer::new(config)?))
    }

    /// A source over an existing renderer, from its first frame.
    pub fn from_renderer(renderer: Renderer) -> Self {
        Self { renderer, next_index: 0 }
    }

    /// The renderer behind this source.
    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }
}

impl Source for SyntheticSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.next_index >= self.renderer.len() {
            return Ok(None);
        }
        let rendered = self.renderer.render_in_range(self.next_index);
        self.next_index += 1;
        Ok(Some(Frame {
            index: rendered.index as u64,
            timestamp: rendered.timestamp,
            rgb: rendered.rgb,
            gt_depth: Some(rendered.depth),
            gt_pose: Some(rendered.pose_cam_to_world),
            intrinsics: Some(self.renderer.intrinsics()),
        }))
    }

    fn len_hint(&self) -> Option<usize> {
        Some(self.renderer.len())
    }

    fn is_live(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        let c = self.renderer.config();
        format!(
            "synthetic {} drive, {}x{}, {} frames at {} fps, seed {}",
            c.trajectory, c.width, c.height, c.frames, c.fps, c.seed
        )
    }
}
