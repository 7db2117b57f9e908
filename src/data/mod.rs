//! The data: MNIST's four files (validated, fetched, loaded as tensors), pictures, datasets
//! with their validation split, and augmentation.

pub mod augment;
pub mod dataset;
pub mod fetch;
pub mod idx;
pub mod images;

/// Where the commands look for MNIST when no --data is given, and where `mnist-cnn data`
/// writes it.
pub const DEFAULT_DIR: &str = "data/mnist";

use crate::shape::batch_shape;
use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Whether an idx file holds images (idx3) or labels (idx1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxKind {
    Images,
    Labels,
}

/// One of the four canonical MNIST files.
#[derive(Debug, Clone, Copy)]
pub struct MnistFile {
    /// The raw file name, as tch's loader expects it (no `.gz`).
    pub name: &'static str,
    pub kind: IdxKind,
    /// SHA-256 of the decompressed file.
    pub sha256: &'static str,
}

/// The four files, with the SHA-256 of the decompressed originals. They are the files whose
/// well-known MD5s are 6bbc9ace898e44ae57da46a324031adb, a25bea736e30d166cdddb491f175f624,
/// 2646ac647ad5339dbf082846283269ea and 27ae3e4e09519cfbb04c329615203637.
pub const MNIST_FILES: [MnistFile; 4] = [
    MnistFile {
        name: "train-images-idx3-ubyte",
        kind: IdxKind::Images,
        sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    },
    MnistFile {
        name: "train-labels-idx1-ubyte",
        kind: IdxKind::Labels,
        sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    MnistFile {
        name: "t10k-images-idx3-ubyte",
        kind: IdxKind::Images,
        sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    },
    MnistFile {
        name: "t10k-labels-idx1-ubyte",
        kind: IdxKind::Labels,
        sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
];

/// Images (N×1×28×28, float in [0, 1]) and their labels (N, int64), on one device.
#[derive(Debug)]
pub struct Split {
    pub images: Tensor,
    pub labels: Tensor,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `n` examples (`n` must not exceed the split's size).
    pub fn first(&self, n: usize) -> Split {
        Split {
            images: self.images.narrow(0, 0, n as i64),
            labels: self.labels.narrow(0, 0, n as i64),
        }
    }

    /// The shuffled order of `epoch` (see [`crate::rng::epoch_permutation`]) as an index tensor
    /// on the split's device, for [`Split::gather`].
    pub fn epoch_order(&self, seed: u64, epoch: usize) -> Tensor {
        let order = crate::rng::epoch_permutation(self.len(), seed, epoch);
        Tensor::from_slice(&order).to_device(self.labels.device())
    }

    /// The examples at `indices`, in that order.
    pub fn select(&self, indices: &[i64]) -> Split {
        self.gather(&Tensor::from_slice(indices).to_device(self.labels.device()))
    }

    /// The examples at the int64 `index` tensor (on the split's device), in that order: how a
    /// batch is taken from a permutation without leaving the device.
    pub fn gather(&self, index: &Tensor) -> Split {
        Split {
            images: self.images.index_select(0, index),
            labels: self.labels.index_select(0, index),
        }
    }

    /// The labels, on the host.
    pub fn label_vec(&self) -> Vec<i64> {
        Vec::<i64>::try_from(self.labels.to_device(Device::Cpu)).expect("labels are int64")
    }

    /// Splits off a validation set: `fraction` of each class (at least one example of every
    /// class that has two or more), drawn from `seed`.
    pub fn stratified_split(&self, fraction: f64, seed: u64) -> Divided<Split> {
        let indices = stratified_indices(&self.label_vec(), fraction, seed);
        Divided {
            train: self.select(&indices.train),
            validation: self.select(&indices.validation),
        }
    }

    pub fn to_device(&self, device: Device) -> Split {
        Split {
            images: self.images.to_device(device),
            labels: self.labels.to_device(device),
        }
    }
}

/// Examples divided into those to train on and those held out to validate on.
#[derive(Debug, PartialEq)]
pub struct Divided<T> {
    pub train: T,
    pub validation: T,
}

/// Indices of a stratified split: for each class, `round(fraction × count)` examples (at least
/// one when the class has two or more, never all of them) go to the validation side, chosen by a
/// shuffle from `seed`. Both sides are in ascending order.
pub fn stratified_indices(labels: &[i64], fraction: f64, seed: u64) -> Divided<Vec<i64>> {
    let mut by_class: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for (i, &label) in labels.iter().enumerate() {
        by_class.entry(label).or_default().push(i as i64);
    }
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    for (class, members) in by_class {
        let order = crate::rng::epoch_permutation(members.len(), seed, class as usize + 1_000_000);
        let count = members.len();
        let wanted = (fraction * count as f64).round() as usize;
        let held_out = if count >= 2 {
            wanted.clamp(1, count - 1)
        } else {
            0
        };
        for (rank, &position) in order.iter().enumerate() {
            let index = members[position as usize];
            if rank < held_out {
                validation.push(index);
            } else {
                train.push(index);
            }
        }
    }
    train.sort_unstable();
    validation.sort_unstable();
    Divided { train, validation }
}

/// The MNIST training and test splits.
#[derive(Debug)]
pub struct Mnist {
    pub train: Split,
    pub test: Split,
}

impl Mnist {
    /// Validates the four idx files in `dir`, then loads them with tch's bundled MNIST loader.
    /// Pixels are scaled to [0, 1] (the tutorial's pixels/255).
    pub fn load(dir: &Path) -> Result<Mnist> {
        if dir.exists() && !dir.is_dir() {
            bail!(
                "--data {} is a file; it takes the folder that holds the four MNIST idx files",
                dir.display()
            );
        }
        if !dir.is_dir() {
            bail!(
                "MNIST folder {} does not exist; run `mnist-cnn data --dir {}` first",
                dir.display(),
                dir.display()
            );
        }
        idx::validate_pair(
            &dir.join("train-images-idx3-ubyte"),
            &dir.join("train-labels-idx1-ubyte"),
        )?;
        idx::validate_pair(
            &dir.join("t10k-images-idx3-ubyte"),
            &dir.join("t10k-labels-idx1-ubyte"),
        )?;
        let dataset = tch::vision::mnist::load_dir(dir)
            .with_context(|| format!("cannot load MNIST from {}", dir.display()))?;
        let as_split = |images: Tensor, labels: Tensor| Split {
            images: images.view(batch_shape(-1)).to_kind(Kind::Float),
            labels,
        };
        Ok(Mnist {
            train: as_split(dataset.train_images, dataset.train_labels),
            test: as_split(dataset.test_images, dataset.test_labels),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_split_holds_out_each_class_in_proportion() {
        let labels: Vec<i64> = (0..1000).map(|i| i % 10).collect();
        let Divided { train, validation } = stratified_indices(&labels, 0.1, 7);
        assert_eq!(validation.len(), 100);
        assert_eq!(train.len(), 900);
        for class in 0..10 {
            let held = validation
                .iter()
                .filter(|&&i| labels[i as usize] == class)
                .count();
            assert_eq!(held, 10, "class {class}");
        }
        let mut all: Vec<i64> = train.iter().chain(&validation).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(
            stratified_indices(&labels, 0.1, 7),
            Divided {
                train,
                validation: validation.clone()
            }
        );
        assert_ne!(stratified_indices(&labels, 0.1, 8).validation, validation);
    }

    #[test]
    fn small_classes_keep_at_least_one_example_on_each_side() {
        let labels = [0, 0, 1, 2, 2, 2];
        let Divided { train, validation } = stratified_indices(&labels, 0.1, 1);
        assert_eq!(validation.len(), 2); // one of class 0, one of class 2; class 1 has one only
        assert_eq!(train.len(), 4);
    }
}
