//! `train --config FILE`: a run's settings from a TOML file or from a run's `config.json`, with
//! config.json's key names (`learning_rate`, `batch_size`, `data.validation_split`, …).
//!
//! The file's settings go over the recipe's and under the flags given explicitly. A run's
//! config.json also records what happened (status, times, versions, scores, the device): those
//! keys are ignored there. Any other key that is not a setting, a value of the wrong type, or a
//! value a flag would refuse is an error naming the file and the key.

use crate::fsutil;
use crate::nn::Architecture;
use crate::rule::Rule;
use crate::train::settings::typed;
use crate::train::{TrainOptions, TrainOverrides, KEYS};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// What a run's config.json records rather than asks for (see [`super::RunConfig`]).
const RECORD_ONLY: [&str; 14] = [
    "command",
    "recipe",
    "status",
    "parameters",
    "parent",
    "loss",
    "device",
    "mnist_cnn_version",
    "tch_version",
    "libtorch_version",
    "started_at",
    "finished_at",
    "before",
    "final_metrics",
];
/// The same for the `data` table.
const DATA_RECORD_ONLY: [&str; 3] = ["train_examples", "validation_examples", "test_examples"];
/// The settings of the `data` table.
const DATA_KEYS: [&str; 5] = ["source", "kind", "validation_split", "split_seed", "limit"];
/// Larger than any settings file a person writes.
const MAX_BYTES: u64 = 1 << 20;
const THREADS: Rule<usize> = Rule::new(|n| n >= 1, "at least 1");

/// The settings a file gives; `None` where it gives none.
#[derive(Debug, Clone, Default)]
pub struct SettingsFile {
    pub path: PathBuf,
    pub architecture: Option<Architecture>,
    /// The training settings it gives (checked).
    pub options: TrainOverrides,
    /// The MNIST folder.
    pub data: Option<PathBuf>,
    pub validation_split: Option<f64>,
    pub limit: Option<usize>,
    pub threads: Option<usize>,
}

impl SettingsFile {
    /// Reads `path`: TOML when it ends in `.toml`, JSON (a run's config.json) otherwise.
    pub fn read(path: &Path) -> Result<Self> {
        let text = fsutil::read_text_limited(path, MAX_BYTES, "settings file")?;
        Self::parse(path, &text).with_context(|| format!("--config {}", path.display()))
    }

    fn parse(path: &Path, text: &str) -> Result<Self> {
        let is_toml = path.extension().is_some_and(|e| e == "toml");
        let mut table = if is_toml {
            let value: toml::Table = toml::from_str(text).map_err(|e| anyhow!("not TOML: {e}"))?;
            refuse_non_finite(&value)?;
            serde_json::to_value(value)?
        } else {
            serde_json::from_str(text).map_err(|e| anyhow!("not JSON: {e}"))?
        };
        let Value::Object(map) = &mut table else {
            bail!("not a table of settings");
        };
        let is_run_record = !is_toml && map.contains_key("command");
        if is_run_record {
            refuse_finetune_record(map)?;
            for key in RECORD_ONLY {
                map.remove(key);
            }
        }
        let mut file = Self {
            path: path.to_owned(),
            ..Self::default()
        };
        for (key, value) in std::mem::take(map) {
            file.take(&key, value, is_run_record)?;
        }
        // Every training setting checked now, over the defaults, so that a bad one names the
        // file rather than surfacing later.
        file.options.over(TrainOptions::default()).validate()?;
        Ok(file)
    }

    /// Takes one top-level key.
    fn take(&mut self, key: &str, value: Value, is_run_record: bool) -> Result<()> {
        match key {
            "architecture" => self.architecture = Some(typed(key, value)?),
            "threads" => {
                let threads: usize = typed(key, value)?;
                THREADS.check(key, threads)?;
                self.threads = Some(threads);
            }
            "data" => self.take_data(value, is_run_record)?,
            _ if KEYS.contains(&key) => self.options.set(key, value)?,
            _ => bail!("{key}: not a setting (the keys are config.json's; see docs/settings.md)"),
        }
        Ok(())
    }

    fn take_data(&mut self, value: Value, is_run_record: bool) -> Result<()> {
        let Value::Object(data) = value else {
            bail!("data: must be a table");
        };
        for (key, value) in data {
            let path = format!("data.{key}");
            match key.as_str() {
                "source" => self.data = Some(typed(&path, value)?),
                "kind" => {
                    let kind: String = typed(&path, value)?;
                    if kind != "mnist" {
                        bail!("{path} is {kind:?}: train takes MNIST (pictures are finetune's --images)");
                    }
                }
                "validation_split" => {
                    let fraction = typed(&path, value)?;
                    crate::data::dataset::VALIDATION_FRACTION.check(&path, fraction)?;
                    self.validation_split = Some(fraction);
                }
                "limit" => {
                    let limit = typed(&path, value)?;
                    crate::data::dataset::LIMIT.check(&path, limit)?;
                    self.limit = Some(limit);
                }
                // The split is drawn from the run's seed; a run's record repeats it.
                "split_seed" => {
                    let _: u64 = typed(&path, value)?;
                }
                _ if is_run_record && DATA_RECORD_ONLY.contains(&key.as_str()) => {}
                _ => bail!(
                    "{path}: not a setting (data takes {})",
                    DATA_KEYS.join(", ")
                ),
            }
        }
        Ok(())
    }
}

