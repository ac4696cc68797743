//! oneDNN, loaded at run time when its library is present: its single-precision GEMM
//! (`dnnl_sgemm`) for the products cedm runs one per core (TEMI's heads, the fallback
//! convolution's columns) — on the 2-core AVX-512 Xeon cedm is developed on, 15–40% faster than
//! the `gemm` crate at those sizes — and its convolution primitives ([`conv`]), about twice as
//! fast as im2col + GEMM on small feature maps (docs/performance.md has the tables). `scripts/fetch_assets.sh` fetches
//! it (PyPI's `onednn-cpu-gomp` 2023.2.0 wheel = oneDNN 3.2, sha256-pinned; it needs only
//! libgomp) into `assets/onednn/`; without it everything stays on the `gemm` crate.
//!
//! Where: `CEDM_DNNL=/path/to/libdnnl.so.3` picks a library, `CEDM_DNNL=off` disables it;
//! otherwise `onednn/lib/libdnnl.so.3` under `$CEDM_ASSETS` (default: this checkout's `assets/`),
//! then the loader's search path.
//! Every call runs on the calling thread only (OpenMP's thread count is set to 1 on each thread
//! that calls in): cedm's own rayon pool does the parallelism, so there is one pool and
//! results do not depend on the number of threads.

use std::ffi::c_char;

pub mod api;
pub mod conv;

thread_local! {
    static TEAM: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

/// Make the oneDNN calls this thread makes use `n` threads (OpenMP's team size for the
/// regions this thread starts).
pub(crate) fn team(n: usize) {
    let n = n.clamp(1, i32::MAX as usize) as i32;
    if TEAM.get() == n {
        return;
    }
    if let Some(a) = api::get() {
        // SAFETY: sets this thread's OpenMP team size for the regions it starts.
        unsafe { (a.omp_set_num_threads)(n) };
        TEAM.set(n);
    }
}

/// Make oneDNN calls from this thread single-threaded.
pub(crate) fn serial() {
    team(1);
}

/// oneDNN, if it was found.
pub fn get() -> Option<&'static api::Api> {
    api::get()
}

/// What GEMMs and convolutions run on (for reports).
pub fn describe() -> String {
    match get() {
        Some(d) => format!("oneDNN ({})", d.path),
        None => "gemm crate (oneDNN not found)".into(),
    }
}

/// One operand: a matrix whose element (i, j) is at `i·rs + j·cs`, as oneDNN's (transpose,
/// leading dimension) when one of the strides is 1.
fn operand(rs: isize, cs: isize) -> Option<(c_char, i64)> {
    if cs == 1 && rs >= 1 {
        Some((b'N' as c_char, rs as i64))
    } else if rs == 1 && cs >= 1 {
        Some((b'T' as c_char, cs as i64))
    } else {
        None
    }
}

/// `c (+)= a·b` on this thread through oneDNN: `a` m×k, `b` k×n, `c` m×n, each at its strides
/// (element (i, j) at `i·rs + j·cs`; c's column stride 1). Returns false, doing nothing, when
/// oneDNN is not loaded, the strides are not expressible (neither stride 1) or it reports an
/// error.
///
/// # Safety
/// Every element the strides reach must be in bounds of its allocation; c must not overlap a
/// or b, nor anything another thread uses meanwhile.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
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
    let Some(api) = get() else { return false };
    let (Some((ta, lda)), Some((tb, ldb))) = (operand(a_rs, a_cs), operand(b_rs, b_cs)) else {
        return false;
    };
    if m == 0 || n == 0 || k == 0 || c_rs < n as isize {
        return false;
    }
    // Leading dimensions must be at least the stored row length.
    if lda
        < if ta == b'N' as c_char {
            k as i64
        } else {
            m as i64
        }
        || ldb
            < if tb == b'N' as c_char {
                n as i64
            } else {
                k as i64
            }
    {
        return false;
    }
    serial();
    // SAFETY: the caller guarantees the bounds and exclusivity; the leading dimensions were
    // checked against the shapes above. With beta = 0, C is written, not read.
    let status = unsafe {
        (api.sgemm)(
            ta,
            tb,
            m as i64,
            n as i64,
            k as i64,
            1.0,
            a,
            lda,
            b,
            ldb,
            if accumulate { 1.0 } else { 0.0 },
            c,
            c_rs as i64,
        )
    };
    api::check(status)
}

/// Whether a product this size goes to oneDNN (above a few thousand multiply-adds its kernels
/// win).
pub fn worth_it(m: usize, k: usize, n: usize) -> bool {
    m * k * n >= 4096
}
