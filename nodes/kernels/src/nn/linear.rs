//! A stack of H independent linear layers with bias and an optional exact GELU after them — the
//! MLP layers of TEMI's H clustering heads — forward and backward, on one core per head.
//!
//! Two layouts, as `cedm-nodes` stores the heads:
//! - **shared** (the first layer, whose input all heads share): `x` is `[n, din]`, the weights
//!   are one `[din, H·dout]` matrix whose column block `h` is head h's, the bias `[H·dout]`;
//! - **per head** (later layers): `x` is `[H, n, din]`, the weights `[H, din, dout]`, the bias
//!   `[H, dout]`.
//!
//! The output is always head-major `[H, n, dout]`. Each head's product runs serially through
//! the `gemm` crate on one of rayon's threads, its bias and GELU applied while the block is in
//! cache; with a single head the product runs in parallel instead. The choice depends on H only,
//! and every sum runs in a fixed order, so results do not depend on the thread count.

use rayon::prelude::*;

use super::math::{gelu, gelu_grad};
use crate::cpu::gemm_strided;

/// The shape of a stacked linear layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadsLinear {
    /// Heads H.
    pub heads: usize,
    /// Rows n (batch).
    pub n: usize,
    /// Input width.
    pub din: usize,
    /// Output width per head.
    pub dout: usize,
    /// The shared layout (see the module docs) instead of per-head inputs and weights.
    pub shared: bool,
    /// GELU after the bias.
    pub gelu: bool,
}

/// A raw pointer that may cross to rayon's threads: each thread writes a disjoint block.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: only used to hand disjoint column blocks of one matrix to different threads, each of
// which is the sole writer of its block while the parallel loop runs.
unsafe impl Send for Out {}
// SAFETY: as above; shared references never read through it.
unsafe impl Sync for Out {}

impl Out {
    /// The pointer (a method, so closures capture the whole `Send` wrapper, not its field).
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

impl HeadsLinear {
    /// Length of `x`.
    pub fn x_len(&self) -> usize {
        if self.shared {
            self.n * self.din
        } else {
            self.heads * self.n * self.din
        }
    }

    /// Length of the weights (and of their gradient).
    pub fn w_len(&self) -> usize {
        self.heads * self.din * self.dout
    }

    /// Length of the output, `H·n·dout`.
    pub fn y_len(&self) -> usize {
        self.heads * self.n * self.dout
    }

    /// Head h's input: offset and row stride in `x`.
    fn x_at(&self, h: usize) -> usize {
        if self.shared {
            0
        } else {
            h * self.n * self.din
        }
    }

    /// Head h's weight block: offset and row stride in `w`.
    fn w_at(&self, h: usize) -> (usize, usize) {
        if self.shared {
            (h * self.dout, self.heads * self.dout)
        } else {
            (h * self.din * self.dout, self.dout)
        }
    }

    fn check(&self, x: &[f32], w: &[f32], b: &[f32]) {
        assert!(
            x.len() == self.x_len() && w.len() == self.w_len() && b.len() == self.heads * self.dout,
            "heads linear: operand sizes do not match {self:?}"
        );
    }

    /// `y = act(x·W + b)` into `y` (`[H, n, dout]`), and the pre-activation `x·W + b` into `z`
    /// when given (the backward pass needs it when there is a GELU).
    pub fn forward(&self, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32], z: Option<&mut [f32]>) {
        self.check(x, w, b);
        let blk = self.n * self.dout;
        assert!(
            y.len() == self.y_len() && z.as_ref().is_none_or(|z| z.len() == y.len()),
            "heads linear: output sizes"
        );
        if blk == 0 {
            return;
        }
        let head = |h: usize, y: &mut [f32], z: Option<&mut [f32]>, parallel: bool| {
            let (wo, ws) = self.w_at(h);
            // SAFETY: x's block is n×din contiguous from x_at(h) (checked lengths), the weight
            // block din×dout at row stride ws from wo stays inside w (wo + (din−1)·ws + dout ≤
            // w_len in both layouts), y is this head's exclusive n×dout block.
            unsafe {
                gemm_strided(
                    self.n,
                    self.din,
                    self.dout,
                    x[self.x_at(h)..].as_ptr(),
                    self.din as isize,
                    1,
                    w[wo..].as_ptr(),
                    ws as isize,
                    1,
                    y.as_mut_ptr(),
                    self.dout as isize,
                    false,
                    parallel,
                );
            }
            let bias = &b[h * self.dout..(h + 1) * self.dout];
            match z {
                Some(z) => {
                    for (yr, zr) in y
                        .chunks_exact_mut(self.dout)
                        .zip(z.chunks_exact_mut(self.dout))
                    {
                        epilogue_saving(yr, zr, bias, self.gelu);
                    }
                }
                None => {
                    for yr in y.chunks_exact_mut(self.dout) {
                        epilogue(yr, bias, self.gelu);
                    }
                }
            }
        };
        if self.heads == 1 {
            head(0, y, z, true);
            return;
        }
        match z {
            Some(z) => y
                .par_chunks_mut(blk)
                .zip(z.par_chunks_mut(blk))
                .enumerate()
                .for_each(|(h, (y, z))| head(h, y, Some(z), false)),
            None => y
                .par_chunks_mut(blk)
                .enumerate()
                .for_each(|(h, y)| head(h, y, None, false)),
        }
    }

