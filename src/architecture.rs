//! The model families, by name, and how a checkpoint's tensors tell which one they hold.
//!
//! - `tutorial`: the Keras tutorial's two-convolution CNN (34,826 parameters), built in
//!   [`crate::model::tutorial_cnn`].
//! - `vgg-N`: stacked 3×3 convolutions with batch normalisation, VGG-style, in three stages of
//!   N, 2N and 4N channels (1, 2 and 2 convolutions), each ended by a 2×2 max-pool, then dropout
//!   and one dense layer. N is the width: `vgg-16` has 75k parameters, `vgg-32` 289k, `vgg-48`
//!   641k. Built in [`vgg_cnn`].
//!
//! Parameter names follow PyTorch (`conv1.weight`, `bn1.running_mean`, …, `fc.bias`), so the
//! same `torch.nn.Module` (see `scripts/pytorch_interop.py`) loads them without renaming.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Channels of the first stage when `vgg` is given without a width.
pub const DEFAULT_VGG_WIDTH: i64 = 32;
/// The widths accepted for `vgg-N`.
pub const VGG_WIDTHS: std::ops::RangeInclusive<i64> = 4..=256;
/// Dropout before the dense layer of `vgg-N`, in training only.
pub const VGG_DROPOUT: f64 = 0.25;

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
                    width: DEFAULT_VGG_WIDTH,
                })
            }
            _ => {}
        }
        if let Some(width) = s.strip_prefix("vgg-") {
            return match width.parse::<i64>() {
                Ok(width) if VGG_WIDTHS.contains(&width) => Ok(Self::Vgg { width }),
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
            Self::Tutorial => Box::new(crate::model::tutorial_cnn(root)),
            Self::Vgg { width } => Box::new(vgg_cnn(root, width)),
        }
    }

    /// The architecture whose tensors these are, from their names and the first convolution's
    /// shape; whether every tensor then fits is checked when the weights are copied in.
    pub fn infer(tensors: &BTreeMap<String, Tensor>) -> Result<Self> {
        let conv1 = tensors
            .get("conv1.weight")
            .context("no tensor conv1.weight: not a checkpoint of this tool's models")?;
        if tensors.contains_key("bn1.running_mean") {
            let width = conv1.size()[0];
            if !VGG_WIDTHS.contains(&width) {
                bail!("conv1.weight has {width} output channels; vgg-N takes N from 4 to 256");
            }
            Ok(Self::Vgg { width })
        } else {
            Ok(Self::Tutorial)
        }
    }

    /// Names of the batch-norm buffers PyTorch keeps and this tool does not
    /// (`num_batches_tracked`: a step counter, unused when the momentum is set).
    pub fn is_pytorch_only_buffer(name: &str) -> bool {
        name.ends_with(".num_batches_tracked")
    }

    /// The batch-norm layers (for PyTorch's `num_batches_tracked` on export).
    pub fn batch_norm_layers(self) -> Vec<String> {
        match self {
            Self::Tutorial => Vec::new(),
            Self::Vgg { .. } => (1..=5).map(|i| format!("bn{i}")).collect(),
        }
    }
}

/// conv{index} (3×3, 'same' padding, no bias: the batch norm's shift replaces it) followed by
/// bn{index}.
fn conv_bn(root: &nn::Path, index: usize, in_channels: i64, out_channels: i64) -> nn::SequentialT {
    let config = nn::ConvConfig {
        padding: 1,
        bias: false,
        ..Default::default()
    };
    nn::seq_t()
        .add(nn::conv2d(
            root / format!("conv{index}"),
            in_channels,
            out_channels,
            3,
            config,
        ))
        .add(nn::batch_norm2d(
            root / format!("bn{index}"),
            out_channels,
            Default::default(),
        ))
}

/// The `vgg-N` network: input N×1×28×28 in [0, 1], output N×10 logits.
///
/// 28×28: conv1 → 2×2 pool → 14×14: conv2, conv3 → pool → 7×7: conv4, conv5 → pool → 3×3 →
/// flatten → dropout → fc. Every convolution is followed by batch norm and ReLU; where a pool
/// follows, it runs before the ReLU (they commute, and the ReLU then touches a quarter of the
/// values). Initialisation is PyTorch's default (Kaiming-uniform), as in the PyTorch module.
pub fn vgg_cnn(root: &nn::Path, width: i64) -> nn::SequentialT {
    let (a, b, c) = (width, 2 * width, 4 * width);
    nn::seq_t()
        .add(conv_bn(root, 1, 1, a))
        .add_fn(|x| x.max_pool2d_default(2).relu())
        .add(conv_bn(root, 2, a, b))
        .add_fn(|x| x.relu())
        .add(conv_bn(root, 3, b, b))
        .add_fn(|x| x.max_pool2d_default(2).relu())
        .add(conv_bn(root, 4, b, c))
        .add_fn(|x| x.relu())
        .add(conv_bn(root, 5, c, c))
        .add_fn(|x| x.max_pool2d_default(2).relu())
        .add_fn(|x| x.flatten(1, -1))
        .add_fn_t(|x, train| x.dropout(VGG_DROPOUT, train))
        .add(nn::linear(root / "fc", c * 3 * 3, 10, Default::default()))
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
