//! From the engine's [`DeviceSpec`] (`cpu`, `wgpu:N`, `cuda:N`) to burn devices, the one-time
//! probe of a GPU before first use, and reading tensors back to the host with errors (not the
//! panics or empty vectors burn's conveniences give).

// The CUDA probe calls the driver's C API through libloading; it is the one place outside
// cedm-kernels with unsafe code.
#![allow(unsafe_code)]

use burn::tensor::{Device, Tensor};
use cedm_engine::{DeviceSpec, NodeError};

/// Where a node computes.
#[derive(Clone, Debug)]
pub enum Compute {
    /// The CPU: burn's `flex` backend, and the hand-written kernels of [`cedm_kernels::cpu`] where a
    /// model has them.
    Cpu(Device),
    /// A burn GPU device (wgpu or cuda).
    Gpu(Device, DeviceSpec),
}

impl Compute {
    /// The burn device.
    pub fn device(&self) -> &Device {
        match self {
            Compute::Cpu(d) | Compute::Gpu(d, _) => d,
        }
    }

    /// A short description for logs and records.
    pub fn describe(&self) -> String {
        match self {
            Compute::Cpu(_) => "cpu (flex)".into(),
            Compute::Gpu(_, s) => s.to_string(),
        }
    }
}

/// Resolve a device. GPU devices need cedm built with the `wgpu` or `cuda` feature, and are
/// probed once per process before first use (see [`probe`]).
///
/// # Errors
/// A backend this binary was built without, or a device that does not work.
pub fn compute(spec: DeviceSpec) -> Result<Compute, NodeError> {
    let c = resolve(spec)?;
    if let Compute::Gpu(dev, spec) = &c {
        probe(dev, spec)?;
    }
    Ok(c)
}

/// [`compute`] for the node's own device (`ctx.device()`), its memory watched: on a GPU the
/// device's reserved bytes are sampled with the node's progress, and the peak goes to the
/// record's stats (`gpu_peak_mb`), from which the local executor sizes the node's next request.
///
/// # Errors
/// As [`compute`].
pub fn compute_for(ctx: &mut cedm_engine::RunContext<'_>) -> Result<Compute, NodeError> {
    let c = compute(ctx.device())?;
    watch_memory(ctx, &c);
    Ok(c)
}

/// Watch a GPU device's memory for the record (see [`compute_for`]); nothing on the CPU.
pub fn watch_memory(ctx: &mut cedm_engine::RunContext<'_>, c: &Compute) {
    if let Compute::Gpu(dev, _) = c {
        let dev = dev.clone();
        ctx.watch_device_memory(move || dev.memory_pool_usage().map(|u| u.bytes_reserved));
    }
}

/// How long a device's first operation may take before the probe gives up. Shader compilation on
/// a software Vulkan driver (Mesa lavapipe) takes seconds, not minutes.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// Check that a GPU device works before a node uses it: for CUDA, that the driver library loads
/// and reports a device; then a tiny computation on the device, on a thread of its own, with a
/// timeout. burn's backends panic inside worker threads when no driver or adapter exists; this
/// turns that into an error naming the device, once per device and process.
///
/// # Errors
/// No driver, no adapter, a panic or a timeout during the first operation.
pub fn probe(dev: &Device, spec: &DeviceSpec) -> Result<(), NodeError> {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, OnceLock};
    static DONE: OnceLock<Mutex<BTreeMap<String, Result<(), String>>>> = OnceLock::new();
    let key = spec.to_string();
    let done = DONE.get_or_init(|| Mutex::new(BTreeMap::new()));
    let mut done = done
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let res = done
        .entry(key)
        .or_insert_with(|| probe_uncached(dev, spec))
        .clone();
    res.map_err(NodeError::msg)
}

