//! Drawing on RGB frames for the videos we burn annotations into: filled and shaded
//! rectangles, thick lines and polylines, and pasting one image into another. Coordinates are
//! signed pixels; everything is clipped to the image, so callers never check bounds.

use crate::frame::RgbImage;

/// Fills the `w` x `h` rectangle whose top-left corner is (`x`, `y`) with `colour`.
pub fn fill_rect(image: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, colour: [u8; 3]) {
    for_each_pixel(image, x, y, w, h, |pixel| pixel.copy_from_slice(&colour));
}

/// Scales the rectangle's pixels by `factor` (0 = black, 1 = unchanged), e.g. to darken the
/// background of a label so that it reads over any picture.
pub fn shade_rect(image: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, factor: f32) {
    let factor = factor.clamp(0.0, 1.0);
    for_each_pixel(image, x, y, w, h, |pixel| {
        for c in pixel.iter_mut() {
            *c = (f32::from(*c) * factor).round() as u8;
        }
    });
}

fn for_each_pixel(
    image: &mut RgbImage,
    x: i64,
    y: i64,
    w: i64,
    h: i64,
    mut paint: impl FnMut(&mut [u8]),
) {
    let (width, height) = (i64::from(image.width), i64::from(image.height));
    let (x0, x1) = (x.max(0), (x + w).min(width));
    let (y0, y1) = (y.max(0), (y + h).min(height));
    if x0 >= x1 {
        return;
    }
    for py in y0..y1 {
        let row = 3 * (py * width) as usize;
        let pixels = &mut image.data[row + 3 * x0 as usize..row + 3 * x1 as usize];
        pixels.chunks_exact_mut(3).for_each(&mut paint);
    }
}

/// Draws a line from `from` to `to` (pixel centres, any real coordinates) `thickness` pixels
/// thick. Non-finite end points draw nothing.
pub fn draw_line(
    image: &mut RgbImage,
    from: (f64, f64),
    to: (f64, f64),
    thickness: u32,
    colour: [u8; 3],
) {
    if ![from.0, from.1, to.0, to.1].iter().all(|v| v.is_finite()) {
        return;
    }
    let thickness = i64::from(thickness.max(1));
    let half = (thickness - 1) / 2;
    let steps = (to.0 - from.0).abs().max((to.1 - from.1).abs()).ceil().max(1.0) as usize;
    for i in 0..=steps {
        let t = i as f64 / steps as f64;
        let x = (from.0 + (to.0 - from.0) * t).round() as i64;
        let y = (from.1 + (to.1 - from.1) * t).round() as i64;
        fill_rect(image, x - half, y - half, thickness, thickness, colour);
    }
}

/// Draws the polyline through `points` (see [`draw_line`]); a single point is drawn as a dot.
pub fn draw_polyline(image: &mut RgbImage, points: &[(f64, f64)], thickness: u32, colour: [u8; 3]) {
    match points {
        [] => {}
        [only] => draw_line(image, *only, *only, thickness, colour),
        _ => {
            for pair in points.windows(2) {
                draw_line(image, pair[0], pair[1], thickness, colour);
            }
        }
    }
}

/// Copies `src` into `dst` with its top-left corner at (`x`, `y`), clipped to `dst`.
pub fn paste(dst: &mut RgbImage, src: &RgbImage, x: i64, y: i64) {
    let (dw, dh) = (i64::from(dst.width), i64::from(dst.height));
    let sw = i64::from(src.width);
    let (x0, x1) = (x.max(0), (x + sw).min(dw));
    if x0 >= x1 {
        return;
    }
    for sy in 0..i64::from(src.height) {
        let dy = y + sy;
        if !(0..dh).contains(&dy) {
            continue;
        }
        let s = 3 * (sy * sw + (x0 - x)) as usize;
        let d = 3 * (dy * dw + x0) as usize;
        let n = 3 * (x1 - x0) as usize;
        dst.data[d..d + n].copy_from_slice(&src.data[s..s + n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(image: &RgbImage, colour: [u8; 3]) -> usize {
        image.data.chunks_exact(3).filter(|p| *p == colour).count()
    }

    #[test]
    fn rectangles_are_clipped() {
        let mut image = RgbImage::new(10, 8);
        fill_rect(&mut image, -3, -2, 5, 4, [9, 9, 9]);
        assert_eq!(count(&image, [9, 9, 9]), 2 * 2);
        fill_rect(&mut image, 8, 6, 100, 100, [200, 100, 50]);
        assert_eq!(count(&image, [200, 100, 50]), 2 * 2);
        shade_rect(&mut image, 0, 0, 10, 8, 0.5);
        assert_eq!(count(&image, [100, 50, 25]), 4);
        fill_rect(&mut image, 20, 20, 5, 5, [1, 1, 1]);
        assert_eq!(count(&image, [1, 1, 1]), 0);
    }

    #[test]
    fn lines_join_their_end_points() {
        let mut image = RgbImage::new(20, 20);
        draw_polyline(&mut image, &[(1.0, 1.0), (18.0, 1.0), (18.0, 18.0)], 1, [255, 255, 255]);
        assert_eq!(image.pixel(1, 1), [255, 255, 255]);
        assert_eq!(image.pixel(10, 1), [255, 255, 255]);
        assert_eq!(image.pixel(18, 10), [255, 255, 255]);
        assert_eq!(count(&image, [255, 255, 255]), 18 + 17);
        draw_line(&mut image, (f64::NAN, 0.0), (5.0, 5.0), 3, [7, 7, 7]);
        assert_eq!(count(&image, [7, 7, 7]), 0);
    }

    #[test]
    fn paste_copies_rows_and_clips() {
        let mut src = RgbImage::new(3, 2);
        src.data.iter_mut().enumerate().for_each(|(i, v)| *v = i as u8 + 1);
        let mut dst = RgbImage::new(4, 3);
        paste(&mut dst, &src, 2, 1);
        assert_eq!(dst.pixel(2, 1), src.pixel(0, 0));
        assert_eq!(dst.pixel(3, 2), src.pixel(1, 1));
        assert_eq!(dst.pixel(1, 1), [0, 0, 0]);
        paste(&mut dst, &src, -2, -1);
        assert_eq!(dst.pixel(0, 0), src.pixel(2, 1));
    }
}
