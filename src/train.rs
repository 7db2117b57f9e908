//! The training loop shared by `train` and `finetune` (one loop, two front doors): Adam on
//! cross-entropy, the data reshuffled each epoch from the seed, an optional learning-rate
//! schedule, augmentation, label smoothing, frozen layers and weight averaging, and an
//! evaluation after each epoch.
//!
//! The whole training set stays as one tensor on the training device; each batch is gathered by
//! index from the epoch's permutation, so no data crosses between host and device inside a step
//! (apart from augmentation's few transform parameters), and the running loss is accumulated on
//! the device and read only when progress is shown.
//!
//! Model selection: when asked to and given a validation split, the epoch with the best
//! validation accuracy wins (and `patience` stops the run after that many epochs without
//! improvement); otherwise the last epoch's weights are the result. The test set is never used
//! to choose.

use crate::augment::{self, AffineRanges};
use crate::data::Split;
use crate::interrupt::Interrupted;
use crate::metrics::{self, Evaluation};
use crate::model::{Architecture, Classifier};
use crate::optim::Adam;
use crate::schedule::Schedule;
use crate::{progress, rng};
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Instant;

use tch::{Kind, Reduction, Tensor};
use tracing::info;

/// Which layers get no gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
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
            Self::Conv1 => name.starts_with("conv1.") || name.starts_with("bn1."),
            Self::Conv => !name.starts_with("fc."),
        }
    }
}

impl fmt::Display for Freeze {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Conv1 => "conv1",
            Self::Conv => "conv",
        })
    }
}

/// A number of passes over the training data. A fractional count (1.5) ends with a partial
/// epoch that trains on the first part of that epoch's shuffle.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Epochs(pub f64);

impl Epochs {
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

    pub fn total_steps(self, steps_per_epoch: usize) -> usize {
        (1..=self.count())
            .map(|epoch| self.steps_in(epoch, steps_per_epoch))
            .sum()
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

impl std::str::FromStr for Epochs {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.parse::<f64>() {
            Ok(x) if x.is_finite() && x > 0.0 && x <= 100_000.0 => Ok(Self(x)),
            Ok(_) => {
                Err("must be a positive number of epochs (1.5 ends with half an epoch)".to_owned())
            }
            Err(_) => Err(format!("{s:?} is not a number")),
        }
    }
}

/// Named starting points for `train`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Recipe {
    /// The Keras tutorial: 10 epochs, batch 32, Adam at 1e-3, constant rate.
    Tutorial,
    /// The least training time to 99% on MNIST with the same network: 1.3 epochs at batch
    /// 128 (the batch size with the highest throughput on the CPU), a one-cycle schedule peaking
    /// at 1e-2, label smoothing 0.1.
    Fast,
    /// The most accurate single model that trains on a 2-core CPU within about an hour: the
    /// vgg-32 network, 15 epochs at batch 128 with random affine augmentation, a one-cycle
    /// schedule peaking at 4e-3, label smoothing 0.1.
    Large,
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
    /// Deliver the epoch with the best validation accuracy (when there is a validation set)
    /// rather than the last one.
    pub choose_by_validation: bool,
    /// Stop after this many epochs without a better validation accuracy.
    pub patience: Option<usize>,
    /// Decay of the exponential moving average of the weights (evaluated and saved in place of
    /// the raw weights), when enabled.
    pub weight_averaging: Option<f64>,
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
        }
    }
}

/// The data a run is judged on after each epoch.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvalSets<'a> {
    /// Held out from the training data; chooses the model when present.
    pub validation: Option<&'a Split>,
    /// Reported, never used to choose.
    pub test: Option<&'a Split>,
}

/// Loss and accuracy on the evaluation sets.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Scores {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub validation_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub validation_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub test_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub test_accuracy: Option<f64>,
}

impl Scores {
    pub fn evaluate(model: &Classifier, sets: &EvalSets) -> Result<Self> {
        let score = |split: Option<&Split>| -> Result<Option<Evaluation>> {
            split.map(|s| metrics::evaluate(model, s)).transpose()
        };
        let validation = score(sets.validation)?;
        let test = score(sets.test)?;
        Ok(Self {
            validation_loss: validation.as_ref().map(|e| e.loss),
            validation_accuracy: validation.as_ref().map(|e| e.accuracy()),
            test_loss: test.as_ref().map(|e| e.loss),
            test_accuracy: test.as_ref().map(|e| e.accuracy()),
        })
    }

