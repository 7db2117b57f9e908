//! Several checkpoints answering as one, optionally with test-time augmentation: the answer is
//! the mean of the probabilities every model gives every view of the picture.
//!
//! Averaging probabilities (not logits) is what ensembles of independently trained networks
//! usually do; it is computed in log space (log-sum-exp of log-probabilities), so that
//! confident models do not underflow.

use super::tta::{test_time_views, TTA_ROTATIONS};
use crate::model::{Classifier, Predictor};
use crate::precision::Precision;
use tch::{Device, Tensor};

/// The models of an ensemble and whether each also sees turned copies of the input.
pub struct Ensemble {
    members: Vec<Classifier>,
    test_time_augmentation: bool,
}

impl Ensemble {
    /// The models, each seeing the picture alone or, with `test_time_augmentation`, also turned
    /// (see [`super::tta`]).
    pub fn new(members: Vec<Classifier>, test_time_augmentation: bool) -> Self {
        assert!(!members.is_empty(), "an ensemble needs a model");
        Self {
            members,
            test_time_augmentation,
        }
    }

    /// Every member computes in `precision` (see [`crate::precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        for member in &mut self.members {
            member.set_precision(precision);
        }
        self
    }

    pub fn members(&self) -> &[Classifier] {
        &self.members
    }

    /// Each member's architecture, by name, in order.
    pub fn architectures(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| m.architecture().to_string())
            .collect()
    }

    /// "vgg-32 ×3, test-time augmentation (3 views)"
    pub fn describe(&self) -> String {
        let mut names: Vec<String> = Vec::new();
        for member in &self.members {
            let name = member.architecture().to_string();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let counted: Vec<String> = names
            .iter()
            .map(|name| {
                let count = self
                    .members
                    .iter()
                    .filter(|m| m.architecture().to_string() == *name)
                    .count();
                if count > 1 {
                    format!("{name} ×{count}")
                } else {
                    name.clone()
                }
            })
            .collect();
        let mut text = counted.join(" + ");
        if self.test_time_augmentation {
            text.push_str(&format!(
                ", test-time augmentation ({} views)",
                TTA_ROTATIONS.len()
            ));
        }
        text
    }
}

impl Predictor for Ensemble {
    fn log_probabilities(&self, images: &Tensor) -> Tensor {
        let views = if self.test_time_augmentation {
            test_time_views(images)
        } else {
            vec![images.shallow_clone()]
        };
        let answers: Vec<Tensor> = self
            .members
            .iter()
            .flat_map(|model| views.iter().map(|view| model.log_probabilities(view)))
            .collect();
        if answers.len() == 1 {
            return answers.into_iter().next().expect("one answer");
        }
        let count = answers.len() as f64;
        Tensor::stack(&answers, 0).logsumexp([0i64].as_slice(), false) - count.ln()
    }

    fn device(&self) -> Device {
        self.members[0].device()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Architecture;
    use crate::shape::batch_shape;
    use tch::Kind;

    fn model(seed: i64, architecture: Architecture) -> Classifier {
        tch::manual_seed(seed);
        Classifier::new(architecture, Device::Cpu)
    }

    #[test]
    fn an_ensemble_of_one_is_the_model() {
        let images = Tensor::rand(batch_shape(4), (Kind::Float, Device::Cpu));
        let single = model(1, Architecture::Tutorial);
        let expected = single.log_probabilities(&images);
        let ensemble = Ensemble::new(vec![single], false);
        assert!(ensemble.log_probabilities(&images).equal(&expected));
    }

    /// The ensemble's probabilities are the mean of its members' (mixed architectures), and
    /// test-time augmentation averages over the turned views too.
    #[test]
    fn ensembles_average_probabilities_over_models_and_views() {
        let images = Tensor::rand(batch_shape(4), (Kind::Float, Device::Cpu));
        let (a, b) = (
            model(1, Architecture::Tutorial),
            model(2, Architecture::Vgg { width: 4 }),
        );
        let mean = (a.log_probabilities(&images).exp() + b.log_probabilities(&images).exp()) / 2.0;
        let mut views_mean = Tensor::zeros([4, 10], (Kind::Float, Device::Cpu));
        for view in test_time_views(&images) {
            views_mean += (a.log_probabilities(&view).exp() + b.log_probabilities(&view).exp())
                / (2.0 * TTA_ROTATIONS.len() as f64);
        }
        let plain = Ensemble::new(vec![a, b], false);
        let got = plain.log_probabilities(&images).exp();
        assert!(got.allclose(&mean, 1e-5, 1e-6, false), "{got} vs {mean}");
        let sums = got.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        assert!(sums.allclose(
            &Tensor::ones([4], (Kind::Float, Device::Cpu)),
            1e-5,
            1e-6,
            false
        ));
        let Ensemble { members, .. } = plain;
        let augmented = Ensemble::new(members, true);
        let got = augmented.log_probabilities(&images).exp();
        assert!(got.allclose(&views_mean, 1e-5, 1e-6, false));
        assert_eq!(
            augmented.describe(),
            "tutorial + vgg-4, test-time augmentation (3 views)"
        );
    }
}
