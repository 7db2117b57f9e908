//! What a training run is asked to do: [`TrainOptions`] (the hyper-parameters, recorded in
//! `config.json`), each declared once below, with [`Freeze`] and [`Epochs`].

use super::settings::{choice_setting, declare_settings, Flag, Setting, SettingValue};
use crate::choice::{declare_choice, Choice};
use crate::nn::names;
use crate::optim::schedule::Schedule;
use crate::optim::{self, OptimizerKind};
use crate::precision::Precision;
use crate::rule::{parse_number, Rule};
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
    pub const MIN_LR: Rule<f64> =
        Rule::new(|x| x.is_finite() && x >= 0.0, "a finite number from 0");
    pub const CLIP_GRAD_NORM: Rule<f64> =
        Rule::new(|x| x.is_finite() && x > 0.0, "a positive, finite number");
}

declare_choice! {
    /// Which layers get no gradient.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Freeze {
        #[default]
        None = "none":
            "Train every layer",
        Conv1 = "conv1":
            "Freeze the first convolution (and its batch norm)",
        Conv = "conv":
            "Freeze every convolution (and batch norm): only the dense layer trains",
    }
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

impl SettingValue for Epochs {
    type Checked = f64;

    fn parse_text(text: &str, rule: Option<&Rule<f64>>) -> Result<Self, String> {
        parse_number(text, rule).map(Epochs)
    }

    fn check(&self, key: &str, rule: &Rule<f64>) -> Result<()> {
        rule.check(key, self.0)
    }

    fn shown(&self) -> Option<String> {
        Some(self.to_string())
    }
}

choice_setting!(Freeze);

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

