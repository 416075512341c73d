//! Charts as inline SVG, drawn on the server: a line chart, a bar chart and a heatmap, each with
//! labelled axes and units. Colours and sizes are SVG presentation attributes (`fill="…"`), never
//! `style` attributes, which the service's Content-Security-Policy blocks; every label goes through
//! [`escape`]. Pages show each chart's numbers in a table next to it.

use std::fmt::Write;

use crate::html::escape;

/// The drawing's size and the plot area's margins, in SVG user units.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 44.0;
/// At most this many labels along the x axis.
const MAX_X_LABELS: usize = 8;

const AXIS: &str = "#555555";
const GRID: &str = "#dddddd";
const TEXT: &str = "#222222";
const EMPTY: &str = "#eeeeee";

/// The colours of a chart's series, in order.
pub const PALETTE: [&str; 4] = ["#1565c0", "#c62828", "#2e7d32", "#ef6c00"];

/// One line of a [`LineChart`]: a value per x label (`None`: no value there, the line breaks).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The legend's name.
    pub label: String,
    /// One value per x label.
    pub values: Vec<Option<f64>>,
}

/// A line chart: one or more series over the same x labels.
#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    /// The chart's title (also its accessible name).
    pub title: String,
    /// The x axis' labels, one per point.
    pub x_labels: Vec<String>,
    /// What the y axis counts, with its unit (`duration (s)`).
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// The y axis' fixed top (e.g. 100 for percentages); `None`: from the data.
    pub y_max: Option<f64>,
}

/// Evenly spaced "nice" tick values (steps of 1, 2 or 5 times a power of ten) covering `0..=max`
/// (or `min..=max` when `min` is below zero), about `target` of them. Non-finite input gives the
/// ticks of `0..=1`.
pub fn ticks(min: f64, max: f64, target: usize) -> Vec<f64> {
    let (mut lo, mut hi) = (min.min(0.0), max.max(0.0));
    if lo.is_nan() || hi.is_nan() {
        (lo, hi) = (0.0, 1.0);
    }
    // beyond this the steps' arithmetic overflows; such values are drawn at the top
    (lo, hi) = (lo.max(-1e300), hi.min(1e300));
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        hi = lo + 1.0;
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    if !step.is_finite() || step <= 0.0 {
        return vec![0.0, 1.0];
    }
    let first = (lo / step).floor();
    let last = (hi / step).ceil();
    let n = (last - first) as usize;
    (0..=n.min(100))
        .map(|i| (first + i as f64) * step)
        .collect()
}

