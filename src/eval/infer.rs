//! The one path from pixels to probabilities, shared by `predict` and `serve`.

use crate::model::Predictor;
use crate::shape::image_batch;
use tch::{Device, Tensor};

/// N×10 class probabilities (on the CPU, contiguous) for flat 28×28 fields laid end to end, each
/// with values in [0, 1], white ink on black.
pub fn probabilities<P: Predictor + ?Sized>(model: &P, pixels: &[f32]) -> Tensor {
    let images = image_batch(pixels).to_device(model.device());
    tch::no_grad(|| model.log_probabilities(&images).exp())
        .to_device(Device::Cpu)
        .contiguous()
}
