//! CPU inference kernels in NHWC layout: GEMM (the `gemm` crate, which burn's flex backend also
//! uses), im2col convolution with a 1×1 fast path, depthwise 3×3 convolution, pooling, and fused
//! bias / ReLU / ReLU6 / residual epilogues.
//!
//! Why not burn's conv2d here: on 2 cores it runs MobileNetV2 at 96 px at about half PyTorch's
//! speed (small feature maps, grouped convs, NCHW). Feature extraction and FID are pure
//! inference of fixed networks, so the CPU path of those models uses these kernels; the burn
//! modules stay the reference (parity-tested against the same fixtures) and the GPU path.
//!
//! Inner loops are written so the compiler vectorises them, and compiled twice: for AVX2+FMA
//! (chosen at run time when the CPU has it) and for the baseline target.

use rayon::prelude::*;

use crate::blas::Element;

/// Rows per oneDNN call when [`gemm`] splits a product over threads.
const DNNL_ROWS: usize = 128;

/// `c[m×n] (+)= a[m×k] · b[k×n]`, all row-major unless `*_t` says the operand is stored
/// transposed (`a_t`: a is stored k×m; `b_t`: b is stored n×k). Multi-threaded. f32 or f64:
/// large products go to the run-time BLAS when there is one ([`crate::blas`]), the rest to the
/// `gemm` crate.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: crate::blas::Element>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    a_t: bool,
    b: &[T],
    b_t: bool,
    c: &mut [T],
    accumulate: bool,
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm: buffers too small"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(T::ZERO);
        }
        return;
    }
    let (a_rs, a_cs) = if a_t {
        (1isize, m as isize)
    } else {
        (k as isize, 1isize)
    };
    let (b_rs, b_cs) = if b_t {
        (1isize, k as isize)
    } else {
        (n as isize, 1isize)
    };
    let threads = rayon::current_num_threads();
    if crate::dnnl::get().is_some() && crate::dnnl::worth_it(m, k, n) {
        // oneDNN per slab of DNNL_ROWS rows (a fixed split, so results do not depend on the
        // thread count), slabs over rayon's threads; a slab it refuses goes to the gemm crate.
        c[..m * n]
            .par_chunks_mut(DNNL_ROWS * n)
            .enumerate()
            .for_each(|(i, cs)| {
                let rows = cs.len() / n;
                let a0 = (i * DNNL_ROWS) as isize * a_rs;
                // SAFETY: rows i·DNNL_ROWS.. of a (at its strides, inside the asserted length)
                // and all of b are read; this slab of c is written, exclusively borrowed.
                unsafe {
                    let (ap, cp) = (a.as_ptr().offset(a0), cs.as_mut_ptr());
                    if !T::dnnl(
                        rows,
                        k,
                        n,
                        ap,
                        a_rs,
                        a_cs,
                        b.as_ptr(),
                        b_rs,
                        b_cs,
                        cp,
                        n as isize,
                        accumulate,
                    ) {
                        gemm::gemm(
                            rows,
                            n,
                            k,
                            cp,
                            1,
                            n as isize,
                            accumulate,
                            ap,
                            a_cs,
                            a_rs,
                            b.as_ptr(),
                            b_cs,
                            b_rs,
                            if accumulate { T::ONE } else { T::ZERO },
                            T::ONE,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
            });
        return;
    }
    if crate::blas::worth_it(m, k, n)
        && let Some(lib) = crate::blas::get()
        && lib.gemm(m, k, n, a, a_t, b, b_t, c, accumulate)
    {
        return;
    }
    let par = if m * n * k < 64 * 64 * 64 || threads <= 1 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    };
    // SAFETY: the asserts above bound every index the strides can reach: a is m×k (or k×m), b is
    // k×n (or n×k), c is m×n, all contiguous; the buffers do not alias (c is &mut).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            if accumulate { T::ONE } else { T::ZERO },
            T::ONE,
            false,
            false,
            false,
            par,
        );
    }
}

