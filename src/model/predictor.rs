//! [`Predictor`]: what evaluation, prediction and serving need of a model, so that one network
//! and an ensemble of them answer through the same code.

use super::Classifier;
use tch::{Device, Kind, Tensor};

/// Anything that gives class log-probabilities for a batch of N×1×28×28 images in [0, 1].
pub trait Predictor {
    /// N×10 log-probabilities, in evaluation mode (callers decide about gradients).
    fn log_probabilities(&self, images: &Tensor) -> Tensor;
    /// Where the images have to be.
    fn device(&self) -> Device;
}

impl Predictor for Classifier {
    fn log_probabilities(&self, images: &Tensor) -> Tensor {
        self.forward(images, false).log_softmax(-1, Kind::Float)
    }

    fn device(&self) -> Device {
        Classifier::device(self)
    }
}