/// A fine-tune's record repeated by `train` would start from fresh weights and train something
/// else altogether; it is refused, naming its parent and the command that fine-tunes it.
fn refuse_finetune_record(record: &Map<String, Value>) -> Result<()> {
    if record.get("command").and_then(Value::as_str) != Some("finetune") {
        return Ok(());
    }
    let parent = record
        .get("parent")
        .and_then(Value::as_str)
        .map(|p| p.chars().take(200).collect::<String>())
        .unwrap_or_else(|| "its starting checkpoint".to_owned());
    bail!(
        "it is the record of a fine-tune (command \"finetune\", parent {parent}): train --config \
         would start from fresh weights instead of repeating it; replay it with `mnist-cnn \
         finetune --config` on this file"
    );
}

/// TOML has `nan` and `inf`, which JSON (and so the settings' types) cannot hold: they would
/// arrive as null. Each is refused by its key, as what it is.
fn refuse_non_finite(table: &toml::Table) -> Result<()> {
    let mut pending: Vec<(String, &toml::Value)> =
        table.iter().map(|(k, v)| (k.clone(), v)).collect();
    while let Some((key, value)) = pending.pop() {
        match value {
            toml::Value::Float(x) if !x.is_finite() => {
                bail!("{key} is {x}: not a finite number")
            }
            toml::Value::Table(inner) => {
                pending.extend(inner.iter().map(|(k, v)| (format!("{key}.{k}"), v)));
            }
            toml::Value::Array(items) => {
                let items = items.iter().enumerate();
                pending.extend(items.map(|(i, v)| (format!("{key}[{i}]"), v)));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, text: &str) -> Result<SettingsFile> {
        SettingsFile::parse(Path::new(name), text)
    }

    #[test]
    fn toml_settings_go_over_the_recipe() {
        let file = parse(
            "run.toml",
            "architecture = \"vgg-16\"\nlearning_rate = 3e-3\noptimizer = \"sgd\"\nmomentum = 0.9\n\
             [data]\nsource = \"elsewhere\"\nvalidation_split = 0.1\n",
        )
        .unwrap();
        let options = file.options.over(TrainOptions::default());
        assert_eq!(options.learning_rate, 3e-3);
        assert_eq!(options.momentum, 0.9);
        assert_eq!(options.batch_size, 32, "untouched: the recipe's");
        assert_eq!(file.architecture, Some(Architecture::Vgg { width: 16 }));
        assert_eq!(file.data.as_deref(), Some(Path::new("elsewhere")));
        assert_eq!(file.validation_split, Some(0.1));
    }

    /// A fine-tune's config.json (MNIST or pictures) is never repeated as a training run from
    /// scratch: it is refused, naming the fine-tune's parent.
    #[test]
    fn a_finetunes_record_is_refused_naming_its_parent() {
        for kind in ["mnist", "images"] {
            let text = format!(
                "{{\"command\": \"finetune\", \"parent\": \"runs/a/model.ot\", \
                 \"learning_rate\": 0.0001, \"data\": {{\"kind\": \"{kind}\"}}}}"
            );
            let err = format!("{:#}", parse("runs/b/config.json", &text).unwrap_err());
            assert!(err.contains("record of a fine-tune"), "{err}");
            assert!(err.contains("parent runs/a/model.ot"), "{err}");
            assert!(err.contains("mnist-cnn finetune --config"), "{err}");
        }
    }

    #[test]
    fn unknown_keys_wrong_types_and_bad_values_name_the_key() {
        for (text, expected) in [
            ("learning_rat = 1e-3", "learning_rat: not a setting"),
            ("batch_size = \"many\"", "batch_size: invalid type"),
            ("batch_size = 0", "batch_size is 0"),
            ("[data]\nlimit = 0", "data.limit is 0"),
            ("[data]\nsorce = \"x\"", "data.sorce: not a setting"),
            ("status = \"completed\"", "status: not a setting"),
            (
                "learning_rate = nan",
                "learning_rate is NaN: not a finite number",
            ),
            ("betas = [0.9, inf]", "betas[1] is inf: not a finite number"),
            (
                "[data]\nvalidation_split = -nan",
                "data.validation_split is NaN",
            ),
        ] {
            let err = format!("{:#}", parse("bad.toml", text).unwrap_err());
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn a_runs_record_only_keys_are_ignored() {
        let text = r#"{"command": "train", "status": "completed", "epochs": 2, "batch_size": 16,
            "device": "cpu", "final_metrics": {"anything": 1},
            "data": {"source": "d", "kind": "mnist", "train_examples": 64}}"#;
        let file = parse("config.json", text).unwrap();
        let options = file.options.over(TrainOptions::default());
        assert_eq!((options.epochs.0, options.batch_size), (2.0, 16));
    }
}