/// A GEMM on raw strided operands (`c[i, j] (+)= Σ_p a[i, p]·b[p, j]`, element (i, j) of a
/// matrix at `ptr + i·rs + j·cs`), on this thread or rayon's pool.
///
/// # Safety
/// Every element the strides reach for `m × k` (a), `k × n` (b) and `m × n` (c) must be in
/// bounds of its allocation; c must not overlap a, b, or any matrix another thread writes.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_strided(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    a_rs: isize,
    a_cs: isize,
    b: *const f32,
    b_rs: isize,
    b_cs: isize,
    c: *mut f32,
    c_rs: isize,
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if !parallel && crate::dnnl::worth_it(m, k, n) {
        // SAFETY: the caller's guarantees are sgemm's.
        if unsafe { f32::dnnl(m, k, n, a, a_rs, a_cs, b, b_rs, b_cs, c, c_rs, accumulate) } {
            return;
        }
    }
    let par = if parallel && m * n * k >= 64 * 64 * 64 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller guarantees the strided operands are in bounds and c is exclusive.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            c_rs,
            accumulate && k > 0,
            a,
            a_cs,
            a_rs,
            b,
            b_cs,
            b_rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// [`gemm`] on the calling thread only (the `gemm` crate without parallelism, no run-time
/// BLAS): for products computed per image inside a parallel loop, where one core per product is
/// what keeps both cores busy (the `gemm` crate runs within a few percent of MKL per core).
#[allow(clippy::too_many_arguments)]
pub fn gemm_serial(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    c: &mut [f32],
    accumulate: bool,
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm_serial: buffers too small"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let (a_rs, a_cs) = if a_t {
        (1isize, m as isize)
    } else {
        (k as isize, 1isize)
    };
    let (b_rs, b_cs) = if b_t {
        (1isize, k as isize)
    } else {
        (n as isize, 1isize)
    };
    if crate::dnnl::worth_it(m, k, n) {
        // SAFETY: as below: the assert bounds every strided access, c is exclusive.
        let done = unsafe {
            f32::dnnl(
                m,
                k,
                n,
                a.as_ptr(),
                a_rs,
                a_cs,
                b.as_ptr(),
                b_rs,
                b_cs,
                c.as_mut_ptr(),
                n as isize,
                accumulate,
            )
        };
        if done {
            return;
        }
    }
    // SAFETY: the assert above bounds every index the strides reach: a is m×k (or k×m), b is
    // k×n (or n×k), c is m×n, all contiguous; c is exclusively borrowed, so nothing aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

thread_local! {
    static COLS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    static POOL: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A buffer of `len` floats with **unspecified contents** (callers overwrite every element),
/// reusing one given back with [`recycle`] on this thread when one is large enough. Large
/// fresh allocations are mmapped by the allocator and cost a page fault per 4 KiB on first
/// touch; a network's activations are reused layer after layer.
pub fn buffer(len: usize) -> Vec<f32> {
    let reused = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let best = p
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        best.map(|i| p.swap_remove(i))
    });
    match reused {
        Some(mut v) => {
            // Keep what is there (initialised floats); only a longer buffer is filled.
            if v.len() >= len {
                v.truncate(len);
            } else {
                v.resize(len, 0.0);
            }
            v
        }
        None => vec![0f32; len],
    }
}

/// Give a buffer back for [`buffer`] to reuse (this thread keeps at most 24).
pub fn recycle(v: Vec<f32>) {
    if v.capacity() < 1 << 16 {
        return;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        p.push(v);
        if p.len() > 24 {
            // Drop the smallest.
            if let Some(i) = p
                .iter()
                .enumerate()
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i)
            {
                p.swap_remove(i);
            }
        }
    });
}

/// What to apply after a convolution's sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Nothing.
    None,
    /// max(x, 0).
    Relu,
    /// min(max(x, 0), 6).
    Relu6,
}

