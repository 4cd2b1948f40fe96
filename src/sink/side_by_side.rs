//! [`SideBySideWriter`]: a video comparing two depth predictions of the same frames, e.g. a
//! frozen and an adapted model. Each frame is [input | first depth | second depth], both depths
//! colourised through one shared per-frame range (one colour = one depth in both columns),
//! above a strip with a per-frame error metric of both drawn as two lines that grow while the
//! video plays, with the current values as text (our own 5x7 bitmap font). Written as H.264
//! MP4 through [`Mp4Writer`] (temporary file, renamed onto the target when finished).

use super::SinkError;
use super::colourise::colourise_depths_shared;
use super::draw::{draw_line, draw_polyline, fill_rect, paste, shade_rect};
use super::font::{draw_text, text_height, text_width};
use super::video::Mp4Writer;
use crate::frame::{DepthMap, RgbImage};
use std::path::{Path, PathBuf};

/// Height of the plot strip below the three columns, in pixels.
pub const STRIP_HEIGHT: u32 = 120;
/// Line colour of the first depth's metric.
pub const FIRST_COLOUR: [u8; 3] = [90, 180, 255];
/// Line colour of the second depth's metric.
pub const SECOND_COLOUR: [u8; 3] = [120, 235, 90];
const BACKGROUND: [u8; 3] = [20, 20, 24];
const GRID: [u8; 3] = [58, 58, 66];
const TEXT: [u8; 3] = [215, 215, 215];
const CURSOR: [u8; 3] = [110, 110, 120];

/// What the video shows besides the pictures.
#[derive(Clone, Debug)]
pub struct SideBySideLabels {
    /// Titles of the three columns (input, first depth, second depth).
    pub columns: [String; 3],
    /// Short names of the two depths in the strip's legend.
    pub series: [String; 2],
    /// The metric drawn over time, e.g. `abs_rel`.
    pub metric: String,
}

/// One frame of the comparison: the input and both predicted depths at the input's size (metres,
/// 0 = invalid) and the metric of each.
pub struct ComparisonFrame<'a> {
    pub rgb: &'a RgbImage,
    pub first: &'a DepthMap,
    pub second: &'a DepthMap,
    pub first_metric: f64,
    pub second_metric: f64,
}

/// Composes and encodes the comparison video frame by frame.
pub struct SideBySideWriter {
    video: Mp4Writer,
    layout: Layout,
    labels: SideBySideLabels,
    history: Vec<[f64; 2]>,
}

/// Where everything goes in a frame.
#[derive(Clone, Copy, Debug)]
struct Layout {
    column: (u32, u32),
    /// Frames the x axis spans.
    frames: usize,
    /// Top of the metric axis.
    y_max: f64,
    /// Text scale (image pixels per font pixel).
    scale: u32,
    /// Width of the text panel left of the plot.
    legend_width: u32,
}

impl Layout {
    fn new(column: (u32, u32), frames: usize, y_max: f64, labels: &SideBySideLabels) -> Self {
        let scale = if column.0 >= 320 { 2 } else { 1 };
        let legend_width = legend_lines(labels, &[[0.0; 2]], frames, frames)
            .iter()
            .map(|(text, _)| text_width(text, scale))
            .max()
            .unwrap_or(0);
        Self { column, frames, y_max, scale, legend_width }
    }

    fn size(&self) -> (u32, u32) {
        (3 * self.column.0, self.column.1 + STRIP_HEIGHT)
    }

    fn line_step(&self) -> i64 {
        i64::from(text_height(self.scale) + 3 * self.scale + 2)
    }

    /// The plot's rectangle (left, top, right, bottom) in frame pixels.
    fn plot_rect(&self) -> (f64, f64, f64, f64) {
        let (width, height) = self.size();
        let left = f64::from(self.legend_width + text_width("0.00", self.scale) + 20 * self.scale);
        let left = left.min(0.5 * f64::from(width));
        let top = f64::from(self.column.1) + 12.0;
        (left, top, f64::from(width) - 14.0, f64::from(height) - 12.0)
    }

    fn point(&self, position: usize, value: f64) -> (f64, f64) {
        let (left, top, right, bottom) = self.plot_rect();
        let span = self.frames.saturating_sub(1).max(1) as f64;
        let x = left + (right - left) * position as f64 / span;
        let v = if value.is_finite() { value.clamp(0.0, self.y_max) } else { 0.0 };
        (x, bottom - (bottom - top) * v / self.y_max)
    }
}

