//! Labelled PNG figures for the paper's qualitative results (`figures/*`): a grid of images with
//! a label left of each row and above each column, and a bar histogram. Text uses the built-in
//! bitmap font of [`super::plot`], so a figure is the same bytes on every machine.

use std::path::Path;

use cedm_engine::NodeError;

use super::images::ImageSet;
use super::plot::{Canvas, fmt_num};

const GAP: usize = 2;
const INK: [u8; 3] = [40, 40, 40];

/// RMS distance between two images' pixels (0..255), the figures' measure of how alike two
/// samples from the same noise are.
pub fn rms_distance(a: &[u8], b: &[u8]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    (s / a.len().max(1) as f64).sqrt()
}

/// One row of a labelled grid: its label and its cells (`None` leaves a cell empty).
pub struct Row {
    /// Drawn left of the row.
    pub label: String,
    /// Image indices into the set, one per column.
    pub cells: Vec<Option<usize>>,
    /// Leave extra space above this row (to group rows).
    pub space_above: bool,
    /// Text under each cell (e.g. a score); empty for none.
    pub notes: Vec<String>,
}

/// Write a grid of `set`'s images, each scaled `scale`× (nearest neighbour), with row labels
/// on the left and column labels on top (an empty list draws none).
///
/// # Errors
/// I/O or encoding errors; an index outside the set.
pub fn labelled_grid(
    path: &Path,
    set: &ImageSet,
    rows: &[Row],
    columns: &[String],
    scale: usize,
) -> Result<(), NodeError> {
    let scale = scale.max(1);
    let (cw, ch) = (set.w * scale, set.h * scale);
    let cols = rows
        .iter()
        .map(|r| r.cells.len())
        .max()
        .unwrap_or(0)
        .max(columns.len())
        .max(1);
    let left = rows
        .iter()
        .map(|r| Canvas::text_width(&r.label, 1))
        .max()
        .unwrap_or(0)
        .max(0) as usize
        + 6;
    let top = if columns.is_empty() { GAP } else { 12 };
    let spaces = rows.iter().filter(|r| r.space_above).count();
    let w = left + cols * (cw + GAP) + GAP;
    let noted = rows.iter().filter(|r| !r.notes.is_empty()).count();
    let h = top + rows.len().max(1) * (ch + GAP) + spaces * 6 + noted * 9 + GAP;
    let mut cv = Canvas::new(w, h);
    for (k, c) in columns.iter().enumerate() {
        let x0 = left + k * (cw + GAP);
        let tw = Canvas::text_width(c, 1) as usize;
        let x = x0 + cw.saturating_sub(tw) / 2;
        cv.text(x as i64, 2, c, INK, 1);
    }
    let hw = set.h * set.w;
    let mut y0 = top;
    for row in rows {
        if row.space_above {
            y0 += 6;
        }
        let ty = y0 + ch.saturating_sub(7) / 2;
        cv.text(2, ty as i64, &row.label, INK, 1);
        for (k, cell) in row.cells.iter().enumerate() {
            let Some(i) = *cell else { continue };
            if i >= set.n {
                return Err(NodeError::msg(format!(
                    "figure cell {i} outside the {} images",
                    set.n
                )));
            }
            let img = set.image(i);
            let x0 = left + k * (cw + GAP);
            for y in 0..ch {
                for x in 0..cw {
                    let (sy, sx) = (y / scale, x / scale);
                    let px = |c: usize| {
                        if set.c == 1 {
                            img[sy * set.w + sx]
                        } else {
                            img[c * hw + sy * set.w + sx]
                        }
                    };
                    cv.set((x0 + x) as i64, (y0 + y) as i64, [px(0), px(1), px(2)]);
                }
            }
        }
        y0 += ch + GAP;
        if !row.notes.is_empty() {
            for (k, n) in row.notes.iter().enumerate() {
                let tw = Canvas::text_width(n, 1) as usize;
                let x = left + k * (cw + GAP) + cw.saturating_sub(tw) / 2;
                cv.text(x as i64, y0 as i64, n, INK, 1);
            }
            y0 += 9;
        }
    }
    cv.save(path)
}

/// A bar histogram of `counts` over equal bins of [lo, hi], titled, with the range under the
/// x axis; `marks` draws labelled vertical lines (e.g. the mean of a reference set).
///
/// # Errors
/// I/O or encoding errors.
pub fn histogram_png(
    path: &Path,
    title: &str,
    counts: &[usize],
    lo: f64,
    hi: f64,
    marks: &[(String, f64, [u8; 3])],
) -> Result<(), NodeError> {
    let (w, h) = (420usize, 220usize);
    let (l, r, t, b) = (36.0, 10.0, 22.0, 30.0);
    let mut cv = Canvas::new(w, h);
    cv.text(l as i64, 6, title, INK, 1);
    let (pw, ph) = (w as f64 - l - r, h as f64 - t - b);
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let n = counts.len().max(1) as f64;
    for (k, &c) in counts.iter().enumerate() {
        let x0 = l + pw * k as f64 / n;
        let x1 = l + pw * (k + 1) as f64 / n - 1.0;
        let y = t + ph * (1.0 - c as f64 / max);
        let mut x = x0;
        while x <= x1 {
            cv.line(x, t + ph, x, y, [90, 120, 200], 1);
            x += 1.0;
        }
    }
    cv.line(l, t + ph, l + pw, t + ph, INK, 1);
    cv.line(l, t, l, t + ph, INK, 1);
    cv.text(2, t as i64, &max.to_string(), INK, 1);
    cv.text(20, (t + ph - 7.0) as i64, "0", INK, 1);
    let ylab = (t + ph + 6.0) as i64;
    cv.text(l as i64, ylab, &fmt_num(lo), INK, 1);
    let hs = fmt_num(hi);
    cv.text(
        (l + pw) as i64 - Canvas::text_width(&hs, 1),
        ylab,
        &hs,
        INK,
        1,
    );
    for (k, (name, v, c)) in marks.iter().enumerate() {
        if hi > lo {
            let x = l + pw * ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
            cv.line(x, t, x, t + ph, *c, 2);
            // The legend, top right, in the mark's colour.
            let tx = (l + pw) as i64 - Canvas::text_width(name, 1) - 2;
            cv.text(tx, t as i64 + 2 + 10 * k as i64, name, *c, 1);
        }
    }
    cv.save(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_scaled_images_under_their_labels() {
        let set = ImageSet {
            n: 2,
            c: 1,
            h: 2,
            w: 2,
            pixels: vec![0, 0, 0, 0, 200, 200, 200, 200],
            labels: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.png");
        let rows = [Row {
            label: "ab".into(),
            cells: vec![Some(0), None, Some(1)],
            space_above: false,
            notes: vec![],
        }];
        labelled_grid(&p, &set, &rows, &["x".into(), "y".into(), "z".into()], 3).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        let left = (Canvas::text_width("ab", 1) + 6) as u32;
        assert_eq!(img.width(), left + 3 * (6 + 2) + 2);
        assert_eq!(img.height(), 12 + 6 + 2 + 2);
        // First cell black, second blank (white), third grey, each 6×6.
        assert_eq!(img.get_pixel(left + 5, 12 + 5).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(left + 8 + 3, 12 + 3).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(left + 16, 12).0, [200, 200, 200]);
        assert!(
            labelled_grid(
                &p,
                &set,
                &[Row {
                    label: String::new(),
                    cells: vec![Some(2)],
                    space_above: false,
                    notes: vec![]
                }],
                &[],
                1
            )
            .is_err()
        );
    }
}
