//! Choosing where to compute: `auto`, `cpu`, `cuda` or `cuda:N`.

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use tch::{Cuda, Device};

/// The `--device` flag, before it is checked against the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA device 0 when CUDA is available, otherwise the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(index) => index
                    .parse()
                    .map(Self::Cuda)
                    .with_context(|| format!("{index:?} is not a device number")),
                None => bail!("unknown device {s:?}: expected auto, cpu, cuda or cuda:N"),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceChoice {
    /// The device to use on this machine; asking for CUDA where there is none is an error, not
    /// a silent fall-back to the CPU.
    pub fn resolve(self) -> Result<Device> {
        match self {
            Self::Auto if Cuda::is_available() => Ok(Device::Cuda(0)),
            Self::Auto | Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(index) => {
                let count = Cuda::device_count();
                ensure!(
                    count > 0,
                    "--device {self}: CUDA is not available on this machine (libtorch sees no GPU); use --device cpu"
                );
                ensure!(
                    (index as i64) < count,
                    "--device {self}: this machine has {count} CUDA device(s), numbered from 0"
                );
                Ok(Device::Cuda(index))
            }
        }
    }
}

impl From<Device> for DeviceChoice {
    /// The choice that names exactly `device` (a device other than the CPU and CUDA, which
    /// this tool never computes on, becomes auto).
    fn from(device: Device) -> Self {
        match device {
            Device::Cpu => Self::Cpu,
            Device::Cuda(index) => Self::Cuda(index),
            _ => Self::Auto,
        }
    }
}

/// A device as users write it and `config.json` records it: `cpu`, `cuda:0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceName(pub Device);

impl DeviceName {
    pub fn is_cpu(self) -> bool {
        self.0 == Device::Cpu
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
            other => write!(f, "{}", format!("{other:?}").to_lowercase()),
        }
    }
}

impl FromStr for DeviceName {
    type Err = anyhow::Error;

    /// `cpu` or `cuda:N`, as [`DeviceName`]'s `Display` writes them.
    fn from_str(s: &str) -> Result<Self> {
        match s.parse::<DeviceChoice>()? {
            DeviceChoice::Cpu => Ok(Self(Device::Cpu)),
            DeviceChoice::Cuda(index) => Ok(Self(Device::Cuda(index))),
            DeviceChoice::Auto => bail!("\"auto\" is a choice, not a device"),
        }
    }
}

impl Serialize for DeviceName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert_eq!("CPU".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!(
            "cuda".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(0)
        );
        assert_eq!(
            "cuda:3".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(3)
        );
    }

    #[test]
    fn rejects_unknown_devices_with_the_flag_named() {
        let err = "tpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err.contains("unknown device \"tpu\""), "{err}");
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        assert!("cuda:-1".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn cpu_always_resolves() {
        assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), Device::Cpu);
    }

    #[test]
    fn device_names_round_trip_through_json() {
        for device in [Device::Cpu, Device::Cuda(1)] {
            let json = serde_json::to_string(&DeviceName(device)).unwrap();
            assert_eq!(serde_json::from_str::<DeviceName>(&json).unwrap().0, device);
        }
        assert_eq!(DeviceName(Device::Cuda(0)).to_string(), "cuda:0");
        assert!(serde_json::from_str::<DeviceName>("\"auto\"").is_err());
        assert!(serde_json::from_str::<DeviceName>("\"tpu\"").is_err());
    }

    #[test]
    fn cuda_without_a_gpu_is_a_clear_error() {
        if Cuda::is_available() {
            return; // only meaningful where there is no GPU, as on CI
        }
        let err = DeviceChoice::Cuda(0).resolve().unwrap_err().to_string();
        assert!(err.contains("CUDA is not available"), "{err}");
        assert_eq!(DeviceChoice::Auto.resolve().unwrap(), Device::Cpu);
    }
}
