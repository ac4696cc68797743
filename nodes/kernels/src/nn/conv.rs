//! 2-D convolution in NCHW with stride 1 and "same" padding (k odd, pad k/2) — every
//! convolution of SongUNet (its up/down-sampling is a separate resample) — forward and both
//! gradients, by im2col and GEMM.
//!
//! Work is split by groups of images (one image from 16×16 up; four at 8×8, see
//! [`Conv2d::group`]): each group's product runs on one core through the `gemm` crate, groups
//! spread over rayon's threads; with fewer groups than threads the GEMM itself runs in parallel
//! instead. The input gradient is the convolution of `dy` with the flipped, transposed kernel
//! (inner dimension `cout·k²`, no scatter-add). The weight gradient sums products in a fixed
//! number of chunks added in order, so every result is the same whatever the thread count
//! (deterministic, as resumed training needs).

use rayon::prelude::*;

use crate::cpu::{gemm, gemm_serial};

/// A convolution's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    /// Images.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Kernel side (odd); padding is `k / 2` on every side.
    pub k: usize,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f` with this thread's scratch buffer of at least `len` floats (contents unspecified).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len {
            s.resize(len, 0.0);
        }
        f(&mut s[..len])
    })
}

impl Conv2d {
    /// `cin·k·k`, the GEMM's inner dimension.
    pub fn kk(&self) -> usize {
        self.cin * self.k * self.k
    }

    /// Pixels per channel.
    pub fn hw(&self) -> usize {
        self.h * self.w
    }

    /// Images per product: enough that each GEMM has about [`GROUP_COLS`] columns (small
    /// feature maps would otherwise give products too small to run at speed). Depends on the
    /// shape only, so results do not depend on the thread count.
    pub fn group(&self) -> usize {
        GROUP_COLS
            .div_ceil(self.hw().max(1))
            .clamp(1, self.n.max(1))
    }

    /// Groups of images `(first, count)`, in order.
    fn groups(&self) -> Vec<(usize, usize)> {
        let g = self.group();
        (0..self.n.div_ceil(g))
            .map(|j| (j * g, g.min(self.n - j * g)))
            .collect()
    }

    /// Columns of images `first..first + count` side by side into `cols` (`[k²·cin, count·hw]`;
    /// for 1×1 kernels the images' channels themselves).
    fn gather_cols(&self, x: &[f32], first: usize, count: usize, cols: &mut [f32]) {
        let (hw, ci) = (self.hw(), self.cin);
        let ld = count * hw;
        for j in 0..count {
            let xi = &x[(first + j) * ci * hw..(first + j + 1) * ci * hw];
            im2col(xi, ci, self.h, self.w, self.k, cols, ld, j * hw);
        }
    }

    /// `y = conv(x, weight) + bias`.
    ///
    /// # Shapes
    /// `x`: `[n, cin, h, w]`, `weight`: `[cout, cin, k, k]`, `bias`: `[cout]` → `y`: `[n, cout, h, w]`
    pub fn forward(&self, x: &[f32], weight: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        let (hw, kk, cout) = (self.hw(), self.kk(), self.cout);
        assert!(
            x.len() >= self.n * self.cin * hw
                && weight.len() >= cout * kk
                && y.len() >= self.n * cout * hw,
            "conv2d: buffers too small"
        );
        if crate::dnnl::conv::forward(self, x, weight, bias, y) {
            return;
        }
        let groups = self.groups();
        let serial = groups.len() >= rayon::current_num_threads();
        let y = &mut y[..self.n * cout * hw];
        let one = |(first, count): (usize, usize), yg: &mut [f32]| {
            let cols_len = if self.k == 1 && count == 1 {
                0
            } else {
                kk * count * hw
            };
            let out_len = if count > 1 { cout * count * hw } else { 0 };
            with_scratch(cols_len + out_len, |buf| {
                let (cols, out) = buf.split_at_mut(cols_len);
                let b: &[f32] = if cols_len == 0 {
                    &x[first * self.cin * hw..(first + 1) * self.cin * hw]
                } else {
                    self.gather_cols(x, first, count, cols);
                    cols
                };
                let c: &mut [f32] = if count > 1 { out } else { &mut *yg };
                if serial {
                    gemm_serial(cout, kk, count * hw, weight, false, b, false, c, false);
                } else {
                    gemm(cout, kk, count * hw, weight, false, b, false, c, false);
                }
                if count > 1 {
                    scatter_rows(out, cout, count, hw, yg);
                }
            });
            if let Some(b) = bias {
                for image in yg.chunks_exact_mut(cout * hw) {
                    for (plane, &bc) in image.chunks_exact_mut(hw).zip(b) {
                        plane.iter_mut().for_each(|v| *v += bc);
                    }
                }
            }
        };
        let g = self.group();
        if serial {
            y.par_chunks_mut(g * cout * hw)
                .zip(groups)
                .for_each(|(yg, grp)| one(grp, yg));
        } else {
            for (yg, grp) in y.chunks_mut(g * cout * hw).zip(groups) {
                one(grp, yg);
            }
        }
    }

    /// The input gradient `dx` of `y = conv(x, weight)` given `dy`: for k > 1 the convolution
    /// of `dy` with the flipped, transposed kernel (`W′[ci, co, ky, kx] = W[co, ci, k−1−ky,
    /// k−1−kx]`; its product has inner dimension `cout·k²`, where scattering the columns back
    /// (col2im) has only `cout` and a 9× larger output to write), for 1×1 kernels one product.
    ///
    /// # Shapes
    /// `weight`: `[cout, cin, k, k]`, `dy`: `[n, cout, h, w]` → `dx`: `[n, cin, h, w]`
    pub fn backward_data(&self, weight: &[f32], dy: &[f32], dx: &mut [f32]) {
        let (hw, kk, cout, cin, k) = (self.hw(), self.kk(), self.cout, self.cin, self.k);
        assert!(
            weight.len() >= cout * kk
                && dy.len() >= self.n * cout * hw
                && dx.len() >= self.n * cin * hw,
            "conv2d backward: buffers too small"
        );
        if crate::dnnl::conv::backward_data(self, weight, dy, dx) {
            return;
        }
        if k > 1 {
            let mut flipped = vec![0f32; cout * kk];
            for co in 0..cout {
                for ci in 0..cin {
                    for t in 0..k * k {
                        flipped[(ci * cout + co) * k * k + (k * k - 1 - t)] =
                            weight[(co * cin + ci) * k * k + t];
                    }
                }
            }
            let adjoint = Conv2d {
                cin: cout,
                cout: cin,
                ..*self
            };
            adjoint.forward(dy, &flipped, None, dx);
            return;
        }
        let dx = &mut dx[..self.n * cin * hw];
        let one = |i: usize, dxi: &mut [f32], serial: bool| {
            let dyi = &dy[i * cout * hw..(i + 1) * cout * hw];
            if serial {
                gemm_serial(cin, cout, hw, weight, true, dyi, false, dxi, false);
            } else {
                gemm(cin, cout, hw, weight, true, dyi, false, dxi, false);
            }
        };
        if self.n >= rayon::current_num_threads() {
            dx.par_chunks_mut(cin * hw)
                .enumerate()
                .for_each(|(i, dxi)| one(i, dxi, true));
        } else {
            for (i, dxi) in dx.chunks_mut(cin * hw).enumerate() {
                one(i, dxi, false);
            }
        }
    }

    /// The weight and bias gradients of `y = conv(x, weight) + bias` given `dy`.
    ///
    /// The images are split into a fixed number of chunks (at most [`WEIGHT_CHUNKS`], however
    /// many threads there are); each chunk sums its images' products on one core, a group of
    /// images per product (see [`Conv2d::group`]), and the chunks' sums are added in order, so
    /// the result does not depend on the thread count.
    ///
    /// # Shapes
    /// `x`: `[n, cin, h, w]`, `dy`: `[n, cout, h, w]` → `dw`: `[cout, cin, k, k]`, `db`: `[cout]`
    pub fn backward_weight(
        &self,
        x: &[f32],
        dy: &[f32],
        dw: &mut [f32],
        mut db: Option<&mut [f32]>,
    ) {
        let (hw, kk, cout, cin) = (self.hw(), self.kk(), self.cout, self.cin);
        assert!(
            x.len() >= self.n * cin * hw && dy.len() >= self.n * cout * hw && dw.len() >= cout * kk,
            "conv2d weight backward: buffers too small"
        );
        if crate::dnnl::conv::backward_weight(self, x, dy, dw, db.as_deref_mut()) {
            return;
        }
        let chunks = self.n.clamp(1, WEIGHT_CHUNKS);
        let g = self.group();
        // Each chunk sums dwᵀ = Σ cols_G · dy_Gᵀ ([cin·k², cout]) over its groups G of images:
        // the columns as im2col writes them side by side (for 1×1 kernels the images
        // themselves), dy_G the group's gradients side by side, read transposed.
        let partials: Vec<Vec<f32>> = (0..chunks)
            .into_par_iter()
            .map(|j| {
                let mut acc = vec![0f32; kk * cout];
                let (lo, hi) = (j * self.n / chunks, (j + 1) * self.n / chunks);
                let mut first = lo;
                while first < hi {
                    let count = g.min(hi - first);
                    let cols_n = count * hw;
                    let cols_len = if self.k == 1 && count == 1 {
                        0
                    } else {
                        kk * cols_n
                    };
                    let dyg_len = if count > 1 { cout * cols_n } else { 0 };
                    with_scratch(cols_len + dyg_len, |buf| {
                        let (cols, dyg) = buf.split_at_mut(cols_len);
                        let left: &[f32] = if cols_len == 0 {
                            &x[first * cin * hw..(first + 1) * cin * hw]
                        } else {
                            self.gather_cols(x, first, count, cols);
                            cols
                        };
                        let dy_g = &dy[first * cout * hw..(first + count) * cout * hw];
                        let right: &[f32] = if count > 1 {
                            gather_rows(dy_g, cout, count, hw, dyg);
                            dyg
                        } else {
                            dy_g
                        };
                        let acc_on = first > lo;
                        gemm_serial(kk, cols_n, cout, left, false, right, true, &mut acc, acc_on);
                    });
                    first += count;
                }
                acc
            })
            .collect();
        let mut dwt = partials[0].clone();
        for p in &partials[1..] {
            dwt.par_chunks_mut(4096)
                .zip(p.par_chunks(4096))
                .for_each(|(d, s)| add_into(d, s));
        }
        transpose(&dwt, kk, cout, &mut dw[..cout * kk]);
        if let Some(db) = db {
            db[..cout].par_iter_mut().enumerate().for_each(|(co, d)| {
                *d = (0..self.n)
                    .map(|i| {
                        dy[(i * cout + co) * hw..(i * cout + co + 1) * hw]
                            .iter()
                            .map(|&v| f64::from(v))
                            .sum::<f64>()
                    })
                    .sum::<f64>() as f32;
            });
        }
    }
}