impl SideBySideWriter {
    /// Starts `path` for columns of `column_width` x `column_height` (even) at `fps`; the plot's
    /// x axis spans `frames` frames and its y axis 0..`y_max` (values above are drawn at the
    /// top; the text shows them as they are).
    pub fn create(
        path: &Path,
        (column_width, column_height): (u32, u32),
        fps: f64,
        frames: usize,
        y_max: f64,
        labels: SideBySideLabels,
    ) -> Result<Self, SinkError> {
        if !(y_max.is_finite() && y_max > 0.0) {
            return Err(SinkError::invalid(path, "plot range", format!("y_max {y_max}")));
        }
        let layout = Layout::new((column_width, column_height), frames, y_max, &labels);
        let (width, height) = layout.size();
        let video = Mp4Writer::create(path, width, height, fps)?;
        Ok(Self { video, layout, labels, history: Vec::with_capacity(frames) })
    }

    /// Adds one frame shown at `pts_seconds`.
    pub fn push(&mut self, frame: &ComparisonFrame, pts_seconds: f64) -> Result<(), SinkError> {
        let (w, h) = self.layout.column;
        for (what, size) in [
            ("input frame", (frame.rgb.width, frame.rgb.height)),
            ("first depth", (frame.first.width, frame.first.height)),
            ("second depth", (frame.second.width, frame.second.height)),
        ] {
            if size != (w, h) {
                return Err(SinkError::invalid(
                    self.video.path(),
                    what,
                    format!("{}x{}, expected {w}x{h}", size.0, size.1),
                ));
            }
        }
        self.history.push([frame.first_metric, frame.second_metric]);
        let image = compose(&self.layout, &self.labels, frame, &self.history);
        self.video.push(&image, pts_seconds)
    }

    /// Completes the file (see [`Mp4Writer::finish`]) and returns its path.
    pub fn finish(self) -> Result<PathBuf, SinkError> {
        self.video.finish()
    }
}

/// Draws one whole frame: the three columns with their titles and the strip.
fn compose(
    layout: &Layout,
    labels: &SideBySideLabels,
    frame: &ComparisonFrame,
    history: &[[f64; 2]],
) -> RgbImage {
    let (width, height) = layout.size();
    let (cw, ch) = (i64::from(layout.column.0), i64::from(layout.column.1));
    let mut image = RgbImage::new(width, height);
    let depths = colourise_depths_shared(&[frame.first, frame.second]);
    for (i, column) in [frame.rgb, &depths[0], &depths[1]].into_iter().enumerate() {
        paste(&mut image, column, i as i64 * cw, 0);
    }
    let scale = layout.scale;
    let pad = i64::from(3 * scale);
    for (i, title) in labels.columns.iter().enumerate() {
        let (x, y) = (i as i64 * cw + 2 * pad, 2 * pad);
        let (tw, th) = (i64::from(text_width(title, scale)), i64::from(text_height(scale)));
        shade_rect(&mut image, x - pad, y - pad, tw + 2 * pad, th + 2 * pad, 0.3);
        draw_text(&mut image, x, y, scale, TEXT, title);
    }
    fill_rect(&mut image, 0, ch, 3 * cw, i64::from(STRIP_HEIGHT), BACKGROUND);
    draw_legend(&mut image, layout, labels, history);
    draw_plot(&mut image, layout, history);
    image
}

/// The lines of the text panel left of the plot, with their colours: the metric, each
/// depth's current value and running mean, and the frame counter.
fn legend_lines(
    labels: &SideBySideLabels,
    history: &[[f64; 2]],
    shown: usize,
    frames: usize,
) -> Vec<(String, [u8; 3])> {
    let mut lines = vec![(format!("{} per frame", labels.metric), TEXT)];
    let name_width = labels.series.iter().map(|s| s.chars().count()).max().unwrap_or(0);
    for (k, (name, colour)) in labels.series.iter().zip([FIRST_COLOUR, SECOND_COLOUR]).enumerate() {
        let values = history.iter().map(|v| v[k]).filter(|v| v.is_finite());
        let count = values.clone().count().max(1) as f64;
        let mean = values.sum::<f64>() / count;
        let current = history.last().map_or(f64::NAN, |v| v[k]);
        lines.push((format!("{name:<name_width$}  {current:.3}  mean {mean:.3}"), colour));
    }
    lines.push((format!("frame {shown}/{frames}   bright = near"), TEXT));
    lines
}

fn draw_legend(
    image: &mut RgbImage,
    layout: &Layout,
    labels: &SideBySideLabels,
    history: &[[f64; 2]],
) {
    let scale = layout.scale;
    let x = i64::from(4 * scale);
    let mut y = i64::from(layout.column.1) + i64::from(4 * scale) + 4;
    for (text, colour) in legend_lines(labels, history, history.len(), layout.frames) {
        draw_text(image, x, y, scale, colour, &text);
        y += layout.line_step();
    }
}

