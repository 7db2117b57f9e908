//! Running a model over a split: the loss, the prediction and its confidence for every example,
//! and the confusion matrix they make.

use super::metrics::{ClassificationReport, ConfusionMatrix};
use crate::data::Split;
use crate::model::Predictor;
use crate::shape::NUM_CLASSES;
use anyhow::{ensure, Result};
use tch::{Device, Kind, Reduction, Tensor};

/// How many images are evaluated at once (no gradients are kept, so large batches are cheap).
pub const EVAL_BATCH_SIZE: usize = 1000;

/// The model's loss and predictions on a split, computed without gradients in large batches.
#[derive(Debug)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// The predicted digit of each example, in order.
    pub predictions: Vec<i64>,
    /// The probability the model gives its prediction, for each example.
    pub confidences: Vec<f32>,
    pub confusion: ConfusionMatrix,
}

impl Evaluation {
    pub fn accuracy(&self) -> f64 {
        self.confusion.accuracy()
    }

    pub fn report(&self) -> ClassificationReport {
        ClassificationReport::new(self.loss, self.confusion.clone())
    }
}

/// Loss and predictions of `model` (one network or an ensemble) on `split`.
pub fn evaluate<P: Predictor + ?Sized>(model: &P, split: &Split) -> Result<Evaluation> {
    let n = split.len();
    ensure!(n > 0, "nothing to evaluate: the split is empty");
    let device = model.device();
    let mut answers = Answers::with_capacity(n);
    let loss_sum = tch::no_grad(|| {
        let mut loss_sum = Tensor::zeros([], (Kind::Double, device));
        for start in (0..n).step_by(EVAL_BATCH_SIZE) {
            let len = EVAL_BATCH_SIZE.min(n - start) as i64;
            let images = split.images.narrow(0, start as i64, len).to_device(device);
            let labels = split.labels.narrow(0, start as i64, len).to_device(device);
            let log_probabilities = model.log_probabilities(&images);
            let batch_loss =
                log_probabilities.g_nll_loss::<Tensor>(&labels, None, Reduction::Sum, -100);
            loss_sum += batch_loss.to_kind(Kind::Double);
            answers.add(&log_probabilities);
        }
        loss_sum.double_value(&[])
    });
    let truth = Vec::<i64>::try_from(split.labels.to_device(Device::Cpu))?;
    let confusion =
        ConfusionMatrix::from_labels(&truth, &answers.predictions, NUM_CLASSES as usize)?;
    Ok(Evaluation {
        loss: loss_sum / n as f64,
        predictions: answers.predictions,
        confidences: answers.confidences,
        confusion,
    })
}

/// The model's answer for each example so far: its digit and the probability it gives it.
struct Answers {
    predictions: Vec<i64>,
    confidences: Vec<f32>,
}

impl Answers {
    fn with_capacity(n: usize) -> Self {
        Self {
            predictions: Vec::with_capacity(n),
            confidences: Vec::with_capacity(n),
        }
    }

    /// Adds a batch's answers, from its N×10 log-probabilities.
    fn add(&mut self, log_probabilities: &Tensor) {
        let (top, predicted) = log_probabilities.max_dim(-1, false);
        let predicted =
            Vec::<i64>::try_from(predicted.to_device(Device::Cpu)).expect("argmax gives int64");
        let top = Vec::<f32>::try_from(top.exp().to_device(Device::Cpu))
            .expect("log-probabilities are float");
        self.predictions.extend(predicted);
        self.confidences.extend(top);
    }
}
