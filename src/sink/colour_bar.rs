//! The colour bar of colourised metric depth: a vertical strip at the right edge of the image
//! running through the colour map from near (bright, top) to far (dark, bottom), labelled with
//! the depths at its ends and middle in metres, so a viewer reads distances off the video.

use super::colourise::colour_at;
use super::draw::{fill_rect, shade_rect};
use super::font::{draw_text, text_height, text_width};
use crate::frame::RgbImage;

/// `1.2 m` below 10 m, `35 m` above.
pub fn metres_label(depth: f32) -> String {
    if depth < 10.0 { format!("{depth:.1} m") } else { format!("{depth:.0} m") }
}

/// Draws the bar for a map coloured between `near` and `far` (depths at the bright and dark
/// ends; closeness 1/depth varies linearly along the map, as [`super::colourise`] colours it).
/// Images too small to hold it are left as they are.
pub fn draw_metric_colour_bar(image: &mut RgbImage, near: f32, far: f32) {
    let (w, h) = (i64::from(image.width), i64::from(image.height));
    let bar_w = (w / 40).max(4);
    let margin = (h / 16).max(2);
    let bar_h = h - 2 * margin;
    if bar_h < 16 || w < 48 || !(near > 0.0 && far > near) {
        return;
    }
    let x = w - margin - bar_w;
    for row in 0..bar_h {
        // Top: near (t = 1, bright); bottom: far (t = 0, dark).
        let t = 1.0 - row as f32 / (bar_h - 1) as f32;
        fill_rect(image, x, margin + row, bar_w, 1, colour_at(t));
    }
    let (near_c, far_c) = (1.0 / near, 1.0 / far);
    let mid = 1.0 / (0.5 * (near_c + far_c));
    let scale = if h >= 240 { 2 } else { 1 };
    let text_h = i64::from(text_height(scale));
    let mut labels =
        vec![(margin, metres_label(near)), (margin + bar_h - text_h, metres_label(far))];
    if bar_h >= 4 * text_h {
        labels.push((margin + (bar_h - text_h) / 2, metres_label(mid)));
    }
    for (y, text) in labels {
        let tw = i64::from(text_width(&text, scale));
        let tx = x - 2 - tw;
        // A darkened box behind the label keeps it legible on any colour.
        shade_rect(image, tx - 1, y - 1, tw + 2, text_h + 2, 0.35);
        draw_text(image, tx, y, scale, [255, 255, 255], &text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::colourise::luminance;

    fn pixel(image: &RgbImage, x: u32, y: u32) -> [u8; 3] {
        let i = 3 * (y * image.width + x) as usize;
        [image.data[i], image.data[i + 1], image.data[i + 2]]
    }

    #[test]
    fn the_bar_runs_bright_near_to_dark_far_with_labels_beside_it() {
        let mut image = RgbImage::new(128, 96);
        image.data.fill(90);
        draw_metric_colour_bar(&mut image, 1.5, 40.0);
        let (bar_w, margin) = (4, 6);
        let x = 128 - margin - bar_w + 1;
        let top = luminance(pixel(&image, x, margin));
        let bottom = luminance(pixel(&image, x, 96 - margin - 1));
        assert!(top > 200.0 && bottom < 20.0, "top {top}, bottom {bottom}");
        // White label pixels left of the bar, on the near (top) and far (bottom) rows.
        let white_in = |rows: std::ops::Range<u32>| {
            rows.flat_map(|y| (60..x - 2).map(move |x| (x, y)))
                .any(|(x, y)| pixel(&image, x, y) == [255, 255, 255])
        };
        assert!(white_in(margin..margin + 7), "near label");
        assert!(white_in(96 - margin - 7..96 - margin), "far label");
        assert_eq!(metres_label(1.5), "1.5 m");
        assert_eq!(metres_label(40.0), "40 m");
    }

    #[test]
    fn tiny_images_and_bad_ranges_are_left_alone() {
        let mut image = RgbImage::new(32, 16);
        let before = image.clone();
        draw_metric_colour_bar(&mut image, 1.0, 10.0);
        assert_eq!(image, before);
        let mut image = RgbImage::new(128, 96);
        let before = image.clone();
        draw_metric_colour_bar(&mut image, 5.0, 5.0);
        draw_metric_colour_bar(&mut image, f32::NAN, 5.0);
        assert_eq!(image, before);
    }
}
