//! oneDNN's single-precision GEMM (`dnnl_sgemm`), loaded at run time when its library is
//! present, for the small and medium products cedm runs one per core (convolution columns,
//! TEMI's heads): on the 2-core AVX-512 Xeon cedm is developed on it runs those 15–40% faster
//! than the `gemm` crate (docs/performance.md has the table). `scripts/fetch_assets.sh` fetches
//! it (PyPI's `onednn-cpu-gomp` 2023.2.0 wheel = oneDNN 3.2, sha256-pinned; it needs only
//! libgomp) into `assets/onednn/`; without it everything stays on the `gemm` crate.
//!
//! Where: `CEDM_DNNL=/path/to/libdnnl.so.3` picks a library, `CEDM_DNNL=off` disables it;
//! otherwise `onednn/lib/libdnnl.so.3` under `$CEDM_ASSETS` (default: this checkout's `assets/`),
//! then the loader's search path.
//! Every call runs on the calling thread only (OpenMP's thread count is set to 1 on each thread
//! that calls in): cedm's own rayon pool does the parallelism, so there is one pool and
//! results do not depend on the number of threads.

use std::ffi::{c_char, c_int};
use std::sync::OnceLock;

/// `dnnl_sgemm(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)`, row-major;
/// returns a `dnnl_status_t` (0 = success).
type Sgemm = unsafe extern "C" fn(
    c_char,
    c_char,
    i64,
    i64,
    i64,
    f32,
    *const f32,
    i64,
    *const f32,
    i64,
    f32,
    *mut f32,
    i64,
) -> c_int;

/// The loaded library.
pub struct Dnnl {
    sgemm: Sgemm,
    omp_set_num_threads: unsafe extern "C" fn(c_int),
    path: String,
    _gomp: libloading::Library,
    _lib: libloading::Library,
}

static DNNL: OnceLock<Option<Dnnl>> = OnceLock::new();

thread_local! {
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn candidates() -> Vec<String> {
    let choice = std::env::var("CEDM_DNNL").unwrap_or_default();
    if matches!(choice.as_str(), "off" | "0" | "none") {
        return Vec::new();
    }
    if !choice.is_empty() {
        return vec![choice];
    }
    let assets = std::env::var_os("CEDM_ASSETS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets"));
    vec![
        assets
            .join("onednn/lib/libdnnl.so.3")
            .to_string_lossy()
            .into_owned(),
        "libdnnl.so.3".into(),
    ]
}

fn load() -> Option<Dnnl> {
    for path in candidates() {
        if path.contains('/') && !std::path::Path::new(&path).is_file() {
            continue;
        }
        // SAFETY: loading oneDNN runs its static initialisers (CPU detection, no threads);
        // libgomp is its dependency, already loaded by then, so opening it again only returns
        // the same handle.
        let Ok(lib) = (unsafe { libloading::Library::new(&path) }) else {
            continue;
        };
        // SAFETY: as above.
        let Ok(gomp) = (unsafe { libloading::Library::new("libgomp.so.1") }) else {
            continue;
        };
        // SAFETY: `dnnl_sgemm` and `omp_set_num_threads` have the C signatures declared here
        // (oneDNN 3.x `dnnl.h`, OpenMP 4.5).
        let syms = unsafe {
            (
                lib.get::<Sgemm>(b"dnnl_sgemm\0").map(|f| *f),
                gomp.get::<unsafe extern "C" fn(c_int)>(b"omp_set_num_threads\0")
                    .map(|f| *f),
            )
        };
        if let (Ok(sgemm), Ok(omp_set_num_threads)) = syms {
            return Some(Dnnl {
                sgemm,
                omp_set_num_threads,
                path,
                _gomp: gomp,
                _lib: lib,
            });
        }
    }
    None
}

/// oneDNN, if it was found.
pub fn get() -> Option<&'static Dnnl> {
    DNNL.get_or_init(load).as_ref()
}

/// What small GEMMs run on (for reports).
pub fn describe() -> String {
    match get() {
        Some(d) => format!("oneDNN sgemm ({})", d.path),
        None => "gemm crate".into(),
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

impl Dnnl {
    /// `c (+)= a·b` on this thread: `a` m×k, `b` k×n, `c` m×n, each at its strides (element
    /// (i, j) at `i·rs + j·cs`; c's column stride 1). Returns false, doing nothing, when the
    /// strides are not expressible (neither stride 1) or oneDNN reports an error.
    ///
    /// # Safety
    /// Every element the strides reach must be in bounds of its allocation; c must not
    /// overlap a or b, nor anything another thread uses meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn sgemm(
        &self,
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
        if !SERIAL.get() {
            // SAFETY: sets this thread's OpenMP team size for the regions it starts.
            unsafe { (self.omp_set_num_threads)(1) };
            SERIAL.set(true);
        }
        // SAFETY: the caller guarantees the bounds and exclusivity; the leading dimensions
        // were checked against the shapes above.
        let status = unsafe {
            (self.sgemm)(
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
        status == 0
    }
}

/// Whether a product this size goes to oneDNN (above a few thousand multiply-adds its lower
/// per-call cost no longer matters and its kernels win).
pub fn worth_it(m: usize, k: usize, n: usize) -> bool {
    m * k * n >= 4096
}
