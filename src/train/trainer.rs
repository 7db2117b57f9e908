//! The optimisation itself: a [`Trainer`] holds what changes from step to step (the model's
//! weights, Adam's state, the weight average, the learning rate) and trains one epoch at a time.
//!
//! The whole training set stays as one tensor on the training device; each batch is gathered by
//! index from the epoch's permutation, so no data crosses between host and device inside a step
//! (apart from augmentation's few transform parameters), and the running loss is accumulated on
//! the device and read only when progress is shown.

use super::average::WeightAverage;
use super::options::TrainOptions;
use super::records::StepSample;
use super::sink::EpochSink;
use crate::data::augment::{self, AffineRanges};
use crate::data::Split;
use crate::interrupt;
use crate::model::Classifier;
use crate::optim::schedule::{Plateau, Schedule};
use crate::optim::{clip, LossScale, Optimizer};
use crate::precision::Precision;
use crate::{progress, rng};
use anyhow::{ensure, Result};
use std::time::Instant;
use tch::{Kind, Reduction, Tensor};

/// How often (in steps of the run) the progress bar is refreshed and a [`StepSample`] taken
/// (Lightning's `log_every_n_steps` default); each reads one or two numbers back from the
/// device. Counted across epochs, so that a resumed run samples the same steps.
pub const SAMPLE_EVERY: usize = 50;

/// The schedule with its base rate and the run's length.
pub struct ScheduleClock {
    schedule: Schedule,
    base: f64,
    /// Where the cosine and one-cycle schedules end (`--min-lr`), when not their own end.
    end: Option<f64>,
    total_steps: usize,
}

impl ScheduleClock {
    /// The clock of a run with `options` on `examples` training examples, and its steps per
    /// epoch.
    pub fn of_run(options: &TrainOptions, examples: usize) -> (Self, usize) {
        let steps_per_epoch = examples.div_ceil(options.batch_size);
        let clock = Self {
            schedule: options.schedule,
            base: options.learning_rate,
            end: options.min_lr,
            total_steps: options.epochs.total_steps(steps_per_epoch),
        };
        (clock, steps_per_epoch)
    }

    /// Whether the rate moves within an epoch (the plateau schedule moves only between them,
    /// by what the run's validation losses were).
    pub fn moves_within_epochs(&self) -> bool {
        matches!(self.schedule, Schedule::Cosine | Schedule::Onecycle)
    }

    /// The run's length in steps.
    pub fn total_steps(&self) -> usize {
        self.total_steps
    }

    /// The learning rate at `step` (0-based) of the run.
    pub fn at(&self, step: usize) -> f64 {
        self.schedule
            .learning_rate_ending_at(self.base, self.end, step, self.total_steps)
    }
}

/// What one epoch of training measured.
pub struct EpochResult {
    /// Mean loss over the images trained on.
    pub loss: f64,
    pub seconds: f64,
    pub images: usize,
    /// The mean global gradient norm before clipping, when gradients are clipped.
    pub grad_norm: Option<f64>,
}

/// An epoch stopped after a step before its end: what is needed to go on from that step.
pub struct PartialEpoch {
    pub epoch: usize,
    /// Steps done in the epoch.
    pub steps_done: usize,
    /// The sum of loss × batch length so far, as the loop keeps it (a float on the device), so
    /// that the epoch's mean loss comes out the same after a resume.
    pub loss_sum: Tensor,
    pub images: usize,
    /// Training time spent in the epoch so far.
    pub seconds: f64,
    /// The sum of the steps' gradient norms so far (a float on the device), when clipping.
    pub grad_norm_sum: Option<Tensor>,
}

