//! The flags several commands share, and how they become the library's options: the one place
//! where flags turn into [`TrainOptions`], [`DataSpec`]s and devices.

use super::values;
use crate::data::dataset::{self, DataSource, DataSpec, HeldOut};
use crate::device::DeviceChoice;
use crate::io::RunCommand;
use crate::optim::OptimizerKind;
use crate::precision::{Precision, PrecisionRequest};
use crate::run::{RunPlan, Start};
use crate::schedule::Schedule;
use crate::train::{rules, Epochs, TrainOptions};
use anyhow::Result;
use std::path::PathBuf;
use tch::Device;

/// Where a command computes: the --device and --threads flags every computing command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    /// auto (CUDA when available), cpu, cuda or cuda:N [default: auto; for --resume, the
    /// device the run was trained on].
    #[arg(long)]
    pub device: Option<DeviceChoice>,

    /// libtorch intra-op threads, up to four per CPU (default: libtorch's choice, one per
    /// core).
    #[arg(long)]
    pub threads: Option<usize>,

    /// What the convolutions and linear layers compute in: fp32, bf16 (mixed precision, as
    /// autocast), fp16 (CUDA only, with a dynamic loss scale) or auto (bf16 where it was
    /// measured to pay: CPUs with AMX; fp32 elsewhere, CUDA included) [default: fp32, or a
    /// resumed run's].
    #[arg(long, value_parser = values::choice::<PrecisionRequest>())]
    pub precision: Option<PrecisionRequest>,
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

/// What `train` and `finetune` share: data, run folder, batches, device, seed, augmentation,
/// schedule and output.
#[derive(Debug, Clone, clap::Args)]
pub struct SessionArgs {
    /// Folder holding the four MNIST idx files (see `mnist-cnn data`) [default: data/mnist].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Run folder for model.ot, metrics.jsonl and config.json [default: runs/<UTC timestamp>].
    #[arg(long, value_name = "RUN_DIR")]
    pub out: Option<PathBuf>,

    /// Replace the run already in --out.
    #[arg(long)]
    pub overwrite: bool,

    /// Images per training step, up to 65536 [default: 32, or the recipe's].
    #[arg(long, value_parser = values::number(rules::BATCH_SIZE))]
    pub batch_size: Option<usize>,

    #[command(flatten)]
    pub compute: DeviceArgs,

    /// Seed of the weight initialisation, the shuffles, the validation split and augmentation;
    /// on the CPU the same seed (and thread count) gives bit-identical weights.
    /// [default: 42]
    #[arg(long)]
    pub seed: Option<u64>,

    /// Train on the first N training images only (quick trials); the test set stays whole.
    #[arg(long, value_parser = values::number(dataset::LIMIT))]
    pub limit: Option<usize>,

    /// Random affine transforms per image (rotation ±12°, shift ±2.5 px, scale 0.9–1.1,
    /// shear ±8°), drawn from the seed.
    #[arg(long)]
    pub augment: bool,

    /// Learning-rate schedule over the run [default: constant, or the recipe's].
    #[arg(long, value_parser = values::choice::<Schedule>())]
    pub schedule: Option<Schedule>,

    /// The plateau schedule: multiply the rate by this when the validation loss stops
    /// improving [default: 0.1].
    #[arg(long, value_name = "X", value_parser = values::number(rules::PLATEAU_FACTOR))]
    pub plateau_factor: Option<f64>,

    /// The plateau schedule: bad epochs tolerated before the rate is lowered [default: 2].
    #[arg(long, value_name = "N", value_parser = values::number(rules::PLATEAU_PATIENCE))]
    pub plateau_patience: Option<usize>,

    /// Label smoothing of the cross-entropy [default: 0 (none), or the recipe's].
    #[arg(long, value_parser = values::number(rules::LABEL_SMOOTHING))]
    pub label_smoothing: Option<f64>,

    /// Keep an exponential moving average of the weights with this decay per step (e.g. 0.999),
    /// and evaluate and save it instead of the raw weights.
    #[arg(long, value_name = "DECAY", value_parser = values::number(rules::AVERAGE_DECAY))]
    pub ema: Option<f64>,

    /// The optimizer [default: adam, the tutorial's].
    #[arg(long, value_parser = values::choice::<OptimizerKind>())]
    pub optimizer: Option<OptimizerKind>,

    /// Weight decay of the weights (not of biases and batch-norm weights): decoupled for adamw,
    /// L2 for adam and sgd, as PyTorch defines each [default: 0.01 for adamw, else 0].
    #[arg(long, value_name = "X", value_parser = values::number(rules::WEIGHT_DECAY))]
    pub weight_decay: Option<f64>,

    /// SGD's momentum, from 0 (none) to below 1 [default: 0].
    #[arg(long, value_name = "X", value_parser = values::number(rules::MOMENTUM))]
    pub momentum: Option<f64>,

