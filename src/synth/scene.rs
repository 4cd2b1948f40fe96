//! The synthetic world: a gently curving road on the ground plane z = 0 (world frame: z up,
//! metres), static objects along it (building facades, low walls, boxes, lamp posts, trees),
//! optional vehicles moving along the oncoming lane, and the sun. Static objects live in a 2-D
//! uniform grid over the ground so a ray only tests the objects of the cells it crosses.

use super::config::SceneConfig;
use super::geometry::{OrientedBox, SurfaceHit, VerticalCylinder};
use nalgebra::{Vector2, Vector3};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

mod grid;
use grid::{Grid, RecentlyTested};

/// Step of the arc-length table along x, metres.
const ARC_TABLE_STEP_M: f64 = 0.25;
/// Width of the sidewalk between the asphalt and the building line, metres.
pub const SIDEWALK_WIDTH_M: f64 = 2.5;
/// Side of a grid cell, metres.
const GRID_CELL_M: f64 = 4.0;

/// The road's centre line y = g(x), a sum of two sinusoids, with an arc-length table for
/// placing things at a distance along the road.
#[derive(Clone, Debug)]
pub struct Road {
    /// Half the width of the asphalt, metres.
    pub half_width: f64,
    /// (amplitude m, wavenumber rad/m, phase rad) of each bend component.
    bends: [(f64, f64, f64); 2],
    /// Arc length from x = 0 at x = i * ARC_TABLE_STEP_M.
    arc_length: Vec<f64>,
}

impl Road {
    /// A straight road along +x centred on y = 0, with an arc-length table up to `x_end`.
    pub fn straight(half_width: f64, x_end: f64) -> Self {
        Self::with_bends(half_width, [(0.0, 0.0, 0.0); 2], x_end)
    }

    fn with_bends(half_width: f64, bends: [(f64, f64, f64); 2], x_end: f64) -> Self {
        let mut road = Self { half_width, bends, arc_length: Vec::new() };
        let n = (x_end.max(1.0) / ARC_TABLE_STEP_M).ceil() as usize + 2;
        road.arc_length.reserve(n);
        let mut s = 0.0;
        let mut prev = road.stretch(0.0);
        road.arc_length.push(0.0);
        for i in 1..n {
            let next = road.stretch(i as f64 * ARC_TABLE_STEP_M);
            s += 0.5 * (prev + next) * ARC_TABLE_STEP_M;
            road.arc_length.push(s);
            prev = next;
        }
        road
    }

    /// ds/dx.
    fn stretch(&self, x: f64) -> f64 {
        (1.0 + self.slope(x).powi(2)).sqrt()
    }

    /// Lateral position of the centre line at `x`.
    #[inline]
    pub fn center_y(&self, x: f64) -> f64 {
        self.bends.iter().map(|&(a, k, phi)| a * (k * x + phi).sin()).sum()
    }

    /// dg/dx of the centre line.
    #[inline]
    pub fn slope(&self, x: f64) -> f64 {
        self.bends.iter().map(|&(a, k, phi)| a * k * (k * x + phi).cos()).sum()
    }

    /// Direction of travel at `x` (radians from +x, counter-clockwise).
    pub fn heading(&self, x: f64) -> f64 {
        self.slope(x).atan()
    }

    /// Signed distance of a ground point from the centre line, positive to the left of the
    /// driving direction (+x), to first order in the curvature.
    #[inline]
    pub fn lateral(&self, x: f64, y: f64) -> f64 {
        (y - self.center_y(x)) / self.stretch(x)
    }

    /// The x coordinate at arc length `s` from x = 0 (linear beyond the table).
    pub fn x_at_arc_length(&self, s: f64) -> f64 {
        let table = &self.arc_length;
        let last = table.len() - 1;
        if s <= 0.0 {
            return s;
        }
        if s >= table[last] {
            return last as f64 * ARC_TABLE_STEP_M + (s - table[last]);
        }
        let i = table.partition_point(|&v| v <= s).saturating_sub(1).min(last - 1);
        let frac = (s - table[i]) / (table[i + 1] - table[i]).max(1e-12);
        (i as f64 + frac) * ARC_TABLE_STEP_M
    }