    /// "validation accuracy 99.10% (loss 0.0301), test accuracy 99.05% (loss 0.0312)"
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let (Some(acc), Some(loss)) = (self.validation_accuracy, self.validation_loss) {
            parts.push(format!(
                "validation accuracy {:.2}% (loss {loss:.4})",
                100.0 * acc
            ));
        }
        if let (Some(acc), Some(loss)) = (self.test_accuracy, self.test_loss) {
            parts.push(format!(
                "test accuracy {:.2}% (loss {loss:.4})",
                100.0 * acc
            ));
        }
        parts.join(", ")
    }
}

/// One line of `metrics.jsonl`. Epoch 0, when present, scores the starting checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's training batches (absent for epoch 0).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub train_loss: Option<f64>,
    #[serde(flatten)]
    pub scores: Scores,
    /// Seconds spent training in this epoch (evaluation excluded).
    pub seconds: f64,
    /// Training images per second in this epoch.
    pub images_per_second: f64,
    /// The learning rate at the epoch's first step, and at its last.
    pub learning_rate: f64,
    pub learning_rate_end: f64,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct FitOutcome {
    pub records: Vec<EpochRecord>,
    /// The epoch whose weights the model holds at the end.
    pub chosen_epoch: usize,
    pub stopped_early: bool,
}

/// How often (in batches) the progress bar's loss and rate are refreshed; each refresh reads
/// one number back from the device.
const PROGRESS_EVERY: usize = 50;

/// Where an interrupted or finished run stands, for `train --resume`: the epoch records so far
/// and the state saved after the last completed epoch (see [`save_state`]).
pub struct Resume {
    pub records: Vec<EpochRecord>,
    pub state: BTreeMap<String, Tensor>,
}

impl Resume {
    /// The epochs the saved state had completed (`state.epoch`).
    pub fn completed_epochs(&self) -> Result<usize> {
        let epoch = self
            .state
            .get("state.epoch")
            .context("the resume state has no state.epoch")?;
        Ok(epoch.int64_value(&[]) as usize)
    }
}

/// The best epoch so far (by validation accuracy when choosing by it) and its weights.
struct Best {
    accuracy: f64,
    epoch: usize,
    weights: Vec<Tensor>,
}

