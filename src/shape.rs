//! The shapes every layer agrees on: MNIST pictures are 28×28 grey fields, and there are ten
//! classes. Named once here; everything else uses these names.

use tch::{Kind, Tensor};

/// Side length of an MNIST picture, in pixels.
pub const IMAGE_SIDE: i64 = 28;
/// Pixels in one picture (28 × 28), the length of one flat field.
pub const IMAGE_PIXELS: usize = (IMAGE_SIDE * IMAGE_SIDE) as usize;
/// Number of classes (the digits 0–9).
pub const NUM_CLASSES: i64 = 10;

/// The N×1×28×28 shape of a batch of `n` pictures, the networks' input.
pub fn batch_shape(n: i64) -> [i64; 4] {
    [n, 1, IMAGE_SIDE, IMAGE_SIDE]
}

/// A batch (on the CPU) from flat fields laid end to end, [`IMAGE_PIXELS`] values each.
pub fn image_batch(pixels: &[f32]) -> Tensor {
    debug_assert_eq!(pixels.len() % IMAGE_PIXELS, 0);
    let n = (pixels.len() / IMAGE_PIXELS) as i64;
    Tensor::from_slice(pixels)
        .view(batch_shape(n))
        .to_kind(Kind::Float)
}
