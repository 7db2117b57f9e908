//! What a training run is asked to do: [`TrainOptions`] (the hyper-parameters, recorded in
//! `config.json`), the named [`Recipe`]s that fill them, and [`Freeze`].

use crate::choice::Choice;
use crate::nn::{names, Architecture};
use crate::optim::{self, OptimizerKind};
use crate::precision::Precision;
use crate::rule::Rule;
use crate::schedule::Schedule;
use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The accepted range of each training setting, for its flag and its key in config.json alike.
pub mod rules {
    use super::{Epochs, Rule};

    /// Larger than MNIST's training set, small enough that a batch of 28×28 floats fits in memory.
    pub const MAX_BATCH_SIZE: usize = 65_536;

    pub const EPOCHS: Rule<f64> = Rule::new(
        Epochs::is_valid,
        "a positive number of epochs up to 100000 (1.5 ends with half an epoch)",
    );
    pub const BATCH_SIZE: Rule<usize> = Rule::new(
        |n| (1..=MAX_BATCH_SIZE).contains(&n),
        "at least 1 and at most 65536",
    );
    pub const LEARNING_RATE: Rule<f64> =
        Rule::new(|x| x.is_finite() && x > 0.0, "a positive, finite number");
    pub const LABEL_SMOOTHING: Rule<f64> =
        Rule::new(|x| (0.0..1.0).contains(&x), "at least 0 and below 1");
    /// A decay of 1 would never move the average from the initial weights.
    pub const AVERAGE_DECAY: Rule<f64> = Rule::new(|x| x > 0.0 && x < 1.0, "above 0 and below 1");
    pub const PATIENCE: Rule<usize> = Rule::new(|n| n >= 1, "at least 1");
    pub const CHECKPOINT_EVERY_STEPS: Rule<usize> = Rule::new(|n| n >= 1, "at least 1");
    pub const WEIGHT_DECAY: Rule<f64> =
        Rule::new(|x| x.is_finite() && x >= 0.0, "a finite number from 0");
    pub const MOMENTUM: Rule<f64> =
        Rule::new(|x| (0.0..1.0).contains(&x), "at least 0 and below 1");
    pub const BETA: Rule<f64> = Rule::new(|x| (0.0..1.0).contains(&x), "at least 0 and below 1");
    pub const EPS: Rule<f64> = Rule::new(|x| x.is_finite() && x > 0.0, "a positive, finite number");
    pub const PLATEAU_FACTOR: Rule<f64> = Rule::new(|x| x > 0.0 && x < 1.0, "above 0 and below 1");
    pub const PLATEAU_PATIENCE: Rule<usize> = Rule::new(|n| n <= 1000, "from 0 to 1000");
    pub const CLIP_GRAD_NORM: Rule<f64> =
        Rule::new(|x| x.is_finite() && x > 0.0, "a positive, finite number");
}

/// Which layers get no gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Freeze {
    /// Train every layer.
    #[default]
    None,
    /// Freeze the first convolution (and its batch norm).
    Conv1,
    /// Freeze every convolution (and batch norm): only the dense layer trains.
    Conv,
}

impl Freeze {
    /// Whether the parameter `name` is frozen.
    pub fn freezes(self, name: &str) -> bool {
        match self {
            Self::None => false,
            Self::Conv1 => names::in_first_convolution(name),
            Self::Conv => !names::in_head(name),
        }
    }
}

impl Choice for Freeze {
    const ALL: &'static [Self] = &[Self::None, Self::Conv1, Self::Conv];

    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Conv1 => "conv1",
            Self::Conv => "conv",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::None => "Train every layer",
            Self::Conv1 => "Freeze the first convolution (and its batch norm)",
            Self::Conv => "Freeze every convolution (and batch norm): only the dense layer trains",
        }
    }
}

impl fmt::Display for Freeze {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A number of passes over the training data. A fractional count (1.5) ends with a partial
/// epoch that trains on the first part of that epoch's shuffle.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Epochs(pub f64);

impl Epochs {
    /// The most epochs a run may ask for.
    pub const MAX: f64 = 100_000.0;

    /// Whether `count` is a number of epochs a run can train: positive, finite, at most
    /// [`Epochs::MAX`].
    pub fn is_valid(count: f64) -> bool {
        count.is_finite() && count > 0.0 && count <= Self::MAX
    }

    /// How many epochs run, the partial one included.
    pub fn count(self) -> usize {
        self.0.ceil() as usize
    }

