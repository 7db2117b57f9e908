//! The model families, by name, and how a checkpoint's tensors tell which one they hold.
//!
//! - `tutorial`: the Keras tutorial's two-convolution CNN (34,826 parameters), in
//!   [`super::tutorial`].
//! - `vgg-N`: batch-normalised 3×3 convolutions in stages of N, 2N and 4N channels, in
//!   [`super::vgg`]. `vgg-16` has 75k parameters, `vgg-32` 289k, `vgg-48` 641k.
//!
//! The architecture also answers what depends on it alone: which layers are batch norms and
//! which tensor holds the first filters. (Which layer a parameter belongs to is told by its
//! name, in [`super::names`].)

use super::{names, tutorial, vgg};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// A model family and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Conv2d(1→32, 3×3) → ReLU → MaxPool 2 → Conv2d(32→64, 3×3) → ReLU → MaxPool 2 → Flatten →
    /// Linear(1600→10): the Keras MNIST tutorial's network, 34,826 parameters.
    Tutorial,
    /// Batch-normalised 3×3 convolutions in stages of `width`, 2·`width` and 4·`width` channels.
    Vgg { width: i64 },
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tutorial => write!(f, "tutorial"),
            Self::Vgg { width } => write!(f, "vgg-{width}"),
        }
    }
}

impl FromStr for Architecture {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let known = "known: tutorial, vgg (= vgg-32) and vgg-N with N the channels of the \
                     first stage, 4 to 256";
        match s {
            "tutorial" => return Ok(Self::Tutorial),
            "vgg" => {
                return Ok(Self::Vgg {
                    width: vgg::DEFAULT_WIDTH,
                })
            }
            _ => {}
        }
        if let Some(width) = s.strip_prefix("vgg-") {
            return match width.parse::<i64>() {
                Ok(width) if vgg::WIDTHS.contains(&width) => Ok(Self::Vgg { width }),
                _ => Err(format!(
                    "{s:?}: the width must be a whole number from 4 to 256"
                )),
            };
        }
        Err(format!("unknown architecture {s:?} ({known})"))
    }
}

impl Serialize for Architecture {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Architecture {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl Architecture {
    /// The network, its variables created under `root`.
    pub fn build(self, root: &nn::Path) -> Box<dyn ModuleT> {
        match self {
            Self::Tutorial => Box::new(tutorial::tutorial_cnn(root)),
            Self::Vgg { width } => Box::new(vgg::vgg_cnn(root, width)),
        }
    }

    /// The architecture whose tensors these are, from their names and the first convolution's
    /// shape; whether every tensor then fits is checked when the weights are copied in.
    pub fn infer(tensors: &BTreeMap<String, Tensor>) -> Result<Self> {
        let first_filters = names::weight_of(names::FIRST_CONVOLUTION);
        let conv1 = tensors.get(&first_filters).with_context(|| {
            format!("no tensor {first_filters}: not a checkpoint of this tool's models")
        })?;
        if !tensors.contains_key(&format!("{}.running_mean", names::FIRST_BATCH_NORM)) {
            return Ok(Self::Tutorial);
        }
        let size = conv1.size();
        let Some(&width) = size.first() else {
            bail!(
                "{first_filters} has shape {size:?}; a convolution's kernels have four dimensions"
            );
        };
        if !vgg::WIDTHS.contains(&width) {
            bail!("{first_filters} has {width} output channels; vgg-N takes N from 4 to 256");
        }
        Ok(Self::Vgg { width })
    }

    /// The batch-norm layers (for PyTorch's `num_batches_tracked` on export).
    pub fn batch_norm_layers(self) -> Vec<String> {
        match self {
            Self::Tutorial => Vec::new(),
            Self::Vgg { .. } => vgg::batch_norm_layers(),
        }
    }

    /// The tensor holding the first layer's filters (N×1×3×3), which the report draws.
    pub fn first_filters(self) -> String {
        names::weight_of(names::FIRST_CONVOLUTION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_ones_are_explained() {
        for name in ["tutorial", "vgg-32", "vgg-4", "vgg-256"] {
            let arch: Architecture = name.parse().unwrap();
            assert_eq!(arch.to_string(), name);
        }
        assert_eq!(
            "vgg".parse::<Architecture>().unwrap(),
            Architecture::Vgg { width: 32 }
        );
        for (bad, expected) in [
            ("resnet", "unknown architecture \"resnet\""),
            ("vgg-0", "from 4 to 256"),
            ("vgg-1000", "from 4 to 256"),
            ("vgg-x", "from 4 to 256"),
            ("", "unknown architecture"),
        ] {
            let err = bad.parse::<Architecture>().unwrap_err();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }

    #[test]
    fn serde_uses_the_name() {
        let arch = Architecture::Vgg { width: 24 };
        let json = serde_json::to_string(&arch).unwrap();
        assert_eq!(json, "\"vgg-24\"");
        assert_eq!(serde_json::from_str::<Architecture>(&json).unwrap(), arch);
        assert!(serde_json::from_str::<Architecture>("\"lenet\"").is_err());
    }
}
