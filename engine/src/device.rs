//! Devices: `cpu`, `wgpu[:N]`, `cuda[:N]`, parsed once — from the YAML's `device:`, the
//! command line's `--device`, a kind's params — into a [`DeviceSpec`] that everything downstream
//! (the scheduler's GPU tokens, tasks, node kinds) uses as it is.

use std::fmt;
use std::str::FromStr;

/// A device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceSpec {
    /// The CPU backend.
    #[default]
    Cpu,
    /// burn's wgpu backend (Vulkan/Metal), adapter N.
    Wgpu(usize),
    /// burn's CUDA backend, device N.
    Cuda(usize),
}

/// Parse `cpu`, `wgpu`, `wgpu:N`, `cuda`, `cuda:N`.
///
/// # Errors
/// A message naming what was expected.
pub fn parse_device(s: &str) -> Result<DeviceSpec, String> {
    s.parse()
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<DeviceSpec, String> {
        let (name, idx) = match s.split_once(':') {
            Some((n, i)) => (n, Some(i)),
            None => (s, None),
        };
        let idx = match idx {
            Some(i) => i
                .parse::<usize>()
                .map_err(|_| format!("device `{s}`: `{i}` is not a device number"))?,
            None => 0,
        };
        match name {
            "cpu" if idx == 0 => Ok(DeviceSpec::Cpu),
            "wgpu" => Ok(DeviceSpec::Wgpu(idx)),
            "cuda" => Ok(DeviceSpec::Cuda(idx)),
            _ => Err(format!("unknown device `{s}`")),
        }
    }
}

impl DeviceSpec {
    /// Whether this is an accelerator (nodes needing GPUs take a token for it).
    pub fn is_gpu(&self) -> bool {
        !matches!(self, DeviceSpec::Cpu)
    }

    /// The device number (0 for the CPU).
    pub fn index(&self) -> usize {
        match self {
            DeviceSpec::Cpu => 0,
            DeviceSpec::Wgpu(i) | DeviceSpec::Cuda(i) => *i,
        }
    }

    /// The same backend, device `i` (the CPU stays the CPU).
    pub fn with_index(&self, i: usize) -> DeviceSpec {
        match self {
            DeviceSpec::Cpu => DeviceSpec::Cpu,
            DeviceSpec::Wgpu(_) => DeviceSpec::Wgpu(i),
            DeviceSpec::Cuda(_) => DeviceSpec::Cuda(i),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Wgpu(i) => write!(f, "wgpu:{i}"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

// As a string (`cuda:1`) in params, tasks and records.
impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DeviceSpec, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for DeviceSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "device".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "a device: cpu, wgpu, wgpu:N, cuda or cuda:N",
            "pattern": "^(cpu|wgpu(:[0-9]+)?|cuda(:[0-9]+)?)$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        for (s, d) in [
            ("cpu", DeviceSpec::Cpu),
            ("wgpu", DeviceSpec::Wgpu(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ] {
            assert_eq!(s.parse::<DeviceSpec>().unwrap(), d);
            let back: DeviceSpec =
                serde_json::from_value(serde_json::to_value(d).unwrap()).unwrap();
            assert_eq!(back, d);
        }
        assert_eq!(DeviceSpec::Cuda(3).to_string(), "cuda:3");
        assert!("cpu:1".parse::<DeviceSpec>().is_err());
        assert_eq!(
            "gpu".parse::<DeviceSpec>().unwrap_err(),
            "unknown device `gpu`"
        );
        assert!(serde_json::from_value::<DeviceSpec>(serde_json::json!("tpu")).is_err());
    }
}