    /// Steps in `epoch` (from 1) when a whole epoch has `steps_per_epoch`.
    pub fn steps_in(self, epoch: usize, steps_per_epoch: usize) -> usize {
        let fraction = self.0 - (epoch - 1) as f64;
        if fraction >= 1.0 {
            steps_per_epoch
        } else {
            ((fraction * steps_per_epoch as f64).round() as usize).clamp(1, steps_per_epoch)
        }
    }

    /// Steps before `epoch` (from 1) starts.
    pub fn steps_before(self, epoch: usize, steps_per_epoch: usize) -> usize {
        (1..epoch)
            .map(|earlier| self.steps_in(earlier, steps_per_epoch))
            .sum()
    }

    pub fn total_steps(self, steps_per_epoch: usize) -> usize {
        self.steps_before(self.count() + 1, steps_per_epoch)
    }
}

/// Whole counts are written as integers (`"epochs": 10`).
impl Serialize for Epochs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 {
            serializer.serialize_u64(self.0 as u64)
        } else {
            serializer.serialize_f64(self.0)
        }
    }
}

impl fmt::Display for Epochs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Named starting points for `train`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipe {
    /// The Keras tutorial.
    Tutorial,
    /// The least training time to 99% on MNIST with the same network.
    Fast,
    /// The most accurate single model, the vgg-32 network.
    Large,
}

impl Choice for Recipe {
    const ALL: &'static [Self] = &[Self::Tutorial, Self::Fast, Self::Large];

    fn name(self) -> &'static str {
        match self {
            Self::Tutorial => "tutorial",
            Self::Fast => "fast",
            Self::Large => "large",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::Tutorial => {
                "The Keras tutorial: 10 epochs, batch 32, Adam at 1e-3, constant rate"
            }
            Self::Fast => {
                "The least training time to 99% on MNIST with the same network: 1.3 epochs at \
                 batch 128 (the batch size with the highest throughput on the CPU), a one-cycle \
                 schedule peaking at 1e-2, label smoothing 0.1"
            }
            Self::Large => {
                "The most accurate single model that trains on a 2-core CPU in about 15 minutes \
                 (see the README): the vgg-32 network, 15 epochs at batch 128 with random affine \
                 augmentation, a one-cycle schedule peaking at 4e-3, label smoothing 0.1"
            }
        }
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Recipe {
    /// The architecture the recipe is made for (`--arch` overrides it).
    pub fn architecture(self) -> Architecture {
        match self {
            Self::Tutorial | Self::Fast => Architecture::Tutorial,
            Self::Large => Architecture::Vgg { width: 32 },
        }
    }

    pub fn options(self) -> TrainOptions {
        match self {
            Self::Tutorial => TrainOptions::default(),
            Self::Large => TrainOptions {
                epochs: Epochs(15.0),
                batch_size: 128,
                learning_rate: 4e-3,
                schedule: Schedule::Onecycle,
                augment: true,
                label_smoothing: 0.1,
                ..TrainOptions::default()
            },
            Self::Fast => TrainOptions {
                epochs: Epochs(1.3),
                batch_size: 128,
                learning_rate: 1e-2,
                schedule: Schedule::Onecycle,
                label_smoothing: 0.1,
                ..TrainOptions::default()
            },
        }
    }
}

/// The config.json keys of [`TrainOptions`]: what a settings file may set (`train --config`).
pub const KEYS: [&str; 23] = [
    "epochs",
    "batch_size",
    "learning_rate",
    "seed",
    "schedule",
    "augment",
    "label_smoothing",
    "freeze",
    "choose_by_validation",
    "patience",
    "weight_averaging",
    "checkpoint_every_steps",
    "optimizer",
    "weight_decay",
    "momentum",
    "nesterov",
    "betas",
    "eps",
    "clip_grad_norm",
    "plateau_factor",
    "plateau_patience",
    "precision",
    "deterministic",
];

/// The hyper-parameters of a training run. The defaults are the Keras tutorial's recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub epochs: Epochs,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub seed: u64,
    pub schedule: Schedule,
    pub augment: bool,
    pub label_smoothing: f64,
    pub freeze: Freeze,
    /// Deliver the epoch with the best validation scores (when there is a validation set)
    /// rather than the last one.
    pub choose_by_validation: bool,
    /// Stop after this many epochs without better validation scores (higher accuracy, or the same
    /// with a lower loss).
    pub patience: Option<usize>,
    /// Decay of the exponential moving average of the weights (evaluated and saved in place of
    /// the raw weights), when enabled.
    pub weight_averaging: Option<f64>,
    /// Save the training state (resume.ot) every this many steps within an epoch as well as
    /// after it, so that a kill loses at most that many steps. It does not change the results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every_steps: Option<usize>,
    /// The update rule (runs made before there was a choice used Adam).
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// L2 (adam, sgd) or decoupled (adamw) weight decay of the weights that decay; `None` is
    /// the optimizer's default (0.01 for adamw, else 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// SGD's momentum (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub momentum: f64,
    /// Nesterov momentum (SGD).
    #[serde(default, skip_serializing_if = "is_false")]
    pub nesterov: bool,
    /// The Adam family's β₁ and β₂.
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// The Adam family's ε.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Clip the global L2 norm of the gradients to this, every step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_grad_norm: Option<f64>,
    /// The plateau schedule's factor and patience.
    #[serde(default = "default_plateau_factor")]
    pub plateau_factor: f64,
    #[serde(default = "default_plateau_patience")]
    pub plateau_patience: usize,
    /// What the convolutions and linear layers compute in (absent: fp32, as runs made before
    /// there was a choice).
    #[serde(default, skip_serializing_if = "is_fp32")]
    pub precision: Precision,
    /// Deterministic kernels on CUDA (cuDNN's deterministic mode, libtorch's deterministic
    /// algorithms, a fixed cuBLAS workspace), so that the same seed gives the same weights on
    /// the same GPU; the CPU is deterministic already (absent: off).
    #[serde(default, skip_serializing_if = "is_false")]
    pub deterministic: bool,
}