/// Trains `model` on `train`, scoring `eval` after each epoch and handing each record to
/// `after_epoch` together with whether that epoch is the best so far (the model then holds the
/// weights to save). After each epoch the full training state (weights, optimizer moments,
/// weight average, best epoch) is written to `state_file`, so that a run can be resumed from
/// it bit for bit. At the end the model holds the chosen epoch's weights.
///
/// Stops with an [`Interrupted`] error after the current step when SIGINT or SIGTERM arrives,
/// and with an error when the loss stops being finite; in both cases the files written after the
/// last completed epoch stay as they were.
pub fn fit(
    model: &Classifier,
    train: &Split,
    eval: &EvalSets,
    options: &TrainOptions,
    resume: Option<Resume>,
    state_file: Option<&Path>,
    mut after_epoch: impl FnMut(&EpochRecord, bool) -> Result<()>,
) -> Result<FitOutcome> {
    ensure!(!train.is_empty(), "the training set is empty");
    freeze_parameters(model, options.freeze)?;
    let mut optimizer = Adam::new(&model.vs, options.learning_rate);
    let mut average = options
        .weight_averaging
        .map(|decay| WeightAverage::new(model, decay));
    let steps_per_epoch = train.len().div_ceil(options.batch_size);
    let schedule = ScheduleClock {
        schedule: options.schedule,
        base: options.learning_rate,
        total_steps: options.epochs.total_steps(steps_per_epoch),
    };
    let epochs = options.epochs.count();
    let mut records = Vec::with_capacity(epochs);
    let mut best: Option<Best> = None;
    let mut first_epoch = 1;
    if let Some(resume) = resume {
        let done = resume.completed_epochs()?;
        restore_state(
            model,
            &mut optimizer,
            average.as_mut(),
            &mut best,
            &resume.state,
        )?;
        records = resume
            .records
            .into_iter()
            .filter(|r| (1..=done).contains(&r.epoch))
            .collect();
        ensure!(
            records.len() == done,
            "metrics.jsonl holds {} of the {done} epochs the resume state has completed",
            records.len()
        );
        ensure!(
            done < epochs,
            "the run has already completed {done} epochs; pass --epochs with a larger total to train further"
        );
        info!("resuming after epoch {done} of {epochs}");
        first_epoch = done + 1;
    }
    let mut stopped_early = false;
    for epoch in first_epoch..=epochs {
        let first_step = (0..epoch - 1)
            .map(|e| options.epochs.steps_in(e + 1, steps_per_epoch))
            .sum::<usize>();
        let steps = options.epochs.steps_in(epoch, steps_per_epoch);
        let trained = train_one_epoch(
            model,
            &mut optimizer,
            average.as_mut(),
            train,
            options,
            &schedule,
            epoch,
            first_step,
            steps,
        )?;
        // Score (and possibly save) the weights the run would deliver: the average, if kept.
        let raw = average.as_ref().map(|a| a.swap_in(model));
        let scores = Scores::evaluate(model, eval)?;
        let record = EpochRecord {
            epoch,
            train_loss: Some(trained.loss),
            scores,
            seconds: trained.seconds,
            images_per_second: trained.images as f64 / trained.seconds,
            learning_rate: schedule.at(first_step),
            learning_rate_end: schedule.at(first_step + steps - 1),
        };
        let choosing = options.choose_by_validation && scores.validation_accuracy.is_some();
        let is_best = match (scores.validation_accuracy, &best) {
            (Some(acc), Some(b)) if choosing => acc > b.accuracy,
            _ => true,
        };
        info!(
            "epoch {epoch}/{epochs}: train loss {:.4}, {}, lr {:.2e}→{:.2e}, {:.1} s, {:.0} images/s{}",
            trained.loss,
            scores.describe(),
            record.learning_rate,
            record.learning_rate_end,
            record.seconds,
            record.images_per_second,
            if is_best && choosing {
                "  (best so far)"
            } else {
                ""
            }
        );
        if is_best {
            best = Some(Best {
                accuracy: scores.validation_accuracy.unwrap_or(0.0),
                epoch,
                weights: snapshot(model),
            });
        }
        after_epoch(&record, is_best)?;
        if let (Some(raw), Some(average)) = (raw, average.as_ref()) {
            average.swap_out(model, raw);
        }
        records.push(record);
        if let Some(path) = state_file {
            save_state(
                path,
                epoch,
                model,
                &optimizer,
                average.as_ref(),
                best.as_ref(),
            )?;
        }
        let best_epoch = best.as_ref().map_or(epoch, |b| b.epoch);
        if let Some(patience) = options.patience {
            if eval.validation.is_some() && epoch - best_epoch >= patience && epoch < epochs {
                info!("no better validation accuracy for {patience} epoch(s): stopping early");
                stopped_early = true;
                break;
            }
        }
    }
    let best = best.expect("at least one epoch ran");
    restore(model, &best.weights);
    Ok(FitOutcome {
        records,
        chosen_epoch: best.epoch,
        stopped_early,
    })
}

/// Writes the training state after `epoch` atomically, as one libtorch file of named tensors:
/// `state.epoch`, `model.*` (the raw weights), `adam.*`, `ema.*` (the weight average, when kept),
/// `best.epoch`, `best.accuracy` and `best.*` (the best epoch's weights).
fn save_state(
    path: &Path,
    epoch: usize,
    model: &Classifier,
    optimizer: &Adam,
    average: Option<&WeightAverage>,
    best: Option<&Best>,
) -> Result<()> {
    let names = variable_names(model);
    let mut tensors: Vec<(String, Tensor)> =
        vec![("state.epoch".to_owned(), Tensor::from(epoch as i64))];
    for (name, t) in names.iter().zip(ordered_variables(model)) {
        tensors.push((format!("model.{name}"), t.detach().contiguous()));
    }
    tensors.extend(optimizer.state());
    if let Some(average) = average {
        for (name, t) in names.iter().zip(&average.shadow) {
            tensors.push((format!("ema.{name}"), t.contiguous()));
        }
    }
    if let Some(best) = best {
        tensors.push(("best.epoch".to_owned(), Tensor::from(best.epoch as i64)));
        tensors.push(("best.accuracy".to_owned(), Tensor::from(best.accuracy)));
        for (name, t) in names.iter().zip(&best.weights) {
            tensors.push((format!("best.{name}"), t.contiguous()));
        }
    }
    let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    crate::fsutil::save_atomically(path, |temp| Ok(Tensor::save_multi(&named, temp)?))
}

