//! The network: the Keras tutorial's two-convolution CNN, built with `nn::seq()`, the
//! [`Classifier`] that holds any of the [`Architecture`]s, and checkpoints, which carry their
//! architecture.
//!
//! Parameter names follow PyTorch (`conv1.weight`, `conv1.bias`, `conv2.*`, `fc.*`), so that
//! weights move between this tool and the equivalent `torch.nn.Module` without renaming.

pub use crate::architecture::Architecture;
use crate::fsutil;
use anyhow::{bail, ensure, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// The tutorial CNN. Input N×1×28×28 in [0, 1]; output N×10 logits (the tutorial's softmax is
/// folded into the cross-entropy loss, which is the same objective and numerically safer).
/// Weights start as Keras starts them: Glorot-uniform weights and zero biases.
///
/// Each max-pool runs before its ReLU: max and ReLU commute (ReLU is monotonic), so the outputs
/// and gradients are those of the tutorial's conv → ReLU → pool, but the ReLU and its backward
/// touch a quarter of the values. [`reference_forward`] is the tutorial's order, for tests.
pub fn tutorial_cnn(root: &nn::Path) -> nn::Sequential {
    nn::seq()
        .add(keras_conv2d(root / "conv1", 1, 32, 3))
        .add_fn(|x| x.max_pool2d_default(2).relu())
        .add(keras_conv2d(root / "conv2", 32, 64, 3))
        .add_fn(|x| x.max_pool2d_default(2).relu())
        .add_fn(|x| x.flatten(1, -1))
        .add(keras_linear(root / "fc", 64 * 5 * 5, 10))
}

/// The tutorial network written out op by op in the tutorial's order (conv → ReLU → pool) on
/// plain contiguous weights: the reference the optimised model is checked against.
pub fn reference_forward(weights: &BTreeMap<String, Tensor>, images: &Tensor) -> Tensor {
    let w = |name: &str| weights[name].contiguous();
    let conv = |x: &Tensor, layer: &str| {
        x.conv2d(
            &w(&format!("{layer}.weight")),
            Some(&w(&format!("{layer}.bias"))),
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        )
    };
    let x = conv(images, "conv1").relu().max_pool2d_default(2);
    let x = conv(&x, "conv2").relu().max_pool2d_default(2);
    x.flatten(1, -1)
        .linear(&w("fc.weight"), Some(&w("fc.bias")))
}

/// Stores the convolution kernels channels-last (NHWC strides, same values). Convolutions then
/// produce channels-last activations, for which libtorch's CPU max-pool is about ten times
/// faster than for NCHW (measured on [128, 32, 26, 26]: 0.7 ms against 9 ms) and oneDNN's
/// convolutions avoid layout conversions.
fn store_kernels_channels_last(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (name, mut variable) in vs.variables() {
            if variable.dim() == 4 && name.ends_with("weight") {
                let size = variable.size();
                let (c, h, w) = (size[1], size[2], size[3]);
                // Strides spelled out: with one input channel, a permuted copy would come
                // back with contiguous strides, and libtorch would not see channels-last.
                let channels_last = Tensor::empty_strided(
                    &size,
                    [c * h * w, 1, w * c, c],
                    (variable.kind(), variable.device()),
                );
                let mut channels_last = channels_last;
                channels_last.copy_(&variable);
                variable.set_data(&channels_last);
            }
        }
    });
}