multiversion! {
    /// `row[j] = act(row[j] + bias[j] (+ residual[j]))` over rows of `bias.len()`.
    fn epilogue(out: &mut [f32], bias: &[f32], act: Act, residual: Option<&[f32]>) {
        let c = bias.len();
        match residual {
            Some(res) => {
                for (row, rrow) in out.chunks_exact_mut(c).zip(res.chunks_exact(c)) {
                    for j in 0..c {
                        let v = row[j] + bias[j] + rrow[j];
                        row[j] = match act { Act::None => v, Act::Relu => v.max(0.0), Act::Relu6 => v.clamp(0.0, 6.0) };
                    }
                }
            }
            None => {
                for row in out.chunks_exact_mut(c) {
                    for j in 0..c {
                        let v = row[j] + bias[j];
                        row[j] = match act { Act::None => v, Act::Relu => v.max(0.0), Act::Relu6 => v.clamp(0.0, 6.0) };
                    }
                }
            }
        }
    }
}

/// A 2-D convolution's weights in the layout the kernels want: `[kh·kw·cin, cout]` (im2col
/// order), plus bias.
#[derive(Clone, Debug)]
pub struct Conv {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (y, x).
    pub stride: (usize, usize),
    /// Padding (top, left); bottom/right are implied by the output size.
    pub pad: (usize, usize),
    /// Weights `[kh, kw, cin, cout]`.
    pub w: Vec<f32>,
    /// Bias `[cout]`.
    pub b: Vec<f32>,
    /// Activation after the bias.
    pub act: Act,
}

impl Conv {
    /// From PyTorch's `[cout, cin, kh, kw]` weight and a bias.
    #[allow(clippy::too_many_arguments)]
    pub fn from_oihw(
        w: &[f32],
        b: Vec<f32>,
        cout: usize,
        cin: usize,
        kh: usize,
        kw: usize,
        stride: (usize, usize),
        pad: (usize, usize),
        act: Act,
    ) -> Conv {
        let mut t = vec![0f32; w.len()];
        for o in 0..cout {
            for i in 0..cin {
                for y in 0..kh {
                    for x in 0..kw {
                        t[((y * kw + x) * cin + i) * cout + o] =
                            w[((o * cin + i) * kh + y) * kw + x];
                    }
                }
            }
        }
        Conv {
            cin,
            cout,
            kh,
            kw,
            stride,
            pad,
            w: t,
            b,
            act,
        }
    }

    /// Output size for an input of `h×w` with symmetric padding.
    pub fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        (
            (h + 2 * self.pad.0 - self.kh) / self.stride.0 + 1,
            (w + 2 * self.pad.1 - self.kw) / self.stride.1 + 1,
        )
    }

    /// Apply to NHWC input; `residual` (same shape as the output) is added before the activation.
    ///
    /// # Shapes
    /// `x`: `[n, h, w, cin]` → `[n, oh, ow, cout]`
    pub fn forward(
        &self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        residual: Option<&[f32]>,
    ) -> (Vec<f32>, usize, usize) {
        let (oh, ow) = self.out_size(h, w);
        let rows = n * oh * ow;
        let mut out = buffer(rows * self.cout);
        if self.kh == 1 && self.kw == 1 && self.stride == (1, 1) && self.pad == (0, 0) {
            gemm(
                rows, self.cin, self.cout, x, false, &self.w, false, &mut out, false,
            );
        } else {
            // im2col in chunks of output rows to bound memory.
            let kk = self.kh * self.kw * self.cin;
            let chunk_rows = (1usize << 23) / kk.max(1);
            let chunk_rows = chunk_rows.max(ow);
            // One scratch buffer per thread, reused across chunks and calls (fresh allocations
            // of this size cost a page fault per 4 KiB on first touch).
            let mut cols = COLS.with(|c| std::mem::take(&mut *c.borrow_mut()));
            for (ci, out_chunk) in out.chunks_mut(chunk_rows * self.cout).enumerate() {
                let r0 = ci * chunk_rows;
                let nr = out_chunk.len() / self.cout;
                if cols.len() < nr * kk {
                    cols.resize(nr * kk, 0.0);
                }
                let cols = &mut cols[..nr * kk];
                cols.par_chunks_mut(kk).enumerate().for_each(|(j, col)| {
                    let r = r0 + j;
                    let (img, rem) = (r / (oh * ow), r % (oh * ow));
                    let (oy, ox) = (rem / ow, rem % ow);
                    for ky in 0..self.kh {
                        let iy = (oy * self.stride.0 + ky) as isize - self.pad.0 as isize;
                        for kx in 0..self.kw {
                            let ix = (ox * self.stride.1 + kx) as isize - self.pad.1 as isize;
                            let dst = &mut col[(ky * self.kw + kx) * self.cin
                                ..(ky * self.kw + kx + 1) * self.cin];
                            if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                dst.fill(0.0);
                            } else {
                                let s = ((img * h + iy as usize) * w + ix as usize) * self.cin;
                                dst.copy_from_slice(&x[s..s + self.cin]);
                            }
                        }
                    }
                });
                gemm(
                    nr, kk, self.cout, cols, false, &self.w, false, out_chunk, false,
                );
            }
            COLS.with(|c| *c.borrow_mut() = cols);
        }
        let c = self.cout;
        let rows_per_task = (4096 / c).max(1);
        match residual {
            Some(res) => out
                .par_chunks_mut(rows_per_task * c)
                .zip(res.par_chunks(rows_per_task * c))
                .for_each(|(o, r)| epilogue(o, &self.b, self.act, Some(r))),
            None => out
                .par_chunks_mut(rows_per_task * c)
                .for_each(|o| epilogue(o, &self.b, self.act, None)),
        }
        (out, oh, ow)
    }
}

