//! Analytic ray–primitive intersections for the renderer: the ground plane z = 0, boxes rotated
//! about the vertical axis, and vertical cylinders with caps. World frame: z up, metres.

use nalgebra::Vector3;

/// A surface hit by a ray: distance along the (unit) ray, outward unit normal in the world
/// frame, and 2-D texture coordinates in metres on the face that was hit.
#[derive(Clone, Copy, Debug)]
pub struct SurfaceHit {
    pub t: f64,
    pub normal: Vector3<f64>,
    /// Texture coordinates (metres) in the surface's own frame, so textures move with objects.
    pub uv: [f64; 2],
    /// Which face was hit (0..=5 for boxes: ±x, ±y, ±z local; 0 side, 1 top, 2 bottom for
    /// cylinders), for face-dependent textures.
    pub face: u8,
}

/// A box with axis-aligned extents in its own frame, rotated by `yaw` about the world z axis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrientedBox {
    pub center: Vector3<f64>,
    /// Half the size along the box's local x (length), y (width) and z (height), metres.
    pub half_extents: Vector3<f64>,
    cos_yaw: f64,
    sin_yaw: f64,
}

impl OrientedBox {
    /// A box centred at `center`, rotated by `yaw` radians counter-clockwise about +z.
    pub fn new(center: Vector3<f64>, half_extents: Vector3<f64>, yaw: f64) -> Self {
        Self { center, half_extents, cos_yaw: yaw.cos(), sin_yaw: yaw.sin() }
    }

    /// Rotation angle about +z, radians.
    pub fn yaw(&self) -> f64 {
        self.sin_yaw.atan2(self.cos_yaw)
    }

    #[inline]
    fn world_to_local(&self, v: Vector3<f64>) -> Vector3<f64> {
        Vector3::new(
            self.cos_yaw * v.x + self.sin_yaw * v.y,
            -self.sin_yaw * v.x + self.cos_yaw * v.y,
            v.z,
        )
    }

    #[inline]
    fn local_to_world(&self, v: Vector3<f64>) -> Vector3<f64> {
        Vector3::new(
            self.cos_yaw * v.x - self.sin_yaw * v.y,
            self.sin_yaw * v.x + self.cos_yaw * v.y,
            v.z,
        )
    }

    /// World-frame axis-aligned bounds (min, max).
    pub fn aabb(&self) -> (Vector3<f64>, Vector3<f64>) {
        let h = self.half_extents;
        let ex = self.cos_yaw.abs() * h.x + self.sin_yaw.abs() * h.y;
        let ey = self.sin_yaw.abs() * h.x + self.cos_yaw.abs() * h.y;
        let e = Vector3::new(ex, ey, h.z);
        (self.center - e, self.center + e)
    }

    /// Whether a world point is inside (or on) the box.
    pub fn contains(&self, p: Vector3<f64>) -> bool {
        let l = self.world_to_local(p - self.center);
        l.x.abs() <= self.half_extents.x
            && l.y.abs() <= self.half_extents.y
            && l.z.abs() <= self.half_extents.z
    }

    /// The first entry of the ray `origin + t dir` into the box with `t_min < t < t_max`
    /// (slab method in the box frame). Rays starting inside do not hit.
    #[inline]
    pub fn intersect(
        &self,
        origin: &Vector3<f64>,
        dir: &Vector3<f64>,
        t_min: f64,
        t_max: f64,
    ) -> Option<SurfaceHit> {
        let o = self.world_to_local(origin - self.center);
        let d = self.world_to_local(*dir);
        let h = self.half_extents;
        let mut t_near = f64::NEG_INFINITY;
        let mut t_far = f64::INFINITY;
        let mut near_axis = 0usize;
        for axis in 0..3 {
            if d[axis].abs() < 1e-15 {
                if o[axis].abs() > h[axis] {
                    return None;
                }
                continue;
            }
            let inv = 1.0 / d[axis];
            let mut t0 = (-h[axis] - o[axis]) * inv;
            let mut t1 = (h[axis] - o[axis]) * inv;
            if t0 > t1 {
                std::mem::swap(&mut t0, &mut t1);
            }
            if t0 > t_near {
                t_near = t0;
                near_axis = axis;
            }
            t_far = t_far.min(t1);
            if t_near > t_far {
                return None;
            }
        }
        if t_near <= t_min || t_near >= t_max {
            return None;
        }
        // The entry face faces against the ray.
        let sign = if d[near_axis] > 0.0 { -1.0 } else { 1.0 };
        let mut local_normal = Vector3::zeros();
        local_normal[near_axis] = sign;
        let p = o + d * t_near;
        let (uv, face) = match near_axis {
            0 => ([p.y + h.y, p.z + h.z], if sign > 0.0 { 0 } else { 1 }),
            1 => ([p.x + h.x, p.z + h.z], if sign > 0.0 { 2 } else { 3 }),
            _ => ([p.x + h.x, p.y + h.y], if sign > 0.0 { 4 } else { 5 }),
        };
        Some(SurfaceHit { t: t_near, normal: self.local_to_world(local_normal), uv, face })
    }
}