/// Columns per GEMM the images are grouped to (see [`Conv2d::group`]).
pub const GROUP_COLS: usize = 256;

/// `[rows, count·hw]` (images side by side) → `count` images of `[rows, hw]`.
fn scatter_rows(src: &[f32], rows: usize, count: usize, hw: usize, dst: &mut [f32]) {
    let ld = count * hw;
    for j in 0..count {
        for r in 0..rows {
            dst[(j * rows + r) * hw..(j * rows + r + 1) * hw]
                .copy_from_slice(&src[r * ld + j * hw..r * ld + (j + 1) * hw]);
        }
    }
}

/// `count` images of `[rows, hw]` → `[rows, count·hw]` (the inverse of [`scatter_rows`]).
fn gather_rows(src: &[f32], rows: usize, count: usize, hw: usize, dst: &mut [f32]) {
    let ld = count * hw;
    for j in 0..count {
        for r in 0..rows {
            dst[r * ld + j * hw..r * ld + (j + 1) * hw]
                .copy_from_slice(&src[(j * rows + r) * hw..(j * rows + r + 1) * hw]);
        }
    }
}

/// Where tap (ky, kx) of a k×k kernel reads, in a flattened `h × w` plane: output pixels
/// `p in lo..hi` (whole rows whose source row exists) read `p + off`; in each row, `cut` columns
/// at the left (dx < 0) or right (dx > 0) edge wrap into the neighbouring row and read 0.
struct Tap {
    lo: usize,
    hi: usize,
    off: isize,
    dx: isize,
}

