//! The training loop: Adam on cross-entropy, the data reshuffled each epoch from the seed, the
//! test set evaluated after each epoch.
//!
//! The whole training set stays as one tensor on the training device; each batch is gathered by
//! index from the epoch's permutation, so no data crosses between host and device inside a step,
//! and the running loss is accumulated on the device and read only when progress is shown.

use crate::data::Split;
use crate::metrics::{self, Evaluation};
use crate::model::Classifier;
use crate::{progress, rng};
use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::nn::{self, OptimizerConfig};
use tch::{Kind, Tensor};
use tracing::info;

/// The hyper-parameters of a training run. The defaults are the Keras tutorial's recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 32,
            learning_rate: 1e-3,
            seed: 42,
        }
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's training batches.
    pub train_loss: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
    /// Seconds spent training in this epoch (evaluation excluded).
    pub seconds: f64,
    /// Training images per second in this epoch.
    pub images_per_second: f64,
    pub learning_rate: f64,
}

/// How often (in batches) the progress bar's loss and rate are refreshed; each refresh reads
/// one number back from the device.
const PROGRESS_EVERY: usize = 50;

/// Trains `model` on `train` for `options.epochs` epochs, evaluating on `test` after each one
/// and handing each epoch's record to `after_epoch` (which saves checkpoints and metrics).
pub fn fit(
    model: &Classifier,
    train: &Split,
    test: &Split,
    options: &TrainOptions,
    mut after_epoch: impl FnMut(&EpochRecord, &Evaluation) -> Result<()>,
) -> Result<Vec<EpochRecord>> {
    ensure!(!train.is_empty(), "the training set is empty");
    let mut optimizer = nn::Adam::default().build(&model.vs, options.learning_rate)?;
    let mut records = Vec::with_capacity(options.epochs);
    for epoch in 1..=options.epochs {
        let (train_loss, seconds) = train_one_epoch(model, &mut optimizer, train, options, epoch);
        let evaluation = metrics::evaluate(model, test)?;
        let record = EpochRecord {
            epoch,
            train_loss,
            test_loss: evaluation.loss,
            test_accuracy: evaluation.accuracy(),
            seconds,
            images_per_second: train.len() as f64 / seconds,
            learning_rate: options.learning_rate,
        };
        info!(
            "epoch {epoch}/{}: train loss {:.4}, test loss {:.4}, test accuracy {:.2}%, {:.1} s, {:.0} images/s",
            options.epochs,
            record.train_loss,
            record.test_loss,
            100.0 * record.test_accuracy,
            record.seconds,
            record.images_per_second
        );
        after_epoch(&record, &evaluation)?;
        records.push(record);
    }
    Ok(records)
}

/// One pass over the training set in the epoch's order. Returns the mean training loss and the
/// seconds it took.
fn train_one_epoch(
    model: &Classifier,
    optimizer: &mut nn::Optimizer,
    train: &Split,
    options: &TrainOptions,
    epoch: usize,
) -> (f64, f64) {
    let device = model.device();
    let n = train.len();
    let order =
        Tensor::from_slice(&rng::epoch_permutation(n, options.seed, epoch)).to_device(device);
    let steps = n.div_ceil(options.batch_size);
    let bar = progress::steps_bar(steps as u64, &format!("epoch {epoch}/{}", options.epochs));
    let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
    let started = Instant::now();
    for step in 0..steps {
        let begin = step * options.batch_size;
        let len = options.batch_size.min(n - begin);
        let indices = order.narrow(0, begin as i64, len as i64);
        let images = train.images.index_select(0, &indices);
        let labels = train.labels.index_select(0, &indices);
        let loss = model
            .forward(&images, true)
            .cross_entropy_for_logits(&labels);
        optimizer.backward_step(&loss);
        loss_sum += loss.detach() * len as f64;
        let done = step + 1;
        if done % PROGRESS_EVERY == 0 || done == steps {
            let seen = (begin + len) as f64;
            let elapsed = started.elapsed().as_secs_f64();
            bar.set_position(done as u64);
            bar.set_message(format!(
                "loss {:.4}  {:.0} img/s",
                loss_sum.double_value(&[]) / seen,
                seen / elapsed
            ));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    (loss_sum.double_value(&[]) / n as f64, seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Architecture;
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

    // Bit-identical weights for equal seeds are tested through the CLI (tests/cli.rs), one
    // process per run: libtorch's generator is global, and tests here run in parallel.
    fn train_with_seed(seed: u64) -> (Classifier, Vec<EpochRecord>) {
        let options = TrainOptions {
            epochs: 2,
            batch_size: 16,
            learning_rate: 3e-3,
            seed,
        };
        tch::manual_seed(seed as i64);
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
        let data = bars(200);
        let records = fit(&model, &data, &data.first(50), &options, |_, _| Ok(())).unwrap();
        (model, records)
    }

    #[test]
    fn training_learns_a_learnable_problem() {
        let (_, records) = train_with_seed(1);
        assert_eq!(records.len(), 2);
        assert!(records[1].train_loss < records[0].train_loss);
        assert!(records[1].test_accuracy > 0.9, "{:?}", records[1]);
    }
}