/// The plot: grid lines with their values, a cursor at the current frame, one line per depth.
fn draw_plot(image: &mut RgbImage, layout: &Layout, history: &[[f64; 2]]) {
    let (left, top, right, bottom) = layout.plot_rect();
    let scale = layout.scale;
    let tick = tick_step(layout.y_max);
    let mut value = 0.0;
    while value <= layout.y_max + 1e-9 {
        let (_, y) = layout.point(0, value);
        draw_line(image, (left, y), (right, y), 1, GRID);
        let text = format!("{value:.2}");
        let tx = left as i64 - i64::from(text_width(&text, scale)) - 6;
        let ty = (y as i64 - i64::from(text_height(scale)) / 2).max(i64::from(layout.column.1) + 2);
        draw_text(image, tx, ty, scale, TEXT, &text);
        value += tick;
    }
    draw_line(image, (left, top), (left, bottom), 1, GRID);
    if let Some(now) = history.len().checked_sub(1) {
        let (x, _) = layout.point(now, 0.0);
        draw_line(image, (x, top), (x, bottom), 1, CURSOR);
    }
    for (k, colour) in [FIRST_COLOUR, SECOND_COLOUR].into_iter().enumerate() {
        let points: Vec<(f64, f64)> =
            history.iter().enumerate().map(|(i, v)| layout.point(i, v[k])).collect();
        draw_polyline(image, &points, scale, colour);
    }
}

/// A grid step giving 2 to 5 lines between 0 and `y_max` (1, 2 or 5 times a power of ten).
fn tick_step(y_max: f64) -> f64 {
    let raw = y_max / 4.0;
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|&s| s >= raw).unwrap_or(raw)
}

/// One composed frame as an image, without encoding it (for previews and tests).
pub fn compose_frame(
    (column_width, column_height): (u32, u32),
    frames: usize,
    y_max: f64,
    labels: &SideBySideLabels,
    frame: &ComparisonFrame,
    history: &[[f64; 2]],
) -> RgbImage {
    let layout = Layout::new((column_width, column_height), frames, y_max, labels);
    compose(&layout, labels, frame, history)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> SideBySideLabels {
        SideBySideLabels {
            columns: ["input".into(), "frozen".into(), "adapted".into()],
            series: ["frozen".into(), "adapted".into()],
            metric: "abs_rel".into(),
        }
    }

    #[test]
    fn a_composed_frame_has_three_columns_and_both_lines() {
        let (w, h) = (64, 32);
        let mut rgb = RgbImage::new(w, h);
        rgb.data.fill(77);
        let depth = |scale: f32| {
            DepthMap::from_data(w, h, (0..w * h).map(|i| scale * (1.0 + (i % w) as f32)).collect())
        };
        let (first, second) = (depth(1.0), depth(2.0));
        let frame = ComparisonFrame {
            rgb: &rgb,
            first: &first,
            second: &second,
            first_metric: 0.3,
            second_metric: 0.2,
        };
        let history = [[0.25, 0.25], [0.3, 0.2], [0.3, 0.2]];
        let image = compose_frame((w, h), 10, 0.4, &labels(), &frame, &history);
        assert_eq!((image.width, image.height), (3 * w, h + STRIP_HEIGHT));
        // The input is pasted unchanged below its title.
        assert_eq!(image.pixel(w / 2, h - 2), [77, 77, 77]);
        // Shared range: the second (farther) depth is darker at the same pixel.
        let lum = |p: [u8; 3]| super::super::colourise::luminance(p);
        assert!(lum(image.pixel(2 * w + w / 2, h - 2)) < lum(image.pixel(w + w / 2, h - 2)));
        let strip = |colour: [u8; 3]| {
            (h..image.height)
                .flat_map(|y| (0..image.width).map(move |x| (x, y)))
                .filter(|&(x, y)| image.pixel(x, y) == colour)
                .count()
        };
        assert!(strip(FIRST_COLOUR) > 0 && strip(SECOND_COLOUR) > 0);
    }

    #[test]
    fn grid_steps_are_round() {
        for (y_max, step) in [(0.4, 0.1), (0.3, 0.1), (1.0, 0.5), (0.12, 0.05), (8.0, 2.0)] {
            assert!((tick_step(y_max) - step).abs() < 1e-12, "{y_max}: {}", tick_step(y_max));
        }
    }
}