    /// Gradients from `dy` (`[H, n, dout]`, overwritten by the pre-activation's gradient when
    /// there is a GELU) and the saved pre-activation `z` (needed only with a GELU): `dw` and
    /// `db` always, `dx` when asked for (summed over heads in the shared layout).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        x: &[f32],
        w: &[f32],
        z: Option<&[f32]>,
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        dw: &mut [f32],
        db: &mut [f32],
    ) {
        let (n, din, dout) = (self.n, self.din, self.dout);
        assert!(
            x.len() == self.x_len()
                && w.len() == self.w_len()
                && dy.len() == self.y_len()
                && dw.len() == self.w_len()
                && db.len() == self.heads * dout
                && (!self.gelu || z.is_some_and(|z| z.len() == dy.len()))
                && dx.as_ref().is_none_or(|d| d.len() == self.x_len()),
            "heads linear backward: sizes do not match {self:?}"
        );
        let blk = n * dout;
        if blk == 0 || din == 0 {
            dw.fill(0.0);
            db.fill(0.0);
            if let Some(dx) = dx {
                dx.fill(0.0);
            }
            return;
        }
        // dz = dy ⊙ GELU′(z) in place, head by head in parallel.
        if let (true, Some(z)) = (self.gelu, z) {
            dy.par_chunks_mut(blk)
                .zip(z.par_chunks(blk))
                .for_each(|(d, z)| gelu_backward(d, z));
        }
        let dz = &*dy;
        let parallel = self.heads == 1;
        // db: column sums of each head's dz, rows in order.
        db.par_chunks_mut(dout).enumerate().for_each(|(h, db)| {
            db.fill(0.0);
            for row in dz[h * blk..(h + 1) * blk].chunks_exact(dout) {
                for (a, &g) in db.iter_mut().zip(row) {
                    *a += g;
                }
            }
        });
        // dW_h = x_hᵀ · dz_h, into head h's block of dw.
        let out = Out(dw.as_mut_ptr());
        let dw_len = dw.len();
        let head_dw = |h: usize| {
            let (wo, ws) = self.w_at(h);
            debug_assert!(wo + (din - 1) * ws + dout <= dw_len);
            // SAFETY: a = x_h read transposed (din×n, element (i, p) at p·din + i) inside x; b =
            // dz_h, n×dout contiguous inside dz; c = head h's din×dout block of dw at row stride
            // ws from wo, inside dw (bound above) and written by this call only: blocks of
            // different heads are disjoint (column blocks in the shared layout, consecutive
            // slabs otherwise), and nothing else touches dw during the loop.
            unsafe {
                gemm_strided(
                    din,
                    n,
                    dout,
                    x[self.x_at(h)..].as_ptr(),
                    1,
                    din as isize,
                    dz[h * blk..].as_ptr(),
                    dout as isize,
                    1,
                    out.ptr().add(wo),
                    ws as isize,
                    false,
                    parallel,
                );
            }
        };
        if parallel {
            head_dw(0);
        } else {
            (0..self.heads).into_par_iter().for_each(head_dw);
        }
        let Some(dx) = dx else { return };
        // dx_h = dz_h · W_hᵀ (per head), or Σ_h dz_h · W_hᵀ in fixed head order (shared).
        if self.shared {
            const ROWS: usize = 64;
            dx.par_chunks_mut(ROWS * din)
                .enumerate()
                .for_each(|(chunk, dx)| {
                    let r0 = chunk * ROWS;
                    let rows = dx.len() / din;
                    for h in 0..self.heads {
                        let (wo, ws) = self.w_at(h);
                        // SAFETY: a = rows r0.. of dz_h (rows×dout contiguous, inside dz);
                        // b = W_hᵀ (dout×din, element (j, i) at wo + i·ws + j, inside w); c =
                        // this chunk's rows×din block of dx, exclusively borrowed.
                        unsafe {
                            gemm_strided(
                                rows,
                                dout,
                                din,
                                dz[h * blk + r0 * dout..].as_ptr(),
                                dout as isize,
                                1,
                                w[wo..].as_ptr(),
                                1,
                                ws as isize,
                                dx.as_mut_ptr(),
                                din as isize,
                                h > 0,
                                false,
                            );
                        }
                    }
                });
        } else {
            let head_dx = |h: usize, dx: &mut [f32], parallel: bool| {
                let (wo, ws) = self.w_at(h);
                // SAFETY: a = dz_h (n×dout contiguous), b = W_hᵀ (dout×din at (j, i) → wo +
                // i·ws + j, inside w), c = head h's n×din block of dx, exclusively borrowed.
                unsafe {
                    gemm_strided(
                        n,
                        dout,
                        din,
                        dz[h * blk..].as_ptr(),
                        dout as isize,
                        1,
                        w[wo..].as_ptr(),
                        1,
                        ws as isize,
                        dx.as_mut_ptr(),
                        din as isize,
                        false,
                        parallel,
                    );
                }
            };
            if parallel {
                head_dx(0, dx, true);
            } else {
                dx.par_chunks_mut(n * din)
                    .enumerate()
                    .for_each(|(h, dx)| head_dx(h, dx, false));
            }
        }
    }
}

