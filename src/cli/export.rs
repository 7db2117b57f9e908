//! `mnist-cnn export`: a checkpoint as safetensors, TorchScript or npz, for Python and other
//! tools.

use super::values;
use crate::fsutil;
use crate::io::checkpoint;
use crate::io::export::{self, ExportFormat};
use anyhow::{Context, Result};
use std::path::PathBuf;
use tch::Device;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The checkpoint to export (`.ot` or `.safetensors`).
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,

    /// safetensors and npz carry the PyTorch state-dict names (conv1.weight, …, fc.bias);
    /// torchscript is a traced module for inference that `torch.jit.load` runs on its own.
    #[arg(long, value_parser = values::choice::<ExportFormat>())]
    pub format: ExportFormat,

    /// The file to write (replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    fsutil::refuse_overwriting(&args.out, "--out", &[&args.model])?;
    // Traced on the CPU, so the TorchScript file runs anywhere.
    let mut model = checkpoint::load(&args.model, Device::Cpu)
        .with_context(|| format!("--model {}", args.model.display()))?;
    export::export(&mut model, args.format, &args.out)
        .with_context(|| format!("--out {}", args.out.display()))?;
    println!("{}", args.out.display());
    Ok(())
}
