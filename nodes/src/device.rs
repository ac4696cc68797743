//! From the engine's device names (`cpu`, `wgpu:N`, `cuda:N`) to burn devices.

use burn::tensor::Device;
use cedm_engine::{DeviceSpec, NodeError, parse_device};

/// Where a node computes.
#[derive(Clone, Debug)]
pub enum Compute {
    /// The CPU: burn's `flex` backend, and the hand-written kernels of [`crate::cpu`] where a
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

/// Resolve a device name. GPU devices need cedm built with the `wgpu` or `cuda` feature.
///
/// # Errors
/// An unknown name, or a backend this binary was built without.
pub fn compute(name: &str) -> Result<Compute, NodeError> {
    let spec = parse_device(name).map_err(NodeError::msg)?;
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
