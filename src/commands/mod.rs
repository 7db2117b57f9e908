//! One module per subcommand. Each defines its flags (`clap::Args`) and a `run` function;
//! `main.rs` only parses and dispatches.

pub mod bench;
pub mod data;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod info;
pub mod predict;
pub mod report;
pub mod serve;
pub mod session;
pub mod train;

use crate::device::DeviceChoice;
use anyhow::Result;
use serde::Serialize;

/// Where a command computes: the --device and --threads flags every computing command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,

    /// libtorch intra-op threads (default: libtorch's choice, one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl DeviceArgs {
    /// Applies the thread setting and resolves the device on this machine.
    pub fn resolve(&self) -> Result<tch::Device> {
        crate::runtime::apply_threads(self.threads)?;
        let device = self.device.resolve()?;
        if device.is_cuda() {
            // The shapes never change within a run, so cuDNN's one-off search for the fastest
            // convolution algorithm pays for itself.
            tch::Cuda::cudnn_set_benchmark(true);
        }
        Ok(device)
    }
}

/// Prints a value as one line of JSON on stdout (the `--json` output of every command).
pub(crate) fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// clap value parser: a number of at least 1 (batch sizes, epochs, limits).
pub(crate) fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".to_owned()),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// clap value parser: a positive, finite number (learning rates).
pub(crate) fn positive_finite(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(_) => Err("must be a positive, finite number".to_owned()),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_parsers_reject_what_they_should() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(at_least_one("0").is_err());
        assert!(at_least_one("-1").is_err());
        assert!(at_least_one("x").is_err());
        assert_eq!(positive_finite("1e-3"), Ok(1e-3));
        for bad in ["0", "-1e-3", "NaN", "inf", "fast"] {
            assert!(positive_finite(bad).is_err(), "{bad}");
        }
    }
}
