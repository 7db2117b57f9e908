//! The data a report evaluates on: the MNIST test set, or a labelled picture folder.

use crate::data::dataset::DataKind;
use crate::data::{images, Mnist, Split};
use crate::io::RunConfig;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Where a report's examples come from.
pub enum ReportData {
    Mnist(PathBuf),
    Images(PathBuf),
}

/// The examples, and how the report names them.
pub struct ReportSplit {
    pub split: Split,
    pub description: String,
}

impl ReportData {
    /// What the flags ask for, else what the run was trained on.
    pub fn choose(data: Option<&Path>, images: Option<&Path>, config: &RunConfig) -> Self {
        match (data, images) {
            (_, Some(dir)) => Self::Images(dir.to_owned()),
            (Some(dir), None) => Self::Mnist(dir.to_owned()),
            (None, None) => Self::of_run(config),
        }
    }

    /// What the run was trained on: its picture folder, or its MNIST folder's test set.
    pub fn of_run(config: &RunConfig) -> Self {
        let source = config.data.source.clone();
        match config.data.kind {
            DataKind::Images => Self::Images(source),
            DataKind::Mnist => Self::Mnist(source),
        }
    }

    /// Loads the split and says what it is.
    pub fn load(&self) -> Result<ReportSplit> {
        Ok(match self {
            Self::Mnist(dir) => {
                let test = Mnist::load(dir)
                    .with_context(|| {
                        format!(
                            "the report evaluates on the MNIST test set in {} (choose another \
                             folder with --data)",
                            dir.display()
                        )
                    })?
                    .test;
                let description = mnist_test_description(test.len());
                ReportSplit {
                    split: test,
                    description,
                }
            }
            Self::Images(dir) => {
                let folder = images::load_folder(dir)?;
                let description = format!(
                    "the pictures in {} ({} pictures)",
                    dir.display(),
                    folder.split.len()
                );
                ReportSplit {
                    split: folder.split,
                    description,
                }
            }
        })
    }
}

/// How a report names the MNIST test set it was computed on.
pub fn mnist_test_description(digits: usize) -> String {
    format!("the MNIST test set ({digits} digits)")
}
