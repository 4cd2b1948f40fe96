//! Colourised depth and disparity images for viewing: a perceptual colour map of our own
//! ("ember": dark navy → violet → crimson → orange → pale yellow, luminance rising strictly
//! along it), near = bright, far = dark, robust percentile normalisation, invalid pixels black.

use super::{SinkError, write_atomic};
use crate::frame::{DepthMap, RgbImage};
use image::ImageEncoder;
use std::path::Path;
use std::sync::LazyLock;

/// The colour of invalid pixels (darker than every colour of the map).
pub const INVALID_COLOUR: [u8; 3] = [0, 0, 0];

/// Control colours of the map at t = 0, 0.25, 0.5, 0.75, 1. Their Rec. 709 luminances are
/// about 8, 35, 76, 140 and 238: strictly increasing, and since luminance is linear in RGB,
/// it rises strictly along every linear segment between them too.
const CONTROL_COLOURS: [[f32; 3]; 5] = [
    [8.0, 6.0, 28.0],
    [62.0, 20.0, 110.0],
    [168.0, 45.0, 110.0],
    [240.0, 120.0, 40.0],
    [252.0, 240.0, 170.0],
];

/// Entries of the lookup table used per pixel.
const LUT_SIZE: usize = 256;

static LUT: LazyLock<[[u8; 3]; LUT_SIZE]> = LazyLock::new(|| {
    let mut lut = [[0; 3]; LUT_SIZE];
    for (i, entry) in lut.iter_mut().enumerate() {
        *entry = colour_at(i as f32 / (LUT_SIZE - 1) as f32);
    }
    lut
});

/// Default percentiles (in %) mapped to the dark and bright ends of the map.
pub const DEFAULT_PERCENTILES: (f32, f32) = (2.0, 98.0);

/// At most this many valid values are sorted to find the percentiles (a strided subsample).
const MAX_PERCENTILE_SAMPLES: usize = 65_536;

/// The map's colour at `t` in [0, 1] (0 = far/dark, 1 = near/bright); `t` is clamped.
pub fn colour_at(t: f32) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let segments = (CONTROL_COLOURS.len() - 1) as f32;
    let position = t * segments;
    let i = (position.floor() as usize).min(CONTROL_COLOURS.len() - 2);
    let f = position - i as f32;
    let (a, b) = (CONTROL_COLOURS[i], CONTROL_COLOURS[i + 1]);
    std::array::from_fn(|c| (a[c] + (b[c] - a[c]) * f).round() as u8)
}

/// Rec. 709 relative luminance of an sRGB-coded colour, on the 0..255 scale of its channels.
pub fn luminance(rgb: [u8; 3]) -> f32 {
    0.2126 * f32::from(rgb[0]) + 0.7152 * f32::from(rgb[1]) + 0.0722 * f32::from(rgb[2])
}

/// The `low` and `high` percentiles (in %) of the finite values of `values`, from a strided
/// subsample of at most [`MAX_PERCENTILE_SAMPLES`]; `None` when there is none.
pub fn percentile_range(
    values: impl Iterator<Item = f32> + Clone,
    low: f32,
    high: f32,
) -> Option<(f32, f32)> {
    percentile_range_in(values, low, high, &mut Vec::new())
}

/// [`percentile_range`] with the subsample in `sample` (cleared first; its allocation is kept
/// for the next call).
pub fn percentile_range_in(
    values: impl Iterator<Item = f32> + Clone,
    low: f32,
    high: f32,
    sample: &mut Vec<f32>,
) -> Option<(f32, f32)> {
    let count = values.clone().filter(|v| v.is_finite()).count();
    if count == 0 {
        return None;
    }
    let step = count.div_ceil(MAX_PERCENTILE_SAMPLES);
    sample.clear();
    sample.extend(values.filter(|v| v.is_finite()).step_by(step));
    let last = sample.len() - 1;
    let rank = |p: f32| ((p.clamp(0.0, 100.0) / 100.0) * last as f32).round() as usize;
    let lo = *sample.select_nth_unstable_by(rank(low), f32::total_cmp).1;
    let hi = *sample.select_nth_unstable_by(rank(high), f32::total_cmp).1;
    Some((lo, hi))
}