impl Tap {
    fn new(h: usize, w: usize, k: usize, ky: usize, kx: usize) -> Tap {
        let pad = (k / 2) as isize;
        let (dy, dx) = (ky as isize - pad, kx as isize - pad);
        let y0 = (-dy).clamp(0, h as isize) as usize;
        let y1 = (h as isize - dy).clamp(y0 as isize, h as isize) as usize;
        Tap {
            lo: y0 * w,
            hi: y1 * w,
            off: dy * w as isize + dx,
            dx,
        }
    }

    /// The contiguous part of `lo..hi` to copy: without the wrapped columns at its two ends
    /// (whose sources would lie outside the plane; they are zeroed with the others).
    fn span(&self) -> (usize, usize) {
        let a = self.lo + (-self.dx).max(0) as usize;
        let b = self.hi.saturating_sub(self.dx.max(0) as usize).max(a);
        (a.min(self.hi), b.min(self.hi))
    }

    /// The columns of each row that wrap (read 0).
    fn wrapped(&self, w: usize) -> std::ops::Range<usize> {
        let d = self.dx.unsigned_abs().min(w);
        if self.dx > 0 { w - d..w } else { 0..d }
    }
}

multiversion! {
    /// Columns of one image (`x`: `[cin, h, w]`) into `cols` (row r = ci·k² + ky·k + kx, `h·w`
    /// entries from column `off` of a matrix with `ld` columns):
    /// `cols[r, y·w + x] = x[ci, y + ky − pad, x + kx − pad]`, or 0 outside the image. Each row is
    /// one shifted copy of the plane with its wrapped edge columns zeroed.
    fn im2col(x: &[f32], cin: usize, h: usize, w: usize, k: usize, cols: &mut [f32], ld: usize, off: usize) {
        let hw = h * w;
        for ky in 0..k {
            for kx in 0..k {
                let t = Tap::new(h, w, k, ky, kx);
                let cut = t.wrapped(w);
                for ci in 0..cin {
                    let plane = &x[ci * hw..(ci + 1) * hw];
                    let r = (ci * k + ky) * k + kx;
                    let row = &mut cols[r * ld + off..r * ld + off + hw];
                    row[..t.lo].fill(0.0);
                    row[t.hi..].fill(0.0);
                    let (a, b) = t.span();
                    if t.lo < t.hi {
                        let s0 = (a as isize + t.off) as usize;
                        row[a..b].copy_from_slice(&plane[s0..s0 + (b - a)]);
                        if !cut.is_empty() {
                            for y in (t.lo..t.hi).step_by(w) {
                                zero_small(&mut row[y + cut.start..y + cut.end]);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Zero the one or two floats a 3×3 or 5×5 kernel's edge wraps with plain stores (a `memset`
/// call per row costs more than the stores).
#[inline(always)]
fn zero_small(s: &mut [f32]) {
    match s {
        [] => {}
        [a] => *a = 0.0,
        [a, b] => {
            *a = 0.0;
            *b = 0.0;
        }
        _ => s.fill(0.0),
    }
}

/// Chunks of images the weight gradient is summed in (see [`Conv2d::backward_weight`]).
pub const WEIGHT_CHUNKS: usize = 8;

multiversion! {
    /// `dst += src`.
    fn add_into(dst: &mut [f32], src: &[f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d += s;
        }
    }
}

multiversion! {
    /// `dst[c, r] = src[r, c]` for a `rows × cols` matrix, in 32 × 32 tiles.
    fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
        const T: usize = 32;
        for r0 in (0..rows).step_by(T) {
            for c0 in (0..cols).step_by(T) {
                for r in r0..(r0 + T).min(rows) {
                    for c in c0..(c0 + T).min(cols) {
                        dst[c * rows + r] = src[r * cols + c];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Direct convolution in f64, for reference.
    fn naive(c: &Conv2d, x: &[f32], wt: &[f32], b: &[f32]) -> Vec<f64> {
        let (h, w, k) = (c.h as isize, c.w as isize, c.k as isize);
        let pad = k / 2;
        let mut y = vec![0f64; c.n * c.cout * c.hw()];
        for i in 0..c.n {
            for co in 0..c.cout {
                for oy in 0..h {
                    for ox in 0..w {
                        let mut s = f64::from(b[co]);
                        for ci in 0..c.cin {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (iy, ix) = (oy + ky - pad, ox + kx - pad);
                                    if iy < 0 || ix < 0 || iy >= h || ix >= w {
                                        continue;
                                    }
                                    let xv = x[((i * c.cin + ci) as isize * h + iy) as usize * c.w
                                        + ix as usize];
                                    let wv = wt[((co * c.cin + ci) as isize * k * k + ky * k + kx)
                                        as usize];
                                    s += f64::from(xv) * f64::from(wv);
                                }
                            }
                        }
                        y[((i * c.cout + co) * c.h + oy as usize) * c.w + ox as usize] = s;
                    }
                }
            }
        }
        y
    }

    fn rand(r: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| r.normal() as f32).collect()
    }

    #[test]
    fn forward_and_gradients_match_a_direct_convolution() {
        let mut r = Rng::new(7);
        for c in [
            Conv2d {
                n: 3,
                cin: 2,
                cout: 5,
                h: 4,
                w: 7,
                k: 3,
            },
            Conv2d {
                n: 1,
                cin: 3,
                cout: 2,
                h: 5,
                w: 3,
                k: 3,
            },
            Conv2d {
                n: 4,
                cin: 6,
                cout: 3,
                h: 3,
                w: 2,
                k: 1,
            },
            Conv2d {
                n: 2,
                cin: 1,
                cout: 2,
                h: 1,
                w: 1,
                k: 3,
            },
            // Groups of two images (640 pixels each) and a last group of one.
            Conv2d {
                n: 5,
                cin: 1,
                cout: 2,
                h: 16,
                w: 40,
                k: 3,
            },
            Conv2d {
                n: 3,
                cin: 2,
                cout: 2,
                h: 20,
                w: 30,
                k: 1,
            },
        ] {
            assert!(c.group() < c.n || c.n * c.hw() < GROUP_COLS, "{c:?}");
            let x = rand(&mut r, c.n * c.cin * c.hw());
            let wt = rand(&mut r, c.cout * c.kk());
            let b = rand(&mut r, c.cout);
            let mut y = vec![0f32; c.n * c.cout * c.hw()];
            c.forward(&x, &wt, Some(&b), &mut y);
            let want = naive(&c, &x, &wt, &b);
            for (a, e) in y.iter().zip(&want) {
                assert!((f64::from(*a) - e).abs() < 1e-4, "{c:?}: {a} vs {e}");
            }
            // Gradients of L = Σ y·g against finite differences of the (linear) naive conv:
            // dL/dx and dL/dw are exact adjoints, so compare against the naive adjoint sums.
            let g = rand(&mut r, y.len());
            let mut dx = vec![0f32; x.len()];
            c.backward_data(&wt, &g, &mut dx);
            let mut dw = vec![0f32; wt.len()];
            let mut db = vec![0f32; c.cout];
            c.backward_weight(&x, &g, &mut dw, Some(&mut db));
            let dot = |a: &[f64], b: &[f32]| -> f64 {
                a.iter().zip(b).map(|(p, q)| p * f64::from(*q)).sum()
            };
            let zero_b = vec![0f32; c.cout];
            // ⟨conv(e_j), g⟩ = dx_j for every unit input e_j (and likewise for weights).
            for j in (0..x.len()).step_by(3) {
                let mut e = vec![0f32; x.len()];
                e[j] = 1.0;
                let want = dot(&naive(&c, &e, &wt, &zero_b), &g);
                assert!((f64::from(dx[j]) - want).abs() < 1e-4, "dx[{j}]");
            }
            for j in 0..wt.len() {
                let mut e = vec![0f32; wt.len()];
                e[j] = 1.0;
                let want = dot(&naive(&c, &x, &e, &zero_b), &g);
                assert!(
                    (f64::from(dw[j]) - want).abs() < 1e-3,
                    "dw[{j}] {} {want}",
                    dw[j]
                );
            }
            for co in 0..c.cout {
                let want: f64 = (0..c.n)
                    .flat_map(|i| {
                        let s = (i * c.cout + co) * c.hw();
                        g[s..s + c.hw()].to_vec()
                    })
                    .map(f64::from)
                    .sum();
                assert!((f64::from(db[co]) - want).abs() < 1e-4);
            }
        }
    }

    /// oneDNN's primitives (chunked, 1×1, no bias; large kernels fall back to im2col) against the
    /// im2col path above, which the direct convolution checks.
    #[test]
    fn onednn_matches_im2col_on_every_path() {
        if crate::dnnl::get().is_none() {
            eprintln!("SKIPPED: oneDNN not found (scripts/fetch_assets.sh onednn)");
            return;
        }
        let mut r = Rng::new(11);
        for (c, bias) in [
            (
                Conv2d {
                    n: 5,
                    cin: 3,
                    cout: 7,
                    h: 6,
                    w: 5,
                    k: 3,
                },
                true,
            ),
            (
                Conv2d {
                    n: 3,
                    cin: 64,
                    cout: 128,
                    h: 4,
                    w: 4,
                    k: 3,
                },
                true,
            ),
            (
                Conv2d {
                    n: 17,
                    cin: 8,
                    cout: 4,
                    h: 3,
                    w: 3,
                    k: 1,
                },
                false,
            ),
        ] {
            let x = rand(&mut r, c.n * c.cin * c.hw());
            let wt = rand(&mut r, c.cout * c.kk());
            let b = rand(&mut r, c.cout);
            let g = rand(&mut r, c.n * c.cout * c.hw());
            let run = |on: bool| {
                crate::dnnl::conv::set_enabled(on);
                let mut y = vec![0f32; g.len()];
                c.forward(&x, &wt, bias.then_some(&b[..]), &mut y);
                let mut dx = vec![0f32; x.len()];
                c.backward_data(&wt, &g, &mut dx);
                let (mut dw, mut db) = (vec![0f32; wt.len()], vec![0f32; c.cout]);
                c.backward_weight(&x, &g, &mut dw, Some(&mut db));
                crate::dnnl::conv::set_enabled(true);
                [y, dx, dw, db]
            };
            let (ours, theirs) = (run(false), run(true));
            for (which, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                let scale = a.iter().fold(1f32, |m, v| m.max(v.abs()));
                for (p, q) in a.iter().zip(b) {
                    assert!(
                        (p - q).abs() <= 1e-4 * scale,
                        "{c:?} output {which}: {p} vs {q}"
                    );
                }
            }
        }
    }
}