/// A tick value in few characters: `0`, `2.5`, `40`, `1.5k`, `12M`, `3G` … (SI prefixes from
/// kilo up; a value too large for them in scientific notation).
pub fn tick_label(v: f64) -> String {
    if !v.is_finite() {
        return "?".into();
    }
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e18 {
        return format!("{v:.1e}");
    } else if a >= 1e15 {
        (v / 1e15, "P")
    } else if a >= 1e12 {
        (v / 1e12, "T")
    } else if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = if scaled.fract().abs() < 1e-9 || scaled.abs() >= 10.0 {
        format!("{scaled:.0}")
    } else if scaled.abs() >= 1.0 {
        format!("{scaled:.1}")
    } else {
        format!("{scaled:.2}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    format!("{text}{suffix}")
}

/// A number with at most 2 decimals, for coordinates.
fn n(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The x labels shown: every `k`-th, at most [`MAX_X_LABELS`].
fn label_step(count: usize) -> usize {
    count.div_ceil(MAX_X_LABELS).max(1)
}

fn open(out: &mut String, title: &str, id: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" \
         height=\"{h}\" role=\"img\" aria-labelledby=\"{id}\" font-family=\"sans-serif\" \
         font-size=\"11\"><title id=\"{id}\">{t}</title>\
         <text x=\"{l}\" y=\"16\" fill=\"{TEXT}\" font-size=\"13\" font-weight=\"bold\">{t}</text>",
        w = n(WIDTH),
        h = n(HEIGHT),
        l = n(LEFT),
        id = escape(id),
        t = escape(title),
    );
}

/// The y axis with its grid lines and tick labels over `ticks`, and its name; returns the map
/// from a value to its y coordinate.
fn y_axis(out: &mut String, ticks: &[f64], label: &str) -> impl Fn(f64) -> f64 {
    let lo = ticks.first().copied().unwrap_or(0.0);
    let hi = ticks.last().copied().unwrap_or(1.0);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let bottom = HEIGHT - BOTTOM;
    let y = move |v: f64| bottom - (v.clamp(lo, hi) - lo) / span * (bottom - TOP);
    for t in ticks {
        let ty = y(*t);
        let _ = write!(
            out,
            "<line x1=\"{l}\" y1=\"{y}\" x2=\"{r}\" y2=\"{y}\" stroke=\"{GRID}\"/>\
             <text x=\"{lx}\" y=\"{ly}\" text-anchor=\"end\" fill=\"{TEXT}\">{v}</text>",
            l = n(LEFT),
            r = n(WIDTH - RIGHT),
            y = n(ty),
            lx = n(LEFT - 6.0),
            ly = n(ty + 4.0),
            v = escape(&tick_label(*t)),
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{b}\" stroke=\"{AXIS}\"/>\
         <line x1=\"{l}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"{AXIS}\"/>\
         <text x=\"12\" y=\"{my}\" text-anchor=\"middle\" fill=\"{TEXT}\" \
         transform=\"rotate(-90 12 {my})\">{label}</text>",
        l = n(LEFT),
        t = n(TOP),
        b = n(bottom),
        r = n(WIDTH - RIGHT),
        my = n((TOP + bottom) / 2.0),
        label = escape(label),
    );
    y
}

/// The x positions of `count` points (or bar centres) across the plot area.
fn x_positions(count: usize) -> Vec<f64> {
    let width = WIDTH - LEFT - RIGHT;
    let slot = width / count.max(1) as f64;
    (0..count).map(|i| LEFT + slot * (i as f64 + 0.5)).collect()
}

fn x_labels(out: &mut String, xs: &[f64], labels: &[String]) {
    let step = label_step(labels.len());
    for (i, (x, label)) in xs.iter().zip(labels).enumerate() {
        if i % step != 0 {
            continue;
        }
        let _ = write!(
            out,
            "<line x1=\"{x}\" y1=\"{b}\" x2=\"{x}\" y2=\"{b4}\" stroke=\"{AXIS}\"/>\
             <text x=\"{x}\" y=\"{ty}\" text-anchor=\"middle\" fill=\"{TEXT}\">{t}</text>",
            x = n(*x),
            b = n(HEIGHT - BOTTOM),
            b4 = n(HEIGHT - BOTTOM + 4.0),
            ty = n(HEIGHT - BOTTOM + 16.0),
            t = escape(label),
        );
    }
}

fn no_data(out: &mut String) {
    let _ = write!(
        out,
        "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\" fill=\"{AXIS}\">no data</text>",
        x = n((LEFT + WIDTH - RIGHT) / 2.0),
        y = n((TOP + HEIGHT - BOTTOM) / 2.0),
    );
}

impl LineChart {
    /// The chart as an `<svg>` element; `id` names its title (unique within the page).
    pub fn svg(&self, id: &str) -> String {
        let mut out = String::new();
        open(&mut out, &self.title, id);
        let values = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .copied()
            .filter(|v| v.is_finite());
        let (lo, hi) = values.fold((0.0f64, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let empty = hi == f64::NEG_INFINITY;
        let hi = self
            .y_max
            .unwrap_or(if empty { 1.0 } else { hi })
            .max(if empty { 0.0 } else { hi });
        let ticks = ticks(lo, hi, 5);
        let y = y_axis(&mut out, &ticks, &self.y_label);
        let xs = x_positions(self.x_labels.len());
        x_labels(&mut out, &xs, &self.x_labels);
        if empty {
            no_data(&mut out);
        }
        for (k, s) in self.series.iter().enumerate() {
            let colour = PALETTE[k % PALETTE.len()];
            // a polyline per run of values, a dot (with its value as tooltip) per value
            let mut run: Vec<String> = Vec::new();
            let flush = |run: &mut Vec<String>, out: &mut String| {
                if run.len() > 1 {
                    let _ = write!(
                        out,
                        "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" \
                         stroke-width=\"2\"/>",
                        run.join(" ")
                    );
                }
                run.clear();
            };
            for (i, v) in s.values.iter().enumerate() {
                match (v.filter(|v| v.is_finite()), xs.get(i)) {
                    (Some(v), Some(x)) => {
                        let (px, py) = (n(*x), n(y(v)));
                        run.push(format!("{px},{py}"));
                        let _ = write!(
                            out,
                            "<circle cx=\"{px}\" cy=\"{py}\" r=\"3\" fill=\"{colour}\">\
                             <title>{} {}: {}</title></circle>",
                            escape(&s.label),
                            escape(self.x_labels.get(i).map(String::as_str).unwrap_or("")),
                            escape(&tick_label(v)),
                        );
                    }
                    _ => flush(&mut run, &mut out),
                }
            }
            flush(&mut run, &mut out);
            legend(&mut out, k, &s.label, colour);
        }
        out.push_str("</svg>");
        out
    }
}

fn legend(out: &mut String, k: usize, label: &str, colour: &str) {
    let x = WIDTH - RIGHT - 150.0 * (k as f64 + 1.0) + 10.0;
    let _ = write!(
        out,
        "<rect x=\"{x}\" y=\"8\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
         <text x=\"{tx}\" y=\"17\" fill=\"{TEXT}\">{label}</text>",
        x = n(x),
        tx = n(x + 14.0),
        label = escape(label),
    );
}

/// A bar chart: one bar per label.
#[derive(Clone, Debug, PartialEq)]
pub struct BarChart {
    /// The chart's title (also its accessible name).
    pub title: String,
    /// The bars' labels (x axis).
    pub labels: Vec<String>,
    /// The bars' values.
    pub values: Vec<f64>,
    /// What the y axis counts, with its unit (`releases`).
    pub y_label: String,
}

impl BarChart {
    /// The chart as an `<svg>` element; `id` names its title (unique within the page).
    pub fn svg(&self, id: &str) -> String {
        let mut out = String::new();
        open(&mut out, &self.title, id);
        let finite = || self.values.iter().copied().filter(|v| v.is_finite());
        let hi = finite().fold(0.0f64, f64::max);
        let lo = finite().fold(0.0f64, f64::min);
        let ticks = ticks(lo, hi, 5);
        let y = y_axis(&mut out, &ticks, &self.y_label);
        let xs = x_positions(self.labels.len());
        x_labels(&mut out, &xs, &self.labels);
        if self.values.is_empty() {
            no_data(&mut out);
        }
        let slot = (WIDTH - LEFT - RIGHT) / self.labels.len().max(1) as f64;
        let bar = (slot * 0.7).max(1.0);
        for (i, (x, v)) in xs.iter().zip(&self.values).enumerate() {
            if !v.is_finite() {
                continue;
            }
            let (top, base) = (y(v.max(0.0)), y(v.min(0.0)));
            let _ = write!(
                out,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"{c}\">\
                 <title>{l}: {v}</title></rect>",
                x = n(x - bar / 2.0),
                y = n(top),
                w = n(bar),
                h = n((base - top).max(0.0)),
                c = PALETTE[0],
                l = escape(self.labels.get(i).map(String::as_str).unwrap_or("")),
                v = escape(&tick_label(*v)),
            );
        }
        out.push_str("</svg>");
        out
    }
}

/// A heatmap: rows × columns of cells, each a share from 0 to 1 (`None`: no data) drawn from red
/// (0) to green (1), with a tooltip per cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Heatmap {
    /// The chart's title (also its accessible name).
    pub title: String,
    /// The rows' labels (left).
    pub rows: Vec<String>,
    /// The columns' labels (bottom; every third shown).
    pub columns: Vec<String>,
    /// `rows × columns` cells, row by row: the share and the cell's tooltip.
    pub cells: Vec<(Option<f64>, String)>,
}

/// The colour of a share from 0 (red) through amber to 1 (green).
pub fn share_colour(share: f64) -> String {
    let s = if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (from, to, t) = if s < 0.5 {
        ((0xc6, 0x28, 0x28), (0xf9, 0xa8, 0x25), s * 2.0)
    } else {
        ((0xf9, 0xa8, 0x25), (0x2e, 0x7d, 0x32), (s - 0.5) * 2.0)
    };
    let mix = |a: i32, b: i32| (f64::from(a) + (f64::from(b) - f64::from(a)) * t).round() as i32;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(from.0, to.0),
        mix(from.1, to.1),
        mix(from.2, to.2)
    )
}

impl Heatmap {
    /// The chart as an `<svg>` element; `id` names its title (unique within the page).
    pub fn svg(&self, id: &str) -> String {
        let mut out = String::new();
        open(&mut out, &self.title, id);
        let (cols, rows) = (self.columns.len().max(1), self.rows.len().max(1));
        let cw = (WIDTH - LEFT - RIGHT) / cols as f64;
        let ch = (HEIGHT - TOP - BOTTOM) / rows as f64;
        for (r, label) in self.rows.iter().enumerate() {
            let _ = write!(
                out,
                "<text x=\"{x}\" y=\"{y}\" text-anchor=\"end\" fill=\"{TEXT}\">{t}</text>",
                x = n(LEFT - 6.0),
                y = n(TOP + ch * (r as f64 + 0.5) + 4.0),
                t = escape(label),
            );
        }
        for (c, label) in self.columns.iter().enumerate() {
            if c % 3 != 0 {
                continue;
            }
            let _ = write!(
                out,
                "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\" fill=\"{TEXT}\">{t}</text>",
                x = n(LEFT + cw * (c as f64 + 0.5)),
                y = n(HEIGHT - BOTTOM + 16.0),
                t = escape(label),
            );
        }
        for (i, (share, tip)) in self.cells.iter().enumerate().take(rows * cols) {
            let (r, c) = (i / cols, i % cols);
            let fill = share.map_or_else(|| EMPTY.to_owned(), share_colour);
            let _ = write!(
                out,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"{fill}\" \
                 stroke=\"#ffffff\"><title>{t}</title></rect>",
                x = n(LEFT + cw * c as f64),
                y = n(TOP + ch * r as f64),
                w = n(cw),
                h = n(ch),
                t = escape(tip),
            );
        }
        // the scale
        for (k, (label, share)) in [("0 %", Some(0.0)), ("100 %", Some(1.0)), ("none", None)]
            .into_iter()
            .enumerate()
        {
            let x = LEFT + 110.0 * k as f64;
            let fill = share.map_or_else(|| EMPTY.to_owned(), share_colour);
            let _ = write!(
                out,
                "<rect x=\"{x}\" y=\"{y}\" width=\"10\" height=\"10\" fill=\"{fill}\"/>\
                 <text x=\"{tx}\" y=\"{ty}\" fill=\"{TEXT}\">{label}</text>",
                x = n(x),
                y = n(HEIGHT - 18.0),
                tx = n(x + 14.0),
                ty = n(HEIGHT - 9.0),
            );
        }
        out.push_str("</svg>");
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_data() {
        assert_eq!(ticks(0.0, 97.0, 5), [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(
            ticks(0.0, 1.0, 5),
            [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(ticks(0.0, 3.0, 5), [0.0, 1.0, 2.0, 3.0]);
        // empty range and no data: 0..1
        assert_eq!(ticks(0.0, 0.0, 5).first(), Some(&0.0));
        assert!(ticks(0.0, 0.0, 5).last().unwrap() >= &1.0);
        assert_eq!(ticks(f64::NAN, f64::INFINITY, 5).len(), 6);
        assert!(ticks(0.0, f64::INFINITY, 5).iter().all(|t| t.is_finite()));
        // negative values are covered too
        let t = ticks(-12.0, 30.0, 5);
        assert!(t[0] <= -12.0 && *t.last().unwrap() >= 30.0, "{t:?}");
        // huge: a handful of finite ticks
        let t = ticks(0.0, 9.7e15, 5);
        assert!(t.len() <= 12 && t.iter().all(|v| v.is_finite()), "{t:?}");
        assert!(*t.last().unwrap() >= 9.7e15);
        let t = ticks(0.0, f64::MAX, 5);
        assert!(t.len() <= 101 && t.iter().all(|v| v.is_finite()), "{t:?}");
    }

    #[test]
    fn tick_labels_are_short() {
        let got: Vec<String> = [
            0.0, 0.25, 2.5, 40.0, 1500.0, 15_000.0, 2.5e6, 3e9, 1.2e15, 4e20,
        ]
        .into_iter()
        .map(tick_label)
        .collect();
        assert_eq!(
            got,
            ["0", "0.25", "2.5", "40", "1500", "15k", "2.5M", "3G", "1.2P", "4.0e20"]
        );
        assert_eq!(tick_label(f64::NAN), "?");
    }

    fn chart(values: Vec<Option<f64>>) -> LineChart {
        LineChart {
            title: "p50".into(),
            x_labels: (0..values.len()).map(|i| format!("d{i}")).collect(),
            y_label: "duration (s)".into(),
            series: vec![Series {
                label: "p50".into(),
                values,
            }],
            y_max: None,
        }
    }

    #[test]
    fn an_empty_chart_has_axes_and_says_so() {
        let svg = chart(Vec::new()).svg("c");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("no data"), "{svg}");
        assert!(
            !svg.contains("<polyline") && !svg.contains("<circle"),
            "{svg}"
        );
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        let bars = BarChart {
            title: "t".into(),
            labels: vec![],
            values: vec![],
            y_label: "n".into(),
        }
        .svg("b");
        assert!(bars.contains("no data") && !bars.contains("NaN"), "{bars}");
    }

    #[test]
    fn one_point_is_a_dot_in_the_middle() {
        let svg = chart(vec![Some(5.0)]).svg("c");
        assert!(!svg.contains("<polyline"), "{svg}");
        let mid = n((LEFT + WIDTH - RIGHT) / 2.0);
        assert!(svg.contains(&format!("<circle cx=\"{mid}\"")), "{svg}");
        // the y axis reaches the value: tick 5 is the top one
        assert!(svg.contains(">5</text>"), "{svg}");
    }

    #[test]
    fn gaps_break_the_line_and_points_stay_inside_the_plot() {
        let svg = chart(vec![Some(1.0), Some(2.0), None, Some(3.0), Some(4.0)]).svg("c");
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 4, "{svg}");
        let huge = chart(vec![Some(1e300), Some(f64::INFINITY), Some(0.0)]).svg("h");
        assert!(!huge.contains("NaN") && !huge.contains("inf"), "{huge}");
        for c in huge.split("cy=\"").skip(1) {
            let cy: f64 = c.split('"').next().unwrap().parse().unwrap();
            assert!((TOP..=HEIGHT - BOTTOM).contains(&cy), "{cy}");
        }
    }

    #[test]
    fn many_labels_are_thinned() {
        let svg = chart((0..90).map(|i| Some(f64::from(i))).collect()).svg("c");
        let shown = (0..90)
            .filter(|i| svg.contains(&format!(">d{i}</text>")))
            .count();
        assert!((2..=MAX_X_LABELS).contains(&shown), "{shown}");
    }

    #[test]
    fn labels_and_titles_are_escaped() {
        let hostile = "<script>alert('x')</script>&\"";
        let svg = LineChart {
            title: hostile.into(),
            x_labels: vec![hostile.into()],
            y_label: hostile.into(),
            series: vec![Series {
                label: hostile.into(),
                values: vec![Some(1.0)],
            }],
            y_max: Some(100.0),
        }
        .svg("x\"y");
        let bars = BarChart {
            title: hostile.into(),
            labels: vec![hostile.into()],
            values: vec![3.0],
            y_label: hostile.into(),
        }
        .svg("b");
        let heat = Heatmap {
            title: hostile.into(),
            rows: vec![hostile.into()],
            columns: vec![hostile.into()],
            cells: vec![(Some(0.5), hostile.into())],
        }
        .svg("h");
        for s in [svg, bars, heat] {
            assert!(!s.contains("<script") && !s.contains("'x'"), "{s}");
            assert!(s.contains("&lt;script&gt;alert(&#39;x&#39;)"), "{s}");
            assert!(!s.contains("style="), "{s}");
        }
    }

    #[test]
    fn heatmap_cells_are_coloured_by_share() {
        assert_eq!(share_colour(0.0), "#c62828");
        assert_eq!(share_colour(1.0), "#2e7d32");
        assert_eq!(share_colour(f64::NAN), "#c62828");
        assert_eq!(share_colour(7.0), "#2e7d32");
        let h = Heatmap {
            title: "t".into(),
            rows: vec!["Mon".into(), "Tue".into()],
            columns: (0..24).map(|h| format!("{h:02}")).collect(),
            cells: (0..48)
                .map(|i| (if i == 0 { Some(1.0) } else { None }, format!("c{i}")))
                .collect(),
        }
        .svg("h");
        assert_eq!(
            h.matches("fill=\"#2e7d32\"").count(),
            2,
            "the cell and the scale: {h}"
        );
        assert_eq!(h.matches("<title>c").count(), 48);
    }
}
