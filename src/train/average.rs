//! An exponential moving average of the weights (`--ema`), updated after every step; the run
//! evaluates and delivers the average instead of the raw weights.

use crate::model::Classifier;
use tch::Tensor;

pub struct WeightAverage {
    decay: f64,
    /// The averaged variables, in the model's (name) order.
    shadow: Vec<Tensor>,
}

impl WeightAverage {
    /// An average that starts at the model's current weights.
    pub fn new(model: &Classifier, decay: f64) -> Self {
        Self {
            decay,
            shadow: model.snapshot(),
        }
    }

    /// Moves the average towards the model's weights after a step.
    pub fn update(&mut self, model: &Classifier) {
        tch::no_grad(|| {
            for (shadow, variable) in self.shadow.iter_mut().zip(model.variables()) {
                let _ = shadow.lerp_(&variable.tensor, 1.0 - self.decay);
            }
        });
    }

    /// Puts the average into the model; returns the raw weights to put back with
    /// [`WeightAverage::swap_out`].
    pub fn swap_in(&self, model: &Classifier) -> Vec<Tensor> {
        let raw = model.snapshot();
        model.restore(&self.shadow);
        raw
    }

    pub fn swap_out(&self, model: &Classifier, raw: Vec<Tensor>) {
        model.restore(&raw);
    }

    /// The averaged variables, in the model's order (for the saved training state).
    pub fn shadow(&self) -> &[Tensor] {
        &self.shadow
    }

    /// Replaces the average with saved values.
    pub fn load(&mut self, saved: &[Tensor]) {
        tch::no_grad(|| {
            for (mine, saved) in self.shadow.iter_mut().zip(saved) {
                mine.copy_(saved);
            }
        });
    }
}