/// Puts a saved state back into the model, the optimizer, the average and the best epoch.
fn restore_state(
    model: &Classifier,
    optimizer: &mut Adam,
    average: Option<&mut WeightAverage>,
    best: &mut Option<Best>,
    state: &BTreeMap<String, Tensor>,
) -> Result<()> {
    let get = |key: &str| {
        state
            .get(key)
            .with_context(|| format!("the resume state has no {key}"))
    };
    let prefixed = |prefix: &str| -> Result<Vec<Tensor>> {
        variable_names(model)
            .iter()
            .map(|name| Ok(get(&format!("{prefix}.{name}"))?.shallow_clone()))
            .collect()
    };
    restore(model, &prefixed("model")?);
    optimizer.load_state(state)?;
    if let Some(average) = average {
        let shadow = prefixed("ema").context("the run kept a weight average (--ema)")?;
        tch::no_grad(|| {
            for (mine, saved) in average.shadow.iter_mut().zip(&shadow) {
                mine.copy_(saved);
            }
        });
    }
    *best = Some(Best {
        epoch: get("best.epoch")?.int64_value(&[]) as usize,
        accuracy: get("best.accuracy")?.double_value(&[]),
        weights: prefixed("best")?.iter().map(|t| t.copy()).collect(),
    });
    Ok(())
}

/// Turns off gradients for the frozen parameters; Adam skips parameters without a gradient,
/// so they stay bit-identical.
fn freeze_parameters(model: &Classifier, freeze: Freeze) -> Result<()> {
    let mut trainable = 0;
    for (name, variable) in model.trainable_variables() {
        let frozen = freeze.freezes(&name);
        let _ = variable.set_requires_grad(!frozen);
        trainable += usize::from(!frozen);
    }
    ensure!(trainable > 0, "--freeze {freeze} leaves nothing to train");
    Ok(())
}

/// Copies of the model's parameters, by name order.
fn snapshot(model: &Classifier) -> Vec<Tensor> {
    ordered_variables(model)
        .iter()
        .map(|t| t.detach().copy())
        .collect()
}

fn restore(model: &Classifier, weights: &[Tensor]) {
    tch::no_grad(|| {
        for (mut variable, saved) in ordered_variables(model).into_iter().zip(weights) {
            variable.copy_(saved);
        }
    });
}

fn variable_names(model: &Classifier) -> Vec<String> {
    let mut names: Vec<String> = model.vs.variables().into_keys().collect();
    names.sort();
    names
}

fn ordered_variables(model: &Classifier) -> Vec<Tensor> {
    let mut variables: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    variables.into_iter().map(|(_, t)| t).collect()
}

/// An exponential moving average of the weights, updated after every step.
struct WeightAverage {
    decay: f64,
    shadow: Vec<Tensor>,
}

impl WeightAverage {
    fn new(model: &Classifier, decay: f64) -> Self {
        Self {
            decay,
            shadow: snapshot(model),
        }
    }

    fn update(&mut self, model: &Classifier) {
        tch::no_grad(|| {
            for (shadow, variable) in self.shadow.iter_mut().zip(ordered_variables(model)) {
                let _ = shadow.lerp_(&variable, 1.0 - self.decay);
            }
        });
    }

    /// Puts the average into the model; returns the raw weights to put back.
    fn swap_in(&self, model: &Classifier) -> Vec<Tensor> {
        let raw = snapshot(model);
        restore(model, &self.shadow);
        raw
    }

    fn swap_out(&self, model: &Classifier, raw: Vec<Tensor>) {
        restore(model, &raw);
    }
}

/// The schedule with its base rate and the run's length.
struct ScheduleClock {
    schedule: Schedule,
    base: f64,
    total_steps: usize,
}

impl ScheduleClock {
    fn at(&self, step: usize) -> f64 {
        self.schedule
            .learning_rate(self.base, step, self.total_steps)
    }
}

struct EpochResult {
    /// Mean loss over the images trained on.
    loss: f64,
    seconds: f64,
    images: usize,
}

