//! The oneDNN C API entry points cedm uses, resolved from the library at run time
//! (signatures from oneDNN 3.2's `dnnl.h` / `dnnl_common.h`; handles are opaque pointers).

use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

/// An opaque oneDNN object (engine, stream, memory, descriptor, primitive, attributes).
pub type Handle = *mut c_void;

/// `dnnl_exec_arg_t`.
#[repr(C)]
pub struct ExecArg {
    /// `DNNL_ARG_*`.
    pub arg: c_int,
    /// The memory object.
    pub memory: Handle,
}

/// Whether a `dnnl_status_t` is `dnnl_success`.
pub fn check(status: c_int) -> bool {
    status == 0
}

type Dims = *const i64;

/// Resolved entry points.
#[allow(missing_docs)]
pub struct Api {
    pub sgemm: unsafe extern "C" fn(
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
    ) -> c_int,
    pub omp_set_num_threads: unsafe extern "C" fn(c_int),
    pub engine_create: unsafe extern "C" fn(*mut Handle, c_int, usize) -> c_int,
    pub stream_create: unsafe extern "C" fn(*mut Handle, Handle, u32) -> c_int,
    pub stream_wait: unsafe extern "C" fn(Handle) -> c_int,
    pub stream_destroy: unsafe extern "C" fn(Handle) -> c_int,
    pub md_create_with_tag: unsafe extern "C" fn(*mut Handle, c_int, Dims, c_int, c_int) -> c_int,
    pub md_destroy: unsafe extern "C" fn(Handle) -> c_int,
    pub md_get_size: unsafe extern "C" fn(Handle) -> usize,
    pub md_equal: unsafe extern "C" fn(Handle, Handle) -> c_int,
    pub attr_create: unsafe extern "C" fn(*mut Handle) -> c_int,
    pub attr_destroy: unsafe extern "C" fn(Handle) -> c_int,
    pub attr_set_scratchpad_mode: unsafe extern "C" fn(Handle, c_int) -> c_int,
    #[allow(clippy::type_complexity)]
    pub conv_fwd_pd_create: unsafe extern "C" fn(
        *mut Handle,
        Handle,
        c_int,
        c_int,
        Handle,
        Handle,
        Handle,
        Handle,
        Dims,
        Dims,
        Dims,
        Dims,
        Handle,
    ) -> c_int,
    #[allow(clippy::type_complexity)]
    pub conv_bwd_data_pd_create: unsafe extern "C" fn(
        *mut Handle,
        Handle,
        c_int,
        Handle,
        Handle,
        Handle,
        Dims,
        Dims,
        Dims,
        Dims,
        Handle,
        Handle,
    ) -> c_int,
    #[allow(clippy::type_complexity)]
    pub conv_bwd_weights_pd_create: unsafe extern "C" fn(
        *mut Handle,
        Handle,
        c_int,
        Handle,
        Handle,
        Handle,
        Handle,
        Dims,
        Dims,
        Dims,
        Dims,
        Handle,
        Handle,
    ) -> c_int,
    pub reorder_pd_create:
        unsafe extern "C" fn(*mut Handle, Handle, Handle, Handle, Handle, Handle) -> c_int,
    pub pd_query_md: unsafe extern "C" fn(Handle, c_int, c_int) -> Handle,
    pub pd_destroy: unsafe extern "C" fn(Handle) -> c_int,
    pub primitive_create: unsafe extern "C" fn(*mut Handle, Handle) -> c_int,
    pub primitive_execute: unsafe extern "C" fn(Handle, Handle, c_int, *const ExecArg) -> c_int,
    pub primitive_destroy: unsafe extern "C" fn(Handle) -> c_int,
    pub memory_create: unsafe extern "C" fn(*mut Handle, Handle, Handle, *mut c_void) -> c_int,
    pub memory_set_data_handle: unsafe extern "C" fn(Handle, *mut c_void) -> c_int,
    pub memory_destroy: unsafe extern "C" fn(Handle) -> c_int,
    /// Where the library was found.
    pub path: String,
    _gomp: libloading::Library,
    _lib: libloading::Library,
}

static API: OnceLock<Option<Api>> = OnceLock::new();

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

macro_rules! sym {
    ($lib:expr, $name:literal) => {
        // SAFETY: the symbol has the C signature of the field it is stored in (oneDNN 3.2's
        // headers; OpenMP 4.5 for omp_set_num_threads).
        match unsafe { $lib.get(concat!($name, "\0").as_bytes()) } {
            Ok(f) => *f,
            Err(_) => return None,
        }
    };
}

fn open(path: &str) -> Option<Api> {
    if path.contains('/') && !std::path::Path::new(path).is_file() {
        return None;
    }
    // SAFETY: loading oneDNN runs its static initialisers (CPU detection; no threads are
    // started until a primitive runs); libgomp is its dependency, already loaded by then, so
    // opening it again only returns the same handle.
    let lib = unsafe { libloading::Library::new(path) }.ok()?;
    // SAFETY: as above.
    let gomp = unsafe { libloading::Library::new("libgomp.so.1") }.ok()?;
    Some(Api {
        sgemm: sym!(lib, "dnnl_sgemm"),
        omp_set_num_threads: sym!(gomp, "omp_set_num_threads"),
        engine_create: sym!(lib, "dnnl_engine_create"),
        stream_create: sym!(lib, "dnnl_stream_create"),
        stream_wait: sym!(lib, "dnnl_stream_wait"),
        stream_destroy: sym!(lib, "dnnl_stream_destroy"),
        md_create_with_tag: sym!(lib, "dnnl_memory_desc_create_with_tag"),
        md_destroy: sym!(lib, "dnnl_memory_desc_destroy"),
        md_get_size: sym!(lib, "dnnl_memory_desc_get_size"),
        md_equal: sym!(lib, "dnnl_memory_desc_equal"),
        attr_create: sym!(lib, "dnnl_primitive_attr_create"),
        attr_destroy: sym!(lib, "dnnl_primitive_attr_destroy"),
        attr_set_scratchpad_mode: sym!(lib, "dnnl_primitive_attr_set_scratchpad_mode"),
        conv_fwd_pd_create: sym!(lib, "dnnl_convolution_forward_primitive_desc_create"),
        conv_bwd_data_pd_create: sym!(lib, "dnnl_convolution_backward_data_primitive_desc_create"),
        conv_bwd_weights_pd_create: sym!(
            lib,
            "dnnl_convolution_backward_weights_primitive_desc_create"
        ),
        reorder_pd_create: sym!(lib, "dnnl_reorder_primitive_desc_create"),
        pd_query_md: sym!(lib, "dnnl_primitive_desc_query_md"),
        pd_destroy: sym!(lib, "dnnl_primitive_desc_destroy"),
        primitive_create: sym!(lib, "dnnl_primitive_create"),
        primitive_execute: sym!(lib, "dnnl_primitive_execute"),
        primitive_destroy: sym!(lib, "dnnl_primitive_destroy"),
        memory_create: sym!(lib, "dnnl_memory_create"),
        memory_set_data_handle: sym!(lib, "dnnl_memory_set_data_handle"),
        memory_destroy: sym!(lib, "dnnl_memory_destroy"),
        path: path.to_string(),
        _gomp: gomp,
        _lib: lib,
    })
}

/// oneDNN, if it was found (loaded once).
pub fn get() -> Option<&'static Api> {
    API.get_or_init(|| candidates().iter().find_map(|p| open(p)))
        .as_ref()
}