multiversion! {
    /// `out[t] = a · b_t` for the rows `b_t` of `bs` (`[t, len]`). Rows go four at a time so
    /// that each load of `a` feeds four independent FMA chains (one chain would wait on the FMA
    /// latency).
    fn dots(a: &[f32], bs: &[f32], out: &mut [f32]) {
        let len = a.len();
        let chunks = len / 8;
        let mut t = 0;
        while t < out.len() {
            let g = (out.len() - t).min(4);
            let mut acc = [[0f32; 8]; 4];
            for c in 0..chunks {
                let av = &a[c * 8..c * 8 + 8];
                for (j, accj) in acc.iter_mut().enumerate().take(g) {
                    let bv = &bs[(t + j) * len + c * 8..(t + j) * len + c * 8 + 8];
                    for l in 0..8 {
                        accj[l] += av[l] * bv[l];
                    }
                }
            }
            for j in 0..g {
                let b = &bs[(t + j) * len..(t + j + 1) * len];
                let mut s: f32 = acc[j].iter().sum();
                for q in chunks * 8..len {
                    s += a[q] * b[q];
                }
                out[t + j] = s;
            }
            t += g;
        }
    }
}

multiversion! {
    /// `out[0] = a · b` with four interleaved accumulators.
    fn dot1(a: &[f32], b: &[f32], out: &mut [f32]) {
        let len = a.len();
        let chunks = len / 32;
        let mut acc = [[0f32; 8]; 4];
        for c in 0..chunks {
            for (j, accj) in acc.iter_mut().enumerate() {
                let o = c * 32 + j * 8;
                for l in 0..8 {
                    accj[l] += a[o + l] * b[o + l];
                }
            }
        }
        let mut s = 0f32;
        for accj in &acc {
            s += accj.iter().sum::<f32>();
        }
        for q in chunks * 32..len {
            s += a[q] * b[q];
        }
        out[0] = s;
    }
}

/// Dot product of two vectors (vectorised).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut out = [0f32; 1];
    dot1(a, b, &mut out);
    out[0]
}

multiversion! {
    /// One output row of a depthwise 3×3 convolution (padding 1).
    fn dw_row(x: &[f32], h: usize, w: usize, c: usize, oy: usize, ow: usize, stride: usize, wt: &[f32], b: &[f32], act: Act, out: &mut [f32]) {
        for ox in 0..ow {
            let o = &mut out[ox * c..(ox + 1) * c];
            o.copy_from_slice(b);
            for ky in 0..3 {
                let iy = (oy * stride + ky) as isize - 1;
                if iy < 0 || iy as usize >= h {
                    continue;
                }
                for kx in 0..3 {
                    let ix = (ox * stride + kx) as isize - 1;
                    if ix < 0 || ix as usize >= w {
                        continue;
                    }
                    let src = &x[(iy as usize * w + ix as usize) * c..(iy as usize * w + ix as usize + 1) * c];
                    let k = &wt[(ky * 3 + kx) * c..(ky * 3 + kx + 1) * c];
                    for j in 0..c {
                        o[j] += src[j] * k[j];
                    }
                }
            }
            for v in o.iter_mut() {
                *v = match act { Act::None => *v, Act::Relu => v.max(0.0), Act::Relu6 => v.clamp(0.0, 6.0) };
            }
        }
    }
}