    /// Nesterov momentum (sgd, with --momentum).
    #[arg(long)]
    pub nesterov: bool,

    /// The Adam family's β₁,β₂ [default: 0.9,0.999].
    #[arg(long, value_name = "B1,B2", value_parser = values::pair(rules::BETA))]
    pub betas: Option<[f64; 2]>,

    /// The Adam family's ε [default: 1e-8].
    #[arg(long, value_name = "X", value_parser = values::number(rules::EPS))]
    pub eps: Option<f64>,

    /// Clip the global L2 norm of the gradients to X every step (as
    /// torch.nn.utils.clip_grad_norm_); the norm before clipping is logged per epoch
    /// (grad_norm in metrics.jsonl).
    #[arg(long, value_name = "X", value_parser = values::number(rules::CLIP_GRAD_NORM))]
    pub clip_grad_norm: Option<f64>,

    /// Deterministic kernels on CUDA (cuDNN deterministic with its benchmark search off,
    /// libtorch's deterministic algorithms, CUBLAS_WORKSPACE_CONFIG=:4096:8): the same seed then
    /// gives bit-identical weights on the same GPU, at some cost in speed. Recorded in
    /// config.json and kept on --resume. The CPU is deterministic without it.
    #[arg(long)]
    pub deterministic: bool,

    /// Also save the training state (resume.ot) every N steps within an epoch, so that a kill
    /// -9 or a power cut loses at most N steps (Ctrl-C and SIGTERM always save the current
    /// step). Saving does not change the results.
    #[arg(long, value_name = "N", value_parser = values::number(rules::CHECKPOINT_EVERY_STEPS))]
    pub checkpoint_every_steps: Option<usize>,

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
    /// `base` (a recipe's settings) with every flag given here put over it, and `epochs` and
    /// `learning_rate` when the command's own flags set them.
    pub fn train_options(
        &self,
        base: TrainOptions,
        epochs: Option<Epochs>,
        learning_rate: Option<f64>,
    ) -> TrainOptions {
        let optimizer = self.optimizer.unwrap_or(base.optimizer);
        TrainOptions {
            epochs: epochs.unwrap_or(base.epochs),
            batch_size: self.batch_size.unwrap_or(base.batch_size),
            learning_rate: learning_rate.unwrap_or(base.learning_rate),
            seed: self.seed.unwrap_or(base.seed),
            schedule: self.schedule.unwrap_or(base.schedule),
            augment: self.augment || base.augment,
            label_smoothing: self.label_smoothing.unwrap_or(base.label_smoothing),
            weight_averaging: self.ema.or(base.weight_averaging),
            checkpoint_every_steps: self.checkpoint_every_steps,
            optimizer,
            // Recorded as used, so that config.json says what decayed.
            weight_decay: Some(
                (self.weight_decay.or(base.weight_decay))
                    .unwrap_or(optimizer.default_weight_decay()),
            ),
            momentum: self.momentum.unwrap_or(base.momentum),
            nesterov: self.nesterov || base.nesterov,
            betas: self.betas.unwrap_or(base.betas),
            eps: self.eps.unwrap_or(base.eps),
            clip_grad_norm: self.clip_grad_norm.or(base.clip_grad_norm),
            plateau_factor: self.plateau_factor.unwrap_or(base.plateau_factor),
            plateau_patience: self.plateau_patience.unwrap_or(base.plateau_patience),
            deterministic: self.deterministic || base.deterministic,
            ..base
        }
    }

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
        }
    }

    /// A validation split of `fraction` drawn from --seed (or `seed` when it is not given).
    pub fn held_out(&self, fraction: f64, seed: u64) -> HeldOut {
        HeldOut {
            fraction,
            seed: self.seed.unwrap_or(seed),
        }
    }

    /// The MNIST folder: --data, else `fallback` (a settings file's), else data/mnist.
    pub fn data_dir(&self, fallback: Option<&std::path::Path>) -> PathBuf {
        self.data
            .clone()
            .or_else(|| fallback.map(|p| p.to_owned()))
            .unwrap_or_else(|| PathBuf::from("data/mnist"))
    }

    /// Whether any flag that would change a run's settings was given (refused with --resume).
    pub fn sets_run_settings(&self) -> bool {
        self.batch_size.is_some()
            || self.schedule.is_some()
            || self.label_smoothing.is_some()
            || self.ema.is_some()
            || self.augment
            || self.limit.is_some()
            || self.optimizer.is_some()
            || self.weight_decay.is_some()
            || self.momentum.is_some()
            || self.nesterov
            || self.betas.is_some()
            || self.eps.is_some()
            || self.clip_grad_norm.is_some()
            || self.plateau_factor.is_some()
            || self.plateau_patience.is_some()
            || self.seed.is_some()
            || self.data.is_some()
            || self.deterministic
    }
}