/// Colourise "closeness" values (larger = nearer = brighter; `None` = invalid) through the map,
/// normalised between the given percentiles.
fn colourise_closeness(
    width: u32,
    height: u32,
    closeness: impl Iterator<Item = Option<f32>> + Clone,
    percentiles: (f32, f32),
) -> RgbImage {
    let range = percentile_range(closeness.clone().flatten(), percentiles.0, percentiles.1);
    colourise_closeness_in(width, height, closeness, range)
}

/// Colourise closeness values between `range` (low → dark, high → bright); all black when
/// `range` is `None` (no valid value).
fn colourise_closeness_in(
    width: u32,
    height: u32,
    closeness: impl Iterator<Item = Option<f32>>,
    range: Option<(f32, f32)>,
) -> RgbImage {
    let mut image = RgbImage::new(0, 0);
    colourise_closeness_into(width, height, closeness, range, &mut image);
    image
}

/// [`colourise_closeness_in`] into `image` (reshaped, its allocation kept).
fn colourise_closeness_into(
    width: u32,
    height: u32,
    closeness: impl Iterator<Item = Option<f32>>,
    range: Option<(f32, f32)>,
    image: &mut RgbImage,
) {
    image.reshape(width, height);
    let Some((lo, hi)) = range else {
        image.data.fill(0);
        return;
    };
    let span = hi - lo;
    let lut = &*LUT;
    // Every pixel with a value is written below; only those past the values' end are cleared.
    let mut written = 0;
    for (pixel, value) in image.data.chunks_exact_mut(3).zip(closeness) {
        written += 3;
        let colour = match value {
            Some(v) => {
                let t = if span > f32::EPSILON * hi.abs().max(1.0) { (v - lo) / span } else { 0.5 };
                lut[(t.clamp(0.0, 1.0) * (LUT_SIZE - 1) as f32).round() as usize]
            }
            None => INVALID_COLOUR,
        };
        pixel.copy_from_slice(&colour);
    }
    image.data[written..].fill(0);
}

/// Colourise a metric depth map through its inverse (near = bright), with the default
/// percentiles; invalid pixels (0, negative, NaN, infinite) are black.
pub fn colourise_depth(depth: &DepthMap) -> RgbImage {
    colourise_depth_with(depth, DEFAULT_PERCENTILES)
}

/// [`colourise_depth`] with chosen (low, high) percentiles of inverse depth.
pub fn colourise_depth_with(depth: &DepthMap, percentiles: (f32, f32)) -> RgbImage {
    colourise_closeness(depth.width, depth.height, depth_closeness(depth), percentiles)
}

/// [`colourise_depth`], and the depths at the bright and dark ends of its map: (near, far);
/// `None` without a valid pixel. The range is found once, for both.
pub fn colourise_depth_ranged(depth: &DepthMap) -> (RgbImage, Option<(f32, f32)>) {
    let mut image = RgbImage::new(0, 0);
    let range = colourise_depth_into(depth, &mut image, &mut Vec::new());
    (image, range)
}

/// [`colourise_depth_ranged`] into `image` (reshaped to the depth map's size), with `sample`
/// as the percentiles' scratch: both keep their allocations, so a live sink that keeps them
/// allocates nothing per frame. Returns the (near, far) depths of the map's ends.
pub fn colourise_depth_into(
    depth: &DepthMap,
    image: &mut RgbImage,
    sample: &mut Vec<f32>,
) -> Option<(f32, f32)> {
    let (low, high) = DEFAULT_PERCENTILES;
    let range = percentile_range_in(depth_closeness(depth).flatten(), low, high, sample);
    colourise_closeness_into(depth.width, depth.height, depth_closeness(depth), range, image);
    range.map(|(lo, hi)| (1.0 / hi, 1.0 / lo))
}

/// The closeness (inverse depth) of a depth map's valid pixels; `None` where invalid.
fn depth_closeness(depth: &DepthMap) -> impl Iterator<Item = Option<f32>> + Clone + '_ {
    let n = depth.width as usize * depth.height as usize;
    depth.data[..n.min(depth.data.len())]
        .iter()
        .map(|&d| (d.is_finite() && d > 0.0).then(|| 1.0 / d))
}

