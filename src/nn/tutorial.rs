//! The Keras tutorial's CNN on `nn::seq()`: Conv2D(32, 3×3) → ReLU → MaxPool 2 → Conv2D(64, 3×3)
//! → ReLU → MaxPool 2 → Flatten → Dense(10), initialised as Keras initialises it.

use super::names;
use crate::shape::NUM_CLASSES;
use std::collections::BTreeMap;
use tch::nn;
use tch::Tensor;

/// Channels of the two convolutions.
pub const CONV1_CHANNELS: i64 = 32;
pub const CONV2_CHANNELS: i64 = 64;
/// Side of the feature map entering the dense layer: 28 → conv 26 → pool 13 → conv 11 → pool 5.
const FINAL_SIDE: i64 = 5;
const KERNEL: i64 = 3;

/// The tutorial CNN. Input N×1×28×28 in [0, 1]; output N×10 logits (the tutorial's softmax is
/// folded into the cross-entropy loss, which is the same objective and numerically safer).
/// Weights start as Keras starts them: Glorot-uniform weights and zero biases.
///
/// Each max-pool runs before its ReLU: max and ReLU commute (ReLU is monotonic), so the outputs
/// and gradients are those of the tutorial's conv → ReLU → pool, but the ReLU and its backward
/// touch a quarter of the values. [`reference_forward`] is the tutorial's order, for tests.
pub fn tutorial_cnn(root: &nn::Path) -> nn::Sequential {
    nn::seq()
        .add(keras_conv2d(
            root / names::convolution(1),
            1,
            CONV1_CHANNELS,
        ))
        .add_fn(|x| x.max_pool2d_default(2).relu())
        .add(keras_conv2d(
            root / names::convolution(2),
            CONV1_CHANNELS,
            CONV2_CHANNELS,
        ))
        .add_fn(|x| x.max_pool2d_default(2).relu())
        .add_fn(|x| x.flatten(1, -1))
        .add(keras_linear(
            root / names::HEAD,
            CONV2_CHANNELS * FINAL_SIDE * FINAL_SIDE,
            NUM_CLASSES,
        ))
}

/// The tutorial network written out op by op in the tutorial's order (conv → ReLU → pool) on
/// plain contiguous weights: the reference the optimised model is checked against.
pub fn reference_forward(weights: &BTreeMap<String, Tensor>, images: &Tensor) -> Tensor {
    let w = |name: &str| weights[name].contiguous();
    let conv = |x: &Tensor, layer: &str| {
        x.conv2d(
            &w(&format!("{layer}.weight")),
            Some(&w(&format!("{layer}.bias"))),
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        )
    };
    let x = conv(images, "conv1").relu().max_pool2d_default(2);
    let x = conv(&x, "conv2").relu().max_pool2d_default(2);
    x.flatten(1, -1)
        .linear(&w("fc.weight"), Some(&w("fc.bias")))
}

/// Glorot (Xavier) uniform initialisation, Keras's default for kernels:
/// U(±sqrt(6 / (fan_in + fan_out))).
pub fn glorot_uniform(fan_in: i64, fan_out: i64) -> nn::Init {
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
    nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// A 'valid' (unpadded) 3×3 convolution initialised as Keras's `Conv2D`.
fn keras_conv2d(path: nn::Path, in_channels: i64, out_channels: i64) -> nn::Conv2D {
    let receptive_field = KERNEL * KERNEL;
    let config = nn::ConvConfig {
        ws_init: glorot_uniform(
            in_channels * receptive_field,
            out_channels * receptive_field,
        ),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(path, in_channels, out_channels, KERNEL, config)
}

/// A dense layer initialised as Keras's `Dense`.
fn keras_linear(path: nn::Path, in_features: i64, out_features: i64) -> nn::Linear {
    let config = nn::LinearConfig {
        ws_init: glorot_uniform(in_features, out_features),
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    nn::linear(path, in_features, out_features, config)
}
