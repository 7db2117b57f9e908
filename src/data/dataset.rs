//! What a run trains and is judged on: MNIST or a labelled picture folder, cut to `limit`
//! examples, with a stratified validation split held out of the training data; and the
//! [`DataDescription`] of it that a run records.

use super::images::load_folder;
use super::{Divided, Mnist, Split};
use crate::rule::Rule;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Device;

/// A validation split's share of the training examples (`--val-split`, `validation_split`).
pub const VALIDATION_FRACTION: Rule<f64> = Rule::new(|x| x > 0.0 && x < 1.0, "above 0 and below 1");
/// `--limit`, `limit`.
pub const LIMIT: Rule<usize> = Rule::new(|n| n >= 1, "at least 1");

/// Where the examples come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// A folder with the four MNIST idx files: its training split, and its test split to report.
    Mnist(PathBuf),
    /// Labelled pictures laid out as DIR/0/*, …, DIR/9/* (no test split).
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
        Ok(Self::new(
            train,
            Some(validation),
            None,
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