/// Depthwise 3×3 convolution with padding 1.
#[derive(Clone, Debug)]
pub struct Depthwise {
    /// Channels.
    pub c: usize,
    /// Stride.
    pub stride: usize,
    /// Weights `[3, 3, c]`.
    pub w: Vec<f32>,
    /// Bias `[c]`.
    pub b: Vec<f32>,
    /// Activation.
    pub act: Act,
}

impl Depthwise {
    /// From PyTorch's `[c, 1, 3, 3]` weight.
    pub fn from_oihw(w: &[f32], b: Vec<f32>, c: usize, stride: usize, act: Act) -> Depthwise {
        let mut t = vec![0f32; 9 * c];
        for ch in 0..c {
            for k in 0..9 {
                t[k * c + ch] = w[ch * 9 + k];
            }
        }
        Depthwise {
            c,
            stride,
            w: t,
            b,
            act,
        }
    }

    /// # Shapes
    /// `[n, h, w, c]` → `[n, oh, ow, c]`
    pub fn forward(&self, x: &[f32], n: usize, h: usize, w: usize) -> (Vec<f32>, usize, usize) {
        let oh = (h + 2 - 3) / self.stride + 1;
        let ow = (w + 2 - 3) / self.stride + 1;
        let c = self.c;
        let mut out = buffer(n * oh * ow * c);
        out.par_chunks_mut(ow * c).enumerate().for_each(|(r, row)| {
            let (img, oy) = (r / oh, r % oh);
            let xi = &x[img * h * w * c..(img + 1) * h * w * c];
            dw_row(
                xi,
                h,
                w,
                c,
                oy,
                ow,
                self.stride,
                &self.w,
                &self.b,
                self.act,
                row,
            );
        });
        (out, oh, ow)
    }
}

/// Pooling kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// Maximum.
    Max,
    /// Mean over the window cells inside the image (padding excluded, like TF's `SAME`
    /// average pooling and PyTorch's `count_include_pad=False`).
    AvgExcludePad,
}

/// k×k pooling with stride and symmetric padding, NHWC.
#[allow(clippy::too_many_arguments)]
pub fn pool2d(
    x: &[f32],
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    k: usize,
    stride: usize,
    pad: usize,
    kind: Pool,
) -> (Vec<f32>, usize, usize) {
    let oh = (h + 2 * pad - k) / stride + 1;
    let ow = (w + 2 * pad - k) / stride + 1;
    let mut out = buffer(n * oh * ow * c);
    out.par_chunks_mut(ow * c).enumerate().for_each(|(r, row)| {
        let (img, oy) = (r / oh, r % oh);
        for ox in 0..ow {
            let o = &mut row[ox * c..(ox + 1) * c];
            o.fill(if kind == Pool::Max {
                f32::NEG_INFINITY
            } else {
                0.0
            });
            let mut count = 0usize;
            for ky in 0..k {
                let iy = (oy * stride + ky) as isize - pad as isize;
                if iy < 0 || iy as usize >= h {
                    continue;
                }
                for kx in 0..k {
                    let ix = (ox * stride + kx) as isize - pad as isize;
                    if ix < 0 || ix as usize >= w {
                        continue;
                    }
                    count += 1;
                    let s = ((img * h + iy as usize) * w + ix as usize) * c;
                    let src = &x[s..s + c];
                    match kind {
                        Pool::Max => o.iter_mut().zip(src).for_each(|(a, b)| *a = a.max(*b)),
                        Pool::AvgExcludePad => o.iter_mut().zip(src).for_each(|(a, b)| *a += *b),
                    }
                }
            }
            if kind == Pool::AvgExcludePad && count > 0 {
                let inv = 1.0 / count as f32;
                o.iter_mut().for_each(|a| *a *= inv);
            }
        }
    });
    (out, oh, ow)
}

