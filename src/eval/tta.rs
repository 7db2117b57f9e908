//! Test-time augmentation: each picture is also shown turned a few degrees each way, and the
//! answers are averaged (by [`super::ensemble::Ensemble`]).

use crate::data::augment::warp;
use tch::Tensor;

/// The test-time views: the picture itself and the picture turned 7° each way. (Measured on the
/// three vgg-32 runs of docs/results.md: these three views gained more than one-pixel shifts or
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
        .expand([n, 2, 3], true);
    warp(images, &theta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

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
}