/// A solid vertical cylinder (pole, trunk, canopy) with flat caps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VerticalCylinder {
    /// Axis position in the ground plane.
    pub x: f64,
    pub y: f64,
    pub radius: f64,
    /// Bottom and top heights, metres.
    pub z_bottom: f64,
    pub z_top: f64,
}

impl VerticalCylinder {
    /// World-frame axis-aligned bounds (min, max).
    pub fn aabb(&self) -> (Vector3<f64>, Vector3<f64>) {
        (
            Vector3::new(self.x - self.radius, self.y - self.radius, self.z_bottom),
            Vector3::new(self.x + self.radius, self.y + self.radius, self.z_top),
        )
    }

    /// The first hit of the ray with the side or a cap with `t_min < t < t_max`.
    #[inline]
    pub fn intersect(
        &self,
        origin: &Vector3<f64>,
        dir: &Vector3<f64>,
        t_min: f64,
        t_max: f64,
    ) -> Option<SurfaceHit> {
        let ox = origin.x - self.x;
        let oy = origin.y - self.y;
        let r2 = self.radius * self.radius;
        let mut best: Option<SurfaceHit> = None;
        let mut best_t = t_max;
        let a = dir.x * dir.x + dir.y * dir.y;
        if a > 1e-18 {
            let b = ox * dir.x + oy * dir.y;
            let c = ox * ox + oy * oy - r2;
            let disc = b * b - a * c;
            if disc >= 0.0 {
                let t = (-b - disc.sqrt()) / a;
                if t > t_min && t < best_t {
                    let z = origin.z + dir.z * t;
                    if z >= self.z_bottom && z <= self.z_top {
                        let nx = (ox + dir.x * t) / self.radius;
                        let ny = (oy + dir.y * t) / self.radius;
                        let angle = ny.atan2(nx);
                        best_t = t;
                        best = Some(SurfaceHit {
                            t,
                            normal: Vector3::new(nx, ny, 0.0),
                            uv: [angle * self.radius, z - self.z_bottom],
                            face: 0,
                        });
                    }
                }
            }
        }
        if dir.z.abs() > 1e-15 {
            for (z, face, nz) in [(self.z_top, 1u8, 1.0), (self.z_bottom, 2u8, -1.0)] {
                // Only the cap facing the ray can be an entry point.
                if dir.z * nz >= 0.0 {
                    continue;
                }
                let t = (z - origin.z) / dir.z;
                if t > t_min && t < best_t {
                    let px = ox + dir.x * t;
                    let py = oy + dir.y * t;
                    if px * px + py * py <= r2 {
                        best_t = t;
                        best = Some(SurfaceHit {
                            t,
                            normal: Vector3::new(0.0, 0.0, nz),
                            uv: [px, py],
                            face,
                        });
                    }
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_hit_distance_and_normal() {
        let b = OrientedBox::new(Vector3::new(10.0, 0.0, 1.0), Vector3::new(1.0, 2.0, 1.0), 0.0);
        let o = Vector3::new(0.0, 0.0, 1.0);
        let d = Vector3::new(1.0, 0.0, 0.0);
        let hit = b.intersect(&o, &d, 1e-9, 1e9).expect("hits");
        assert!((hit.t - 9.0).abs() < 1e-12);
        assert!((hit.normal - Vector3::new(-1.0, 0.0, 0.0)).norm() < 1e-12);
        assert!(b.intersect(&o, &-d, 1e-9, 1e9).is_none());
        assert!(b.intersect(&o, &d, 1e-9, 8.0).is_none());
    }

    #[test]
    fn rotated_box_hit_matches_geometry() {
        // A unit cube rotated by 45 degrees: the corner points at the ray.
        let b = OrientedBox::new(
            Vector3::zeros(),
            Vector3::new(1.0, 1.0, 1.0),
            std::f64::consts::FRAC_PI_4,
        );
        let hit = b
            .intersect(&Vector3::new(-5.0, 0.0, 0.0), &Vector3::new(1.0, 0.0, 0.0), 0.0, 1e9)
            .expect("hits");
        assert!((hit.t - (5.0 - 2f64.sqrt())).abs() < 1e-12);
        let (lo, hi) = b.aabb();
        assert!((hi.x - 2f64.sqrt()).abs() < 1e-12 && (lo.y + 2f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn cylinder_side_and_cap() {
        let c = VerticalCylinder { x: 5.0, y: 0.0, radius: 0.5, z_bottom: 0.0, z_top: 3.0 };
        let side = c
            .intersect(&Vector3::new(0.0, 0.0, 1.0), &Vector3::new(1.0, 0.0, 0.0), 0.0, 1e9)
            .expect("side");
        assert!((side.t - 4.5).abs() < 1e-12 && side.face == 0);
        let top = c
            .intersect(&Vector3::new(5.0, 0.1, 10.0), &Vector3::new(0.0, 0.0, -1.0), 0.0, 1e9)
            .expect("cap");
        assert!((top.t - 7.0).abs() < 1e-12 && top.face == 1);
        assert!(
            c.intersect(&Vector3::new(0.0, 0.0, 4.0), &Vector3::new(1.0, 0.0, 0.0), 0.0, 1e9)
                .is_none()
        );
    }
}
