//! The flags several commands share, and how they become the library's options: data specs,
//! run plans and devices (the training settings' flags are [`super::settings_flags`]).

use super::values;
use crate::data::dataset::{self, DataSource, DataSpec, HeldOut};
use crate::device::DeviceChoice;
use crate::io::{RunCommand, RunConfig};
use crate::precision::{Precision, PrecisionRequest};
use crate::run::{RunPlan, Start};
use crate::train::TrainOptions;
use anyhow::Result;
use std::path::PathBuf;
use tch::Device;

/// --device's values, for its help.
macro_rules! device_values {
    () => {
        "auto (CUDA when available), cpu, cuda or cuda:N"
    };
}

/// --precision's values, for its help.
macro_rules! precision_values {
    () => {
        "What the convolutions and linear layers compute in: fp32, bf16 (mixed precision, as \
         autocast), fp16 (CUDA only, with a dynamic loss scale) or auto (bf16 where it was \
         measured to pay: CPUs with AMX; fp32 elsewhere, CUDA included)"
    };
}

/// Where a command computes: the --device and --threads flags every computing command takes.
/// Their defaults are a resumed run's own with `train --resume` ([`resuming`] says so in
/// train's help).
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    #[arg(long, help = concat!(device_values!(), " [default: auto]"))]
    pub device: Option<DeviceChoice>,

    /// libtorch intra-op threads, up to four per CPU (default: libtorch's choice, one per
    /// core).
    #[arg(long)]
    pub threads: Option<usize>,

    #[arg(
        long,
        value_parser = values::choice::<PrecisionRequest>(),
        help = concat!(precision_values!(), " [default: fp32]")
    )]
    pub precision: Option<PrecisionRequest>,
}

/// The help of a command that can resume a run (`train`): --device and --precision default to
/// the resumed run's.
pub fn resuming(command: clap::Command) -> clap::Command {
    command
        .mut_arg("device", |arg| {
            arg.help(concat!(
                device_values!(),
                " [default: auto; with --resume, the device the run was trained on]"
            ))
        })
        .mut_arg("precision", |arg| {
            arg.help(concat!(
                precision_values!(),
                " [default: fp32; with --resume, the run's own]"
            ))
        })
}

impl DeviceArgs {
    /// The precision to compute in on `device` (fp32 unless --precision says otherwise).
    pub fn precision(&self, device: tch::Device) -> Result<Precision> {
        self.precision_over(Precision::Fp32, device)
    }

    /// --precision when given, else `default` (a settings file's, a recipe's), checked against
    /// `device`.
    pub fn precision_over(&self, default: Precision, device: tch::Device) -> Result<Precision> {
        self.precision
            .unwrap_or(PrecisionRequest::Exactly(default))
            .resolve(device)
    }

    /// --threads when given, else `recorded`: a settings file's or a run record's thread count,
    /// checked here as that file's key (`source` names the file), so that a bad count names it
    /// rather than a flag never given.
    pub fn threads_or(&mut self, recorded: Option<usize>, source: &std::path::Path) -> Result<()> {
        if let (None, Some(threads)) = (self.threads, recorded) {
            crate::runtime::check_threads(&format!("{}: threads", source.display()), threads)?;
            self.threads = Some(threads);
        }
        Ok(())
    }

    /// --threads when given, else the thread count a run on the CPU recorded in `record`
    /// (read from `source`): the same count keeps a continued or replayed CPU run bit-identical.
    pub fn threads_of_record(
        &mut self,
        record: &RunConfig,
        source: &std::path::Path,
    ) -> Result<()> {
        if !record.device.is_cpu() {
            return Ok(());
        }
        self.threads_or(Some(usize::try_from(record.threads).unwrap_or(0)), source)
    }

    /// Applies the thread setting and resolves the device on this machine (--device, else
    /// auto).
    pub fn resolve(&self) -> Result<tch::Device> {
        self.resolve_or(DeviceChoice::Auto)
    }

    /// As [`DeviceArgs::resolve`], with `default` when --device is not given.
    pub fn resolve_or(&self, default: DeviceChoice) -> Result<tch::Device> {
        crate::runtime::apply_threads(self.threads)?;
        let device = self.device.unwrap_or(default).resolve()?;
        if device.is_cuda() {
            // The shapes never change within a run, so cuDNN's one-off search for the fastest
            // convolution algorithm pays for itself.
            tch::Cuda::cudnn_set_benchmark(true);
        }
        Ok(device)
    }
}

/// What `train` and `finetune` share besides the training settings (see
/// [`super::settings_flags`]): data, run folder, device and output.
#[derive(Debug, Clone, clap::Args)]
pub struct SessionArgs {
    #[arg(long, value_name = "DIR", help = format!(
        "Folder holding the four MNIST idx files (see `mnist-cnn data`) [default: {}]",
        crate::data::DEFAULT_DIR
    ))]
    pub data: Option<PathBuf>,

    /// Run folder for model.ot, metrics.jsonl and config.json [default: runs/<UTC timestamp>].
    #[arg(long, value_name = "RUN_DIR")]
    pub out: Option<PathBuf>,

    /// Replace the run already in --out.
    #[arg(long)]
    pub overwrite: bool,

    #[command(flatten)]
    pub compute: DeviceArgs,

    /// Train on the first N training images only (quick trials); the test set stays whole.
    #[arg(long, value_parser = values::number(dataset::LIMIT))]
    pub limit: Option<usize>,

    /// Print a JSON summary on stdout when done.
    #[arg(long)]
    pub json: bool,

    /// Skip the report (curves.png, confusion.png, mistakes.png, filters.png, report.html)
    /// written into the run folder at the end.
    #[arg(long)]
    pub no_report: bool,

    /// Write no TensorBoard log (events.out.tfevents.* in the run folder; open it with
    /// scripts/tensorboard.sh).
    #[arg(long)]
    pub no_tensorboard: bool,
}

impl SessionArgs {
    /// A run of `command` from `start` into --out (replaced with --overwrite), logging for
    /// TensorBoard unless --no-tensorboard; no recipe recorded.
    pub fn run_plan(
        &self,
        command: RunCommand,
        start: Start,
        data: DataSpec,
        options: TrainOptions,
        device: Device,
    ) -> RunPlan {
        RunPlan {
            command,
            recipe: None,
            start,
            data,
            options,
            out: self.out.clone(),
            overwrite: self.overwrite,
            device,
            tensorboard: !self.no_tensorboard,
        }
    }

    /// The examples to use: `source`, cut to --limit, with `validation` held out.
    pub fn data_spec(&self, source: DataSource, validation: Option<HeldOut>) -> DataSpec {
        DataSpec {
            source,
            limit: self.limit,
            validation,
            mnist_test: None,
        }
    }

    /// The MNIST folder: --data, else `fallback` (a settings file's), else data/mnist.
    pub fn data_dir(&self, fallback: Option<&std::path::Path>) -> PathBuf {
        self.data
            .clone()
            .or_else(|| fallback.map(|p| p.to_owned()))
            .unwrap_or_else(|| PathBuf::from(crate::data::DEFAULT_DIR))
    }

    /// Whether a flag that chooses the run's data was given (refused where a run's own
    /// record says what it trained on).
    pub fn sets_data(&self) -> bool {
        self.limit.is_some() || self.data.is_some()
    }
}
