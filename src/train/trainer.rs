//! The optimisation itself: a [`Trainer`] holds what changes from step to step (the model's
//! weights, Adam's state, the weight average, the learning rate) and trains one epoch at a time.
//!
//! The whole training set stays as one tensor on the training device; each batch is gathered by
//! index from the epoch's permutation, so no data crosses between host and device inside a step
//! (apart from augmentation's few transform parameters), and the running loss is accumulated on
//! the device and read only when progress is shown.

use super::average::WeightAverage;
use super::options::TrainOptions;
use crate::augment::{self, AffineRanges};
use crate::data::Split;
use crate::interrupt::Interrupted;
use crate::model::Classifier;
use crate::optim::Adam;
use crate::schedule::Schedule;
use crate::{progress, rng};
use anyhow::{ensure, Result};
use std::time::Instant;
use tch::{Kind, Reduction, Tensor};

/// How often (in batches) the progress bar's loss and rate are refreshed; each refresh reads
/// one number back from the device.
const PROGRESS_EVERY: usize = 50;

/// The schedule with its base rate and the run's length.
pub struct ScheduleClock {
    schedule: Schedule,
    base: f64,
    total_steps: usize,
}

impl ScheduleClock {
    /// The learning rate at `step` (0-based) of the run.
    pub fn at(&self, step: usize) -> f64 {
        self.schedule
            .learning_rate(self.base, step, self.total_steps)
    }
}

/// What one epoch of training measured.
pub struct EpochResult {
    /// Mean loss over the images trained on.
    pub loss: f64,
    pub seconds: f64,
    pub images: usize,
}

/// The moving parts of a run's optimisation.
pub struct Trainer<'a> {
    pub model: &'a Classifier,
    pub optimizer: Adam,
    pub average: Option<WeightAverage>,
    pub options: &'a TrainOptions,
    pub clock: ScheduleClock,
    pub steps_per_epoch: usize,
}

impl<'a> Trainer<'a> {
    /// Freezes the layers the options name, then sets up Adam over the rest, the weight average
    /// and the schedule for a training set of `examples`.
    pub fn new(model: &'a Classifier, options: &'a TrainOptions, examples: usize) -> Result<Self> {
        freeze_parameters(model, options)?;
        let optimizer = Adam::for_model(model, options.learning_rate);
        let average = options
            .weight_averaging
            .map(|decay| WeightAverage::new(model, decay));
        let steps_per_epoch = examples.div_ceil(options.batch_size);
        let clock = ScheduleClock {
            schedule: options.schedule,
            base: options.learning_rate,
            total_steps: options.epochs.total_steps(steps_per_epoch),
        };
        Ok(Self {
            model,
            optimizer,
            average,
            options,
            clock,
            steps_per_epoch,
        })
    }

    /// The run's step count before `epoch` starts.
    pub fn first_step(&self, epoch: usize) -> usize {
        self.options
            .epochs
            .steps_before(epoch, self.steps_per_epoch)
    }

    /// Steps in `epoch` (fewer in a partial last epoch).
    pub fn steps_in(&self, epoch: usize) -> usize {
        self.options.epochs.steps_in(epoch, self.steps_per_epoch)
    }

    /// One pass over the training set in the epoch's order.
    ///
    /// Stops with an [`Interrupted`] error after the current step when SIGINT or SIGTERM has
    /// arrived, and with an error when the loss stops being finite.
    pub fn train_epoch(&mut self, train: &Split, epoch: usize) -> Result<EpochResult> {
        let options = self.options;
        let device = self.model.device();
        let n = train.len();
        let (first_step, steps) = (self.first_step(epoch), self.steps_in(epoch));
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
                self.optimizer.set_lr(self.clock.at(first_step + step));
            }
            let begin = step * options.batch_size;
            let len = options.batch_size.min(n - begin);
            let Split { mut images, labels } =
                train.gather(&order.narrow(0, begin as i64, len as i64));
            if options.augment {
                let mut rng = augment::step_rng(options.seed, epoch, step);
                images = augment::random_affine(&images, &ranges, &mut rng);
            }
            let loss = self.step(&images, &labels);
            loss_sum += loss.detach() * len as f64;
            images_seen += len;
            let done = step + 1;
            if done % PROGRESS_EVERY == 0 || done == steps {
                let seen = (begin + len) as f64;
                let elapsed = started.elapsed().as_secs_f64();
                let mean_loss = loss_sum.double_value(&[]) / seen;
                ensure!(
                    mean_loss.is_finite(),
                    "the training loss became {mean_loss} in epoch {epoch} (by step {done} of \
                     {steps}); stopping. The run folder keeps the last completed epoch; a lower \
                     --lr usually helps"
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

    /// One step on a batch, then the weight average's update.
    fn step(&mut self, images: &Tensor, labels: &Tensor) -> Tensor {
        let loss = train_step(
            self.model,
            &mut self.optimizer,
            images,
            labels,
            self.options.label_smoothing,
        );
        if let Some(average) = self.average.as_mut() {
            average.update(self.model);
        }
        loss
    }
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

/// Turns off gradients for the frozen parameters; Adam skips parameters without a gradient,
/// so they stay bit-identical.
fn freeze_parameters(model: &Classifier, options: &TrainOptions) -> Result<()> {
    let freeze = options.freeze;
    let mut trainable = 0;
    for variable in model.trainable_variables() {
        let frozen = freeze.freezes(&variable.name);
        let _ = variable.tensor.set_requires_grad(!frozen);
        trainable += usize::from(!frozen);
    }
    ensure!(trainable > 0, "--freeze {freeze} leaves nothing to train");
    Ok(())
}
