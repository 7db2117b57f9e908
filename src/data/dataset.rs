//! What a run trains and is judged on: MNIST or a labelled picture folder, cut to `limit`
//! examples, with a stratified validation split held out of the training data; and the
//! [`DataDescription`] of it that a run records.

use super::images::load_folder;
use super::{Divided, Mnist, Split};
use crate::rule::Rule;
use crate::shape::NUM_CLASSES;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Device;
use tracing::warn;

/// A validation split's share of the training examples (`--val-split`, `validation_split`).
pub const VALIDATION_FRACTION: Rule<f64> = Rule::new(|x| x > 0.0 && x < 1.0, "above 0 and below 1");
/// `--limit`, `limit`.
pub const LIMIT: Rule<usize> = Rule::new(|n| n >= 1, "at least 1");

/// A validation set smaller than this chooses the epoch on too few pictures to tell epochs
/// apart (one picture is 5 points of accuracy at 20).
pub const FEW_VALIDATION_PICTURES: usize = 20;
/// Fewer validation pictures of a class than this, and the class barely counts in the choice.
pub const FEW_VALIDATION_PICTURES_PER_CLASS: usize = 2;

/// Warns when a picture folder leaves digits out, and when its validation set is too small to
/// choose an epoch by: fewer than [`FEW_VALIDATION_PICTURES`] in all, or fewer than
/// [`FEW_VALIDATION_PICTURES_PER_CLASS`] of a digit the run trains on.
fn warn_of_thin_pictures(dir: &Path, train: &Split, validation: &Split, fraction: f64) {
    let advice = "the epoch is chosen on them: add pictures, or raise --val-split";
    if validation.len() < FEW_VALIDATION_PICTURES {
        warn!(
            "--images {}: --val-split {fraction} holds out only {} pictures for validation \
             (fewer than {FEW_VALIDATION_PICTURES}); {advice}",
            dir.display(),
            validation.len()
        );
    }
    let count = |split: &Split| {
        let mut counts = [0usize; NUM_CLASSES as usize];
        for label in split.label_vec() {
            counts[label as usize] += 1;
        }
        counts
    };
    let (trained, validating) = (count(train), count(validation));
    let missing: Vec<String> = (0..NUM_CLASSES as usize)
        .filter(|&digit| trained[digit] + validating[digit] == 0)
        .map(|digit| digit.to_string())
        .collect();
    if !missing.is_empty() {
        warn!(
            "--images {}: no pictures of digit {}: the run never shows the model those digits, \
             and it may come to forget them",
            dir.display(),
            missing.join(", ")
        );
    }
    let thin: Vec<String> = (0..NUM_CLASSES as usize)
        .filter(|&digit| {
            trained[digit] > 0 && validating[digit] < FEW_VALIDATION_PICTURES_PER_CLASS
        })
        .map(|digit| format!("{digit} ({})", validating[digit]))
        .collect();
    if !thin.is_empty() {
        warn!(
            "--images {}: fewer than {FEW_VALIDATION_PICTURES_PER_CLASS} validation pictures of \
             digit {}; {advice}",
            dir.display(),
            thin.join(", ")
        );
    }
}

/// Where the examples come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// A folder with the four MNIST idx files: its training split, and its test split to report.
    Mnist(PathBuf),
    /// Labelled pictures laid out as DIR/0/*, …, DIR/9/*; their test split, when there is one,
    /// is MNIST's (see [`DataSpec::mnist_test`]).
    Images(PathBuf),
}

/// The kind of source, as `config.json` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataKind {
    Mnist,
    Images,
}

/// A share of the training examples held out for validation (stratified by class), drawn from
/// `seed`: runs that share both hold out the same examples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldOut {
    pub fraction: f64,
    pub seed: u64,
}

/// Which examples a run uses.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSpec {
    pub source: DataSource,
    /// Only the first N training examples (quick trials); the test set stays whole.
    pub limit: Option<usize>,
    /// Required for a picture folder, which has no test split to report.
    pub validation: Option<HeldOut>,
    /// A picture folder's run reports MNIST's test split from this folder, so that a fine-tune
    /// on pictures shows what it did to the model's MNIST accuracy.
    pub mnist_test: Option<PathBuf>,
}

/// Where the run's data came from and how it was divided (part of `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataDescription {
    /// The MNIST folder, or the picture folder of `--images`.
    pub source: PathBuf,
    pub kind: DataKind,
    pub train_examples: usize,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub validation_examples: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub validation_split: Option<f64>,
    /// The seed the validation split was drawn with (runs that share it hold out the same
    /// images).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub split_seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub test_examples: Option<usize>,
    /// A picture folder's run: the MNIST folder whose test split it reports.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mnist_test: Option<PathBuf>,
    /// `--limit`: only the first N training images were used.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub limit: Option<usize>,
}