fn is_fp32(precision: &Precision) -> bool {
    *precision == Precision::Fp32
}

fn default_plateau_factor() -> f64 {
    0.1
}

fn default_plateau_patience() -> usize {
    2
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_betas() -> [f64; 2] {
    optim::adam::DEFAULT_BETAS
}

fn default_eps() -> f64 {
    optim::adam::DEFAULT_EPS
}

impl TrainOptions {
    /// Checks every setting against its rule (the same rules as the flags'); the error names
    /// the setting by its config.json key.
    pub fn validate(&self) -> Result<()> {
        rules::EPOCHS.check("epochs", self.epochs.0)?;
        rules::BATCH_SIZE.check("batch_size", self.batch_size)?;
        rules::LEARNING_RATE.check("learning_rate", self.learning_rate)?;
        rules::LABEL_SMOOTHING.check("label_smoothing", self.label_smoothing)?;
        rules::AVERAGE_DECAY.check_optional("weight_averaging", self.weight_averaging)?;
        rules::PATIENCE.check_optional("patience", self.patience)?;
        rules::CHECKPOINT_EVERY_STEPS
            .check_optional("checkpoint_every_steps", self.checkpoint_every_steps)?;
        self.validate_optimizer()
    }

    fn validate_optimizer(&self) -> Result<()> {
        let kind = self.optimizer;
        rules::WEIGHT_DECAY.check_optional("weight_decay", self.weight_decay)?;
        rules::MOMENTUM.check("momentum", self.momentum)?;
        rules::BETA.check("betas[0]", self.betas[0])?;
        rules::BETA.check("betas[1]", self.betas[1])?;
        rules::EPS.check("eps", self.eps)?;
        rules::CLIP_GRAD_NORM.check_optional("clip_grad_norm", self.clip_grad_norm)?;
        rules::PLATEAU_FACTOR.check("plateau_factor", self.plateau_factor)?;
        rules::PLATEAU_PATIENCE.check("plateau_patience", self.plateau_patience)?;
        ensure!(
            kind == OptimizerKind::Sgd || (self.momentum == 0.0 && !self.nesterov),
            "momentum and nesterov are sgd's; the optimizer is {kind}"
        );
        ensure!(
            !self.nesterov || self.momentum > 0.0,
            "nesterov needs a momentum above 0"
        );
        ensure!(
            kind.is_adam() || (self.betas == default_betas() && self.eps == default_eps()),
            "betas and eps are the Adam family's; the optimizer is {kind}"
        );
        Ok(())
    }

    /// The optimizer these options ask for.
    pub fn optimizer_settings(&self) -> optim::Settings {
        optim::Settings {
            kind: self.optimizer,
            weight_decay: self
                .weight_decay
                .unwrap_or(self.optimizer.default_weight_decay()),
            momentum: self.momentum,
            nesterov: self.nesterov,
            betas: self.betas,
            eps: self.eps,
        }
    }
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: Epochs(10.0),
            batch_size: 32,
            learning_rate: 1e-3,
            seed: 42,
            schedule: Schedule::Constant,
            augment: false,
            label_smoothing: 0.0,
            freeze: Freeze::None,
            choose_by_validation: false,
            patience: None,
            weight_averaging: None,
            checkpoint_every_steps: None,
            optimizer: OptimizerKind::Adam,
            weight_decay: None,
            momentum: 0.0,
            nesterov: false,
            betas: default_betas(),
            eps: default_eps(),
            clip_grad_norm: None,
            plateau_factor: default_plateau_factor(),
            plateau_patience: default_plateau_patience(),
            precision: Precision::Fp32,
            deterministic: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_epochs_end_with_a_partial_epoch() {
        let epochs = Epochs(1.3);
        assert_eq!(epochs.count(), 2);
        assert_eq!(epochs.steps_in(1, 469), 469);
        assert_eq!(epochs.steps_in(2, 469), 141);
        assert_eq!(epochs.steps_before(2, 469), 469);
        assert_eq!(epochs.total_steps(469), 610);
        assert_eq!(Epochs(2.0).total_steps(469), 938);
        assert_eq!(Epochs(0.001).total_steps(469), 1, "at least one step");
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e6] {
            assert!(!Epochs::is_valid(bad), "{bad} accepted");
        }
        assert_eq!(serde_json::to_string(&Epochs(10.0)).unwrap(), "10");
        assert_eq!(serde_json::to_string(&Epochs(1.5)).unwrap(), "1.5");
    }

    #[test]
    fn every_setting_is_checked_and_named_by_its_key() {
        assert!(TrainOptions::default().validate().is_ok());
        for recipe in Recipe::ALL {
            assert!(recipe.options().validate().is_ok(), "{recipe}");
        }
        let sgd = |momentum, nesterov| TrainOptions {
            optimizer: OptimizerKind::Sgd,
            momentum,
            nesterov,
            ..Default::default()
        };
        assert!(sgd(0.9, true).validate().is_ok());
        assert!(sgd(0.0, true)
            .validate()
            .unwrap_err()
            .to_string()
            .contains("nesterov"));
        let adam_with_momentum = TrainOptions {
            momentum: 0.9,
            ..Default::default()
        };
        assert!(adam_with_momentum
            .validate()
            .unwrap_err()
            .to_string()
            .contains("sgd's"));
        let sgd_with_betas = TrainOptions {
            betas: [0.8, 0.99],
            ..sgd(0.9, false)
        };
        assert!(sgd_with_betas
            .validate()
            .unwrap_err()
            .to_string()
            .contains("Adam family"));
        let cases: [(TrainOptions, &str); 7] = [
            (
                TrainOptions {
                    batch_size: 0,
                    ..Default::default()
                },
                "batch_size is 0",
            ),
            (
                TrainOptions {
                    epochs: Epochs(1e300),
                    ..Default::default()
                },
                "epochs is 1e300",
            ),
            (
                TrainOptions {
                    learning_rate: -1.0,
                    ..Default::default()
                },
                "learning_rate is -1",
            ),
            (
                TrainOptions {
                    label_smoothing: 5.0,
                    ..Default::default()
                },
                "label_smoothing is 5",
            ),
            (
                TrainOptions {
                    weight_averaging: Some(1.0),
                    ..Default::default()
                },
                "weight_averaging is 1",
            ),
            (
                TrainOptions {
                    patience: Some(0),
                    ..Default::default()
                },
                "patience is 0",
            ),
            (
                TrainOptions {
                    checkpoint_every_steps: Some(0),
                    ..Default::default()
                },
                "checkpoint_every_steps is 0",
            ),
        ];
        for (options, expected) in cases {
            let err = options.validate().unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}");
        }
    }

    #[test]
    fn the_settings_keys_are_exactly_the_serialised_fields() {
        let every_field = TrainOptions {
            patience: Some(2),
            weight_averaging: Some(0.9),
            checkpoint_every_steps: Some(10),
            weight_decay: Some(0.1),
            momentum: 0.5,
            nesterov: true,
            clip_grad_norm: Some(1.0),
            precision: Precision::Bf16,
            deterministic: true,
            ..Default::default()
        };
        let value = serde_json::to_value(every_field).unwrap();
        let mut serialised: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut keys = KEYS.to_vec();
        serialised.sort();
        keys.sort();
        assert_eq!(serialised, keys);
    }

    #[test]
    fn freezing_follows_the_layer_names() {
        assert!(Freeze::Conv.freezes("conv2.bias") && !Freeze::Conv.freezes("fc.weight"));
        assert!(Freeze::Conv1.freezes("conv1.weight") && Freeze::Conv1.freezes("bn1.bias"));
        assert!(!Freeze::Conv1.freezes("conv2.weight") && !Freeze::None.freezes("conv1.weight"));
        assert_eq!(Freeze::from_name("conv1"), Some(Freeze::Conv1));
        assert_eq!(Recipe::names(), "tutorial, fast, large");
    }
}