/// Glorot (Xavier) uniform initialisation, Keras's default for kernels:
/// U(±sqrt(6 / (fan_in + fan_out))).
pub fn glorot_uniform(fan_in: i64, fan_out: i64) -> nn::Init {
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
    nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// A 'valid' (unpadded) convolution initialised as Keras's `Conv2D`.
fn keras_conv2d(path: nn::Path, in_channels: i64, out_channels: i64, kernel: i64) -> nn::Conv2D {
    let receptive_field = kernel * kernel;
    let config = nn::ConvConfig {
        ws_init: glorot_uniform(
            in_channels * receptive_field,
            out_channels * receptive_field,
        ),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(path, in_channels, out_channels, kernel, config)
}

/// A dense layer initialised as Keras's `Dense`.
fn keras_linear(path: nn::Path, in_features: i64, out_features: i64) -> nn::Linear {
    let config = nn::LinearConfig {
        ws_init: glorot_uniform(in_features, out_features),
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    nn::linear(path, in_features, out_features, config)
}

/// A network together with the variables it owns.
pub struct Classifier {
    pub vs: nn::VarStore,
    net: Box<dyn ModuleT>,
    pub architecture: Architecture,
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field("architecture", &self.architecture)
            .field("device", &self.vs.device())
            .finish()
    }
}

impl Classifier {
    /// A freshly initialised network (initialisation draws from libtorch's global generator:
    /// seed it with `tch::manual_seed` first for reproducible weights).
    pub fn new(architecture: Architecture, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let net = architecture.build(&vs.root());
        store_kernels_channels_last(&vs);
        Self {
            vs,
            net,
            architecture,
        }
    }

    /// Loads a checkpoint (`.ot` or `.safetensors`) into the network it was made for: the
    /// architecture comes from the checkpoint (see [`checkpoint_architecture`]).
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let tensors = read_checkpoint(path)?;
        let architecture = checkpoint_architecture(path, &tensors)?;
        let model = Self::new(architecture, device);
        copy_weights(&model.vs, &tensors).with_context(|| {
            format!(
                "checkpoint {} does not fit the {architecture} model",
                path.display()
            )
        })?;
        Ok(model)
    }

    /// Logits for a batch of N×1×28×28 images.
    pub fn forward(&self, images: &Tensor, train: bool) -> Tensor {
        self.net.forward_t(images, train)
    }

    /// Saves the weights atomically; the format follows the extension (`.safetensors`, else
    /// libtorch's `.ot`).
    pub fn save(&self, path: &Path) -> Result<()> {
        // Contiguous copies: the kernels are stored channels-last, and safetensors writes a
        // tensor's storage as it lies.
        let tensors: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(name, t)| (name, t.detach().contiguous()))
            .collect();
        let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let safetensors = is_safetensors(path);
        fsutil::save_atomically(path, |temp| {
            if safetensors {
                write_safetensors(&named, self.architecture, temp)?;
            } else {
                Tensor::save_multi(&named, temp)?;
            }
            Ok(())
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The variables that training updates, by name: all but the batch-norm running statistics.
    pub fn trainable_variables(&self) -> Vec<(String, Tensor)> {
        self.vs
            .variables()
            .into_iter()
            .filter(|(name, _)| !is_running_statistic(name))
            .collect()
    }

    /// The number of trainable scalars.
    pub fn parameter_count(&self) -> i64 {
        self.vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }
}

/// Batch-norm buffers: estimated during training, not learned by gradient.
fn is_running_statistic(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// The metadata key of a safetensors checkpoint that names its architecture.
pub const ARCHITECTURE_KEY: &str = "architecture";

/// Writes named tensors as safetensors with the architecture in the metadata (tch's own writer
/// takes no metadata). Tensors go out as they are: the caller makes them contiguous.
pub fn write_safetensors(
    named: &[(&str, &Tensor)],
    architecture: Architecture,
    path: &Path,
) -> Result<()> {
    let mut buffers = Vec::with_capacity(named.len());
    for (name, tensor) in named {
        let tensor = tensor.to_device(Device::Cpu).contiguous();
        let dtype = match tensor.kind() {
            Kind::Float => Dtype::F32,
            Kind::Double => Dtype::F64,
            Kind::Int64 => Dtype::I64,
            Kind::Half => Dtype::F16,
            Kind::BFloat16 => Dtype::BF16,
            other => bail!("tensor {name}: {other:?} cannot be written to safetensors here"),
        };
        let mut bytes = vec![0u8; tensor.numel() * tensor.kind().elt_size_in_bytes()];
        tensor
            .f_copy_data_u8(&mut bytes, tensor.numel())
            .with_context(|| format!("cannot read tensor {name}"))?;
        let shape: Vec<usize> = tensor.size().iter().map(|&d| d as usize).collect();
        buffers.push((name.to_string(), dtype, shape, bytes));
    }
    let views = buffers
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|view| (name.as_str(), view))
                .map_err(|e| anyhow::anyhow!("tensor {name}: {e:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([
        (ARCHITECTURE_KEY.to_owned(), architecture.to_string()),
        // What Hugging Face's loaders expect of a PyTorch state dict.
        ("format".to_owned(), "pt".to_owned()),
    ]);
    safetensors::tensor::serialize_to_file(views, &Some(metadata), path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e:?}", path.display()))
}

/// The architecture of a checkpoint: told by its tensors (names, and the first convolution's
/// width), and checked against what the checkpoint declares, if anything: the safetensors
/// metadata, or the `config.json` of the run folder an `.ot` lies in.
pub fn checkpoint_architecture(
    path: &Path,
    tensors: &BTreeMap<String, Tensor>,
) -> Result<Architecture> {
    let inferred =
        Architecture::infer(tensors).with_context(|| format!("checkpoint {}", path.display()))?;
    if let Some((declared, source)) = declared_architecture(path)? {
        ensure!(
            declared == inferred,
            "checkpoint {}: {source} gives the architecture as {declared}, but the tensors are \
             those of {inferred}",
            path.display()
        );
    }
    Ok(inferred)
}

/// What the checkpoint says it is, and where it says so.
fn declared_architecture(path: &Path) -> Result<Option<(Architecture, String)>> {
    let (name, source) = if is_safetensors(path) {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "checkpoint {} is not a readable safetensors file: {e:?}",
                path.display()
            )
        })?;
        let name = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(ARCHITECTURE_KEY).cloned());
        (name, "its safetensors metadata".to_owned())
    } else {
        let config = path.with_file_name(crate::run::CONFIG_FILE);
        let name = std::fs::read_to_string(&config)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|value| value.get(ARCHITECTURE_KEY)?.as_str().map(str::to_owned));
        (name, format!("the run's {}", config.display()))
    };
    let Some(name) = name else {
        return Ok(None);
    };
    let declared = name
        .parse::<Architecture>()
        .map_err(|e| anyhow::anyhow!("checkpoint {}: {source} declares {e}", path.display()))?;
    Ok(Some((declared, source)))
}

