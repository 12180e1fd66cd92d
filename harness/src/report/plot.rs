//! A small SVG writer for the report's plots: scales, axes with readable
//! ticks, shaded fault bands, point clouds and lines. Output is plain SVG
//! text with no ids, scripts, fonts or links, so several plots can be
//! inlined into one HTML page.

use std::fmt::Write as _;

/// Colours for the outcomes (colour-blind safe: blue, red, orange, grey).
pub const OK: &str = "#1f77b4";
/// Colour of failed ops.
pub const FAIL: &str = "#d62728";
/// Colour of indeterminate ops.
pub const INFO: &str = "#ff7f0e";
/// Colour of context (not highlighted) marks.
pub const MUTED: &str = "#9e9e9e";

/// The colour of a fault kind's band, from the fault table.
pub fn fault_colour(kind: crate::nemesis::NemesisKind) -> &'static str {
    kind.info().colour
}

/// Escapes text for XML/HTML content and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// An axis mapping from data values to pixels.
#[derive(Debug, Clone, Copy)]
pub enum Scale {
    /// Linear between `min` and `max`.
    Linear {
        /// Smallest value shown.
        min: f64,
        /// Largest value shown.
        max: f64,
    },
    /// Logarithmic (base 10) between `min` and `max` (both > 0).
    Log {
        /// Smallest value shown.
        min: f64,
        /// Largest value shown.
        max: f64,
    },
}

impl Scale {
    /// A linear scale over `[min, max]`, widened when empty.
    pub fn linear(min: f64, max: f64) -> Scale {
        let (min, max) = if max > min {
            (min, max)
        } else {
            (min, min + 1.0)
        };
        Scale::Linear { min, max }
    }

    /// A log scale from `min` rounded down to a decade up to `max` (at
    /// least one decade wide).
    pub fn log(min: f64, max: f64) -> Scale {
        let min = 10f64.powf(min.max(1e-3).log10().floor());
        Scale::Log {
            min,
            max: max.max(min * 10.0),
        }
    }

    /// Where `v` falls, from 0 (min) to 1 (max), clamped.
    pub fn frac(&self, v: f64) -> f64 {
        let f = match *self {
            Scale::Linear { min, max } => (v - min) / (max - min),
            Scale::Log { min, max } => {
                let v = v.max(min);
                (v.log10() - min.log10()) / (max.log10() - min.log10())
            }
        };
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// Tick positions with their labels.
    pub fn ticks(&self) -> Vec<(f64, String)> {
        match *self {
            Scale::Linear { min, max } => {
                let step = nice_step((max - min) / 7.0);
                let mut out = Vec::new();
                let mut t = (min / step).ceil() * step;
                let decimals = decimals_for(step);
                while t <= max + step * 1e-9 {
                    out.push((t, format!("{:.*}", decimals, t + 0.0)));
                    t += step;
                }
                out
            }
            Scale::Log { min, max } => {
                let lo = min.log10().round() as i32;
                let hi = max.log10().floor() as i32;
                let mut out = Vec::new();
                for e in lo..=hi {
                    let v = 10f64.powi(e);
                    out.push((v, fmt_num(v)));
                    // Fewer than three decades: label 2× and 5× too.
                    if hi - lo < 3 {
                        for m in [2.0, 5.0] {
                            if v * m <= max {
                                out.push((v * m, fmt_num(v * m)));
                            }
                        }
                    }
                }
                out
            }
        }
    }
}

/// A step of 1, 2 or 5 × 10^k at least `raw`.
pub fn nice_step(raw: f64) -> f64 {
    if raw.is_nan() || raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= raw {
            return m * p;
        }
    }
    10.0 * p
}

fn decimals_for(step: f64) -> usize {
    if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    }
}

/// A number in few characters: `0.001`, `0.5`, `20`, `1000`.
pub fn fmt_num(v: f64) -> String {
    if v >= 1.0 || v == 0.0 {
        format!("{}", v.round() as i64)
    } else {
        let d = decimals_for(v);
        format!("{:.*}", d, v)
    }
}