fn probe_uncached(dev: &Device, spec: &DeviceSpec) -> Result<(), String> {
    if let DeviceSpec::Cuda(_) = spec {
        // Ask the driver directly: burn-cuda panics in a worker thread when it is missing.
        cuda_device_count().map_err(|e| format!("device `{spec}`: {e}"))?;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let d = dev.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("probe-{spec}"))
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let t = burn::tensor::Tensor::<1>::from_floats([1.0f32, 2.0, 3.0], &d);
                t.clone()
                    .mul(t)
                    .sum()
                    .into_data()
                    .try_to_vec::<f32>()
                    .map(|v| v[0])
                    .unwrap_or(f32::NAN)
            }));
            let _ = tx.send(r.map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_else(|| "panic".into())
            }));
        });
    if let Err(e) = spawned {
        return Err(format!(
            "device `{spec}`: cannot start the probe thread: {e}"
        ));
    }
    let hint = match spec {
        DeviceSpec::Cuda(_) => "check `nvidia-smi`, CUDA_VISIBLE_DEVICES and the device index",
        _ => {
            "check `vulkaninfo --summary` (Debian: vulkan-tools; a CPU fallback is mesa-vulkan-drivers) and the adapter index"
        }
    };
    match rx.recv_timeout(PROBE_TIMEOUT) {
        Ok(Ok(v)) if (v - 14.0).abs() < 1e-3 => Ok(()),
        Ok(Ok(v)) => Err(format!(
            "device `{spec}` computed 1²+2²+3² = {v}, not 14: the device or driver is broken"
        )),
        Ok(Err(msg)) => Err(format!("device `{spec}` does not work: {msg} ({hint})")),
        Err(_) => Err(format!(
            "device `{spec}` did not answer within {} s, or its backend failed on another thread ({hint})",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

/// Number of CUDA devices according to the driver (`libcuda.so.1`), loaded at run time.
fn cuda_device_count() -> Result<i32, String> {
    type Init = unsafe extern "C" fn(u32) -> i32;
    type Count = unsafe extern "C" fn(*mut i32) -> i32;
    // SAFETY: loading the NVIDIA driver library runs its initialisers; it is the library burn-cuda
    // itself loads.
    let lib = unsafe { libloading::Library::new("libcuda.so.1") }
        .map_err(|e| format!("no NVIDIA driver (libcuda.so.1 does not load: {e}); install the driver or use --device wgpu / cpu"))?;
    // SAFETY: the driver API's documented signatures: CUresult cuInit(unsigned int),
    // CUresult cuDeviceGetCount(int*).
    unsafe {
        let init: libloading::Symbol<Init> = lib
            .get(b"cuInit\0")
            .map_err(|e| format!("libcuda.so.1 has no cuInit: {e}"))?;
        let rc = init(0);
        if rc != 0 {
            return Err(format!(
                "cuInit failed with CUDA error {rc} (100 = no device, 35 = driver older than the runtime)"
            ));
        }
        let count: libloading::Symbol<Count> = lib
            .get(b"cuDeviceGetCount\0")
            .map_err(|e| format!("libcuda.so.1 has no cuDeviceGetCount: {e}"))?;
        let mut n = 0i32;
        let rc = count(&mut n);
        if rc != 0 || n == 0 {
            return Err(format!(
                "the NVIDIA driver reports no CUDA device (error {rc}, {n} devices)"
            ));
        }
        Ok(n)
    }
}

fn resolve(spec: DeviceSpec) -> Result<Compute, NodeError> {
    match spec {
        DeviceSpec::Cpu => Ok(Compute::Cpu(Device::flex())),
        #[cfg(feature = "wgpu")]
        DeviceSpec::Wgpu(i) => {
            let kind = if i == 0 {
                burn::tensor::DeviceKind::DefaultDevice
            } else {
                burn::tensor::DeviceKind::DiscreteGpu(i)
            };
            Ok(Compute::Gpu(Device::wgpu(kind), spec))
        }
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(i) => Ok(Compute::Gpu(Device::cuda(i), spec)),
        #[allow(unreachable_patterns)]
        other => Err(NodeError::msg(format!(
            "device `{other}` needs cedm built with the `{}` feature (cargo build --features {})",
            if matches!(other, DeviceSpec::Cuda(_)) {
                "cuda"
            } else {
                "wgpu"
            },
            if matches!(other, DeviceSpec::Cuda(_)) {
                "cuda"
            } else {
                "wgpu"
            }
        ))),
    }
}

/// A float tensor's values on the host, as f32 (whatever the tensor's float type). A failed
/// device read is an error naming the device, never an empty vector that could reach a
/// checkpoint or a published network.
///
/// # Errors
/// The device failed to hand the data back.
pub fn to_host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, NodeError> {
    let dev = t.device();
    t.try_into_vec_as::<f32>()
        .map_err(|e| NodeError::msg(format!("reading a tensor back from {dev:?}: {e}")))
}

/// An integer tensor's values on the host, as i64.
///
/// # Errors
/// The device failed to hand the data back.
pub fn to_host_int<const D: usize>(t: Tensor<D, burn::tensor::Int>) -> Result<Vec<i64>, NodeError> {
    let dev = t.device();
    t.try_into_vec_as::<i64>()
        .map_err(|e| NodeError::msg(format!("reading a tensor back from {dev:?}: {e}")))
}