/// Copies named tensors into the VarStore's variables, after checking that the names and
/// shapes are exactly the model's. (libtorch's own copy would broadcast a tensor of a
/// compatible but wrong shape without complaint.) PyTorch's `num_batches_tracked` buffers are
/// accepted and ignored.
pub fn copy_weights(vs: &nn::VarStore, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let variables: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    check_checkpoint_fits(tensors, &variables)?;
    tch::no_grad(|| -> Result<()> {
        for (name, mut variable) in variables {
            let source = &tensors[&name];
            variable
                .f_copy_(&source.to_kind(variable.kind()).to_device(variable.device()))
                .with_context(|| format!("cannot copy tensor {name}"))?;
        }
        Ok(())
    })
}

/// The named tensors of a checkpoint, by format: `.safetensors`, else libtorch's `.ot`.
pub fn read_checkpoint(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot open checkpoint {}", path.display()))?;
    ensure!(
        meta.is_file(),
        "checkpoint {} is not a file",
        path.display()
    );
    ensure!(meta.len() > 0, "checkpoint {} is empty", path.display());
    let safetensors = is_safetensors(path);
    let tensors = if safetensors {
        Tensor::read_safetensors(path)
    } else {
        Tensor::load_multi(path)
    }
    .map_err(|e| anyhow::anyhow!("{}", first_line(&e.to_string())))
    .with_context(|| {
        format!(
            "checkpoint {} is not a readable {} file",
            path.display(),
            if safetensors {
                "safetensors"
            } else {
                "libtorch (.ot)"
            }
        )
    })?;
    Ok(tensors.into_iter().collect())
}

/// libtorch errors carry a C++ backtrace after the first line; users need the first line.
fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message)
}

fn check_checkpoint_fits(
    tensors: &BTreeMap<String, Tensor>,
    variables: &BTreeMap<String, Tensor>,
) -> Result<()> {
    for (name, variable) in variables {
        let Some(tensor) = tensors.get(name) else {
            bail!("tensor {name} is missing");
        };
        ensure!(
            tensor.size() == variable.size(),
            "tensor {name} has shape {:?}, the model expects {:?}",
            tensor.size(),
            variable.size()
        );
        ensure!(
            tensor.is_floating_point(),
            "tensor {name} holds {:?} values, the model expects floating point",
            tensor.kind()
        );
    }
    if let Some(extra) = tensors
        .keys()
        .find(|name| !variables.contains_key(*name) && !Architecture::is_pytorch_only_buffer(name))
    {
        bail!("tensor {extra} is not part of the model");
    }
    Ok(())
}

