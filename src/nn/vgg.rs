//! The `vgg-N` family: stacked 3×3 convolutions with batch normalisation, VGG-style, in three
//! stages of N, 2N and 4N channels (1, 2 and 2 convolutions), each ended by a 2×2 max-pool, then
//! dropout and one dense layer. N is the width: `vgg-16` has 75k parameters, `vgg-32` 289k,
//! `vgg-48` 641k.

use super::names;
use crate::shape::NUM_CLASSES;
use tch::nn;

/// Channels of the first stage when `vgg` is given without a width.
pub const DEFAULT_WIDTH: i64 = 32;
/// The widths accepted for `vgg-N`.
pub const WIDTHS: std::ops::RangeInclusive<i64> = 4..=256;
/// Dropout before the dense layer, in training only.
pub const DROPOUT: f64 = 0.25;
/// Convolutions (each with its batch norm, `conv1`/`bn1` … `conv5`/`bn5`).
pub const CONVOLUTIONS: usize = 5;
/// Side of the feature map entering the dense layer: 28 → 14 → 7 → 3 after the three pools.
const FINAL_SIDE: i64 = 3;

/// conv{index} (3×3, 'same' padding, no bias: the batch norm's shift replaces it) followed by
/// bn{index}.
fn conv_bn(root: &nn::Path, index: usize, in_channels: i64, out_channels: i64) -> nn::SequentialT {
    let config = nn::ConvConfig {
        padding: 1,
        bias: false,
        ..Default::default()
    };
    nn::seq_t()
        .add(nn::conv2d(
            root / names::convolution(index),
            in_channels,
            out_channels,
            3,
            config,
        ))
        .add(nn::batch_norm2d(
            root / names::batch_norm(index),
            out_channels,
            Default::default(),
        ))
}

/// The `vgg-N` network: input N×1×28×28 in [0, 1], output N×10 logits.
///
/// 28×28: conv1 → 2×2 pool → 14×14: conv2, conv3 → pool → 7×7: conv4, conv5 → pool → 3×3 →
/// flatten → dropout → fc. Every convolution is followed by batch norm and ReLU; where a pool
/// follows, it runs before the ReLU (they commute, and the ReLU then touches a quarter of the
/// values). Initialisation is PyTorch's default (Kaiming-uniform), as in the PyTorch module.
pub fn vgg_cnn(root: &nn::Path, width: i64) -> nn::SequentialT {
    let (a, b, c) = (width, 2 * width, 4 * width);
    nn::seq_t()
        .add(conv_bn(root, 1, 1, a))
        .add_fn(|x| x.max_pool2d_default(2).relu())
        .add(conv_bn(root, 2, a, b))
        .add_fn(|x| x.relu())
        .add(conv_bn(root, 3, b, b))
        .add_fn(|x| x.max_pool2d_default(2).relu())
        .add(conv_bn(root, 4, b, c))
        .add_fn(|x| x.relu())
        .add(conv_bn(root, 5, c, c))
        .add_fn(|x| x.max_pool2d_default(2).relu())
        .add_fn(|x| x.flatten(1, -1))
        .add_fn_t(|x, train| x.dropout(DROPOUT, train))
        .add(nn::linear(
            root / names::HEAD,
            c * FINAL_SIDE * FINAL_SIDE,
            NUM_CLASSES,
            Default::default(),
        ))
}

/// The batch-norm layers, `bn1` … `bn5`.
pub fn batch_norm_layers() -> Vec<String> {
    (1..=CONVOLUTIONS).map(names::batch_norm).collect()
}
