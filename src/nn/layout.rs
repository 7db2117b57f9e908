//! How the weights lie in memory, for speed; the values are the same either way.

use tch::{nn, Tensor};

/// Stores the convolution kernels channels-last (NHWC strides, same values). Convolutions then
/// produce channels-last activations, for which libtorch's CPU max-pool is about ten times
/// faster than for NCHW (measured on [128, 32, 26, 26]: 0.7 ms against 9 ms) and oneDNN's
/// convolutions avoid layout conversions.
pub fn store_kernels_channels_last(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (name, mut variable) in vs.variables() {
            if variable.dim() == 4 && name.ends_with("weight") {
                let size = variable.size();
                let (c, h, w) = (size[1], size[2], size[3]);
                // Strides spelled out: with one input channel, a permuted copy would come
                // back with contiguous strides, and libtorch would not see channels-last.
                let mut channels_last = Tensor::empty_strided(
                    &size,
                    [c * h * w, 1, w * c, c],
                    (variable.kind(), variable.device()),
                );
                channels_last.copy_(&variable);
                variable.set_data(&channels_last);
            }
        }
    });
}
