//! Data augmentation: a random affine transform per image (rotation, translation, scale,
//! shear), applied to the whole batch on the training device with `affine_grid` and
//! `grid_sample`.
//!
//! The transform parameters are drawn on the host from the crate's own generator, seeded from
//! the run's seed, the epoch and the step, so augmentation is reproducible and independent of
//! anything else that draws random numbers.

use crate::rng::SplitMix64;
use tch::Tensor;

/// The ranges the transforms are drawn from (uniformly).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffineRanges {
    /// Rotation, ± degrees.
    pub rotation_degrees: f64,
    /// Translation, ± pixels on each axis.
    pub translation_pixels: f64,
    /// Scale factor range.
    pub scale: (f64, f64),
    /// Shear, ± degrees.
    pub shear_degrees: f64,
}

impl Default for AffineRanges {
    fn default() -> Self {
        Self {
            rotation_degrees: 12.0,
            translation_pixels: 2.5,
            scale: (0.9, 1.1),
            shear_degrees: 8.0,
        }
    }
}

/// A generator seeded for one step of one epoch of a run.
pub fn step_rng(seed: u64, epoch: usize, step: usize) -> SplitMix64 {
    let mut mixer = SplitMix64::new(seed ^ 0xA076_1D64_78BD_642F);
    let salt = mixer.next_u64() ^ ((epoch as u64) << 32) ^ step as u64;
    SplitMix64::new(salt)
}

fn uniform(rng: &mut SplitMix64, lo: f64, hi: f64) -> f64 {
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    lo + (hi - lo) * unit
}

/// The 2×3 matrices (row-major) mapping output to input coordinates, in the normalised [-1, 1]
/// coordinates of `affine_grid`, for `n` images of side `side`.
pub fn random_thetas(n: usize, side: i64, ranges: &AffineRanges, rng: &mut SplitMix64) -> Vec<f32> {
    let mut thetas = Vec::with_capacity(n * 6);
    for _ in 0..n {
        let angle = uniform(rng, -ranges.rotation_degrees, ranges.rotation_degrees).to_radians();
        let shear = uniform(rng, -ranges.shear_degrees, ranges.shear_degrees).to_radians();
        let scale = uniform(rng, ranges.scale.0, ranges.scale.1);
        let pixel = 2.0 / side as f64; // one pixel in normalised coordinates
        let tx = uniform(rng, -ranges.translation_pixels, ranges.translation_pixels) * pixel;
        let ty = uniform(rng, -ranges.translation_pixels, ranges.translation_pixels) * pixel;
        // Sampling the input at (rotation · shear / scale) of the output coordinates: the output
        // is the input rotated, sheared and scaled by `scale`, then shifted.
        let (sin, cos) = angle.sin_cos();
        let shear_tan = shear.tan();
        let a = cos / scale;
        let b = (cos * shear_tan - sin) / scale;
        let c = sin / scale;
        let d = (sin * shear_tan + cos) / scale;
        thetas.extend([a, b, -tx, c, d, -ty].map(|v| v as f32));
    }
    thetas
}

/// Applies one random affine transform to each image of an N×C×H×W batch.
pub fn random_affine(images: &Tensor, ranges: &AffineRanges, rng: &mut SplitMix64) -> Tensor {
    let size = images.size();
    let n = size[0];
    let thetas = random_thetas(n as usize, size[3], ranges, rng);
    warp(images, &Tensor::from_slice(&thetas).view([n, 2, 3]))
}

/// Samples each picture of an N×C×H×W batch through its affine map `theta` (N×2×3, output to
/// input in `affine_grid`'s normalised coordinates): bilinear, zeros outside the picture
/// (MNIST's background is 0). Augmentation and test-time augmentation both warp this way.
pub fn warp(images: &Tensor, theta: &Tensor) -> Tensor {
    let theta = theta.to_device(images.device()).to_kind(images.kind());
    let grid = Tensor::affine_grid_generator(&theta, images.size().as_slice(), false);
    images.grid_sampler(&grid, 0, 0, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::{batch_shape, IMAGE_SIDE};
    use tch::{Device, Kind};

    /// The identity transform, for tests: `random_affine` with no randomness must return the batch.
    fn identity_ranges() -> AffineRanges {
        AffineRanges {
            rotation_degrees: 0.0,
            translation_pixels: 0.0,
            scale: (1.0, 1.0),
            shear_degrees: 0.0,
        }
    }

    /// The sum of pixel intensities per image (ink is roughly preserved by small transforms).
    fn ink_per_image(images: &Tensor) -> Tensor {
        images.sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float)
    }

    fn batch() -> Tensor {
        let images = Tensor::zeros(batch_shape(4), (Kind::Float, Device::Cpu));
        let _ = images.narrow(2, 8, 12).narrow(3, 10, 8).fill_(1.0);
        images
    }

    #[test]
    fn identity_ranges_leave_the_batch_unchanged() {
        let images = batch();
        let out = random_affine(&images, &identity_ranges(), &mut SplitMix64::new(1));
        let diff = (&out - &images).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "max difference {diff}");
    }

    #[test]
    fn transforms_are_reproducible_from_the_seed_and_differ_per_image() {
        let images = batch();
        let ranges = AffineRanges::default();
        let a = random_affine(&images, &ranges, &mut step_rng(3, 1, 7));
        let b = random_affine(&images, &ranges, &mut step_rng(3, 1, 7));
        let c = random_affine(&images, &ranges, &mut step_rng(3, 1, 8));
        assert!(a.equal(&b));
        assert!(!a.equal(&c));
        assert!(
            !a.get(0).equal(&a.get(1)),
            "two images got the same transform"
        );
        assert_eq!(a.size(), images.size());
    }

    #[test]
    fn small_transforms_keep_the_digit_in_the_picture() {
        let images = batch();
        let out = random_affine(&images, &AffineRanges::default(), &mut SplitMix64::new(9));
        let before = ink_per_image(&images);
        let ratio = ink_per_image(&out) / before;
        let (min, max) = (ratio.min().double_value(&[]), ratio.max().double_value(&[]));
        assert!(min > 0.7 && max < 1.35, "ink ratio {min}..{max}");
    }

    #[test]
    fn translation_moves_the_ink_by_whole_pixels() {
        let images = batch();
        let shift = AffineRanges {
            translation_pixels: 3.0,
            ..identity_ranges()
        };
        let thetas = random_thetas(1, IMAGE_SIDE, &shift, &mut SplitMix64::new(5));
        let out = random_affine(&images.narrow(0, 0, 1), &shift, &mut SplitMix64::new(5));
        // The centre of mass along x moves by tx pixels (theta holds -tx in normalised units).
        let xs = Tensor::arange(IMAGE_SIDE, (Kind::Float, Device::Cpu)).view([1, 1, 1, IMAGE_SIDE]);
        let com = |t: &Tensor| ((t * &xs).sum(Kind::Float) / t.sum(Kind::Float)).double_value(&[]);
        let moved = com(&out) - com(&images.narrow(0, 0, 1));
        let expected = -(thetas[2] as f64) * 14.0;
        assert!(
            (moved - expected).abs() < 0.2,
            "moved {moved}, expected {expected}"
        );
    }
}
