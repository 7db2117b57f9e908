//! `config.json`: everything needed to understand and reproduce a run. One type,
//! [`RunConfig`], read and written by [`super::run_folder::RunFolder`] alone.

use crate::data::dataset::DataDescription;
use crate::device::DeviceName;
use crate::eval::Scores;
use crate::nn::Architecture;
use crate::train::{FinalMetrics, Recipe, TrainOptions};
use anyhow::{anyhow, ensure, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// The command that made a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunCommand {
    Train,
    Finetune,
}

impl fmt::Display for RunCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Train => "train",
            Self::Finetune => "finetune",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    /// Stopped by Ctrl-C or SIGTERM; the files hold the last completed epoch.
    Interrupted,
    /// Stopped by an error (a loss that stopped being finite, a failed write).
    Failed,
}

/// The contents of `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub command: RunCommand,
    pub status: RunStatus,
    pub architecture: Architecture,
    pub parameters: i64,
    /// The checkpoint a fine-tuning run started from.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub parent: Option<PathBuf>,
    /// The recipe `train` started from (before its flags and config file).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub recipe: Option<Recipe>,
    #[serde(flatten)]
    pub options: TrainOptions,
    pub loss: String,
    pub device: DeviceName,
    pub threads: i32,
    pub data: DataDescription,
    pub mnist_cnn_version: String,
    pub tch_version: String,
    pub libtorch_version: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// The starting checkpoint's scores on the run's evaluation data (fine-tuning).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub before: Option<Scores>,
    pub final_metrics: Option<FinalMetrics>,
}

impl RunConfig {
    /// Parses config.json text: a value of the wrong type names its key, and every setting a
    /// resumed run would use again is checked against the rule its flag has.
    pub fn parse(text: &str) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| anyhow!("not JSON: {e}"))?;
        let config: Self = from_value(&value).or_else(|whole| {
            if !whole.to_string().starts_with("missing field") {
                // The training options are flattened into the top level, and serde loses the
                // key of an error inside a flattened struct: read them alone to find it.
                from_value::<TrainOptions>(&value)?;
            }
            Err(whole)
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings against the flags' rules.
    pub fn validate(&self) -> Result<()> {
        self.options.validate()?;
        self.data.validate()?;
        ensure!(
            self.threads >= 1,
            "threads is {}: must be at least 1",
            self.threads
        );
        Ok(())
    }
}

/// Deserialises `value`, with the path of the key that does not fit in the error.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            anyhow!("{}", e.inner())
        } else {
            anyhow!("{path}: {}", e.inner())
        }
    })
}

/// The current time in UTC, as `config.json` records it.
pub fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