impl DataDescription {
    /// The held-out validation split, when the run had one.
    pub fn held_out(&self) -> Option<HeldOut> {
        let (fraction, seed) = self.validation_split.zip(self.split_seed)?;
        Some(HeldOut { fraction, seed })
    }

    /// Checks the settings a resumed run would use again, by their config.json keys.
    pub fn validate(&self) -> Result<()> {
        VALIDATION_FRACTION.check_optional("data.validation_split", self.validation_split)?;
        LIMIT.check_optional("data.limit", self.limit)?;
        ensure!(
            self.validation_split.is_some() == self.split_seed.is_some(),
            "data.validation_split and data.split_seed go together: one is missing"
        );
        Ok(())
    }

    /// The same data again (to resume the run).
    pub fn spec(&self) -> DataSpec {
        let source = match self.kind {
            DataKind::Mnist => DataSource::Mnist(self.source.clone()),
            DataKind::Images => DataSource::Images(self.source.clone()),
        };
        DataSpec {
            source,
            limit: self.limit,
            validation: self.held_out(),
            mnist_test: self.mnist_test.clone(),
        }
    }
}

/// The splits of a run, on one device.
pub struct Dataset {
    pub train: Split,
    /// Held out from the training data; chooses the model when present.
    pub validation: Option<Split>,
    /// Reported, never used to choose.
    pub test: Option<Split>,
    pub description: DataDescription,
}

impl Dataset {
    /// Loads and divides the examples `spec` names (on the CPU).
    pub fn load(spec: &DataSpec) -> Result<Self> {
        match &spec.source {
            DataSource::Mnist(dir) => Self::mnist(dir, spec),
            DataSource::Images(dir) => Self::images(dir, spec),
        }
    }

    /// MNIST: the training split (after the limit), optionally with a validation split held
    /// out of it, and the whole test split.
    fn mnist(dir: &Path, spec: &DataSpec) -> Result<Self> {
        let mnist = Mnist::load(dir)?;
        let mut train = mnist.train;
        if let Some(limit) = spec.limit {
            ensure!(
                limit <= train.len(),
                "--limit {limit}: the training set has only {} images",
                train.len()
            );
            train = train.first(limit);
        }
        let (train, validation) = match spec.validation {
            Some(held_out) => {
                let divided = train.stratified_split(held_out.fraction, held_out.seed);
                (divided.train, Some(divided.validation))
            }
            None => (train, None),
        };
        Ok(Self::new(
            train,
            validation,
            Some(mnist.test),
            dir,
            DataKind::Mnist,
            spec,
        ))
    }

    /// A labelled picture folder, split into training and validation.
    fn images(dir: &Path, spec: &DataSpec) -> Result<Self> {
        let held_out = spec
            .validation
            .context("a picture folder needs a validation split")?;
        let mut pictures = load_folder(dir)?.split;
        if let Some(limit) = spec.limit {
            ensure!(
                limit <= pictures.len(),
                "--limit {limit}: {} holds only {} usable pictures",
                dir.display(),
                pictures.len()
            );
            pictures = pictures.first(limit);
        }
        let Divided { train, validation } =
            pictures.stratified_split(held_out.fraction, held_out.seed);
        ensure!(
            !train.is_empty() && !validation.is_empty(),
            "--images {}: too few pictures for a training and a validation set ({} usable)",
            dir.display(),
            pictures.len()
        );
        warn_of_thin_pictures(dir, &train, &validation, held_out.fraction);
        let test = match &spec.mnist_test {
            Some(mnist) => Some(
                Mnist::load(mnist)
                    .with_context(|| format!("MNIST's test set for {}", dir.display()))?
                    .test,
            ),
            None => None,
        };
        Ok(Self::new(
            train,
            Some(validation),
            test,
            dir,
            DataKind::Images,
            spec,
        ))
    }

    fn new(
        train: Split,
        validation: Option<Split>,
        test: Option<Split>,
        source: &Path,
        kind: DataKind,
        spec: &DataSpec,
    ) -> Self {
        let description = DataDescription {
            source: source.to_owned(),
            kind,
            train_examples: train.len(),
            validation_examples: validation.as_ref().map(Split::len),
            validation_split: spec.validation.map(|v| v.fraction),
            split_seed: spec.validation.map(|v| v.seed),
            test_examples: test.as_ref().map(Split::len),
            mnist_test: spec.mnist_test.clone(),
            limit: spec.limit,
        };
        Self {
            train,
            validation,
            test,
            description,
        }
    }

    /// The same splits on `device`.
    pub fn to_device(self, device: Device) -> Self {
        Self {
            train: self.train.to_device(device),
            validation: self.validation.map(|s| s.to_device(device)),
            test: self.test.map(|s| s.to_device(device)),
            description: self.description,
        }
    }
}