/// Copies of the model's parameters, by name, in float32 on the CPU (for export and
/// comparisons; a copy, since the conversions alone would alias a float CPU tensor).
pub fn named_parameters(model: &Classifier) -> BTreeMap<String, Tensor> {
    model
        .vs
        .variables()
        .into_iter()
        .map(|(name, t)| {
            // Contiguous (NCHW) copies: the kernels are stored channels-last, and writers such
            // as safetensors take the storage as it lies.
            let t = t.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
            (name, t.copy())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The speed-ups (pool before ReLU, channels-last kernels) must not change the numbers: on
    /// the same batch the model's loss and every gradient equal those of the tutorial network
    /// written out op by op on plain weights.
    #[test]
    fn the_optimised_network_gives_the_reference_loss_and_gradients() {
        tch::manual_seed(3);
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
        let variables = model.vs.variables();
        assert_eq!(variables["conv2.weight"].stride(), [288, 1, 96, 32]);
        assert_eq!(variables["conv1.weight"].stride(), [9, 1, 3, 1]);
        // Real-valued inputs with negative pre-activations, so ReLU and pooling both matter.
        let images = Tensor::rand([24, 1, 28, 28], (Kind::Float, Device::Cpu));
        let labels = Tensor::randint(10, [24], (Kind::Int64, Device::Cpu));

        let reference: BTreeMap<String, Tensor> = named_parameters(&model)
            .into_iter()
            .map(|(name, t)| (name, t.detach().set_requires_grad(true)))
            .collect();
        let reference_loss =
            reference_forward(&reference, &images).cross_entropy_for_logits(&labels);
        reference_loss.backward();
        let loss = model
            .forward(&images, true)
            .cross_entropy_for_logits(&labels);
        loss.backward();

        let (a, b) = (loss.double_value(&[]), reference_loss.double_value(&[]));
        assert!((a - b).abs() <= 1e-6 * b.abs(), "loss {a} vs reference {b}");
        for (name, variable) in variables {
            let grad = variable.grad();
            let expected = reference[&name].grad();
            let scale = expected.abs().max().double_value(&[]);
            let diff = (&grad - &expected).abs().max().double_value(&[]);
            assert!(scale > 0.0, "{name}: no gradient");
            assert!(
                diff <= 1e-5 * scale,
                "{name}: gradient differs by {diff} (scale {scale})"
            );
        }
    }

    #[test]
    fn tutorial_model_has_pytorch_names_and_shapes() {
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
        let shapes: BTreeMap<String, Vec<i64>> = model
            .vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.size()))
            .collect();
        let expected: BTreeMap<String, Vec<i64>> = [
            ("conv1.weight", vec![32, 1, 3, 3]),
            ("conv1.bias", vec![32]),
            ("conv2.weight", vec![64, 32, 3, 3]),
            ("conv2.bias", vec![64]),
            ("fc.weight", vec![10, 1600]),
            ("fc.bias", vec![10]),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_owned(), s))
        .collect();
        assert_eq!(shapes, expected);
        assert_eq!(model.parameter_count(), 34_826);
    }

    #[test]
    fn initialisation_follows_keras() {
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
        let params = named_parameters(&model);
        for (name, fan_in, fan_out) in [("conv1", 9, 288), ("conv2", 288, 576), ("fc", 1600, 10)] {
            let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
            let weights = &params[&format!("{name}.weight")];
            let max = weights.abs().max().double_value(&[]);
            assert!(
                max <= bound && max > 0.9 * bound,
                "{name}: max {max}, bound {bound}"
            );
            let bias = &params[&format!("{name}.bias")];
            assert_eq!(bias.abs().sum(Kind::Float).double_value(&[]), 0.0);
        }
    }

    #[test]
    fn forward_gives_ten_logits_per_image() {
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
        let logits = model.forward(
            &Tensor::zeros([3, 1, 28, 28], (Kind::Float, Device::Cpu)),
            false,
        );
        assert_eq!(logits.size(), vec![3, 10]);
    }

    fn assert_same_weights(a: &Classifier, b: &Classifier) {
        let (a, b) = (named_parameters(a), named_parameters(b));
        for (name, t) in &a {
            assert!(t.equal(&b[name]), "{name} differs");
        }
    }

    #[test]
    fn checkpoints_round_trip_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        tch::manual_seed(1);
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
        for file in ["model.ot", "model.safetensors"] {
            let path = dir.path().join(file);
            model.save(&path).unwrap();
            let loaded = Classifier::load(&path, Device::Cpu).unwrap();
            assert_same_weights(&model, &loaded);
        }
    }

    #[test]
    fn vgg_sizes_names_and_trainable_variables() {
        let model = Classifier::new(Architecture::Vgg { width: 32 }, Device::Cpu);
        assert_eq!(model.parameter_count(), 289_130);
        assert_eq!(
            Classifier::new(Architecture::Vgg { width: 16 }, Device::Cpu).parameter_count(),
            75_450
        );
        let names: Vec<String> = model.vs.variables().into_keys().collect();
        for name in ["conv1.weight", "bn5.running_var", "bn3.bias", "fc.weight"] {
            assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
        }
        assert!(
            !names.iter().any(|n| n == "conv1.bias"),
            "conv bias before batch norm"
        );
        let trainable: Vec<String> = model
            .trainable_variables()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            trainable.len(),
            names.len() - 10,
            "five batch norms, two buffers each"
        );
        assert!(!trainable.iter().any(|n| n.contains("running")));
        let logits = model.forward(
            &Tensor::rand([2, 1, 28, 28], (Kind::Float, Device::Cpu)),
            true,
        );
        assert_eq!(logits.size(), vec![2, 10]);
    }

    /// Running statistics are part of the checkpoint: a vgg model trained a little (so they
    /// moved) comes back identical, architecture and all, from both formats.
    #[test]
    fn vgg_checkpoints_round_trip_with_their_running_statistics() {
        let dir = tempfile::tempdir().unwrap();
        tch::manual_seed(2);
        let model = Classifier::new(Architecture::Vgg { width: 8 }, Device::Cpu);
        let _ = model.forward(
            &Tensor::rand([8, 1, 28, 28], (Kind::Float, Device::Cpu)),
            true,
        );
        let mean = &model.vs.variables()["bn1.running_mean"];
        assert!(mean.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        for file in ["model.ot", "model.safetensors"] {
            let path = dir.path().join(file);
            model.save(&path).unwrap();
            let loaded = Classifier::load(&path, Device::Cpu).unwrap();
            assert_eq!(loaded.architecture, Architecture::Vgg { width: 8 });
            assert_same_weights(&model, &loaded);
        }
    }

    fn write_tensors(path: &Path, tensors: &[(&str, Tensor)]) {
        let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        if path.extension().unwrap() == "safetensors" {
            Tensor::write_safetensors(&named, path).unwrap();
        } else {
            Tensor::save_multi(&named, path).unwrap();
        }
    }

    fn full_set() -> Vec<(&'static str, Tensor)> {
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
        let params = named_parameters(&model);
        [
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "fc.weight",
            "fc.bias",
        ]
        .into_iter()
        .map(|n| (n, params[n].copy()))
        .collect()
    }

    fn load_error(tensors: &[(&str, Tensor)], file: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file);
        write_tensors(&path, tensors);
        let err = Classifier::load(&path, Device::Cpu).unwrap_err();
        format!("{err:#}")
    }

    #[test]
    fn a_wrong_shape_names_the_tensor_and_both_shapes() {
        let mut tensors = full_set();
        tensors[4].1 = Tensor::zeros([1600], (Kind::Float, Device::Cpu)); // broadcastable!
        let err = load_error(&tensors, "m.ot");
        assert!(err.contains("fc.weight has shape [1600]"), "{err}");
        assert!(err.contains("[10, 1600]"), "{err}");
    }

    #[test]
    fn missing_and_extra_tensors_are_named() {
        let mut tensors = full_set();
        let _conv1_bias = tensors.remove(1);
        assert!(load_error(&tensors, "m.safetensors").contains("conv1.bias is missing"));
        let mut tensors = full_set();
        tensors.push(("fc2.weight", Tensor::zeros([2], (Kind::Float, Device::Cpu))));
        assert!(load_error(&tensors, "m.ot").contains("fc2.weight is not part of the model"));
    }

    #[test]
    fn unreadable_checkpoints_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], &str); 4] = [
            ("empty.ot", b"", "is empty"),
            (
                "text.ot",
                b"these are not weights\n",
                "not a readable libtorch",
            ),
            (
                "random.ot",
                &[0x50, 0x4b, 0x03, 0x04, 9, 9, 9, 9, 1, 2, 3],
                "not a readable",
            ),
            (
                "text.safetensors",
                b"{\"not\": \"weights\"}",
                "not a readable safetensors",
            ),
        ];
        for (name, bytes, expected) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let err = Classifier::load(&path, Device::Cpu).unwrap_err();
            let err = format!("{err:#}");
            assert!(
                err.contains(expected) && err.contains(name),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn truncated_checkpoint_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.ot");
        Classifier::new(Architecture::Tutorial, Device::Cpu)
            .save(&path)
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = Classifier::load(&path, Device::Cpu).unwrap_err();
        assert!(format!("{err:#}").contains("model.ot"), "{err:#}");
    }
}
