//! Line plots as standalone SVG files (any browser shows them; text needs no font files): used
//! for per-frame metrics over time, e.g. abs_rel of a frozen and an adapted model.

use super::{SinkError, write_atomic};
use std::fmt::Write as _;
use std::path::Path;

/// One named line of (x, y) points.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Colours of successive series (distinct in colour and in lightness).
const PALETTE: [&str; 6] = ["#1f5fbf", "#d9531e", "#2a9d4b", "#8e44ad", "#555555", "#c0392b"];

/// Writes a line chart of `series` with a title and axis labels to `path` (SVG, atomic).
/// Non-finite points are left out.
pub fn write_line_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<(), SinkError> {
    let svg = line_plot_svg(title, x_label, y_label, series);
    write_atomic(path, |file| {
        std::io::Write::write_all(file, svg.as_bytes()).map_err(|e| SinkError::io(path, e))
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A "nice" tick step covering `span` in about `count` steps (1, 2 or 5 times a power of ten).
fn tick_step(span: f64, count: f64) -> f64 {
    let raw = (span / count).max(f64::MIN_POSITIVE);
    let power = 10f64.powf(raw.log10().floor());
    let mantissa = raw / power;
    let nice = if mantissa <= 1.0 {
        1.0
    } else if mantissa <= 2.0 {
        2.0
    } else if mantissa <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// The SVG text of a line chart.
pub fn line_plot_svg(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (width, height) = (800.0, 420.0);
    let (left, right, top, bottom) = (70.0, 160.0, 40.0, 50.0);
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let all: Vec<(f64, f64)> =
        series.iter().flat_map(|s| s.points.iter().filter(finite).copied()).collect();
    let (mut x0, mut x1, mut y0, mut y1) = all.iter().fold(
        (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY),
        |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
    );
    if all.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    y0 = y0.min(0.0);
    if y1 - y0 < 1e-12 {
        y1 = y0 + 1.0;
    }
    y1 += 0.05 * (y1 - y0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * plot_w;
    let sy = |y: f64| top + plot_h - (y - y0) / (y1 - y0) * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        escape(title)
    );
    // Grid and ticks.
    let step = tick_step(y1 - y0, 5.0);
    let mut y = (y0 / step).ceil() * step;
    while y <= y1 + 1e-12 {
        let py = sy(y);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + plot_w,
            left - 6.0,
            py + 4.0,
            format_tick(y, step)
        );
        y += step;
    }
    let step = tick_step(x1 - x0, 8.0);
    let mut x = (x0 / step).ceil() * step;
    while x <= x1 + 1e-12 {
        let px = sx(x);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{:.1}" stroke="#f0f0f0"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            top + plot_h,
            top + plot_h + 16.0,
            format_tick(x, step)
        );
        x += step;
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        height - 12.0,
        escape(x_label)
    );
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .filter(finite)
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{}"/>"#,
            points.join(" ")
        );
        let ly = top + 14.0 + 20.0 * i as f64;
        let lx = left + plot_w + 12.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            lx + 22.0,
            lx + 28.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn format_tick(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 { 0 } else { (-step.log10()).ceil() as usize };
    format!("{value:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_has_one_polyline_per_series_and_escapes_text() {
        let series = vec![
            Series {
                name: "frozen".into(),
                points: vec![(0.0, 0.3), (1.0, 0.35), (2.0, f64::NAN)],
            },
            Series { name: "adapted <new>".into(), points: vec![(0.0, 0.3), (1.0, 0.2)] },
        ];
        let svg = line_plot_svg("abs_rel & time", "frame", "abs_rel", &series);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("abs_rel &amp; time") && svg.contains("adapted &lt;new&gt;"));
        assert!(!svg.contains("NaN"), "non-finite points are left out");
    }

    #[test]
    fn tick_steps_are_nice() {
        assert_eq!(tick_step(1.0, 5.0), 0.2);
        assert_eq!(tick_step(300.0, 8.0), 50.0);
        assert_eq!(tick_step(0.07, 5.0), 0.02);
    }
}