impl PartialEpoch {
    /// The step sample after the steps done so far (`first_step` steps of the run came before
    /// the epoch); an error when the loss stopped being finite.
    fn sample(
        &self,
        first_step: usize,
        learning_rate: f64,
        images_per_second: f64,
        steps: usize,
    ) -> Result<StepSample> {
        let (epoch, done) = (self.epoch, self.steps_done);
        let sample = StepSample {
            step: first_step + done,
            epoch,
            train_loss: self.loss_sum.double_value(&[]) / self.images as f64,
            learning_rate,
            images_per_second,
            grad_norm: (self.grad_norm_sum.as_ref()).map(|sum| sum.double_value(&[]) / done as f64),
        };
        ensure!(
            sample.train_loss.is_finite(),
            "the training loss became {} in epoch {epoch} (by step {done} of {steps}); \
             stopping. The run folder keeps the last saved state; a lower --lr usually helps",
            sample.train_loss
        );
        Ok(sample)
    }

    /// The finished epoch's figures, after `steps` steps and `seconds` of training.
    fn result(self, seconds: f64, steps: usize) -> EpochResult {
        EpochResult {
            loss: self.loss_sum.double_value(&[]) / self.images as f64,
            seconds,
            images: self.images,
            grad_norm: (self.grad_norm_sum).map(|sum| sum.double_value(&[]) / steps as f64),
        }
    }
}

/// An epoch's training time: what earlier sessions of it spent, and this one's start.
struct EpochClock {
    started: Instant,
    seconds_before: f64,
}

impl EpochClock {
    fn start(seconds_before: f64) -> Self {
        Self {
            started: Instant::now(),
            seconds_before,
        }
    }

    fn seconds(&self) -> f64 {
        self.seconds_before + self.started.elapsed().as_secs_f64()
    }
}

/// How a call to [`Trainer::train_epoch`] ended.
pub enum EpochRun {
    Finished(EpochResult),
    /// Stopped after a step within the epoch: `signal` asked to stop, or (without one) the
    /// state is due to be saved (`checkpoint_every_steps`) and the epoch goes on.
    Paused {
        partial: PartialEpoch,
        signal: Option<i32>,
    },
}

/// The moving parts of a run's optimisation.
pub struct Trainer<'a> {
    pub model: &'a Classifier,
    pub optimizer: Optimizer,
    pub average: Option<WeightAverage>,
    pub options: &'a TrainOptions,
    pub clock: ScheduleClock,
    /// The plateau schedule's state (its scale stays 1 under the other schedules).
    pub plateau: Plateau,
    pub steps_per_epoch: usize,
    /// fp16's dynamic loss scale (`None` in fp32 and bf16, which need none).
    pub loss_scale: Option<LossScale>,
}

impl<'a> Trainer<'a> {
    /// Freezes the layers the options name, then sets up the optimizer over the rest, the weight average
    /// and the schedule for a training set of `examples`.
    pub fn new(model: &'a Classifier, options: &'a TrainOptions, examples: usize) -> Result<Self> {
        freeze_parameters(model, options)?;
        let optimizer =
            Optimizer::for_model(model, options.optimizer_settings(), options.learning_rate);
        let average = options
            .weight_averaging
            .map(|decay| WeightAverage::new(model, decay));
        let (clock, steps_per_epoch) = ScheduleClock::of_run(options, examples);
        Ok(Self {
            model,
            optimizer,
            average,
            options,
            clock,
            plateau: Plateau::new(options.plateau_factor, options.plateau_patience),
            steps_per_epoch,
            loss_scale: (options.precision == Precision::Fp16).then(LossScale::default),
        })
    }

    /// The learning rate at `step` (0-based) of the run: the schedule's, times the plateau's
    /// scale.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        self.clock.at(step) * self.plateau.scale
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

