//! PNG grids of images: a preview of a set, one row per cluster of samples.

use std::path::Path;

use cedm_engine::NodeError;

use super::images::ImageSet;

/// Write the images at `idx` as a PNG grid with `cols` columns and a 2-pixel gap.
///
/// # Errors
/// I/O or encoding errors.
pub fn write_grid_png(
    path: &Path,
    set: &ImageSet,
    idx: &[usize],
    cols: usize,
) -> Result<(), NodeError> {
    let rows: Vec<Vec<Option<usize>>> = idx
        .chunks(cols.max(1))
        .map(|r| r.iter().map(|&i| Some(i)).collect())
        .collect();
    write_grid_rows(path, set, &rows, cols)
}

/// Write a grid given row by row (`None` leaves a cell empty), e.g. one row per cluster.
///
/// # Errors
/// I/O or encoding errors.
pub fn write_grid_rows(
    path: &Path,
    set: &ImageSet,
    rows: &[Vec<Option<usize>>],
    cols: usize,
) -> Result<(), NodeError> {
    let gap = 2;
    let cols = cols.max(1);
    let nrows = rows.len().max(1);
    let gw = cols * set.w + (cols + 1) * gap;
    let gh = nrows * set.h + (nrows + 1) * gap;
    let mut rgb = vec![255u8; gw * gh * 3];
    let hw = set.h * set.w;
    for (r, row) in rows.iter().enumerate() {
        for (k, cell) in row.iter().enumerate().take(cols) {
            let Some(i) = *cell else { continue };
            let img = set.image(i);
            let (x0, y0) = (gap + k * (set.w + gap), gap + r * (set.h + gap));
            for y in 0..set.h {
                for x in 0..set.w {
                    for ch in 0..3 {
                        let src = if set.c == 1 {
                            img[y * set.w + x]
                        } else {
                            img[ch * hw + y * set.w + x]
                        };
                        rgb[((y0 + y) * gw + x0 + x) * 3 + ch] = src;
                    }
                }
            }
        }
    }
    let buf = image::RgbImage::from_raw(gw as u32, gh as u32, rgb)
        .ok_or_else(|| NodeError::msg("grid buffer size mismatch"))?;
    buf.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| NodeError::msg(format!("writing {}: {e}", path.display())))
}
