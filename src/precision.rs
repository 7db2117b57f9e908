//! The precision the network computes in: fp32, or mixed precision as PyTorch's autocast defines
//! it. Under bf16 or fp16 the convolutions and linear layers run in the low precision (autocast
//! casts their inputs and weights, and caches the weights' casts for one forward pass); the
//! weights, their gradients, the optimizer state, batch-norm statistics, the loss and the
//! softmax stay fp32, since the network's logits are cast back to fp32 before they leave it.
//!
//! tch 0.24 binds libtorch's autocast for CUDA only and without a dtype, so the two calls it
//! lacks live in `src/torch_shim.cpp`, which build.rs compiles against libtorch's headers.
//! [`Autocast`] turns autocast on for its lifetime on the current thread (libtorch keeps it per
//! thread).

use crate::choice::{declare_choice, Choice};
use anyhow::{bail, Result};
use serde::Serialize;
use tch::Device;

declare_choice! {
    /// The precision of the convolutions and linear layers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Precision {
        #[default]
        Fp32 = "fp32":
            "Everything in float32",
        Bf16 = "bf16":
            "Convolutions and linear layers in bfloat16 (autocast), weights and loss in \
            float32",
        Fp16 = "fp16":
            "Convolutions and linear layers in float16 (autocast) with a dynamic loss scale; \
            CUDA only",
    }
}

impl Precision {
    /// Checks that `device` can compute in this precision.
    pub fn check(self, device: Device) -> Result<()> {
        if self == Self::Fp16 && !device.is_cuda() {
            bail!(
                "--precision fp16 needs a CUDA device (libtorch's CPU kernels for float16 are \
                 slow and its loss scaling is a GPU practice); on the CPU use bf16"
            );
        }
        Ok(())
    }

    /// Checks that a run recorded in this precision can continue on `device`: as
    /// [`Precision::check`], except that an fp16 run interrupted on a GPU may be finished on
    /// the CPU (autocast's float16 on the CPU, with the run's loss scale), slowly, and says so.
    pub fn check_continuing(self, device: Device) -> Result<()> {
        if self == Self::Fp16 && !device.is_cuda() {
            tracing::warn!(
                "continuing an fp16 run on the CPU: libtorch's float16 kernels are slow here, \
                 and the loss scale carries on as saved"
            );
            return Ok(());
        }
        self.check(device)
    }
}

/// What `--precision` asks for: a precision, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecisionRequest {
    Exactly(Precision),
    /// bf16 where it pays on this machine (see [`auto`]).
    Auto,
}

impl Choice for PrecisionRequest {
    const ALL: &'static [Self] = &[
        Self::Exactly(Precision::Fp32),
        Self::Exactly(Precision::Bf16),
        Self::Exactly(Precision::Fp16),
        Self::Auto,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Exactly(precision) => precision.name(),
            Self::Auto => "auto",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::Exactly(precision) => precision.help(),
            Self::Auto => {
                "bf16 where it was measured to pay (CPUs with AMX), else fp32 (CUDA included: \
                 bf16 trains these small networks slower there); says what it picked and why"
            }
        }
    }
}

impl PrecisionRequest {
    /// The precision to compute in on `device`, checked against it; `auto` logs its choice.
    pub fn resolve(self, device: Device) -> Result<Precision> {
        let precision = match self {
            Self::Exactly(precision) => precision,
            Self::Auto => {
                let choice = auto(device);
                tracing::info!("--precision auto: {} ({})", choice.precision, choice.reason);
                choice.precision
            }
        };
        precision.check(device)?;
        Ok(precision)
    }
}

/// What `--precision auto` picked, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AutoChoice {
    pub precision: Precision,
    pub reason: String,
}