    /// Trains `epoch` in its order, from its first step or from where `partial` stopped,
    /// handing `sink` a [`StepSample`] every [`SAMPLE_EVERY`] steps of the run and after the
    /// epoch's last.
    ///
    /// Pauses after a step when SIGINT or SIGTERM has arrived, or when the state is due to be
    /// saved; stops with an error when the loss stops being finite. A signal after the last
    /// step of the epoch is left for the caller, which saves the whole epoch first.
    pub fn train_epoch(
        &mut self,
        train: &Split,
        epoch: usize,
        partial: Option<PartialEpoch>,
        sink: &mut dyn EpochSink,
    ) -> Result<EpochRun> {
        let options = self.options;
        let (first_step, steps) = (self.first_step(epoch), self.steps_in(epoch));
        let mut progress = partial.unwrap_or_else(|| self.fresh_epoch(epoch));
        let order = train.epoch_order(options.seed, epoch);
        let bar = progress::steps_bar(
            steps as u64,
            &format!("epoch {epoch}/{}", options.epochs.count()),
        );
        bar.set_position(progress.steps_done as u64);
        let clock = EpochClock::start(progress.seconds);
        let mut window = RateWindow::new(progress.images);
        for step in progress.steps_done..steps {
            let learning_rate = self.train_batch(train, &order, first_step + step, &mut progress);
            let done = step + 1;
            if (first_step + done) % SAMPLE_EVERY == 0 || done == steps {
                let rate = window.rate(progress.images);
                let sample = progress.sample(first_step, learning_rate, rate, steps)?;
                bar.set_position(done as u64);
                bar.set_message(format!(
                    "loss {:.4}  {:.0} img/s",
                    sample.train_loss, sample.images_per_second
                ));
                sink.step_sampled(&sample)?;
            }
            if done == steps {
                break;
            }
            interrupt::raise_if_asked_at_step(first_step + done);
            let signal = interrupt::requested();
            let save_due = options
                .checkpoint_every_steps
                .is_some_and(|every| done % every == 0);
            if signal.is_some() || save_due {
                bar.finish_and_clear();
                progress.seconds = clock.seconds();
                return Ok(EpochRun::Paused {
                    partial: progress,
                    signal,
                });
            }
        }
        bar.finish_and_clear();
        Ok(EpochRun::Finished(progress.result(clock.seconds(), steps)))
    }

    /// An epoch before its first step.
    fn fresh_epoch(&self, epoch: usize) -> PartialEpoch {
        let zero = || Tensor::zeros([], (Kind::Float, self.model.device()));
        PartialEpoch {
            epoch,
            steps_done: 0,
            loss_sum: zero(),
            images: 0,
            seconds: 0.0,
            grad_norm_sum: self.options.clip_grad_norm.is_some().then(zero),
        }
    }

    /// Trains the run's step `run_step`, the epoch's next (its batch of `order`, augmented when
    /// asked, with the step's own random seed), and counts it in `progress`; returns the step's
    /// learning rate.
    fn train_batch(
        &mut self,
        train: &Split,
        order: &Tensor,
        run_step: usize,
        progress: &mut PartialEpoch,
    ) -> f64 {
        let options = self.options;
        let (epoch, step) = (progress.epoch, progress.steps_done);
        let learning_rate = self.learning_rate_at(run_step);
        if options.schedule != Schedule::Constant {
            self.optimizer.set_lr(learning_rate);
        }
        let begin = step * options.batch_size;
        let len = options.batch_size.min(train.len() - begin);
        let Split { mut images, labels } = train.gather(&order.narrow(0, begin as i64, len as i64));
        if options.augment {
            let mut rng = augment::step_rng(options.seed, epoch, step);
            images = augment::random_affine(&images, &AffineRanges::default(), &mut rng);
        }
        tch::manual_seed(rng::step_seed(options.seed, epoch, step) as i64);
        let stepped = self.step(&images, &labels);
        progress.loss_sum += stepped.loss.detach() * len as f64;
        if let (Some(sum), Some(norm)) = (progress.grad_norm_sum.as_mut(), stepped.grad_norm) {
            *sum += norm;
        }
        progress.images += len;
        progress.steps_done = step + 1;
        learning_rate
    }

    /// One step on a batch, then the weight average's update.
    fn step(&mut self, images: &Tensor, labels: &Tensor) -> Step {
        let options = self.options;
        let step = train_step(
            self.model,
            &mut self.optimizer,
            Batch { images, labels },
            options.label_smoothing,
            options.clip_grad_norm,
            self.loss_scale.as_mut(),
        );
        if let Some(average) = self.average.as_mut() {
            average.update(self.model);
        }
        step
    }
}

