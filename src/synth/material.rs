//! Procedural surface colours (albedo) of the ground and of every [`Material`]: asphalt with
//! lane markings, sidewalk slabs, grass and gravel, brick / plaster / panel facades with
//! windows, block walls, crates, metal, bark, foliage and vehicle paint. Each pattern has
//! structure at several scales (metres down to centimetres) so photometric losses see gradients
//! everywhere, and every function is band-limited by the sample's footprint (metres).

use super::geometry::SurfaceHit;
use super::noise::{Rgb, fbm, hash1, hash2, mix, scale, soft_band, unit, value_noise, vary};
use super::scene::{Material, Road, SIDEWALK_WIDTH_M};

/// Distance from `x` to the nearest multiple of `period`.
#[inline]
fn distance_to_grid_line(x: f64, period: f64) -> f64 {
    let f = (x / period).rem_euclid(1.0);
    period * f.min(1.0 - f)
}

/// Weight (0..1) of grout/mortar lines of half-width `half_width` on a grid of `period`.
#[inline]
fn grid_lines(x: f64, period: f64, half_width: f64, footprint: f64) -> f32 {
    soft_band(distance_to_grid_line(x, period), half_width, footprint)
}

/// Colour of the ground at world point (x, y).
pub fn ground_albedo(road: &Road, x: f64, y: f64, footprint: f64, seed: u32) -> Rgb {
    let lateral = road.lateral(x, y);
    let side = lateral.abs();
    let hw = road.half_width;
    let fine = fbm(x, y, 1.0, 8, footprint, seed ^ 0x11);
    let coarse = fbm(x, y, 0.12, 5, footprint, seed ^ 0x22);
    if side < hw {
        let grey = 0.22 + 0.16 * coarse + 0.36 * (fine - 0.5);
        let asphalt = [grey, grey * 1.01, grey * 1.06];
        // Dashed centre line (3 m dash, 6 m gap) and solid edge lines.
        let dash = soft_band(x.rem_euclid(9.0) - 1.5, 1.5, footprint);
        let centre = soft_band(lateral, 0.07, footprint) * dash;
        let edge = soft_band(side - (hw - 0.3), 0.08, footprint);
        let wear = 0.75 + 0.25 * fine;
        mix(asphalt, scale([0.92, 0.92, 0.86], wear), centre.max(edge))
    } else if side < hw + SIDEWALK_WIDTH_M {
        let across = side - hw;
        if across < 0.2 {
            // Kerb stones, 1 m long.
            let kerb = vary([0.62, 0.60, 0.57], hash1((x / 1.0).floor() as i64, seed ^ 0x33), 0.15);
            let joint = grid_lines(x, 1.0, 0.01, footprint);
            return scale(mix(kerb, [0.3, 0.3, 0.3], joint), 0.85 + 0.3 * fine);
        }
        // Concrete slabs of 1.25 m with grout lines, each slab its own shade.
        let (u, v) = (x, across - 0.2);
        let slab_id = hash2((u / 1.25).floor() as i64, (v / 1.25).floor() as i64, seed ^ 0x44);
        let slab = vary([0.55, 0.53, 0.50], slab_id, 0.25);
        let grout =
            grid_lines(u, 1.25, 0.015, footprint).max(grid_lines(v, 1.25, 0.015, footprint));
        scale(mix(slab, [0.28, 0.27, 0.26], grout), 0.8 + 0.4 * fine)
    } else {
        let grass = scale([0.20, 0.36, 0.11], 0.55 + 0.9 * fine);
        let gravel_grain = fbm(x, y, 8.0, 5, footprint, seed ^ 0x55);
        let gravel = scale([0.50, 0.45, 0.38], 0.6 + 0.8 * gravel_grain);
        let patch = ((coarse - 0.35) * 4.0).clamp(0.0, 1.0);
        mix(grass, gravel, patch)
    }
}

const FACADE_PALETTE: [Rgb; 6] = [
    [0.62, 0.32, 0.24],
    [0.78, 0.72, 0.60],
    [0.55, 0.58, 0.62],
    [0.85, 0.80, 0.70],
    [0.45, 0.36, 0.30],
    [0.70, 0.55, 0.40],
];

const PAINT_PALETTE: [Rgb; 6] = [
    [0.75, 0.12, 0.10],
    [0.12, 0.25, 0.65],
    [0.85, 0.85, 0.82],
    [0.15, 0.15, 0.17],
    [0.85, 0.65, 0.10],
    [0.20, 0.50, 0.30],
];