/// `--precision auto` on `device`: bf16 where it has been measured to pay, fp32 elsewhere. It
/// pays on CPUs with AMX (oneDNN's bf16 tiles): on a 2-core Xeon with AMX, bf16 trained the
/// tutorial network 2.17× as fast as fp32 at batch 128 and 1.40× at batch 32, and the fast
/// recipe reached the same accuracy (docs/performance.md). On CUDA it is fp32 for these
/// networks: on an NVIDIA H200, bf16 trained the tutorial network at 0.77× fp32's speed at batch
/// 128 (63k against 82k images/s) and 0.96× at batch 1024, and fp16 at 0.55×; the networks are
/// too small for tensor cores to outweigh the casts. AVX512-BF16 without AMX (Zen 4) keeps fp32: it has
/// not been measured to pay here.
pub fn auto(device: Device) -> AutoChoice {
    let pick = |precision, reason: String| AutoChoice { precision, reason };
    if let Device::Cuda(ordinal) = device {
        let capability = match crate::machine::cuda_compute_capability(ordinal) {
            Some((major, minor)) => format!("compute capability {major}.{minor}"),
            None => "compute capability not reported".to_owned(),
        };
        return pick(
            Precision::Fp32,
            format!(
                "CUDA device {ordinal} ({capability}): bf16 was measured slower than fp32 for \
                 these networks on CUDA (0.77x at batch 128 on an H200), so auto keeps fp32 \
                 there; --precision bf16 or fp16 still ask for them"
            ),
        );
    }
    let cpu = crate::machine::CpuFeatures::detect();
    if cpu.amx_bf16 {
        pick(
            Precision::Bf16,
            format!("the CPU has AMX-BF16 ({})", cpu.describe()),
        )
    } else if cpu.avx512_bf16 {
        pick(
            Precision::Fp32,
            "the CPU has AVX512-BF16 but no AMX: bf16 is not measured to pay there".to_owned(),
        )
    } else {
        pick(
            Precision::Fp32,
            format!("the CPU has no bf16 instructions ({})", cpu.describe()),
        )
    }
}

extern "C" {
    fn mnist_cnn_autocast_enter(cuda: i32, bf16: i32) -> i32;
    fn mnist_cnn_autocast_exit(cuda: i32, saved: i32);
}

/// Autocast turned on for the current thread and device until dropped (then the previous state
/// is back, and the weights' casts are dropped once the outermost guard goes).
pub struct Autocast {
    cuda: i32,
    saved: i32,
}

impl Autocast {
    /// Turns autocast on in `precision` for `device`; `None` for fp32, which needs none.
    pub fn enter(precision: Precision, device: Device) -> Option<Self> {
        let bf16 = match precision {
            Precision::Fp32 => return None,
            Precision::Bf16 => 1,
            Precision::Fp16 => 0,
        };
        let cuda = i32::from(device.is_cuda());
        // SAFETY: plain integers in and out; the shim catches every C++ exception.
        let saved = unsafe { mnist_cnn_autocast_enter(cuda, bf16) };
        assert!(saved >= 0, "libtorch refused to turn autocast on");
        Some(Self { cuda, saved })
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // SAFETY: as in `enter`; `saved` is what `enter` returned.
        unsafe { mnist_cnn_autocast_exit(self.cuda, self.saved) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn autocast_runs_matrix_products_in_bf16_on_the_cpu_and_restores_fp32() {
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        {
            let _on = Autocast::enter(Precision::Bf16, Device::Cpu);
            assert_eq!(a.mm(&a).kind(), Kind::BFloat16);
            // Nesting keeps it on.
            {
                let _inner = Autocast::enter(Precision::Bf16, Device::Cpu);
            }
            assert_eq!(a.mm(&a).kind(), Kind::BFloat16);
        }
        assert_eq!(a.mm(&a).kind(), Kind::Float);
        assert!(Autocast::enter(Precision::Fp32, Device::Cpu).is_none());
    }

    #[test]
    fn fp16_is_refused_on_the_cpu() {
        assert!(Precision::Fp16.check(Device::Cpu).is_err());
        assert!(Precision::Bf16.check(Device::Cpu).is_ok());
    }
}