/// Images per second between two samples.
struct RateWindow {
    since: Instant,
    images_before: usize,
}

impl RateWindow {
    fn new(images_seen: usize) -> Self {
        Self {
            since: Instant::now(),
            images_before: images_seen,
        }
    }

    /// The rate since the last call (or the start), and a new window from now.
    fn rate(&mut self, images_seen: usize) -> f64 {
        let seconds = self.since.elapsed().as_secs_f64().max(1e-9);
        let rate = (images_seen - self.images_before) as f64 / seconds;
        *self = Self::new(images_seen);
        rate
    }
}

/// A batch of images and their labels.
#[derive(Clone, Copy)]
pub struct Batch<'a> {
    pub images: &'a Tensor,
    pub labels: &'a Tensor,
}

/// What one step leaves on the device.
pub struct Step {
    pub loss: Tensor,
    /// The global gradient norm before clipping, when clipping.
    pub grad_norm: Option<Tensor>,
}

/// One optimisation step on a batch: forward, mean cross-entropy, backward (of the loss times
/// `loss_scale`'s scale, under fp16), clipping when asked, update. Under fp16 a step whose
/// gradients are not finite is skipped and the scale lowered (see [`LossScale`]). The loss
/// stays on the device (reading it back would wait for the device every step).
pub fn train_step(
    model: &Classifier,
    optimizer: &mut Optimizer,
    batch: Batch,
    label_smoothing: f64,
    clip_grad_norm: Option<f64>,
    loss_scale: Option<&mut LossScale>,
) -> Step {
    let loss = model
        .forward(batch.images, true)
        .cross_entropy_loss::<Tensor>(batch.labels, None, Reduction::Mean, -100, label_smoothing);
    optimizer.zero_grad();
    let parameters = optimizer.parameters();
    if let Some(scale) = loss_scale {
        scale.scale_loss(&loss).backward();
        let finite = scale.unscale(&parameters);
        scale.update(finite);
        if !finite {
            optimizer.zero_grad();
            return Step {
                loss,
                grad_norm: None,
            };
        }
    } else {
        loss.backward();
    }
    let grad_norm = clip_grad_norm.map(|max| clip::clip_grad_norm(&parameters, max));
    optimizer.update();
    Step { loss, grad_norm }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The epoch's running loss and gradient norm stay on the device between the samples the
    /// host reads (no read per step); what they give equals the host's sums of the same steps.
    #[test]
    fn device_side_accumulators_match_their_host_counterparts() {
        let zero = || Tensor::zeros([], (Kind::Float, tch::Device::Cpu));
        let mut progress = PartialEpoch {
            epoch: 1,
            steps_done: 0,
            loss_sum: zero(),
            images: 0,
            seconds: 0.0,
            grad_norm_sum: Some(zero()),
        };
        let (mut host_loss, mut host_norm) = (0.0f64, 0.0f64);
        let steps = 300;
        for step in 0..steps {
            let loss = 2.5 / (1.0 + step as f64).sqrt();
            let norm = 1.0 + (step as f64 * 0.37).sin();
            let len = if step == steps - 1 { 7 } else { 32 };
            progress.loss_sum += Tensor::from(loss as f32) * len as f64;
            if let Some(sum) = progress.grad_norm_sum.as_mut() {
                *sum += Tensor::from(norm as f32);
            }
            progress.images += len;
            progress.steps_done = step + 1;
            host_loss += (loss as f32) as f64 * len as f64;
            host_norm += (norm as f32) as f64;
        }
        let images = progress.images as f64;
        let sample = progress.sample(0, 1e-3, 0.0, steps).unwrap();
        assert!((sample.train_loss - host_loss / images).abs() < 1e-6);
        let result = progress.result(1.0, steps);
        assert!((result.loss - host_loss / images).abs() < 1e-6);
        let norm = result.grad_norm.unwrap();
        assert!((norm - host_norm / steps as f64).abs() < 1e-6, "{norm}");
    }
}
