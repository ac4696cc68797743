//! Small PNG line plots (loss curves) drawn without any font files: text uses a built-in 5×7
//! bitmap font (lower-case letters, digits, a little punctuation; other characters are drawn as
//! blanks), so a plot renders the same on every machine.

use std::path::Path;

use cedm_engine::NodeError;

/// 5×7 glyphs, rows top to bottom, 5 bits each (HD44780-style).
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_lowercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'a' => [0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F],
        'b' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E],
        'c' => [0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E],
        'd' => [0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F],
        'e' => [0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E],
        'f' => [0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08],
        'g' => [0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E],
        'h' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11],
        'i' => [0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E],
        'j' => [0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C],
        'k' => [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12],
        'l' => [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'm' => [0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11],
        'n' => [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11],
        'o' => [0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E],
        'p' => [0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10],
        'q' => [0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01],
        'r' => [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10],
        's' => [0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E],
        't' => [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06],
        'u' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D],
        'v' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'w' => [0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A],
        'x' | '×' => [0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11],
        'y' => [0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E],
        'z' => [0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        '-' | '−' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '[' => [0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E],
        ']' => [0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        _ => [0; 7],
    }
}

/// An RGB canvas.
pub struct Canvas {
    /// Width.
    pub w: usize,
    /// Height.
    pub h: usize,
    px: Vec<u8>,
}

impl Canvas {
    /// White canvas.
    pub fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }

    /// Set a pixel (ignored outside).
    pub fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    /// A line (Bresenham), `thick` pixels wide.
    pub fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: [u8; 3], thick: i64) {
        let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as i64).max(1);
        for i in 0..=n {
            let t = i as f64 / n as f64;
            let (x, y) = (
                (x0 + t * (x1 - x0)).round() as i64,
                (y0 + t * (y1 - y0)).round() as i64,
            );
            for dx in 0..thick {
                for dy in 0..thick {
                    self.set(x + dx - thick / 2, y + dy - thick / 2, c);
                }
            }
        }
    }

    /// Text at (x, y) (top-left), scaled.
    pub fn text(&mut self, x: i64, y: i64, s: &str, c: [u8; 3], scale: i64) {
        for (k, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            for (r, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        for sx in 0..scale {
                            for sy in 0..scale {
                                self.set(
                                    x + (k as i64 * 6 + col) * scale + sx,
                                    y + r as i64 * scale + sy,
                                    c,
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Width of text in pixels.
    pub fn text_width(s: &str, scale: i64) -> i64 {
        s.chars().count() as i64 * 6 * scale
    }

    /// Write as PNG.
    ///
    /// # Errors
    /// I/O or encoding errors.
    pub fn save(self, path: &Path) -> Result<(), NodeError> {
        let img = image::RgbImage::from_raw(self.w as u32, self.h as u32, self.px)
            .ok_or_else(|| NodeError::msg("canvas size mismatch"))?;
        img.save_with_format(path, image::ImageFormat::Png)
            .map_err(|e| NodeError::msg(format!("writing {}: {e}", path.display())))
    }
}

/// "Nice" tick positions covering [lo, hi].
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let start = (lo / step).ceil() * step;
    let mut t = Vec::new();
    let mut v = start;
    while v <= hi + step * 1e-9 {
        t.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    t
}

/// A compact number for tick labels.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Plot series of (x, y) points as lines with axes, ticks, a title and a legend.
///
/// # Errors
/// I/O errors.
pub fn lines_png(
    path: &Path,
    title: &str,
    series: &[(&str, &[(f64, f64)])],
    w: usize,
    h: usize,
) -> Result<(), NodeError> {
    const COLORS: [[u8; 3]; 6] = [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
    ];
    let mut cv = Canvas::new(w, h);
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (ml, mr, mt, mb) = (70i64, 20i64, 34i64, 40i64);
    let (pw, ph) = (w as i64 - ml - mr, h as i64 - mt - mb);
    cv.text(ml, 10, title, [0, 0, 0], 2);
    if pts.is_empty() {
        cv.text(ml + 10, mt + ph / 2, "no data", [120, 120, 120], 2);
        return cv.save(path);
    }
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in &pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let pad = (y1 - y0) * 0.05;
    let (y0, y1) = (y0 - pad, y1 + pad);
    let sx = |x: f64| ml as f64 + (x - x0) / (x1 - x0) * pw as f64;
    let sy = |y: f64| (mt + ph) as f64 - (y - y0) / (y1 - y0) * ph as f64;
    let grey = [200, 200, 200];
    for t in ticks(y0, y1, 5) {
        let yy = sy(t);
        cv.line(ml as f64, yy, (ml + pw) as f64, yy, [235, 235, 235], 1);
        let s = fmt_num(t);
        cv.text(
            ml - 6 - Canvas::text_width(&s, 1),
            yy as i64 - 3,
            &s,
            [60, 60, 60],
            1,
        );
    }
    for t in ticks(x0, x1, 6) {
        let xx = sx(t);
        cv.line(xx, (mt + ph) as f64, xx, (mt + ph + 4) as f64, grey, 1);
        let s = fmt_num(t);
        cv.text(
            xx as i64 - Canvas::text_width(&s, 1) / 2,
            mt + ph + 8,
            &s,
            [60, 60, 60],
            1,
        );
    }
    cv.line(
        ml as f64,
        mt as f64,
        ml as f64,
        (mt + ph) as f64,
        [0, 0, 0],
        1,
    );
    cv.line(
        ml as f64,
        (mt + ph) as f64,
        (ml + pw) as f64,
        (mt + ph) as f64,
        [0, 0, 0],
        1,
    );
    for (k, (name, p)) in series.iter().enumerate() {
        let col = COLORS[k % COLORS.len()];
        let mut prev: Option<(f64, f64)> = None;
        for &(x, y) in p.iter().filter(|(x, y)| x.is_finite() && y.is_finite()) {
            let (px, py) = (sx(x), sy(y));
            if let Some((qx, qy)) = prev {
                cv.line(qx, qy, px, py, col, 2);
            } else if p.len() == 1 {
                cv.line(px - 2.0, py, px + 2.0, py, col, 3);
            }
            prev = Some((px, py));
        }
        if series.len() > 1 {
            let ly = mt + 6 + k as i64 * 12;
            cv.line(
                (ml + pw - 120) as f64,
                (ly + 3) as f64,
                (ml + pw - 100) as f64,
                (ly + 3) as f64,
                col,
                2,
            );
            cv.text(ml + pw - 95, ly, name, [40, 40, 40], 1);
        }
    }
    cv.save(path)
}

/// One series as a PNG line plot.
///
/// # Errors
/// I/O errors.
pub fn line_png(
    path: &Path,
    title: &str,
    pts: &[(f64, f64)],
    w: usize,
    h: usize,
) -> Result<(), NodeError> {
    lines_png(path, title, &[("", pts)], w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 1.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        let t = ticks(0.013, 0.087, 4);
        assert!(t.first().is_some_and(|v| *v >= 0.013) && t.last().is_some_and(|v| *v <= 0.087));
        assert_eq!(fmt_num(2500.0), "2500");
        assert_eq!(fmt_num(0.125), "0.125");
    }

    #[test]
    fn writes_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.png");
        line_png(
            &p,
            "loss vs kimg",
            &[(0.0, 1.0), (1.0, 0.5), (2.0, 0.25)],
            320,
            200,
        )
        .unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (320, 200));
        // Some pixels are the series colour.
        assert!(img.pixels().any(|p| p.0 == [31, 119, 180]));
    }
}