/// One optimisation step on a batch: forward, mean cross-entropy, backward, Adam update. The
/// loss stays on the device (reading it back would wait for the device every step).
pub fn train_step(
    model: &Classifier,
    optimizer: &mut Adam,
    images: &Tensor,
    labels: &Tensor,
    label_smoothing: f64,
) -> Tensor {
    let loss = model.forward(images, true).cross_entropy_loss::<Tensor>(
        labels,
        None,
        Reduction::Mean,
        -100,
        label_smoothing,
    );
    optimizer.backward_step(&loss);
    loss
}

/// One pass over the training set in the epoch's order (`steps` batches of it: fewer in a
/// partial last epoch).
#[allow(clippy::too_many_arguments)]
fn train_one_epoch(
    model: &Classifier,
    optimizer: &mut Adam,
    mut average: Option<&mut WeightAverage>,
    train: &Split,
    options: &TrainOptions,
    schedule: &ScheduleClock,
    epoch: usize,
    first_step: usize,
    steps: usize,
) -> Result<EpochResult> {
    let device = model.device();
    let n = train.len();
    let order =
        Tensor::from_slice(&rng::epoch_permutation(n, options.seed, epoch)).to_device(device);
    let bar = progress::steps_bar(
        steps as u64,
        &format!("epoch {epoch}/{}", options.epochs.count()),
    );
    let mut images_seen = 0;
    let ranges = AffineRanges::default();
    // Dropout draws from libtorch's global generator: seeding it per epoch keeps runs
    // reproducible and lets a resumed run draw what the uninterrupted one would have.
    tch::manual_seed(rng::epoch_seed(options.seed, epoch) as i64);
    let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
    let started = Instant::now();
    for step in 0..steps {
        if options.schedule != Schedule::Constant {
            optimizer.set_lr(schedule.at(first_step + step));
        }
        let begin = step * options.batch_size;
        let len = options.batch_size.min(n - begin);
        let Split { mut images, labels } = train.gather(&order.narrow(0, begin as i64, len as i64));
        if options.augment {
            let mut rng = augment::step_rng(options.seed, epoch, step);
            images = augment::random_affine(&images, &ranges, &mut rng);
        }
        let loss = train_step(model, optimizer, &images, &labels, options.label_smoothing);
        if let Some(average) = average.as_deref_mut() {
            average.update(model);
        }
        loss_sum += loss.detach() * len as f64;
        images_seen += len;
        let done = step + 1;
        if done % PROGRESS_EVERY == 0 || done == steps {
            let seen = (begin + len) as f64;
            let elapsed = started.elapsed().as_secs_f64();
            let mean_loss = loss_sum.double_value(&[]) / seen;
            ensure!(
                mean_loss.is_finite(),
                "the training loss became {mean_loss} in epoch {epoch} (by step {done} of {steps}); \
                 stopping. The run folder keeps the last completed epoch; a lower --lr usually helps"
            );
            bar.set_position(done as u64);
            bar.set_message(format!("loss {mean_loss:.4}  {:.0} img/s", seen / elapsed));
        }
        if let Some(signal) = crate::interrupt::requested() {
            bar.finish_and_clear();
            return Err(Interrupted { signal, epoch }.into());
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok(EpochResult {
        loss: loss_sum.double_value(&[]) / images_seen as f64,
        seconds,
        images: images_seen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_epochs_end_with_a_partial_epoch() {
        let epochs: Epochs = "1.3".parse().unwrap();
        assert_eq!(epochs.count(), 2);
        assert_eq!(epochs.steps_in(1, 469), 469);
        assert_eq!(epochs.steps_in(2, 469), 141);
        assert_eq!(epochs.total_steps(469), 610);
        assert_eq!(Epochs(2.0).total_steps(469), 938);
        assert_eq!(Epochs(0.001).total_steps(469), 1, "at least one step");
        for bad in ["0", "-1", "nan", "inf", "ten"] {
            assert!(bad.parse::<Epochs>().is_err(), "{bad} accepted");
        }
        assert_eq!(serde_json::to_string(&Epochs(10.0)).unwrap(), "10");
        assert_eq!(serde_json::to_string(&Epochs(1.5)).unwrap(), "1.5");
    }
    use crate::model::{named_parameters, Architecture};
    use tch::Device;

    /// A small learnable problem: the label is the row of the one bright horizontal bar.
    fn bars(n: i64) -> Split {
        let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(10);
        let images = Tensor::zeros([n, 1, 28, 28], (Kind::Float, Device::Cpu));
        for i in 0..n {
            let row = 2 + 2 * (i % 10);
            let _ = images.get(i).get(0).get(row).fill_(1.0);
        }
        Split { images, labels }
    }

    fn options(seed: u64) -> TrainOptions {
        TrainOptions {
            epochs: Epochs(2.0),
            batch_size: 16,
            learning_rate: 3e-3,
            seed,
            ..Default::default()
        }
    }

    // Bit-identical weights for equal seeds are tested through the CLI (tests/cli.rs), one
    // process per run: libtorch's generator is global, and tests here run in parallel.
    /// `fit` without a state file or an after-epoch callback.
    fn fit_quietly(
        model: &Classifier,
        data: &Split,
        sets: &EvalSets,
        options: &TrainOptions,
    ) -> FitOutcome {
        fit(model, data, sets, options, None, None, |_, _| Ok(())).unwrap()
    }

    fn fit_bars(options: &TrainOptions) -> (Classifier, FitOutcome) {
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
        let data = bars(200);
        let validation = data.first(50);
        let sets = EvalSets {
            validation: Some(&validation),
            test: None,
        };
        let outcome = fit_quietly(&model, &data, &sets, options);
        (model, outcome)
    }

    #[test]
    fn training_learns_a_learnable_problem() {
        let (_, outcome) = fit_bars(&options(1));
        let records = &outcome.records;
        assert_eq!(records.len(), 2);
        assert!(records[1].train_loss < records[0].train_loss);
        let accuracy = records[1].scores.validation_accuracy.unwrap();
        assert!(accuracy > 0.9, "{:?}", records[1]);
        assert!(records[1].scores.test_accuracy.is_none());
    }

    #[test]
    fn frozen_layers_stay_bit_identical_and_the_rest_moves() {
        for freeze in [Freeze::Conv1, Freeze::Conv] {
            let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
            let before = named_parameters(&model);
            let data = bars(64);
            let options = TrainOptions {
                freeze,
                augment: true,
                schedule: Schedule::Cosine,
                ..options(2)
            };
            fit_quietly(&model, &data, &EvalSets::default(), &options);
            let after = named_parameters(&model);
            for (name, tensor) in &before {
                let unchanged = tensor.equal(&after[name]);
                assert_eq!(unchanged, freeze.freezes(name), "{freeze}: {name}");
            }
        }
    }

    #[test]
    fn freezing_everything_is_refused() {
        assert!(Freeze::Conv.freezes("conv2.bias") && !Freeze::Conv.freezes("fc.weight"));
        assert!(Freeze::Conv1.freezes("conv1.weight") && !Freeze::Conv1.freezes("conv2.weight"));
    }

    #[test]
    fn patience_stops_when_validation_stops_improving() {
        // A learning rate of ~0 cannot improve on the first epoch's validation accuracy.
        let options = TrainOptions {
            epochs: Epochs(6.0),
            learning_rate: 1e-12,
            patience: Some(2),
            choose_by_validation: true,
            ..options(3)
        };
        let (_, outcome) = fit_bars(&options);
        assert!(outcome.stopped_early);
        assert_eq!(outcome.records.len(), 3);
        assert_eq!(outcome.chosen_epoch, 1);
    }

    #[test]
    fn the_schedule_is_recorded_per_epoch() {
        let options = TrainOptions {
            schedule: Schedule::Cosine,
            ..options(4)
        };
        let (_, outcome) = fit_bars(&options);
        let r = &outcome.records;
        assert_eq!(r[0].learning_rate, 3e-3);
        assert!(r[0].learning_rate_end < r[0].learning_rate);
        assert!(r[1].learning_rate < r[0].learning_rate_end + 1e-12);
        assert!(r[1].learning_rate_end < 3e-3 * 0.01);
    }

    #[test]
    fn weight_averaging_delivers_the_average_not_the_raw_weights() {
        // With decay 1 the average never moves: the run must deliver the starting weights,
        // although the raw weights trained.
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
        let start = named_parameters(&model);
        let data = bars(64);
        let options = TrainOptions {
            weight_averaging: Some(1.0),
            ..options(5)
        };
        let outcome = fit_quietly(&model, &data, &EvalSets::default(), &options);
        assert!(outcome.records[1].train_loss.unwrap() < outcome.records[0].train_loss.unwrap());
        let delivered = named_parameters(&model);
        for (name, tensor) in &start {
            assert!(tensor.equal(&delivered[name]), "{name} is not the average");
        }
    }
}