/// A plot area inside an SVG: pixel rectangle plus the two scales.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    /// Left edge of the plot area (px).
    pub left: f64,
    /// Top edge of the plot area (px).
    pub top: f64,
    /// Width of the plot area (px).
    pub width: f64,
    /// Height of the plot area (px).
    pub height: f64,
    /// Horizontal scale.
    pub x: Scale,
    /// Vertical scale.
    pub y: Scale,
}

impl Frame {
    /// Pixel x of a data value.
    pub fn px(&self, v: f64) -> f64 {
        self.left + self.x.frac(v) * self.width
    }

    /// Pixel y of a data value (up is larger).
    pub fn py(&self, v: f64) -> f64 {
        self.top + (1.0 - self.y.frac(v)) * self.height
    }
}

/// An SVG document being written.
pub struct Svg {
    buf: String,
    /// Width (px).
    pub width: f64,
    /// Height (px).
    pub height: f64,
}

impl Svg {
    /// Starts a document of this size with a white background.
    pub fn new(width: f64, height: f64) -> Svg {
        let mut buf = String::with_capacity(16 * 1024);
        let _ = write!(
            buf,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif" font-size="12">"#
        );
        let _ = write!(
            buf,
            r##"<rect width="{width}" height="{height}" fill="#fff"/>"##
        );
        Svg { buf, width, height }
    }

    /// Appends raw SVG markup.
    pub fn raw(&mut self, s: &str) {
        self.buf.push_str(s);
    }

    /// A text label; `anchor` is `start`, `middle` or `end`.
    pub fn text(&mut self, x: f64, y: f64, anchor: &str, extra: &str, s: &str) {
        let _ = write!(
            self.buf,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" {extra}>{}</text>"#,
            esc(s)
        );
    }

