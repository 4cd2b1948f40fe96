//! The ray caster: one primary ray per supersample (rayon over image rows), Lambertian shading
//! from the sun plus ambient, optional hard shadows by a shadow ray, distance haze and a sky
//! gradient. Ground-truth depth is the z-depth (camera frame: x right, y down, z forward) of
//! the ray through the exact pixel centre; sky and anything beyond the far clip get depth 0.

use super::SynthError;
use super::config::RenderConfig;
use super::material::{ground_albedo, object_albedo};
use super::noise::{Rgb, mix, modulate, scale};
use super::scene::{HitTarget, Scene, SceneObject};
use super::trajectory::Trajectory;
use crate::camera::Intrinsics;
use crate::frame::{DepthMap, RgbImage};
use nalgebra::{Isometry3, Matrix3, Vector3};
use rayon::prelude::*;

/// Colour of the sky at the horizon (also the haze colour).
const HORIZON: Rgb = [0.80, 0.86, 0.93];
/// Colour of the sky at the zenith.
const ZENITH: Rgb = [0.28, 0.48, 0.82];
/// Distance over which haze reaches 63 %, metres.
const HAZE_DISTANCE_M: f64 = 900.0;

/// Per-view rendering options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewOptions {
    /// K gives K x K samples per pixel.
    pub supersample: u32,
    /// z-depth beyond which surfaces become haze with depth 0, metres.
    pub far_clip_m: f64,
}

/// One rendered frame of a drive with its exact ground truth.
#[derive(Clone, Debug)]
pub struct RenderedFrame {
    pub index: usize,
    /// Seconds from the first frame.
    pub timestamp: f64,
    pub rgb: RgbImage,
    /// z-depth in metres, 0 for sky / beyond the far clip.
    pub depth: DepthMap,
    /// Camera-to-world pose (camera x right, y down, z forward; world z up).
    pub pose_cam_to_world: Isometry3<f64>,
}

fn sky(dir: &Vector3<f64>) -> Rgb {
    let up = (dir.z.max(0.0) * 2.5).min(1.0).powf(0.7) as f32;
    mix(HORIZON, ZENITH, up)
}

struct ViewContext<'a> {
    scene: &'a Scene,
    dynamic: &'a [SceneObject],
    origin: Vector3<f64>,
    rotation: Matrix3<f64>,
    far_clip_m: f64,
    /// Footprint of one sample per metre of ray length.
    footprint_per_m: f64,
}

impl ViewContext<'_> {
    /// Colour and z-depth (0 = none) of the ray through camera direction (x, y, 1).
    #[inline]
    fn cast(&self, x: f64, y: f64, shade: bool) -> (Rgb, f64) {
        let cam = Vector3::new(x, y, 1.0);
        let length = cam.norm();
        let dir = self.rotation * (cam / length);
        let t_max = self.far_clip_m * length;
        let Some(hit) = self.scene.trace(&self.origin, &dir, t_max, self.dynamic) else {
            return (if shade { sky(&dir) } else { HORIZON }, 0.0);
        };
        let t = hit.surface.t;
        let z = t / length;
        if !shade {
            return (HORIZON, z);
        }
        let normal = hit.surface.normal;
        let cos_incidence = normal.dot(&dir).abs().max(0.15);
        let footprint = t * self.footprint_per_m / cos_incidence;
        let seed = self.scene.texture_seed;
        let point = self.origin + dir * t;
        let albedo = match hit.target {
            HitTarget::Ground => ground_albedo(&self.scene.road, point.x, point.y, footprint, seed),
            HitTarget::Object(o) => {
                object_albedo(o.material, o.variant, &hit.surface, footprint, seed)
            }
        };
        let lighting = &self.scene.lighting;
        let sun_cos = normal.dot(&lighting.sun_direction);
        let lit_by_sun = sun_cos > 0.0
            && !(lighting.shadows
                && self.scene.occluded(
                    &(point + normal * 1e-5),
                    &lighting.sun_direction,
                    self.dynamic,
                ));
        let direct = if lit_by_sun { sun_cos as f32 } else { 0.0 };
        let ambient = lighting.ambient;
        let sky_light = scale([0.92, 0.97, 1.08], ambient);
        let sun_light = scale([1.08, 1.03, 0.95], (1.0 - ambient) * 1.2 * direct);
        let light =
            [sky_light[0] + sun_light[0], sky_light[1] + sun_light[1], sky_light[2] + sun_light[2]];
        let lit = modulate(albedo, light);
        // Haze with distance, thickening to full haze at the far clip.
        let haze = 1.0 - (-t / HAZE_DISTANCE_M).exp();
        let fade = ((z / self.far_clip_m - 0.8) / 0.2).clamp(0.0, 1.0);
        let fade = fade * fade * (3.0 - 2.0 * fade);
        (mix(lit, HORIZON, (haze + (1.0 - haze) * fade) as f32), z)
    }
}