    /// Ground position and heading of the point at arc length `s`, offset by `lateral` metres
    /// to the left of the centre line.
    pub fn point(&self, s: f64, lateral: f64) -> (Vector2<f64>, f64) {
        let x = self.x_at_arc_length(s);
        self.point_at_x(x, lateral)
    }

    /// Ground position and heading of the centre-line point at `x`, offset by `lateral` metres
    /// along the left normal.
    pub fn point_at_x(&self, x: f64, lateral: f64) -> (Vector2<f64>, f64) {
        let heading = self.heading(x);
        let normal = Vector2::new(-heading.sin(), heading.cos());
        (Vector2::new(x, self.center_y(x)) + normal * lateral, heading)
    }
}

/// Surface appearance of an object; `variant` in [`SceneObject`] picks colours and patterns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Material {
    /// Building facade: bricks, plaster or panels, with windows.
    Facade,
    /// Low concrete-block wall.
    Wall,
    /// Wooden or painted crate.
    Crate,
    /// Painted metal (lamp posts and heads).
    Metal,
    /// Tree bark.
    Bark,
    /// Tree canopy.
    Foliage,
    /// Vehicle paint with a window band.
    Vehicle,
}

/// The shape of an object.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    Box(OrientedBox),
    Cylinder(VerticalCylinder),
}

impl Shape {
    #[inline]
    fn intersect(
        &self,
        origin: &Vector3<f64>,
        dir: &Vector3<f64>,
        t_min: f64,
        t_max: f64,
    ) -> Option<SurfaceHit> {
        match self {
            Shape::Box(b) => b.intersect(origin, dir, t_min, t_max),
            Shape::Cylinder(c) => c.intersect(origin, dir, t_min, t_max),
        }
    }

    fn aabb(&self) -> (Vector3<f64>, Vector3<f64>) {
        match self {
            Shape::Box(b) => b.aabb(),
            Shape::Cylinder(c) => c.aabb(),
        }
    }
}

/// One solid object of the scene.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SceneObject {
    pub shape: Shape,
    pub material: Material,
    /// Picks the colour palette and pattern of the material.
    pub variant: u32,
}

/// A box driving along the road at constant speed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MovingObject {
    /// Arc length along the road at time 0, metres.
    pub s_at_time_zero: f64,
    /// Metres per second along the road (negative: against the driving direction).
    pub speed: f64,
    /// Offset to the left of the centre line, metres.
    pub lateral: f64,
    /// Half length, width, height.
    pub half_extents: Vector3<f64>,
    pub variant: u32,
}

/// Sun and ambient light.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lighting {
    /// Unit vector towards the sun.
    pub sun_direction: Vector3<f64>,
    /// Fraction of light that reaches shadowed surfaces, in [0, 1].
    pub ambient: f32,
    pub shadows: bool,
}

impl Lighting {
    /// Sun from azimuth (from +x, counter-clockwise) and elevation, degrees.
    pub fn from_angles(azimuth_deg: f64, elevation_deg: f64, ambient: f64, shadows: bool) -> Self {
        let (az, el) = (azimuth_deg.to_radians(), elevation_deg.to_radians());
        Self {
            sun_direction: Vector3::new(el.cos() * az.cos(), el.cos() * az.sin(), el.sin()),
            ambient: ambient as f32,
            shadows,
        }
    }
}

/// What a camera ray hit.
#[derive(Clone, Copy, Debug)]
pub enum HitTarget<'a> {
    Ground,
    Object(&'a SceneObject),
}

/// A ray hit with what it hit.
#[derive(Clone, Copy, Debug)]
pub struct TracedHit<'a> {
    pub surface: SurfaceHit,
    pub target: HitTarget<'a>,
}

/// The whole synthetic world.
#[derive(Clone, Debug)]
pub struct Scene {
    pub road: Road,
    objects: Vec<SceneObject>,
    moving: Vec<MovingObject>,
    pub lighting: Lighting,
    /// Seed of the procedural textures.
    pub texture_seed: u32,
    grid: Grid,
}

