//! `mnist-cnn export`: a checkpoint as safetensors, TorchScript, npz or ONNX (one model or an
//! averaging ensemble), for Python and other tools.

use super::values;
use crate::choice::Choice;
use crate::io::checkpoint;
use crate::io::export::{self, ExportFormat};
use crate::io::inputs::Inputs;
use crate::io::{onnx, run_folder};
use anyhow::{ensure, Context, Result};
use std::path::PathBuf;
use tch::Device;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The checkpoint to export (a run folder, a `.ot` or a `.safetensors`). With `--format
    /// onnx`, given several times, the models make one graph that averages their probabilities.
    #[arg(long = "model", value_name = "PATH", required = true)]
    pub models: Vec<PathBuf>,

    /// safetensors and npz carry the PyTorch state-dict names (conv1.weight, …, fc.bias);
    /// torchscript is a traced module for inference that `torch.jit.load` runs on its own.
    #[arg(long, value_parser = values::choice::<ExportFormat>())]
    pub format: ExportFormat,

    /// The file to write (replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    Inputs::new()
        .checkpoints(&args.models)
        .refuse(&args.out, "--out")?;
    ensure!(
        args.models.len() == 1 || args.format == ExportFormat::Onnx,
        "several --model make an ensemble, which only --format onnx can hold (one graph); \
         export the models one by one for {}",
        args.format.name()
    );
    // Loaded (and traced) on the CPU, so the files run anywhere.
    let mut members = args
        .models
        .iter()
        .map(|path| {
            checkpoint::load(path, Device::Cpu)
                .with_context(|| format!("--model {}", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let written = if args.format == ExportFormat::Onnx {
        export::export_onnx(&members, &describe(&args.models)?, &args.out)
    } else {
        export::export(&mut members[0], args.format, &args.out)
    };
    written.with_context(|| format!("--out {}", args.out.display()))?;
    println!("{}", args.out.display());
    Ok(())
}

/// The ONNX metadata a single run's model.ot brings: its test accuracy from the run's
/// config.json (best.ot and other checkpoints are not what that figure measured).
fn describe(models: &[PathBuf]) -> Result<onnx::Description> {
    let [model] = models else {
        return Ok(onnx::Description::default());
    };
    if model
        .file_name()
        .is_none_or(|name| name != run_folder::MODEL_FILE)
    {
        return Ok(onnx::Description::default());
    }
    let config = run_folder::config_beside(model)?;
    Ok(onnx::Description {
        test_accuracy: config
            .and_then(|c| c.final_metrics)
            .and_then(|m| m.scores.test_accuracy),
    })
}