/// Renders the view of `scene` at `time` seconds from a camera with `intrinsics` (pinhole;
/// distortion ignored) at camera-to-world `pose`. Pixel (u, v) is centred at image coordinates
/// (u, v) exactly, as in the usual `K [X/Z, Y/Z, 1]` projection.
pub fn render_view(
    scene: &Scene,
    intrinsics: &Intrinsics,
    pose: &Isometry3<f64>,
    time: f64,
    options: &ViewOptions,
) -> (RgbImage, DepthMap) {
    let (width, height) = (intrinsics.width as usize, intrinsics.height as usize);
    let mut rgb = RgbImage::new(intrinsics.width, intrinsics.height);
    let mut depth = DepthMap::new(intrinsics.width, intrinsics.height);
    if width == 0 || height == 0 {
        return (rgb, depth);
    }
    let dynamic = scene.moving_objects_at(time);
    let k = options.supersample.max(1) as usize;
    let context = ViewContext {
        scene,
        dynamic: &dynamic,
        origin: pose.translation.vector,
        rotation: pose.rotation.to_rotation_matrix().into_inner(),
        far_clip_m: options.far_clip_m,
        footprint_per_m: 2.0 / ((intrinsics.fx + intrinsics.fy) * k as f64),
    };
    let (fx, fy, cx, cy) = (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy);
    let offsets: Vec<f64> = (0..k).map(|i| (i as f64 + 0.5) / k as f64 - 0.5).collect();
    let centre_is_sample = k % 2 == 1;
    let weight = 1.0 / (k * k) as f32;
    rgb.data.par_chunks_mut(width * 3).zip(depth.data.par_chunks_mut(width)).enumerate().for_each(
        |(row, (rgb_row, depth_row))| {
            let v = row as f64;
            for col in 0..width {
                let u = col as f64;
                let mut sum = [0.0f32; 3];
                let mut centre_depth = None;
                for (sy, dv) in offsets.iter().enumerate() {
                    let y = (v + dv - cy) / fy;
                    for (sx, du) in offsets.iter().enumerate() {
                        let (c, z) = context.cast((u + du - cx) / fx, y, true);
                        if centre_is_sample && sx == k / 2 && sy == k / 2 {
                            centre_depth = Some(z);
                        }
                        sum[0] += c[0];
                        sum[1] += c[1];
                        sum[2] += c[2];
                    }
                }
                let z = match centre_depth {
                    Some(z) => z,
                    None => context.cast((u - cx) / fx, (v - cy) / fy, false).1,
                };
                depth_row[col] = z as f32;
                for (channel, s) in sum.iter().enumerate() {
                    rgb_row[col * 3 + channel] = ((s * weight).clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
                }
            }
        },
    );
    (rgb, depth)
}

/// A seeded synthetic drive: the scene, the camera trajectory and the intrinsics. Frames are
/// rendered on demand, one at a time, so they can be streamed to a writer or an encoder.
#[derive(Clone, Debug)]
pub struct Renderer {
    config: RenderConfig,
    scene: Scene,
    trajectory: Trajectory,
    intrinsics: Intrinsics,
}

impl Renderer {
    /// Validates `config` and builds its scene and trajectory.
    pub fn new(config: &RenderConfig) -> Result<Self, SynthError> {
        config.validate()?;
        let span = Trajectory::arc_length_span(config);
        let duration = config.frames as f64 / config.fps;
        let x_end = span.1 + config.far_clip_m + 60.0;
        let scene = Scene::generate(&config.scene, config.seed, x_end, span, duration);
        let trajectory = Trajectory::generate(config, &scene.road);
        Ok(Self {
            config: config.clone(),
            scene,
            trajectory,
            intrinsics: config.camera_intrinsics(),
        })
    }

    /// The configuration this drive was made from.
    pub fn config(&self) -> &RenderConfig {
        &self.config
    }

    /// The world.
    pub fn scene(&self) -> &Scene {
        &self.scene
    }

    /// The camera intrinsics of every frame.
    pub fn intrinsics(&self) -> Intrinsics {
        self.intrinsics
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.trajectory.poses.len()
    }

    /// Whether the drive has no frames (never, for a validated config).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Camera-to-world poses of all frames.
    pub fn poses(&self) -> &[Isometry3<f64>] {
        &self.trajectory.poses
    }

    /// Timestamps of all frames, seconds.
    pub fn timestamps(&self) -> &[f64] {
        &self.trajectory.timestamps
    }

    /// Renders frame `index` (0-based).
    pub fn render_frame(&self, index: usize) -> Result<RenderedFrame, SynthError> {
        if index >= self.len() {
            return Err(SynthError::FrameOutOfRange { index, len: self.len() });
        }
        Ok(self.render_in_range(index))
    }

    /// Renders frame `index`, known to be in range.
    pub(crate) fn render_in_range(&self, index: usize) -> RenderedFrame {
        let pose = self.trajectory.poses[index];
        let timestamp = self.trajectory.timestamps[index];
        let options = ViewOptions {
            supersample: self.config.supersample,
            far_clip_m: self.config.far_clip_m,
        };
        let (rgb, depth) = render_view(&self.scene, &self.intrinsics, &pose, timestamp, &options);
        RenderedFrame { index, timestamp, rgb, depth, pose_cam_to_world: pose }
    }

    /// All frames in order, rendered lazily one at a time.
    pub fn frames(&self) -> impl Iterator<Item = RenderedFrame> + '_ {
        (0..self.len()).map(|i| self.render_in_range(i))
    }
}
