//! The scene's ray acceleration: a 2-D uniform grid over the ground plane whose cells list the
//! static objects overlapping them, walked cell by cell along a ray, and the small set of
//! objects already tested by the current ray.

use super::{GRID_CELL_M, SceneObject};
use nalgebra::Vector3;

/// 2-D uniform grid over the ground plane, cells listing the objects that overlap them
/// (compressed rows: `cell_start[c]..cell_start[c + 1]` indexes `items`).
#[derive(Clone, Debug, Default)]
pub(super) struct Grid {
    x0: f64,
    y0: f64,
    nx: i64,
    ny: i64,
    z_max: f64,
    cell_start: Vec<u32>,
    items: Vec<u32>,
}

impl Grid {
    pub(super) fn build(objects: &[SceneObject]) -> Self {
        if objects.is_empty() {
            return Self::default();
        }
        let mut lo = Vector3::repeat(f64::INFINITY);
        let mut hi = Vector3::repeat(f64::NEG_INFINITY);
        let bounds: Vec<_> = objects.iter().map(|o| o.shape.aabb()).collect();
        for (a, b) in &bounds {
            lo = lo.inf(a);
            hi = hi.sup(b);
        }
        let x0 = lo.x - 1.0;
        let y0 = lo.y - 1.0;
        let nx = (((hi.x + 1.0 - x0) / GRID_CELL_M).ceil() as i64).max(1);
        let ny = (((hi.y + 1.0 - y0) / GRID_CELL_M).ceil() as i64).max(1);
        let cell_range = |a: &Vector3<f64>, b: &Vector3<f64>| {
            let ix0 = (((a.x - x0) / GRID_CELL_M).floor() as i64).clamp(0, nx - 1);
            let ix1 = (((b.x - x0) / GRID_CELL_M).floor() as i64).clamp(0, nx - 1);
            let iy0 = (((a.y - y0) / GRID_CELL_M).floor() as i64).clamp(0, ny - 1);
            let iy1 = (((b.y - y0) / GRID_CELL_M).floor() as i64).clamp(0, ny - 1);
            (ix0, ix1, iy0, iy1)
        };
        let mut counts = vec![0u32; (nx * ny) as usize + 1];
        for (a, b) in &bounds {
            let (ix0, ix1, iy0, iy1) = cell_range(a, b);
            for iy in iy0..=iy1 {
                for ix in ix0..=ix1 {
                    counts[(iy * nx + ix) as usize] += 1;
                }
            }
        }
        let mut cell_start = Vec::with_capacity(counts.len());
        let mut acc = 0u32;
        for c in &counts {
            cell_start.push(acc);
            acc += c;
        }
        let mut fill = cell_start.clone();
        let mut items = vec![0u32; acc as usize];
        for (index, (a, b)) in bounds.iter().enumerate() {
            let (ix0, ix1, iy0, iy1) = cell_range(a, b);
            for iy in iy0..=iy1 {
                for ix in ix0..=ix1 {
                    let cell = (iy * nx + ix) as usize;
                    items[fill[cell] as usize] = index as u32;
                    fill[cell] += 1;
                }
            }
        }
        Self { x0, y0, nx, ny, z_max: hi.z.max(0.0) + 1e-6, cell_start, items }
    }

    /// Visits the cells the ray crosses between `t_start` and `t_end` in order, calling
    /// `visit(object_indices, t_cell_exit)`; stops when `visit` returns true.
    #[inline]
    pub(super) fn walk(
        &self,
        origin: &Vector3<f64>,
        dir: &Vector3<f64>,
        t_start: f64,
        t_end: f64,
        mut visit: impl FnMut(&[u32], f64) -> bool,
    ) {
        let finite = origin.iter().chain(dir.iter()).all(|v| v.is_finite());
        if self.items.is_empty() || !finite || t_start.is_nan() || t_end.is_nan() || t_start > t_end
        {
            return;
        }
        // Clip to the grid's box: x, y bounds and 0 <= z <= z_max.
        let lo = [self.x0, self.y0, 0.0];
        let hi = [
            self.x0 + self.nx as f64 * GRID_CELL_M,
            self.y0 + self.ny as f64 * GRID_CELL_M,
            self.z_max,
        ];
        let (mut t0, mut t1) = (t_start, t_end);
        for axis in 0..3 {
            if dir[axis].abs() < 1e-15 {
                if origin[axis] < lo[axis] || origin[axis] > hi[axis] {
                    return;
                }
                continue;
            }
            let inv = 1.0 / dir[axis];
            let (mut a, mut b) = ((lo[axis] - origin[axis]) * inv, (hi[axis] - origin[axis]) * inv);
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            t0 = t0.max(a);
            t1 = t1.min(b);
            if t0 > t1 {
                return;
            }
        }
        let px = origin.x + dir.x * t0;
        let py = origin.y + dir.y * t0;
        let mut ix = (((px - self.x0) / GRID_CELL_M).floor() as i64).clamp(0, self.nx - 1);
        let mut iy = (((py - self.y0) / GRID_CELL_M).floor() as i64).clamp(0, self.ny - 1);
        let axis_setup = |d: f64, o: f64, start: f64, i: i64| -> (i64, f64, f64) {
            if d > 1e-15 {
                (1, (start + (i + 1) as f64 * GRID_CELL_M - o) / d, GRID_CELL_M / d)
            } else if d < -1e-15 {
                (-1, (start + i as f64 * GRID_CELL_M - o) / d, -GRID_CELL_M / d)
            } else {
                (0, f64::INFINITY, f64::INFINITY)
            }
        };
        let (step_x, mut next_x, delta_x) = axis_setup(dir.x, origin.x, self.x0, ix);
        let (step_y, mut next_y, delta_y) = axis_setup(dir.y, origin.y, self.y0, iy);
        loop {
            let cell = (iy * self.nx + ix) as usize;
            let items =
                &self.items[self.cell_start[cell] as usize..self.cell_start[cell + 1] as usize];
            let exit = next_x.min(next_y);
            if visit(items, exit) || exit >= t1 {
                return;
            }
            if next_x < next_y {
                ix += step_x;
                if ix < 0 || ix >= self.nx {
                    return;
                }
                next_x += delta_x;
            } else {
                iy += step_y;
                if iy < 0 || iy >= self.ny {
                    return;
                }
                next_y += delta_y;
            }
        }
    }
}

/// The last few objects a ray was tested against: objects spanning several grid cells are
/// tested once per ray (a miss stays a miss as the search interval only shrinks, and a hit is
/// already the best).
#[derive(Default)]
pub(super) struct RecentlyTested {
    ids: [u32; 16],
    len: usize,
    next: usize,
}

impl RecentlyTested {
    /// Records `id`; false if it was among the recent ones.
    #[inline]
    pub(super) fn insert(&mut self, id: u32) -> bool {
        if self.ids[..self.len].contains(&id) {
            return false;
        }
        self.ids[self.next] = id;
        self.next = (self.next + 1) % self.ids.len();
        self.len = (self.len + 1).min(self.ids.len());
        true
    }
}