/// Mean over H and W: `[n, h, w, c]` → `[n, c]`.
pub fn global_avg(x: &[f32], n: usize, hw: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * c];
    out.par_chunks_mut(c).enumerate().for_each(|(i, o)| {
        for p in 0..hw {
            let s = &x[(i * hw + p) * c..(i * hw + p + 1) * c];
            o.iter_mut().zip(s).for_each(|(a, b)| *a += *b);
        }
        let inv = 1.0 / hw as f32;
        o.iter_mut().for_each(|a| *a *= inv);
    });
    out
}

/// NCHW → NHWC.
pub fn nchw_to_nhwc(x: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = buffer(n * c * h * w);
    out.par_chunks_mut(h * w * c)
        .enumerate()
        .for_each(|(i, o)| {
            let src = &x[i * c * h * w..(i + 1) * c * h * w];
            for ch in 0..c {
                for p in 0..h * w {
                    o[p * c + ch] = src[ch * h * w + p];
                }
            }
        });
    out
}

/// Concatenate NHWC tensors along channels.
pub fn concat_channels(parts: &[(&[f32], usize)], pixels: usize) -> Vec<f32> {
    let total: usize = parts.iter().map(|p| p.1).sum();
    let mut out = buffer(pixels * total);
    out.par_chunks_mut(total).enumerate().for_each(|(p, o)| {
        let mut off = 0;
        for (x, c) in parts {
            o[off..off + c].copy_from_slice(&x[p * c..(p + 1) * c]);
            off += c;
        }
    });
    out
}