/// Colourise several depth maps of the same scene (e.g. two models' predictions of one frame)
/// through ONE range, the default percentiles of all their inverse depths together, so that
/// one colour means one depth in every image and they can be compared side by side.
pub fn colourise_depths_shared(depths: &[&DepthMap]) -> Vec<RgbImage> {
    let (low, high) = DEFAULT_PERCENTILES;
    let all = depths.iter().flat_map(|d| depth_closeness(d));
    let range = percentile_range(all.flatten(), low, high);
    depths
        .iter()
        .map(|d| colourise_closeness_in(d.width, d.height, depth_closeness(d), range))
        .collect()
}

/// Colourise a row-major disparity (or inverse depth) map of `width` x `height` (larger =
/// nearer = brighter); values that are not finite and positive are invalid (black), as are
/// pixels missing from a too-short slice.
pub fn colourise_disparity(width: u32, height: u32, disparity: &[f32]) -> RgbImage {
    let n = width as usize * height as usize;
    let closeness = disparity[..n.min(disparity.len())]
        .iter()
        .map(|&d| (d.is_finite() && d > 0.0).then_some(d));
    colourise_closeness(width, height, closeness, DEFAULT_PERCENTILES)
}

/// Write an RGB image as an 8-bit PNG, atomically.
pub fn write_rgb_png(path: &Path, image: &RgbImage) -> Result<(), SinkError> {
    let expected = image.width as usize * image.height as usize * 3;
    if image.width == 0 || image.height == 0 || image.data.len() != expected {
        return Err(SinkError::invalid(
            path,
            "RGB image",
            format!(
                "{}x{} needs {expected} bytes, got {}",
                image.width,
                image.height,
                image.data.len()
            ),
        ));
    }
    write_atomic(path, |w| {
        image::codecs::png::PngEncoder::new(w)
            .write_image(&image.data, image.width, image.height, image::ExtendedColorType::Rgb8)
            .map_err(|source| SinkError::Image { path: path.to_path_buf(), source })
    })
}

/// Colourise `depth` ([`colourise_depth`]) and write it as a PNG, atomically.
pub fn write_colourised_depth_png(path: &Path, depth: &DepthMap) -> Result<(), SinkError> {
    write_rgb_png(path, &colourise_depth(depth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_luminance_rises_strictly() {
        // Rounding to 8 bits may repeat a colour, but luminance never falls...
        let mut previous = -1.0;
        for (i, colour) in LUT.iter().enumerate() {
            let l = luminance(*colour);
            assert!(l >= previous, "luminance falls at entry {i}: {l} < {previous}");
            previous = l;
        }
        // ...and rises strictly over every eighth of an entry step.
        for i in (8..LUT_SIZE).step_by(8) {
            assert!(luminance(LUT[i]) > luminance(LUT[i - 8]), "flat around entry {i}");
        }
        assert!(luminance(INVALID_COLOUR) < luminance(colour_at(0.0)));
    }

    #[test]
    fn shared_colours_mean_the_same_depth_in_every_image() {
        let ramp = |scale: f32| {
            DepthMap::from_data(50, 2, (0..100).map(|i| scale * (1.0 + (i % 50) as f32)).collect())
        };
        let (near, far) = (ramp(1.0), ramp(4.0));
        let images = colourise_depths_shared(&[&near, &far]);
        // 8 m is in both maps: the same colour in both images.
        assert_eq!(images[0].pixel(7, 0), images[1].pixel(1, 0));
        // Alone, each map would span the whole colour map; shared, the far one is darker.
        let mean = |image: &RgbImage| {
            image.data.chunks_exact(3).map(|p| luminance([p[0], p[1], p[2]])).sum::<f32>()
        };
        assert!(mean(&images[1]) < mean(&images[0]));
        assert_eq!(colourise_depth(&near).pixel(0, 0), colourise_depth(&far).pixel(0, 0));
    }

    #[test]
    fn percentiles_of_a_ramp() {
        let values: Vec<f32> = (0..=100).map(|v| v as f32).collect();
        let (lo, hi) = percentile_range(values.iter().copied(), 2.0, 98.0).unwrap();
        assert_eq!((lo, hi), (2.0, 98.0));
        assert!(percentile_range([f32::NAN].into_iter(), 2.0, 98.0).is_none());
    }
}