declare_settings! {
    epochs: Epochs = Epochs(10.0),
        rule Some(rules::EPOCHS), flag Flag::new("epochs"),
        help "Passes over the training data; a fraction (1.5) ends with part of an epoch";
    batch_size: usize = 32,
        rule Some(rules::BATCH_SIZE), flag Flag::new("batch-size"),
        help "Images per training step, up to 65536";
    learning_rate: f64 = 1e-3,
        rule Some(rules::LEARNING_RATE), flag Flag::new("lr"),
        help "The optimizer's learning rate, the peak rate under a schedule";
    seed: u64 = 42,
        rule None, flag Flag::new("seed"),
        help "Seed of the weight initialisation, the shuffles, the validation split and \
              augmentation; on the CPU the same seed (and thread count) gives bit-identical \
              weights";
    schedule: Schedule = Schedule::Constant,
        rule None, flag Flag::new("schedule"),
        help "Learning-rate schedule over the run";
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_lr: Option<f64> = None,
        rule Some(rules::MIN_LR),
        flag Flag::new("min-lr").value_name("X").default_note("0 for cosine, the peak/10000 for onecycle"),
        help "The rate the cosine and one-cycle schedules end at";
    augment: bool = false,
        rule None, flag Flag::new("augment"),
        help "Random affine transforms per image (rotation ±12°, shift ±2.5 px, scale 0.9–1.1, \
              shear ±8°), drawn from the seed";
    label_smoothing: f64 = 0.0,
        rule Some(rules::LABEL_SMOOTHING), flag Flag::new("label-smoothing"),
        help "Label smoothing of the cross-entropy";
    freeze: Freeze = Freeze::None,
        rule None, flag Flag::new("freeze").finetune_only(),
        help "Layers that get no gradient";
    choose_by_validation: bool = false,
        rule None, flag Flag::NONE,
        help "Deliver the epoch with the best validation scores rather than the last one (a \
              fine-tune does when its validation images are unseen)";
    patience: Option<usize> = None,
        rule Some(rules::PATIENCE), flag Flag::new("patience").value_name("N"),
        help "Stop after N epochs without better validation scores (a higher accuracy, or the \
              same with a lower loss); needs a validation split, as the test set is never \
              watched";
    weight_averaging: Option<f64> = None,
        rule Some(rules::AVERAGE_DECAY), flag Flag::new("ema").value_name("DECAY"),
        help "Keep an exponential moving average of the weights with this decay per step (e.g. \
              0.999), and evaluate and save it instead of the raw weights";
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkpoint_every_steps: Option<usize> = None,
        rule Some(rules::CHECKPOINT_EVERY_STEPS),
        flag Flag::new("checkpoint-every-steps").value_name("N"),
        help "Also save the training state (resume.ot) every N steps within an epoch, so that a \
              kill -9 or a power cut loses at most N steps (Ctrl-C and SIGTERM always save the \
              current step). Saving does not change the results";
    #[serde(default)]
    optimizer: OptimizerKind = OptimizerKind::Adam,
        rule None, flag Flag::new("optimizer"),
        help "The optimizer";
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight_decay: Option<f64> = None,
        rule Some(rules::WEIGHT_DECAY),
        flag Flag::new("weight-decay").value_name("X").default_note("0.01 for adamw, else 0"),
        help "Weight decay of the weights (not of biases and batch-norm weights): decoupled for \
              adamw, L2 for adam and sgd, as PyTorch defines each";
    #[serde(default, skip_serializing_if = "is_zero")]
    momentum: f64 = 0.0,
        rule Some(rules::MOMENTUM), flag Flag::new("momentum").value_name("X"),
        help "SGD's momentum, from 0 (none) to below 1";
    #[serde(default, skip_serializing_if = "is_false")]
    nesterov: bool = false,
        rule None, flag Flag::new("nesterov"),
        help "Nesterov momentum (sgd, with --momentum)";
    #[serde(default = "defaults::betas")]
    betas: [f64; 2] = optim::adam::DEFAULT_BETAS,
        rule Some(rules::BETA), flag Flag::new("betas").value_name("B1,B2"),
        help "The Adam family's β₁,β₂";
    #[serde(default = "defaults::eps")]
    eps: f64 = optim::adam::DEFAULT_EPS,
        rule Some(rules::EPS), flag Flag::new("eps").value_name("X"),
        help "The Adam family's ε";
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clip_grad_norm: Option<f64> = None,
        rule Some(rules::CLIP_GRAD_NORM), flag Flag::new("clip-grad-norm").value_name("X"),
        help "Clip the global L2 norm of the gradients to X every step (as \
              torch.nn.utils.clip_grad_norm_); the norm before clipping is logged per epoch \
              (grad_norm in metrics.jsonl)";
    #[serde(default = "defaults::plateau_factor")]
    plateau_factor: f64 = 0.1,
        rule Some(rules::PLATEAU_FACTOR), flag Flag::new("plateau-factor").value_name("X"),
        help "The plateau schedule: multiply the rate by this when the validation loss stops \
              improving";
    #[serde(default = "defaults::plateau_patience")]
    plateau_patience: usize = 2,
        rule Some(rules::PLATEAU_PATIENCE), flag Flag::new("plateau-patience").value_name("N"),
        help "The plateau schedule: bad epochs tolerated before the rate is lowered";
    #[serde(default, skip_serializing_if = "is_fp32")]
    precision: Precision = Precision::Fp32,
        rule None, flag Flag::elsewhere("precision").value_name("P"),
        help "What the convolutions and linear layers compute in (absent: fp32, as runs made \
              before there was a choice)";
    #[serde(default, skip_serializing_if = "is_false")]
    deterministic: bool = false,
        rule None, flag Flag::new("deterministic"),
        help "Deterministic kernels on CUDA (cuDNN deterministic with its benchmark search off, \
              libtorch's deterministic algorithms, CUBLAS_WORKSPACE_CONFIG=:4096:8): the same seed \
              then gives bit-identical weights on the same GPU, at some cost in speed. Recorded \
              in config.json and kept on --resume. The CPU is deterministic without it";
}

/// A training setting as the command line sees it.
pub type TrainSetting = Setting<TrainOptions, TrainOverrides>;