static POISON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Fill every [`output`] buffer with NaN (for tests: an element a kernel failed to write then
/// shows as NaN in the result instead of passing unnoticed).
pub fn poison_outputs(on: bool) {
    POISON.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// A buffer of `len` floats for a kernel to write **every element of before anything reads
/// it** — the output of a convolution, a norm, a copy — without first clearing it. Clearing
/// (`vec![0.0; len]`) was one serial `memset` per operation on the calling thread while the
/// others waited: 13% of a quickstart training step.
///
/// Callers in `cedm-nodes` pass it only to kernels whose every path writes the whole output
/// (each call site says which); the parity tests run with [`poison_outputs`] on, so an element
/// left unwritten would surface as NaN.
// The point of this function is not to fill the buffer (see above).
#[allow(clippy::uninit_vec)]
pub fn output(len: usize) -> Vec<f32> {
    if POISON.load(std::sync::atomic::Ordering::Relaxed) {
        return vec![f32::NAN; len];
    }
    let mut v: Vec<f32> = Vec::with_capacity(len);
    // SAFETY: the capacity is `len`; f32 has no invalid bit patterns, and the contract above
    // (every element written before it is read) is what the call sites uphold, so no
    // uninitialised value is ever read.
    unsafe { v.set_len(len) };
    v
}

/// Run `f` on a worker of rayon's global pool (directly when already on one) and return its
/// result; a panic in `f` resumes in the caller. A sequence of many short parallel operations
/// started from a pool thread splits work with the other workers directly, instead of
/// injecting each operation into the pool from outside and sleeping until it is done.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    let mut out = None;
    rayon::scope(|s| s.spawn(|_| out = Some(f())));
    match out {
        Some(r) => r,
        // rayon::scope re-raises a panic of the spawned job before returning.
        None => unreachable!("rayon::scope returned without running its job"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_conv(
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        cin: usize,
        wt_oihw: &[f32],
        cout: usize,
        k: usize,
        s: usize,
        p: usize,
    ) -> Vec<f32> {
        let oh = (h + 2 * p - k) / s + 1;
        let ow = (w + 2 * p - k) / s + 1;
        let mut out = vec![0f32; n * oh * ow * cout];
        for i in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for o in 0..cout {
                        let mut acc = 0f32;
                        for c in 0..cin {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy * s + ky) as isize - p as isize;
                                    let ix = (ox * s + kx) as isize - p as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w
                                    {
                                        acc += x
                                            [((i * h + iy as usize) * w + ix as usize) * cin + c]
                                            * wt_oihw[((o * cin + c) * k + ky) * k + kx];
                                    }
                                }
                            }
                        }
                        out[((i * oh + oy) * ow + ox) * cout + o] = acc;
                    }
                }
            }
        }
        out
    }

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::rng::Rng::new(seed);
        (0..len).map(|_| r.normal() as f32).collect()
    }

    #[test]
    fn dot_kernels() {
        let a = data(1283, 7);
        let bs = data(6 * 1283, 8);
        let mut out = vec![0f32; 6];
        dots(&a, &bs, &mut out);
        for t in 0..6 {
            let want: f64 = a
                .iter()
                .zip(&bs[t * 1283..(t + 1) * 1283])
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!((f64::from(out[t]) - want).abs() < 1e-3, "{t}");
            assert!((f64::from(dot(&a, &bs[t * 1283..(t + 1) * 1283])) - want).abs() < 1e-3);
        }
    }

    #[test]
    fn gemm_layouts() {
        let (m, k, n) = (5, 7, 3);
        let a = data(m * k, 1);
        let b = data(k * n, 2);
        let mut want = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
            }
        }
        let mut c = vec![0f32; m * n];
        gemm(m, k, n, &a, false, &b, false, &mut c, false);
        assert!(c.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-4));
        let at: Vec<f32> = (0..k * m).map(|idx| a[(idx % m) * k + idx / m]).collect();
        let bt: Vec<f32> = (0..n * k).map(|idx| b[(idx % k) * n + idx / k]).collect();
        let mut c2 = vec![1f32; m * n];
        gemm(m, k, n, &at, true, &bt, true, &mut c2, true);
        assert!(
            c2.iter()
                .zip(&want)
                .all(|(x, y)| (x - 1.0 - y).abs() < 1e-4)
        );
    }

    #[test]
    fn conv_matches_naive() {
        for (k, s, p, cin, cout) in [
            (3, 2, 1, 3, 8),
            (1, 1, 0, 5, 4),
            (5, 1, 2, 2, 3),
            (3, 1, 0, 4, 6),
        ] {
            let (n, h, w) = (2, 9, 7);
            let x = data(n * h * w * cin, 3);
            let wt = data(cout * cin * k * k, 4);
            let conv = Conv::from_oihw(
                &wt,
                vec![0.0; cout],
                cout,
                cin,
                k,
                k,
                (s, s),
                (p, p),
                Act::None,
            );
            let (got, _, _) = conv.forward(&x, n, h, w, None);
            let want = naive_conv(&x, n, h, w, cin, &wt, cout, k, s, p);
            let d = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(d < 1e-4, "k{k} s{s} p{p}: {d}");
        }
    }

    #[test]
    fn depthwise_matches_grouped_naive() {
        let (n, h, w, c) = (2, 6, 5, 4);
        let x = data(n * h * w * c, 5);
        let wt = data(c * 9, 6);
        for s in [1, 2] {
            let dw = Depthwise::from_oihw(&wt, vec![0.5; c], c, s, Act::Relu6);
            let (got, oh, ow) = dw.forward(&x, n, h, w);
            for ch in 0..c {
                // One channel as a 1→1 conv.
                let xc: Vec<f32> = (0..n * h * w).map(|p| x[p * c + ch]).collect();
                let want = naive_conv(&xc, n, h, w, 1, &wt[ch * 9..ch * 9 + 9], 1, 3, s, 1);
                for p in 0..n * oh * ow {
                    let g = got[p * c + ch];
                    assert!((g - (want[p] + 0.5).clamp(0.0, 6.0)).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn pools() {
        // 1 image, 3×3, 1 channel: values 0..9.
        let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let (m, oh, ow) = pool2d(&x, 1, 3, 3, 1, 3, 2, 0, Pool::Max);
        assert_eq!((oh, ow, m[0]), (1, 1, 8.0));
        let (a, _, _) = pool2d(&x, 1, 3, 3, 1, 3, 1, 1, Pool::AvgExcludePad);
        assert!((a[0] - (0.0 + 1.0 + 3.0 + 4.0) / 4.0).abs() < 1e-6);
        assert!((a[4] - 4.0).abs() < 1e-6);
    }
}