    /// A rectangle.
    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, extra: &str) {
        let _ = write!(
            self.buf,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" {extra}/>"#,
            w.max(0.0),
            h.max(0.0)
        );
    }

    /// A title above the plot area.
    pub fn title(&mut self, s: &str) {
        self.text(
            12.0,
            20.0,
            "start",
            r#"font-size="15" font-weight="600""#,
            s,
        );
    }

    /// Grid, ticks and axis labels for a frame.
    pub fn axes(&mut self, f: &Frame, xlabel: &str, ylabel: &str) {
        self.rect(
            f.left,
            f.top,
            f.width,
            f.height,
            r##"fill="#fafafa" stroke="#ccc""##,
        );
        let mut grid = String::new();
        for (v, label) in f.x.ticks() {
            let x = f.px(v);
            let _ = write!(grid, "M{x:.1} {:.1}V{:.1}", f.top, f.top + f.height);
            self.text(
                x,
                f.top + f.height + 15.0,
                "middle",
                r##"fill="#444""##,
                &label,
            );
        }
        for (v, label) in f.y.ticks() {
            let y = f.py(v);
            let _ = write!(grid, "M{:.1} {y:.1}H{:.1}", f.left, f.left + f.width);
            self.text(f.left - 5.0, y + 4.0, "end", r##"fill="#444""##, &label);
        }
        let _ = write!(
            self.buf,
            r##"<path d="{grid}" stroke="#e3e3e3" stroke-width="1" fill="none"/>"##
        );
        self.text(
            f.left + f.width / 2.0,
            f.top + f.height + 32.0,
            "middle",
            r##"fill="#222""##,
            xlabel,
        );
        let (x, y) = (14.0, f.top + f.height / 2.0);
        let _ = write!(
            self.buf,
            r##"<text x="{x}" y="{y:.1}" text-anchor="middle" fill="#222" transform="rotate(-90 {x} {y:.1})">{}</text>"##,
            esc(ylabel)
        );
    }

    /// Shaded vertical bands (fault windows) with labels in rows along the top.
    pub fn bands(&mut self, f: &Frame, bands: &[Band]) {
        for (i, b) in bands.iter().enumerate() {
            let x0 = f.px(b.start);
            let x1 = f.px(b.end).max(x0 + 1.5);
            let colour = fault_colour(b.kind);
            self.rect(
                x0,
                f.top,
                x1 - x0,
                f.height,
                &format!(r#"fill="{colour}" fill-opacity="0.13""#),
            );
            // Rows keep overlapping labels apart.
            let row = (i % 3) as f64;
            let y = f.top + 2.0 + row * 13.0;
            self.rect(
                x0,
                y,
                x1 - x0,
                11.0,
                &format!(r#"fill="{colour}" fill-opacity="0.55""#),
            );
            self.text(
                x0 + 2.0,
                y + 9.0,
                "start",
                r##"font-size="10" fill="#111""##,
                &b.label,
            );
        }
    }

    /// A cloud of dots, one path for all (a zero-length segment with a round cap per dot).
    pub fn dots(&mut self, pts: &[(f64, f64)], colour: &str, size: f64, opacity: f64) {
        if pts.is_empty() {
            return;
        }
        let mut d = String::with_capacity(pts.len() * 12);
        for (x, y) in pts {
            let _ = write!(d, "M{x:.0} {y:.0}h0");
        }
        let _ = write!(
            self.buf,
            r#"<path d="{d}" stroke="{colour}" stroke-width="{size}" stroke-linecap="round" stroke-opacity="{opacity}" fill="none"/>"#
        );
    }

    /// A polyline through pixel points.
    pub fn line(&mut self, pts: &[(f64, f64)], colour: &str, width: f64, dash: Option<&str>) {
        if pts.is_empty() {
            return;
        }
        let mut d = String::with_capacity(pts.len() * 14);
        for (i, (x, y)) in pts.iter().enumerate() {
            let _ = write!(d, "{}{x:.1} {y:.1}", if i == 0 { "M" } else { "L" });
        }
        let dash = dash
            .map(|d| format!(r#" stroke-dasharray="{d}""#))
            .unwrap_or_default();
        let _ = write!(
            self.buf,
            r#"<path d="{d}" stroke="{colour}" stroke-width="{width}" fill="none" stroke-linejoin="round"{dash}/>"#
        );
    }

    /// A legend in one row, right-aligned above the plot area.
    pub fn legend(&mut self, f: &Frame, items: &[(&str, String)]) {
        let mut x = f.left + f.width;
        let y = f.top - 8.0;
        for (colour, label) in items.iter().rev() {
            let w = 7.0 * label.chars().count() as f64 + 22.0;
            x -= w;
            self.rect(x, y - 9.0, 12.0, 10.0, &format!(r#"fill="{colour}""#));
            self.text(x + 16.0, y, "start", r##"fill="#222""##, label);
        }
    }

    /// A note in small grey type at the bottom left.
    pub fn footnote(&mut self, s: &str) {
        let y = self.height - 6.0;
        self.text(12.0, y, "start", r##"font-size="11" fill="#666""##, s);
    }

    /// Closes the document and returns its text.
    pub fn finish(mut self) -> String {
        self.buf.push_str("</svg>\n");
        self.buf
    }
}

/// A shaded interval on the time axis.
#[derive(Debug, Clone)]
pub struct Band {
    /// Start (data units).
    pub start: f64,
    /// End (data units).
    pub end: f64,
    /// The fault kind (chooses the colour).
    pub kind: crate::nemesis::NemesisKind,
    /// Short label.
    pub label: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_are_one_two_five() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(0.013), 0.02);
    }

    #[test]
    fn log_scale_rounds_to_decades_and_labels_them() {
        let s = Scale::log(0.3, 100.0);
        let labels: Vec<String> = s.ticks().into_iter().map(|t| t.1).collect();
        assert_eq!(labels.first().map(String::as_str), Some("0.1"));
        assert!(labels.contains(&"100".to_string()));
        assert!(!labels.contains(&"200".to_string()));
        assert!((s.frac(1.0) - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<a & 'b'>"), "&lt;a &amp; &#39;b&#39;&gt;");
    }
}