fn is_fp32(precision: &Precision) -> bool {
    *precision == Precision::Fp32
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl TrainOptions {
    /// Checks every setting against its rule (the same rules as the flags'); the error names
    /// the setting by its config.json key.
    pub fn validate(&self) -> Result<()> {
        self.check_rules()?;
        if let Some(min_lr) = self.min_lr {
            ensure!(
                matches!(self.schedule, Schedule::Cosine | Schedule::Onecycle),
                "min_lr is where the cosine and onecycle schedules end; the schedule is {}",
                self.schedule
            );
            ensure!(
                min_lr < self.learning_rate,
                "min_lr is {min_lr}: must be below the learning rate ({})",
                self.learning_rate
            );
        }
        let kind = self.optimizer;
        ensure!(
            kind == OptimizerKind::Sgd || (self.momentum == 0.0 && !self.nesterov),
            "momentum and nesterov are sgd's; the optimizer is {kind}"
        );
        ensure!(
            !self.nesterov || self.momentum > 0.0,
            "nesterov needs a momentum above 0"
        );
        ensure!(
            kind.is_adam() || (self.betas == defaults::betas() && self.eps == defaults::eps()),
            "betas and eps are the Adam family's; the optimizer is {kind}"
        );
        Ok(())
    }

    /// These options as a run records them: the weight decay the optimizer uses is written
    /// down even when it is the optimizer's default, so that config.json says what decayed.
    pub fn recorded(mut self) -> Self {
        let default = self.optimizer.default_weight_decay();
        self.weight_decay.get_or_insert(default);
        self
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    }

    /// The flags' texts of the two settings whose values are not one plain number.
    #[test]
    fn betas_and_epochs_are_read_from_a_flag_by_their_rules() {
        let betas = |text| <[f64; 2]>::parse_text(text, Some(&rules::BETA));
        assert_eq!(betas("0.8, 0.99"), Ok([0.8, 0.99]));
        assert!(betas("0.8").is_err() && betas("0.8,1").is_err());
        let epochs = |text| Epochs::parse_text(text, Some(&rules::EPOCHS));
        assert_eq!(epochs("1.3"), Ok(Epochs(1.3)));
        for bad in ["0", "-1", "nan", "inf", "ten"] {
            assert!(epochs(bad).is_err(), "{bad} accepted");
        }
        assert!(epochs("NaN")
            .unwrap_err()
            .contains("positive number of epochs"));
    }

    #[test]
    fn a_value_outside_its_rule_is_refused_by_its_key() {
        let cases = [
            ("batch_size", json!(0), "batch_size is 0"),
            ("epochs", json!(1e300), "epochs is 1e300"),
            ("learning_rate", json!(-1.0), "learning_rate is -1"),
            ("label_smoothing", json!(5.0), "label_smoothing is 5"),
            ("weight_averaging", json!(1.0), "weight_averaging is 1"),
            ("patience", json!(0), "patience is 0"),
            (
                "checkpoint_every_steps",
                json!(0),
                "checkpoint_every_steps is 0",
            ),
            ("min_lr", json!(-1.0), "min_lr is -1"),
        ];
        for (key, value, expected) in cases {
            let mut given = TrainOverrides::default();
            given.set(key, value).unwrap();
            let err = given.over(TrainOptions::default()).validate().unwrap_err();
            assert!(err.to_string().starts_with(expected), "{err}");
        }
        let cosine_floor = |min_lr| TrainOptions {
            schedule: Schedule::Cosine,
            min_lr: Some(min_lr),
            ..Default::default()
        };
        assert!(cosine_floor(1e-5).validate().is_ok());
        let err = cosine_floor(1e-3).validate().unwrap_err().to_string();
        assert!(err.contains("below the learning rate"), "{err}");
        let constant_floor = TrainOptions {
            min_lr: Some(1e-5),
            ..Default::default()
        };
        let err = constant_floor.validate().unwrap_err().to_string();
        assert!(err.contains("the schedule is constant"), "{err}");
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
            min_lr: Some(1e-5),
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
    }
}