multiversion! {
    /// `y ← act(y + b)` on one row.
    fn epilogue(y: &mut [f32], b: &[f32], act: bool) {
        if act {
            for (y, &b) in y.iter_mut().zip(b) {
                *y = gelu(*y + b);
            }
        } else {
            for (y, &b) in y.iter_mut().zip(b) {
                *y += b;
            }
        }
    }
}

multiversion! {
    /// `z ← y + b`, `y ← act(z)` on one row.
    fn epilogue_saving(y: &mut [f32], z: &mut [f32], b: &[f32], act: bool) {
        for ((y, z), &b) in y.iter_mut().zip(z.iter_mut()).zip(b) {
            let v = *y + b;
            *z = v;
            *y = if act { gelu(v) } else { v };
        }
    }
}

multiversion! {
    /// `d ← d ⊙ GELU′(z)`.
    fn gelu_backward(d: &mut [f32], z: &[f32]) {
        for (d, &z) in d.iter_mut().zip(z) {
            *d *= gelu_grad(z);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn rand(n: usize, rng: &mut Rng) -> Vec<f32> {
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// The same layer by plain loops in f64.
    fn naive(l: &HeadsLinear, x: &[f32], w: &[f32], b: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let (mut y, mut z) = (vec![0f64; l.y_len()], vec![0f64; l.y_len()]);
        for h in 0..l.heads {
            let (wo, ws) = l.w_at(h);
            for r in 0..l.n {
                for j in 0..l.dout {
                    let mut s = f64::from(b[h * l.dout + j]);
                    for i in 0..l.din {
                        s +=
                            f64::from(x[l.x_at(h) + r * l.din + i]) * f64::from(w[wo + i * ws + j]);
                    }
                    let o = (h * l.n + r) * l.dout + j;
                    z[o] = s;
                    y[o] = if l.gelu { f64::from(gelu(s as f32)) } else { s };
                }
            }
        }
        (y, z)
    }

    #[test]
    fn forward_and_gradients_match_loops_and_differences() {
        for (heads, shared, act) in [
            (3, true, true),
            (4, false, true),
            (1, false, false),
            (2, true, false),
        ] {
            let l = HeadsLinear {
                heads,
                n: 7,
                din: 5,
                dout: 6,
                shared,
                gelu: act,
            };
            let mut rng = Rng::new(heads as u64);
            let x = rand(l.x_len(), &mut rng);
            let w = rand(l.w_len(), &mut rng);
            let b = rand(heads * l.dout, &mut rng);
            let mut y = vec![0f32; l.y_len()];
            let mut z = vec![0f32; l.y_len()];
            l.forward(&x, &w, &b, &mut y, Some(&mut z));
            let (yr, zr) = naive(&l, &x, &w, &b);
            for i in 0..y.len() {
                assert!((f64::from(y[i]) - yr[i]).abs() < 1e-4, "y {i}");
                assert!((f64::from(z[i]) - zr[i]).abs() < 1e-4, "z {i}");
            }
            // Loss Σ y ⊙ r; gradients against central differences of the f64 loop version.
            let r = rand(l.y_len(), &mut rng);
            let (mut dx, mut dw, mut db) = (
                vec![0f32; x.len()],
                vec![0f32; w.len()],
                vec![0f32; b.len()],
            );
            l.backward(
                &x,
                &w,
                Some(&z),
                &mut r.clone(),
                Some(&mut dx),
                &mut dw,
                &mut db,
            );
            let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
                naive(&l, x, w, b)
                    .0
                    .iter()
                    .zip(&r)
                    .map(|(y, &r)| y * f64::from(r))
                    .sum()
            };
            let fd = |which: usize, i: usize| -> f64 {
                let h = 1e-2f32;
                let (mut x1, mut w1, mut b1) = (x.clone(), w.clone(), b.clone());
                let (mut x2, mut w2, mut b2) = (x.clone(), w.clone(), b.clone());
                match which {
                    0 => {
                        x1[i] += h;
                        x2[i] -= h;
                    }
                    1 => {
                        w1[i] += h;
                        w2[i] -= h;
                    }
                    _ => {
                        b1[i] += h;
                        b2[i] -= h;
                    }
                }
                (loss(&x1, &w1, &b1) - loss(&x2, &w2, &b2)) / (2.0 * f64::from(h))
            };
            for (which, g) in [(0, &dx), (1, &dw), (2, &db)] {
                for (i, &v) in g.iter().enumerate() {
                    let want = fd(which, i);
                    assert!(
                        (f64::from(v) - want).abs() < 2e-3 * (1.0 + want.abs()),
                        "grad {which} {i}: {v} vs {want} ({l:?})"
                    );
                }
            }
        }
    }
}
