//! What a network is made of, layer by layer, as Keras's `model.summary()` shows it: each
//! layer's output shape for one 1×1×28×28 picture, its parameters and its multiply-adds, and
//! the training cost per image in FLOPs.
//!
//! The table is derived from the same constants the networks are built from, and a test checks
//! its totals against the built networks' parameter counts and output shape.

use super::{tutorial, vgg, Architecture};
use crate::shape::{IMAGE_SIDE, NUM_CLASSES};
use serde::Serialize;

/// One layer of the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerSummary {
    pub name: String,
    /// What the layer does, in words ("Conv2D 3×3, 1→32").
    pub kind: String,
    /// For one picture: [1, channels, height, width] or [1, features].
    pub output_shape: Vec<i64>,
    pub parameters: i64,
    /// Multiply-adds for one picture (convolutions and dense layers; the rest is counted 0).
    pub mult_adds: i64,
}

/// A whole network's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub architecture: String,
    pub layers: Vec<LayerSummary>,
    pub parameters: i64,
    pub mult_adds: i64,
    /// FLOPs to train on one picture: forward 2 per multiply-add; backward twice the forward
    /// (gradients of the weights and of the input) except for the first layer, whose input
    /// needs no gradient.
    pub training_flops_per_image: i64,
}

/// Builds the layer list of a network, one layer at a time.
struct Builder {
    layers: Vec<LayerSummary>,
    /// The current [channels, side] (or [features] after flattening).
    shape: Vec<i64>,
}

impl Builder {
    fn new() -> Self {
        Self {
            layers: Vec::new(),
            shape: vec![1, IMAGE_SIDE, IMAGE_SIDE],
        }
    }

    fn push(&mut self, name: &str, kind: String, parameters: i64, mult_adds: i64) {
        let mut output_shape = vec![1];
        output_shape.extend(&self.shape);
        self.layers.push(LayerSummary {
            name: name.to_owned(),
            kind,
            output_shape,
            parameters,
            mult_adds,
        });
    }

    /// A 3×3 convolution to `out` channels ('same' padding keeps the side; else it loses 2).
    fn conv(&mut self, name: &str, out: i64, same: bool, bias: bool) {
        let (inputs, side) = (self.shape[0], self.shape[1]);
        let side = if same { side } else { side - 2 };
        self.shape = vec![out, side, side];
        let weights = out * inputs * 9;
        let parameters = weights + if bias { out } else { 0 };
        let padding = if same { ", same" } else { "" };
        let kind = format!("Conv2D 3×3{padding}, {inputs}→{out}");
        self.push(name, kind, parameters, side * side * weights);
    }

    fn batch_norm(&mut self, name: &str) {
        let channels = self.shape[0];
        self.push(name, "BatchNorm".to_owned(), 2 * channels, 0);
    }

    fn pool(&mut self, name: &str, relu: bool) {
        self.shape[1] /= 2;
        self.shape[2] /= 2;
        let kind = if relu {
            "MaxPool 2×2 + ReLU"
        } else {
            "MaxPool 2×2"
        };
        self.push(name, kind.to_owned(), 0, 0);
    }

    fn relu(&mut self, name: &str) {
        self.push(name, "ReLU".to_owned(), 0, 0);
    }

    fn flatten(&mut self) {
        self.shape = vec![self.shape.iter().product()];
        self.push("flatten", "Flatten".to_owned(), 0, 0);
    }

    fn dense(&mut self, name: &str, out: i64) {
        let inputs = self.shape[0];
        self.shape = vec![out];
        let kind = format!("Dense {inputs}→{out}");
        self.push(name, kind, inputs * out + out, inputs * out);
    }

    fn finish(self, architecture: Architecture) -> Summary {
        let parameters = self.layers.iter().map(|l| l.parameters).sum();
        let mult_adds: i64 = self.layers.iter().map(|l| l.mult_adds).sum();
        let first = self
            .layers
            .iter()
            .find(|l| l.mult_adds > 0)
            .map_or(0, |l| l.mult_adds);
        Summary {
            architecture: architecture.to_string(),
            layers: self.layers,
            parameters,
            mult_adds,
            training_flops_per_image: 2 * (3 * mult_adds - first),
        }
    }
}

impl Summary {
    pub fn of(architecture: Architecture) -> Self {
        let mut b = Builder::new();
        match architecture {
            Architecture::Tutorial => {
                b.conv("conv1", tutorial::CONV1_CHANNELS, false, true);
                b.pool("pool1", true);
                b.conv("conv2", tutorial::CONV2_CHANNELS, false, true);
                b.pool("pool2", true);
                b.flatten();
                b.dense("fc", NUM_CLASSES);
            }
            Architecture::Vgg { width } => {
                let stages = [
                    (1, width, true),
                    (2, 2 * width, false),
                    (3, 2 * width, true),
                ];
                let more = [(4, 4 * width, false), (5, 4 * width, true)];
                for (index, channels, pool) in stages.into_iter().chain(more) {
                    b.conv(&format!("conv{index}"), channels, true, false);
                    b.batch_norm(&format!("bn{index}"));
                    match pool {
                        true => b.pool(&format!("pool{index}"), true),
                        false => b.relu(&format!("relu{index}")),
                    }
                }
                b.flatten();
                b.push("dropout", format!("Dropout {}", vgg::DROPOUT), 0, 0);
                b.dense("fc", NUM_CLASSES);
            }
        }
        b.finish(architecture)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tutorials_counts_are_the_kerass() {
        let tutorial = Summary::of(Architecture::Tutorial);
        assert_eq!(tutorial.parameters, 34_826);
        assert_eq!(tutorial.mult_adds, 194_688 + 2_230_272 + 16_000);
        assert_eq!(tutorial.training_flops_per_image, 14_256_384);
        let shapes: Vec<&[i64]> = tutorial
            .layers
            .iter()
            .map(|l| l.output_shape.as_slice())
            .collect();
        assert_eq!(shapes[0], [1, 32, 26, 26]);
        assert_eq!(shapes[3], [1, 64, 5, 5]);
        assert_eq!(
            Summary::of(Architecture::Vgg { width: 32 }).parameters,
            289_130
        );
    }
}
