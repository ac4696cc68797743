//! Small SVG line/point plots for `cedm report`, written as text (the browser renders the
//! fonts; nothing is fetched). Every data point is a `<circle class="pt">` with `data-series`,
//! `data-x` and `data-y`, so a test can count what a plot shows.

use std::fmt::Write;

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Points joined by a line.
    Line,
    /// Points only.
    Points,
    /// A horizontal line across the plot at the first point's y (a baseline), with its ±err band.
    Baseline,
}

/// A series: points (x, y, ±err).
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points.
    pub points: Vec<(f64, f64, Option<f64>)>,
    /// Drawing.
    pub style: Style,
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// The colour of a series, the same in every figure: fixed for the label sources cedm names
/// (TEMI blue, k-means red, ground truth green, unconditional orange, CLIP purple), else picked
/// from the rest of the palette by the name. `unconditional (n=1)` (a count) keeps its source's
/// colour; a sampling variant (`TEMI (uniform)`) is a series of its own and gets its own.
pub fn color_of(name: &str) -> &'static str {
    let base = match name.split_once(" (") {
        Some((b, rest)) if rest.starts_with("n=") => b,
        _ => name,
    };
    match base {
        "TEMI" => COLORS[0],
        "k-means" => COLORS[1],
        "ground truth" => COLORS[2],
        "unconditional" => COLORS[3],
        "CLIP" => COLORS[4],
        other => {
            let h = other
                .bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            COLORS[5 + (h as usize) % (COLORS.len() - 5)]
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(hi > lo) {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-2..1e4).contains(&a) {
        format!("{v:.0e}")
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// An SVG plot. `log_x` puts x on a log₁₀ axis (C spans 10…10 000 in the paper's sweeps).
pub fn plot(title: &str, xlabel: &str, ylabel: &str, series: &[Series], log_x: bool) -> String {
    let (w, h) = (560.0, 340.0);
    let (ml, mr, mt, mb) = (64.0, 150.0, 34.0, 46.0);
    let (pw, ph) = (w - ml - mr, h - mt - mb);
    let tx = |x: f64| if log_x { x.max(1e-12).log10() } else { x };
    let mut xs: Vec<f64> = Vec::new();
    let mut ys: Vec<f64> = Vec::new();
    for s in series {
        for &(x, y, e) in &s.points {
            if s.style != Style::Baseline {
                xs.push(tx(x));
            }
            ys.push(y - e.unwrap_or(0.0));
            ys.push(y + e.unwrap_or(0.0));
        }
    }
    let finite = |v: &Vec<f64>| {
        v.iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect::<Vec<f64>>()
    };
    let (xs, ys) = (finite(&xs), finite(&ys));
    let (mut x0, mut x1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 - x0 < 1e-9 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let pad = (x1 - x0) * 0.06;
    let (x0, x1) = (x0 - pad, x1 + pad);
    let (mut y0, mut y1) = (
        ys.iter().copied().fold(f64::INFINITY, f64::min),
        ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    if y1 - y0 < 1e-9 {
        y0 -= 0.5 * y0.abs().max(1.0) * 0.1;
        y1 += 0.5 * y1.abs().max(1.0) * 0.1;
    }
    let ypad = (y1 - y0) * 0.08;
    let (y0, y1) = (y0 - ypad, y1 + ypad);
    let px = |x: f64| ml + (tx(x) - x0) / (x1 - x0) * pw;
    let py = |y: f64| mt + (1.0 - (y - y0) / (y1 - y0)) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="20" font-size="13" font-weight="bold">{}</text>"#,
        ml,
        esc(title)
    );
    let _ = write!(
        s,
        r##"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##
    );
    // Ticks.
    let xt: Vec<f64> = if log_x {
        let (a, b) = (x0.floor() as i32, x1.ceil() as i32);
        (a..=b)
            .map(|e| 10f64.powi(e))
            .filter(|v| (x0..=x1).contains(&v.log10()))
            .collect()
    } else {
        nice_ticks(x0, x1, 6)
    };
    for t in xt {
        let x = px(t);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            mt,
            mt + ph,
            mt + ph + 14.0,
            fmt_tick(t)
        );
    }
    for t in nice_ticks(y0, y1, 5) {
        let y = py(t);
        let _ = write!(
            s,
            r##"<line x1="{ml}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            ml + pw,
            ml - 4.0,
            y + 4.0,
            fmt_tick(t)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        ml + pw / 2.0,
        h - 8.0,
        esc(xlabel)
    );
    let _ = write!(
        s,
        r#"<text transform="translate(14,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
        mt + ph / 2.0,
        esc(ylabel)
    );
    for (k, se) in series.iter().enumerate() {
        let c = color_of(&se.name);
        let name = esc(&se.name);
        match se.style {
            Style::Baseline => {
                if let Some(&(_, y, e)) = se.points.first() {
                    if let Some(e) = e {
                        let _ = write!(
                            s,
                            r#"<rect x="{ml}" y="{:.1}" width="{pw}" height="{:.1}" fill="{c}" opacity="0.12"/>"#,
                            py(y + e),
                            (py(y - e) - py(y + e)).max(0.0)
                        );
                    }
                    let _ = write!(
                        s,
                        r#"<line x1="{ml}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="{c}" stroke-dasharray="6,4" stroke-width="1.5"/>"#,
                        py(y),
                        ml + pw
                    );
                    let _ = write!(
                        s,
                        r#"<circle class="pt" data-series="{name}" data-x="" data-y="{y}" cx="{}" cy="{:.1}" r="2.5" fill="{c}"/>"#,
                        ml + pw - 4.0,
                        py(y)
                    );
                }
            }
            Style::Line | Style::Points => {
                let mut pts: Vec<(f64, f64, Option<f64>)> = se.points.clone();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                if se.style == Style::Line && pts.len() > 1 {
                    let path: Vec<String> = pts
                        .iter()
                        .map(|&(x, y, _)| format!("{:.1},{:.1}", px(x), py(y)))
                        .collect();
                    let _ = write!(
                        s,
                        r#"<polyline fill="none" stroke="{c}" stroke-width="1.8" points="{}"/>"#,
                        path.join(" ")
                    );
                }
                for &(x, y, e) in &pts {
                    if let Some(e) = e.filter(|e| *e > 0.0) {
                        let _ = write!(
                            s,
                            r#"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="{c}"/>"#,
                            px(x),
                            py(y + e),
                            py(y - e)
                        );
                    }
                    let _ = write!(
                        s,
                        r#"<circle class="pt" data-series="{name}" data-x="{x}" data-y="{y}" cx="{:.1}" cy="{:.1}" r="3.5" fill="{c}"><title>{name}: {} → {}</title></circle>"#,
                        px(x),
                        py(y),
                        fmt_tick(x),
                        fmt_tick(y)
                    );
                }
            }
        }
        // Legend.
        let ly = mt + 12.0 + 16.0 * k as f64;
        let _ = write!(
            s,
            r#"<rect x="{}" y="{:.1}" width="10" height="10" fill="{c}"/><text x="{}" y="{:.1}">{name}</text>"#,
            ml + pw + 10.0,
            ly - 9.0,
            ml + pw + 24.0,
            ly
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_source_has_one_colour_everywhere() {
        assert_eq!(color_of("TEMI"), color_of("TEMI"));
        assert_eq!(color_of("unconditional (n=1)"), color_of("unconditional"));
        assert_ne!(color_of("TEMI"), color_of("k-means"));
        assert_ne!(color_of("TEMI (uniform)"), color_of("TEMI"));
    }

    #[test]
    fn one_circle_per_point_and_escaped_names() {
        let svg = plot(
            "t",
            "C",
            "FID",
            &[
                Series {
                    name: "a<b".into(),
                    points: vec![(10.0, 5.0, Some(1.0)), (100.0, 4.0, None)],
                    style: Style::Line,
                },
                Series {
                    name: "base".into(),
                    points: vec![(0.0, 6.0, None)],
                    style: Style::Baseline,
                },
            ],
            true,
        );
        assert_eq!(svg.matches("class=\"pt\"").count(), 3);
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
    }
}