/// An independent random stream for one purpose of one seed.
pub(crate) fn random_stream(seed: u64, purpose: u64) -> Pcg64Mcg {
    Pcg64Mcg::seed_from_u64(seed ^ purpose.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Smallest ray parameter that counts as a hit (avoids self-intersection), metres.
pub const RAY_EPSILON: f64 = 1e-6;

impl Scene {
    /// A scene from explicit parts (tests, custom worlds).
    pub fn new(
        road: Road,
        objects: Vec<SceneObject>,
        moving: Vec<MovingObject>,
        lighting: Lighting,
        texture_seed: u32,
    ) -> Self {
        let grid = Grid::build(&objects);
        Self { road, objects, moving, lighting, texture_seed, grid }
    }

    /// The static objects.
    pub fn objects(&self) -> &[SceneObject] {
        &self.objects
    }

    /// The moving objects.
    pub fn moving_objects(&self) -> &[MovingObject] {
        &self.moving
    }

    /// The moving objects as solid boxes at `time` seconds.
    pub fn moving_objects_at(&self, time: f64) -> Vec<SceneObject> {
        self.moving
            .iter()
            .map(|m| {
                let (p, heading) = self.road.point(m.s_at_time_zero + m.speed * time, m.lateral);
                SceneObject {
                    shape: Shape::Box(OrientedBox::new(
                        Vector3::new(p.x, p.y, m.half_extents.z),
                        m.half_extents,
                        heading,
                    )),
                    material: Material::Vehicle,
                    variant: m.variant,
                }
            })
            .collect()
    }

    /// The nearest hit of the unit-direction ray with `RAY_EPSILON < t < t_max`, against the
    /// ground, the static objects and `dynamic` (the moving objects at the current time).
    pub fn trace<'a>(
        &'a self,
        origin: &Vector3<f64>,
        dir: &Vector3<f64>,
        t_max: f64,
        dynamic: &'a [SceneObject],
    ) -> Option<TracedHit<'a>> {
        let mut best_t = t_max;
        let mut best: Option<TracedHit<'a>> = None;
        if dir.z < -1e-15 && origin.z > 0.0 {
            let t = -origin.z / dir.z;
            if t < best_t {
                best_t = t;
                let x = origin.x + dir.x * t;
                let y = origin.y + dir.y * t;
                best = Some(TracedHit {
                    surface: SurfaceHit { t, normal: Vector3::z(), uv: [x, y], face: 4 },
                    target: HitTarget::Ground,
                });
            }
        }
        for object in dynamic {
            if let Some(hit) = object.shape.intersect(origin, dir, RAY_EPSILON, best_t) {
                best_t = hit.t;
                best = Some(TracedHit { surface: hit, target: HitTarget::Object(object) });
            }
        }
        let objects = &self.objects;
        let mut tested = RecentlyTested::default();
        self.grid.walk(origin, dir, RAY_EPSILON, best_t, |items, t_exit| {
            for &i in items {
                if !tested.insert(i) {
                    continue;
                }
                let object = &objects[i as usize];
                if let Some(hit) = object.shape.intersect(origin, dir, RAY_EPSILON, best_t) {
                    best_t = hit.t;
                    best = Some(TracedHit { surface: hit, target: HitTarget::Object(object) });
                }
            }
            best_t <= t_exit
        });
        best
    }

    /// Whether anything solid lies along the ray (a shadow ray towards the sun).
    pub fn occluded(
        &self,
        origin: &Vector3<f64>,
        dir: &Vector3<f64>,
        dynamic: &[SceneObject],
    ) -> bool {
        let far = 1e5;
        if dynamic.iter().any(|o| o.shape.intersect(origin, dir, RAY_EPSILON, far).is_some()) {
            return true;
        }
        let mut blocked = false;
        let objects = &self.objects;
        let mut tested = RecentlyTested::default();
        self.grid.walk(origin, dir, RAY_EPSILON, far, |items, _| {
            blocked = items.iter().any(|&i| {
                tested.insert(i)
                    && objects[i as usize].shape.intersect(origin, dir, RAY_EPSILON, far).is_some()
            });
            blocked
        });
        blocked
    }

    /// A random street along the road from x = -60 m to `x_end`, with `moving_objects`
    /// vehicles in the oncoming lane spread so that they pass the camera during `duration_s`
    /// seconds while it drives arc lengths `camera_s_range`.
    pub fn generate(
        cfg: &SceneConfig,
        seed: u64,
        x_end: f64,
        camera_s_range: (f64, f64),
        duration_s: f64,
    ) -> Self {
        let mut rng = random_stream(seed, 1);
        let curviness = cfg.curviness;
        let bends = [
            (
                8.0 * curviness,
                std::f64::consts::TAU / rng.random_range(250.0..350.0),
                rng.random_range(0.0..std::f64::consts::TAU),
            ),
            (
                3.0 * curviness,
                std::f64::consts::TAU / rng.random_range(100.0..140.0),
                rng.random_range(0.0..std::f64::consts::TAU),
            ),
        ];
        let road = Road::with_bends(cfg.road_half_width_m, bends, x_end + 100.0);
        let hw = cfg.road_half_width_m;
        let x_begin = -60.0;
        let mut objects = Vec::new();

        // Each kind of object on each side draws from its own random stream and is placed
        // front to back, so a longer drive extends the same street instead of reshuffling it.
        for (side_index, side) in [1.0f64, -1.0].into_iter().enumerate() {
            let mut rng = random_stream(seed, 10 + side_index as u64);
            let mut cursor = x_begin + rng.random_range(0.0..5.0);
            while cursor < x_end {
                if rng.random_bool(cfg.building_fraction) {
                    let length = rng.random_range(8.0..25.0);
                    let depth = rng.random_range(6.0..14.0);
                    let height = rng.random_range(4.0..18.0);
                    let setback = rng.random_range(0.0..3.0);
                    let xc = cursor + 0.5 * length;
                    let lat = side * (hw + SIDEWALK_WIDTH_M + setback + 0.5 * depth);
                    let (p, heading) = road.point_at_x(xc, lat);
                    objects.push(SceneObject {
                        shape: Shape::Box(OrientedBox::new(
                            Vector3::new(p.x, p.y, 0.5 * height),
                            Vector3::new(0.5 * length, 0.5 * depth, 0.5 * height),
                            heading,
                        )),
                        material: Material::Facade,
                        variant: rng.random::<u32>(),
                    });
                    let gap = if rng.random_bool(0.25) {
                        rng.random_range(4.0..10.0)
                    } else {
                        rng.random_range(0.0..2.0)
                    };
                    cursor += length + gap;
                } else {
                    // An open stretch: a low wall with trees behind it.
                    let length = rng.random_range(10.0..30.0);
                    let wall_height = rng.random_range(0.6..2.0);
                    let wall_variant = rng.random::<u32>();
                    let mut x = cursor;
                    while x < cursor + length - 0.5 {
                        let segment = (cursor + length - x).min(8.0);
                        let (p, heading) = road
                            .point_at_x(x + 0.5 * segment, side * (hw + SIDEWALK_WIDTH_M + 0.5));
                        objects.push(SceneObject {
                            shape: Shape::Box(OrientedBox::new(
                                Vector3::new(p.x, p.y, 0.5 * wall_height),
                                Vector3::new(0.5 * segment, 0.15, 0.5 * wall_height),
                                heading,
                            )),
                            material: Material::Wall,
                            variant: wall_variant,
                        });
                        x += segment;
                    }
                    let mut tree_x = cursor + rng.random_range(1.0..4.0);
                    while tree_x < cursor + length {
                        let lat = side * (hw + SIDEWALK_WIDTH_M + rng.random_range(2.0..6.0));
                        let (p, _) = road.point_at_x(tree_x, lat);
                        let trunk_top = rng.random_range(2.5..4.0);
                        let canopy_radius = rng.random_range(1.2..2.0);
                        let tree_variant = rng.random::<u32>();
                        objects.push(SceneObject {
                            shape: Shape::Cylinder(VerticalCylinder {
                                x: p.x,
                                y: p.y,
                                radius: rng.random_range(0.15..0.35),
                                z_bottom: 0.0,
                                z_top: trunk_top,
                            }),
                            material: Material::Bark,
                            variant: tree_variant,
                        });
                        objects.push(SceneObject {
                            shape: Shape::Cylinder(VerticalCylinder {
                                x: p.x,
                                y: p.y,
                                radius: canopy_radius,
                                z_bottom: trunk_top,
                                z_top: trunk_top + rng.random_range(1.5..3.5),
                            }),
                            material: Material::Foliage,
                            variant: tree_variant,
                        });
                        tree_x += rng.random_range(4.0..9.0);
                    }
                    cursor += length;
                }
            }

            // Lamp posts with a head reaching over the sidewalk towards the road.
            let mut rng = random_stream(seed, 20 + side_index as u64);
            let mut x = x_begin + rng.random_range(0.0..cfg.pole_spacing_m);
            while x < x_end {
                let pole_lat = side * (hw + 0.7);
                let (p, heading) = road.point_at_x(x, pole_lat);
                let height = 6.5;
                let pole_variant = rng.random::<u32>();
                objects.push(SceneObject {
                    shape: Shape::Cylinder(VerticalCylinder {
                        x: p.x,
                        y: p.y,
                        radius: 0.1,
                        z_bottom: 0.0,
                        z_top: height,
                    }),
                    material: Material::Metal,
                    variant: pole_variant,
                });
                let (head, _) = road.point_at_x(x, side * (hw + 0.7 - 0.6));
                objects.push(SceneObject {
                    shape: Shape::Box(OrientedBox::new(
                        Vector3::new(head.x, head.y, height - 0.1),
                        Vector3::new(0.15, 0.6, 0.1),
                        heading,
                    )),
                    material: Material::Metal,
                    variant: pole_variant,
                });
                x += cfg.pole_spacing_m * rng.random_range(0.9..1.1);
            }
        }

        // Boxes on the sidewalks, never reaching onto the asphalt: a Poisson process along x
        // on each side.
        if cfg.boxes_per_100m > 0.0 {
            let mean_gap = 200.0 / cfg.boxes_per_100m;
            for (side_index, side) in [1.0f64, -1.0].into_iter().enumerate() {
                let mut rng = random_stream(seed, 30 + side_index as u64);
                let mut x = x_begin;
                loop {
                    x += -mean_gap * (1.0 - rng.random::<f64>()).ln();
                    if x >= x_end {
                        break;
                    }
                    let length = rng.random_range(0.6..4.5);
                    let width = rng.random_range(0.6..1.9);
                    let height = rng.random_range(0.5..1.8);
                    let dyaw: f64 = rng.random_range(-0.3..0.3);
                    let extent = dyaw.sin().abs() * 0.5 * length + dyaw.cos().abs() * 0.5 * width;
                    let lat = side * (hw + 0.3 + extent + rng.random_range(0.0..1.0));
                    let (p, heading) = road.point_at_x(x, lat);
                    objects.push(SceneObject {
                        shape: Shape::Box(OrientedBox::new(
                            Vector3::new(p.x, p.y, 0.5 * height),
                            Vector3::new(0.5 * length, 0.5 * width, 0.5 * height),
                            heading + dyaw,
                        )),
                        material: Material::Crate,
                        variant: rng.random::<u32>(),
                    });
                }
            }
        }

        // Oncoming vehicles (their spacing depends on the drive's duration), one common speed
        // so they never overlap each other.
        let mut moving = Vec::with_capacity(cfg.moving_objects);
        if cfg.moving_objects > 0 {
            let mut rng = random_stream(seed, 40);
            let speed: f64 = -rng.random_range(6.0..12.0);
            let s_first = camera_s_range.0 + 15.0;
            let s_last = camera_s_range.1 + speed.abs() * duration_s + 60.0;
            let spacing = ((s_last - s_first) / cfg.moving_objects as f64).max(15.0);
            for i in 0..cfg.moving_objects {
                let half_length = rng.random_range(1.8..2.4);
                let truck = rng.random_bool(0.2);
                moving.push(MovingObject {
                    s_at_time_zero: s_first
                        + i as f64 * spacing
                        + rng.random_range(0.0..spacing - 12.0),
                    speed,
                    lateral: 0.5 * hw,
                    half_extents: Vector3::new(
                        if truck { 2.0 * half_length } else { half_length },
                        rng.random_range(0.85..0.95),
                        if truck {
                            rng.random_range(1.3..1.6)
                        } else {
                            rng.random_range(0.7..0.85)
                        },
                    ),
                    variant: rng.random::<u32>(),
                });
            }
        }

        let lighting = Lighting::from_angles(
            cfg.sun_azimuth_deg,
            cfg.sun_elevation_deg,
            cfg.ambient,
            cfg.shadows,
        );
        let texture_seed = (seed as u32) ^ ((seed >> 32) as u32).rotate_left(7) ^ 0x1234_5678;
        Self::new(road, objects, moving, lighting, texture_seed)
    }
}
