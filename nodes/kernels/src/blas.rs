//! An optional system BLAS, loaded at run time: when `libopenblas.so.0` (Debian's
//! `libopenblas0-pthread`) is present, large GEMMs go to its `cblas_sgemm` / `cblas_dgemm`,
//! which run near the CPU's peak (about 1.5× the pure-Rust `gemm` crate on an AVX-512 EPYC);
//! otherwise everything stays on the `gemm` crate. Nothing is linked at build time, so cedm
//! builds and runs the same without it.
//!
//! `CEDM_BLAS=off` disables it; `CEDM_BLAS=/path/to/libopenblas.so` picks a library.
//! OpenBLAS runs single-threaded (`openblas_set_num_threads(1)`); cedm splits each product's
//! rows across rayon's pool itself, so there is one thread pool and no spinning OpenBLAS
//! threads competing with it.

use std::ffi::c_int;
use std::sync::OnceLock;

use rayon::prelude::*;

/// CBLAS `?gemm`: (order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc).
type Gemm<T> = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    T,
    *const T,
    c_int,
    *const T,
    c_int,
    T,
    *mut T,
    c_int,
);

mod sealed {
    /// Only f32 and f64 are elements: the entry points below are typed for exactly these.
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// Element types with a CBLAS GEMM (f32: `sgemm`, f64: `dgemm`), shared by the GEMMs of
/// [`crate::cpu::gemm`]. Sealed: the FFI signatures are only right for these two.
pub trait Element: sealed::Sealed + Copy + Send + Sync + 'static {
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// This type's entry point of the library.
    fn entry(lib: &Blas) -> Gemm<Self>;
    /// `c (+)= a·b` through oneDNN on this thread when it is loaded and takes this type
    /// (f32); false when it did nothing. Strided operands as [`crate::dnnl::Dnnl::sgemm`].
    ///
    /// # Safety
    /// As [`crate::dnnl::sgemm`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn dnnl(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        a_rs: isize,
        a_cs: isize,
        b: *const Self,
        b_rs: isize,
        b_cs: isize,
        c: *mut Self,
        c_rs: isize,
        accumulate: bool,
    ) -> bool;
}

impl Element for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    fn entry(lib: &Blas) -> Gemm<f32> {
        lib.sgemm
    }
    unsafe fn dnnl(
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
    ) -> bool {
        // SAFETY: the caller upholds sgemm's contract.
        unsafe { crate::dnnl::sgemm(m, k, n, a, a_rs, a_cs, b, b_rs, b_cs, c, c_rs, accumulate) }
    }
}

impl Element for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    fn entry(lib: &Blas) -> Gemm<f64> {
        lib.dgemm
    }
    unsafe fn dnnl(
        _: usize,
        _: usize,
        _: usize,
        _: *const f64,
        _: isize,
        _: isize,
        _: *const f64,
        _: isize,
        _: isize,
        _: *mut f64,
        _: isize,
        _: bool,
    ) -> bool {
        false
    }
}

/// The loaded library's entry points.
pub struct Blas {
    sgemm: Gemm<f32>,
    dgemm: Gemm<f64>,
    name: String,
    _lib: libloading::Library,
}

static BLAS: OnceLock<Option<Blas>> = OnceLock::new();

fn load() -> Option<Blas> {
    let choice = std::env::var("CEDM_BLAS").unwrap_or_default();
    if matches!(choice.as_str(), "off" | "0" | "none") {
        return None;
    }
    let candidates: Vec<String> = if choice.is_empty() {
        vec!["libopenblas.so.0".into(), "libopenblas.so".into()]
    } else {
        vec![choice]
    };
    for name in candidates {
        // SAFETY: loading a shared library runs its initialisers; OpenBLAS's only set up its
        // thread pool and CPU detection.
        let Ok(lib) = (unsafe { libloading::Library::new(&name) }) else {
            continue;
        };
        // SAFETY: the symbols are the standard CBLAS ones with the signatures declared above.
        let syms = unsafe {
            let s = lib.get::<Gemm<f32>>(b"cblas_sgemm\0").map(|f| *f);
            let d = lib.get::<Gemm<f64>>(b"cblas_dgemm\0").map(|f| *f);
            if let Ok(set) = lib.get::<unsafe extern "C" fn(c_int)>(b"openblas_set_num_threads\0") {
                set(1);
            }
            (s, d)
        };
        if let (Ok(sgemm), Ok(dgemm)) = syms {
            return Some(Blas {
                sgemm,
                dgemm,
                name,
                _lib: lib,
            });
        }
    }
    None
}

/// The system BLAS, if one was found.
pub fn get() -> Option<&'static Blas> {
    BLAS.get_or_init(load).as_ref()
}

/// Which GEMM large products use (for logs and benchmark reports).
pub fn describe() -> String {
    match get() {
        Some(b) => format!("{} for large GEMMs", b.name),
        None => "gemm crate".into(),
    }
}

/// Whether a product of this shape should go to the system BLAS: large and not too
/// thin (the `gemm` crate is as fast on small products).
pub fn worth_it(m: usize, k: usize, n: usize) -> bool {
    k >= 128 && n >= 64 && m >= 128 && m * k * n >= (1 << 24)
}

/// Rows per slab: one slab per rayon thread (at least 64 rows).
fn slab_rows(m: usize) -> usize {
    m.div_ceil(rayon::current_num_threads().max(1)).max(64)
}

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

fn dims(m: usize, k: usize, n: usize) -> Option<(c_int, c_int, c_int)> {
    Some((
        c_int::try_from(m).ok()?,
        c_int::try_from(k).ok()?,
        c_int::try_from(n).ok()?,
    ))
}

impl Blas {
    /// `c = a·b (+ c)`, row-major, the same contract as [`crate::cpu::gemm`], in slabs of rows
    /// over rayon's threads. Returns false (doing nothing) when a dimension does not fit the C
    /// interface.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm<T: Element>(
        &self,
        m: usize,
        k: usize,
        n: usize,
        a: &[T],
        a_t: bool,
        b: &[T],
        b_t: bool,
        c: &mut [T],
        accumulate: bool,
    ) -> bool {
        let Some((mi, ki, ni)) = dims(m, k, n) else {
            return false;
        };
        assert!(
            a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
            "blas gemm: buffers too small"
        );
        let f = T::entry(self);
        let (ta, lda) = if a_t { (TRANS, mi) } else { (NO_TRANS, ki) };
        let (tb, ldb) = if b_t { (TRANS, ki) } else { (NO_TRANS, ni) };
        let beta = if accumulate { T::ONE } else { T::ZERO };
        let rows = slab_rows(m);
        c[..m * n]
            .par_chunks_mut(rows * n)
            .enumerate()
            .for_each(|(i, cs)| {
                let r0 = i * rows;
                let mr = cs.len() / n;
                // Row r of a starts at r·k (stored m×k) or at r (stored k×m, leading dimension m).
                let a0 = if a_t { r0 } else { r0 * k };
                // SAFETY: the leading dimensions and the assert above bound every access: rows
                // r0..r0+mr of a and of c, all of b; c's slabs are disjoint.
                unsafe {
                    f(
                        ROW_MAJOR,
                        ta,
                        tb,
                        mr as c_int,
                        ni,
                        ki,
                        T::ONE,
                        a[a0..].as_ptr(),
                        lda,
                        b.as_ptr(),
                        ldb,
                        beta,
                        cs.as_mut_ptr(),
                        ni,
                    )
                };
            });
        true
    }
}