fn facade(variant: u32, hit: &SurfaceHit, footprint: f64, seed: u32) -> Rgb {
    let [u, v] = hit.uv;
    let s = seed ^ variant;
    if hit.face >= 4 {
        // Flat roof: gravel.
        return scale([0.35, 0.34, 0.33], 0.6 + 0.8 * fbm(u, v, 2.0, 6, footprint, s));
    }
    let base = vary(FACADE_PALETTE[(variant % 6) as usize], variant.rotate_left(3), 0.3);
    let grain = fbm(u, v, 1.0, 7, footprint, s ^ 0x66);
    let wall: Rgb = match (variant >> 8) % 3 {
        0 => {
            // Running-bond bricks 0.45 x 0.15 m with mortar.
            let row = (v / 0.15).floor();
            let offset = if (row as i64) % 2 == 0 { 0.0 } else { 0.225 };
            let brick = hash2(((u + offset) / 0.45).floor() as i64, row as i64, s);
            let mortar = grid_lines(v, 0.15, 0.012, footprint).max(grid_lines(
                u + offset,
                0.45,
                0.012,
                footprint,
            ));
            mix(vary(base, brick, 0.35), [0.70, 0.68, 0.64], mortar)
        }
        1 => {
            // Plaster with stains.
            let stain = value_noise(u * 0.3, v * 0.3, s ^ 0x77);
            scale(base, 0.75 + 0.35 * stain)
        }
        _ => {
            // Cladding panels 1.5 x 1.0 m.
            let panel = hash2((u / 1.5).floor() as i64, (v / 1.0).floor() as i64, s);
            let seam = grid_lines(u, 1.5, 0.02, footprint).max(grid_lines(v, 1.0, 0.02, footprint));
            mix(vary(base, panel, 0.2), [0.2, 0.2, 0.22], seam)
        }
    };
    let wall = scale(wall, 0.8 + 0.4 * grain);
    // Windows on a 3 m x 3.2 m bay grid, above a plinth.
    let bay_u = u.rem_euclid(3.0) - 1.5;
    let bay_v = v.rem_euclid(3.2) - 1.7;
    let in_window = soft_band(bay_u, 0.75, footprint) * soft_band(bay_v, 0.75, footprint);
    let frame = soft_band(bay_u, 0.85, footprint) * soft_band(bay_v, 0.85, footprint) - in_window;
    let above_plinth = soft_band(v - 100.5, 100.0, footprint);
    let pane = hash2((u / 3.0).floor() as i64, (v / 3.2).floor() as i64, s ^ 0x88);
    let glass = vary([0.18, 0.24, 0.30], pane, 0.6);
    let reflection = fbm(u, v, 0.7, 4, footprint, s ^ 0x99);
    let glass = scale(glass, 0.6 + 0.8 * reflection);
    let with_frame = mix(wall, [0.9, 0.9, 0.88], frame * above_plinth);
    mix(with_frame, glass, in_window * above_plinth)
}

/// Colour of an object's surface at a hit.
pub fn object_albedo(
    material: Material,
    variant: u32,
    hit: &SurfaceHit,
    footprint: f64,
    seed: u32,
) -> Rgb {
    let [u, v] = hit.uv;
    let s = seed ^ variant.wrapping_mul(0x2545_f491);
    match material {
        Material::Facade => facade(variant, hit, footprint, seed),
        Material::Wall => {
            // Concrete blocks 0.4 x 0.2 m.
            let row = (v / 0.2).floor();
            let offset = if (row as i64) % 2 == 0 { 0.0 } else { 0.2 };
            let block = hash2(((u + offset) / 0.4).floor() as i64, row as i64, s);
            let joint = grid_lines(v, 0.2, 0.01, footprint).max(grid_lines(
                u + offset,
                0.4,
                0.01,
                footprint,
            ));
            let base = vary([0.60, 0.58, 0.55], block, 0.3);
            scale(
                mix(base, [0.35, 0.34, 0.33], joint),
                0.75 + 0.5 * fbm(u, v, 2.0, 6, footprint, s),
            )
        }
        Material::Crate => {
            if variant.is_multiple_of(2) {
                // Wooden planks 0.18 m wide with grain along them.
                let plank = hash1((v / 0.18).floor() as i64, s);
                let wood = vary([0.60, 0.42, 0.25], plank, 0.35);
                let grain = fbm(u * 0.25, v * 4.0, 2.0, 6, footprint * 0.25, s ^ 0xab);
                let gap = grid_lines(v, 0.18, 0.008, footprint);
                mix(scale(wood, 0.7 + 0.6 * grain), [0.15, 0.1, 0.05], gap)
            } else {
                // Painted checker 0.3 m with dirt.
                let a = vary(PAINT_PALETTE[(variant / 2 % 6) as usize], variant, 0.2);
                let b = scale(a, 0.45);
                let check = ((u / 0.3).floor() as i64 + (v / 0.3).floor() as i64).rem_euclid(2);
                let c = if check == 0 { a } else { b };
                scale(c, 0.7 + 0.6 * fbm(u, v, 1.5, 7, footprint, s))
            }
        }
        Material::Metal => {
            let band = unit(hash1((v / 0.5).floor() as i64, s));
            let grey = 0.35 + 0.15 * band + 0.25 * (fbm(u, v, 4.0, 5, footprint, s) - 0.5);
            [grey, grey * 1.02, grey * 1.05]
        }
        Material::Bark => {
            let streaks = fbm(u * 4.0, v * 0.5, 2.0, 6, footprint * 0.5, s);
            scale([0.36, 0.26, 0.17], 0.45 + 0.9 * streaks)
        }
        Material::Foliage => {
            let leaves = fbm(u, v, 1.5, 7, footprint, s);
            let hue = vary([0.18, 0.42, 0.12], variant, 0.4);
            scale(hue, 0.35 + 1.5 * leaves)
        }
        Material::Vehicle => {
            let paint = vary(PAINT_PALETTE[(variant % 6) as usize], variant.rotate_left(9), 0.15);
            // Side faces: window band in the upper part and a darker sill stripe.
            if hit.face < 4 {
                let window = soft_band(v - 1.25, 0.22, footprint)
                    * soft_band((u % 2.2) - 1.1, 0.9, footprint);
                let sill = soft_band(v - 0.45, 0.05, footprint);
                let body = scale(paint, 0.85 + 0.3 * fbm(u, v, 1.0, 6, footprint, s));
                let body = mix(body, scale(paint, 0.4), sill);
                mix(body, [0.08, 0.10, 0.13], window)
            } else {
                scale(paint, 0.8 + 0.4 * fbm(u, v, 1.0, 6, footprint, s))
            }
        }
    }
}
