//! Several checkpoints answering as one, optionally with test-time augmentation: the answer is
//! the mean of the probabilities every model gives every view of the picture.
//!
//! Averaging probabilities (not logits) is what ensembles of independently trained networks
//! usually do; it is computed in log space (log-sum-exp of log-probabilities), so that
//! confident models do not underflow.

use crate::model::Classifier;
use anyhow::{ensure, Context, Result};
use std::path::PathBuf;
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

/// The models of an ensemble and whether each also sees turned copies of the input.
pub struct Ensemble {
    members: Vec<Classifier>,
    test_time_augmentation: bool,
}

impl Ensemble {
    /// Loads every checkpoint (each brings its own architecture) onto `device`.
    pub fn load(paths: &[PathBuf], device: Device, test_time_augmentation: bool) -> Result<Self> {
        ensure!(!paths.is_empty(), "no --model given");
        let members = paths
            .iter()
            .map(|path| {
                Classifier::load(path, device)
                    .with_context(|| format!("--model {}", path.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::new(members, test_time_augmentation))
    }

    pub fn new(members: Vec<Classifier>, test_time_augmentation: bool) -> Self {
        assert!(!members.is_empty(), "an ensemble needs a model");
        Self {
            members,
            test_time_augmentation,
        }
    }

    pub fn members(&self) -> &[Classifier] {
        &self.members
    }

    /// "vgg-32 ×3, test-time augmentation (5 views)"
    pub fn describe(&self) -> String {
        let mut names: Vec<String> = Vec::new();
        for member in &self.members {
            let name = member.architecture.to_string();
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
                    .filter(|m| m.architecture.to_string() == *name)
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

/// The test-time views: the picture itself and the picture turned 7° each way. (Measured on the
/// three vgg-32 runs of the README: these three views gained more than one-pixel shifts or
/// ±7% scaling, and as much as all of them together; flips and large rotations would turn
/// digits into other digits.)
pub const TTA_ROTATIONS: [f64; 3] = [0.0, 7.0, -7.0];

/// Each of [`TTA_ROTATIONS`] applied to an N×C×H×W batch.
pub fn test_time_views(images: &Tensor) -> Vec<Tensor> {
    TTA_ROTATIONS
        .iter()
        .map(|&degrees| rotate(images, degrees))
        .collect()
}

/// Turns each picture `degrees` anticlockwise about its centre (bilinear, background 0 outside).
pub fn rotate(images: &Tensor, degrees: f64) -> Tensor {
    if degrees == 0.0 {
        return images.shallow_clone();
    }
    let n = images.size()[0];
    let (sin, cos) = degrees.to_radians().sin_cos();
    // affine_grid maps output to input coordinates (x right, y down): the inverse rotation.
    let theta = Tensor::from_slice(&[cos as f32, -sin as f32, 0.0, sin as f32, cos as f32, 0.0])
        .view([1, 2, 3])
        .expand([n, 2, 3], true)
        .to_device(images.device())
        .to_kind(images.kind());
    let grid = Tensor::affine_grid_generator(&theta, images.size().as_slice(), false);
    images.grid_sampler(&grid, 0, 0, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Architecture;

    /// A quarter turn maps a horizontal bar through the centre onto a vertical one; no turn
    /// leaves the picture as it is; the views are one per rotation.
    #[test]
    fn rotation_turns_the_picture_about_its_centre() {
        let bar = Tensor::zeros([1, 1, 9, 9], (Kind::Float, Device::Cpu));
        let _ = bar.narrow(2, 4, 1).narrow(3, 1, 7).fill_(1.0);
        let turned = rotate(&bar, 90.0);
        let column = turned.narrow(3, 4, 1).sum(Kind::Float).double_value(&[]);
        let row = turned.narrow(2, 4, 1).sum(Kind::Float).double_value(&[]);
        assert!(column > 6.5 && row < 1.5, "column {column}, row {row}");
        assert!(rotate(&bar, 0.0).equal(&bar));
        let small = rotate(&bar, 7.0);
        let ink = small.sum(Kind::Float).double_value(&[]);
        assert!((ink - 7.0).abs() < 0.5, "ink {ink}");
        assert_eq!(test_time_views(&bar).len(), TTA_ROTATIONS.len());
    }

    fn model(seed: i64, architecture: Architecture) -> Classifier {
        tch::manual_seed(seed);
        Classifier::new(architecture, Device::Cpu)
    }

    #[test]
    fn an_ensemble_of_one_is_the_model() {
        let images = Tensor::rand([4, 1, 28, 28], (Kind::Float, Device::Cpu));
        let single = model(1, Architecture::Tutorial);
        let expected = single.log_probabilities(&images);
        let ensemble = Ensemble::new(vec![single], false);
        assert!(ensemble.log_probabilities(&images).equal(&expected));
    }

    /// The ensemble's probabilities are the mean of its members' (mixed architectures), and
    /// test-time augmentation averages over the turned views too.
    #[test]
    fn ensembles_average_probabilities_over_models_and_views() {
        let images = Tensor::rand([4, 1, 28, 28], (Kind::Float, Device::Cpu));
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
