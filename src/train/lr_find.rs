//! The learning-rate range test (Smith 2015; fastai's `lr_find`, Lightning's `Tuner.lr_find`):
//! train for a few batches while the rate rises exponentially, record the smoothed loss, stop
//! when it diverges, and suggest the rate where it fell fastest.

use super::options::TrainOptions;
use super::trainer::{train_step, Batch};
use crate::data::Split;
use crate::model::Classifier;
use crate::optim::{LossScale, Optimizer};
use crate::precision::Precision;
use anyhow::{ensure, Result};
use serde::Serialize;
use tch::Tensor;

/// The smoothing of the loss: an exponential moving average, bias-corrected, as fastai's, but
/// with a memory of about ten steps rather than fifty, so that over a 100-step sweep the smoothed
/// curve does not lag behind the loss into the rates where it already diverges.
const SMOOTHING: f64 = 0.9;
/// Points at the start of the range left out of the steepest-descent search: the average is
/// still settling there.
const SETTLING: usize = 5;

/// The range to sweep.
#[derive(Debug, Clone, Copy)]
pub struct RangeTest {
    pub start: f64,
    pub end: f64,
    pub steps: usize,
    /// Stop once the smoothed loss exceeds this many times its minimum.
    pub divergence: f64,
}

impl Default for RangeTest {
    fn default() -> Self {
        Self {
            start: 1e-7,
            end: 10.0,
            steps: 100,
            divergence: 4.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RatePoint {
    pub learning_rate: f64,
    pub loss: f64,
    pub smoothed_loss: f64,
}

/// What the sweep found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateFinding {
    pub points: Vec<RatePoint>,
    /// The rate where the smoothed loss fell fastest (against the log of the rate).
    pub steepest: f64,
    /// The rate of the lowest smoothed loss, divided by ten.
    pub minimum_over_ten: f64,
    /// The suggestion: the steepest descent.
    pub suggestion: f64,
    /// The loss diverged before the end of the range.
    pub diverged: bool,
}

/// Runs the sweep on `model` (its weights change; nothing is saved) with the optimizer, batch
/// size and seed of `options`.
pub fn find_learning_rate(
    model: &Classifier,
    train: &Split,
    options: &TrainOptions,
    range: RangeTest,
) -> Result<RateFinding> {
    ensure!(
        range.steps >= 2 * SETTLING,
        "at least {} steps",
        2 * SETTLING
    );
    let n = train.len();
    ensure!(
        n >= options.batch_size,
        "fewer training images than one batch"
    );
    let mut optimizer = Optimizer::for_model(model, options.optimizer_settings(), range.start);
    // fp16 needs a loss scale, as in training.
    let mut loss_scale = (model.precision() == Precision::Fp16).then(LossScale::default);
    let per_epoch = n / options.batch_size;
    let mut order = Tensor::new();
    let (mut average, mut lowest) = (0.0, f64::INFINITY);
    let mut points = Vec::new();
    let mut diverged = false;
    for step in 0..range.steps {
        if step % per_epoch == 0 {
            let epoch = 1 + step / per_epoch;
            order = train.epoch_order(options.seed, epoch);
        }
        let rate =
            range.start * (range.end / range.start).powf(step as f64 / (range.steps - 1) as f64);
        optimizer.set_lr(rate);
        let begin = ((step % per_epoch) * options.batch_size) as i64;
        let batch = train.gather(&order.narrow(0, begin, options.batch_size as i64));
        let stepper = Stepper {
            model,
            options,
            loss_scale: loss_scale.as_mut(),
        };
        let loss = stepper.loss_after(&mut optimizer, &batch);
        if !loss.is_finite() {
            diverged = true;
            break;
        }
        average = SMOOTHING * average + (1.0 - SMOOTHING) * loss;
        let smoothed = average / (1.0 - SMOOTHING.powi(step as i32 + 1));
        points.push(RatePoint {
            learning_rate: rate,
            loss,
            smoothed_loss: smoothed,
        });
        lowest = lowest.min(smoothed);
        if step > SETTLING && smoothed > range.divergence * lowest {
            diverged = true;
            break;
        }
    }
    ensure!(
        points.len() > 2 * SETTLING,
        "the loss diverged after {} steps: start the range lower (--start)",
        points.len()
    );
    Ok(suggest(points, diverged))
}

/// What one step of the sweep trains, and with what.
struct Stepper<'a> {
    model: &'a Classifier,
    options: &'a TrainOptions,
    loss_scale: Option<&'a mut LossScale>,
}

impl Stepper<'_> {
    /// One training step on `batch`; its loss.
    fn loss_after(self, optimizer: &mut Optimizer, batch: &Split) -> f64 {
        let batch = Batch {
            images: &batch.images,
            labels: &batch.labels,
        };
        train_step(
            self.model,
            optimizer,
            batch,
            self.options.label_smoothing,
            self.options.clip_grad_norm,
            self.loss_scale,
        )
        .loss
        .double_value(&[])
    }
}

/// The steepest descent and the minimum over ten, from the recorded points.
fn suggest(points: Vec<RatePoint>, diverged: bool) -> RateFinding {
    let slope = |i: usize| {
        let (a, b) = (&points[i - 1], &points[i + 1]);
        (b.smoothed_loss - a.smoothed_loss) / (b.learning_rate.ln() - a.learning_rate.ln())
    };
    let steepest = (SETTLING..points.len() - 1)
        .min_by(|&i, &j| slope(i).total_cmp(&slope(j)))
        .map_or(points[0].learning_rate, |i| points[i].learning_rate);
    let lowest = points
        .iter()
        .min_by(|a, b| a.smoothed_loss.total_cmp(&b.smoothed_loss))
        .expect("points were recorded");
    let minimum_over_ten = lowest.learning_rate / 10.0;
    RateFinding {
        points,
        steepest,
        minimum_over_ten,
        suggestion: steepest,
        diverged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suggestion_is_where_the_smoothed_loss_falls_fastest() {
        // A loss that falls slowly, then fast around 1e-3, then rises.
        let points: Vec<RatePoint> = (0..40)
            .map(|i| {
                let rate = 1e-6 * 10f64.powf(i as f64 / 8.0);
                let x = rate.log10();
                let loss = 2.0 - 1.5 / (1.0 + (-(x + 3.0) * 4.0).exp()) + (x + 1.0).max(0.0);
                RatePoint {
                    learning_rate: rate,
                    loss,
                    smoothed_loss: loss,
                }
            })
            .collect();
        let finding = suggest(points, false);
        assert!(
            (finding.steepest.log10() + 3.0).abs() < 0.2,
            "{}",
            finding.steepest
        );
        assert!(finding.minimum_over_ten < 1e-1 && finding.minimum_over_ten > 1e-4);
    }
}
