//! [`Classifier`]: a network of one of the [`Architecture`]s together with the variables it owns.
//!
//! Its variables are always handed out in one order, sorted by name, so that the optimizer, the
//! weight average and the saved training state line up without each sorting on its own.

use crate::nn::{layout, names, Architecture};
use crate::precision::{Autocast, Precision};
use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::fmt;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// A tensor and its PyTorch name (`conv1.weight`).
pub struct NamedTensor {
    pub name: String,
    pub tensor: Tensor,
}

/// A network together with the variables it owns.
pub struct Classifier {
    vs: nn::VarStore,
    net: Box<dyn ModuleT>,
    architecture: Architecture,
    /// What the convolutions and linear layers compute in (the weights stay fp32).
    precision: Precision,
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
        layout::store_kernels_channels_last(&vs);
        Self {
            vs,
            net,
            architecture,
            precision: Precision::Fp32,
        }
    }

    /// Computes in `precision` from now on (mixed precision: see [`crate::precision`]).
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// Logits for a batch of N×1×28×28 images, in fp32 whatever the precision (so that the
    /// loss and the softmax are computed in fp32).
    pub fn forward(&self, images: &Tensor, train: bool) -> Tensor {
        match Autocast::enter(self.precision, self.device()) {
            None => self.net.forward_t(images, train),
            Some(_autocast) => self.net.forward_t(images, train).to_kind(Kind::Float),
        }
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Every variable (parameters and batch-norm running statistics), sorted by name. The
    /// tensors share storage with the model's.
    pub fn variables(&self) -> Vec<NamedTensor> {
        let mut variables: Vec<NamedTensor> = self
            .vs
            .variables()
            .into_iter()
            .map(|(name, tensor)| NamedTensor { name, tensor })
            .collect();
        variables.sort_by(|a, b| a.name.cmp(&b.name));
        variables
    }

    /// The variables' names, in [`Classifier::variables`]' order.
    pub fn variable_names(&self) -> Vec<String> {
        self.variables().into_iter().map(|v| v.name).collect()
    }

    /// The variables that training updates: all but the batch-norm running statistics.
    pub fn trainable_variables(&self) -> Vec<NamedTensor> {
        self.variables()
            .into_iter()
            .filter(|v| !names::is_running_statistic(&v.name))
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

    /// Copies of every variable, in name order.
    pub fn snapshot(&self) -> Vec<Tensor> {
        self.variables()
            .iter()
            .map(|v| v.tensor.detach().copy())
            .collect()
    }

    /// Puts a [`Classifier::snapshot`] (or tensors in the same order) back into the variables.
    pub fn restore(&self, weights: &[Tensor]) {
        tch::no_grad(|| {
            for (mut variable, saved) in self.variables().into_iter().zip(weights) {
                variable.tensor.copy_(saved);
            }
        });
    }

    /// Copies of the variables, by name, in float32 on the CPU, contiguous (NCHW: the kernels
    /// are stored channels-last, and writers such as safetensors take the storage as it lies).
    pub fn named_parameters(&self) -> BTreeMap<String, Tensor> {
        self.variables()
            .into_iter()
            .map(|v| {
                let t = v
                    .tensor
                    .to_kind(Kind::Float)
                    .to_device(Device::Cpu)
                    .contiguous();
                // A copy, since the conversions alone would alias a float CPU tensor.
                (v.name, t.copy())
            })
            .collect()
    }

    /// Copies named tensors into the variables, after checking that the names and shapes are
    /// exactly the model's. (libtorch's own copy would broadcast a tensor of a compatible but
    /// wrong shape without complaint.) PyTorch's `num_batches_tracked` buffers are accepted and
    /// ignored.
    pub fn load_weights(&self, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
        let variables: BTreeMap<String, Tensor> = self.vs.variables().into_iter().collect();
        check_weights_fit(tensors, &variables)?;
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

    /// Makes every variable a constant (no gradient), for tracing into TorchScript.
    pub fn freeze(&mut self) {
        self.vs.freeze();
    }
}

fn check_weights_fit(
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
        .find(|name| !variables.contains_key(*name) && !names::is_pytorch_only_buffer(name))
    {
        bail!("tensor {extra} is not part of the model");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::summary::Summary;
    use crate::nn::tutorial::reference_forward;
    use crate::shape::batch_shape;

    /// `summary`'s table is derived from the networks' constants: its totals must be the
    /// built networks' own.
    #[test]
    fn the_summary_counts_what_the_networks_hold() {
        for architecture in [
            Architecture::Tutorial,
            Architecture::Vgg { width: 4 },
            Architecture::Vgg { width: 16 },
            Architecture::Vgg { width: 48 },
        ] {
            let summary = Summary::of(architecture);
            let model = Classifier::new(architecture, Device::Cpu);
            assert_eq!(
                summary.parameters,
                model.parameter_count(),
                "{architecture}"
            );
            let picture = Tensor::zeros([1, 1, 28, 28], (Kind::Float, Device::Cpu));
            let logits = model.forward(&picture, false);
            assert_eq!(summary.layers.last().unwrap().output_shape, logits.size());
        }
    }

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
        let images = Tensor::rand(batch_shape(24), (Kind::Float, Device::Cpu));
        let labels = Tensor::randint(10, [24], (Kind::Int64, Device::Cpu));

        let reference: BTreeMap<String, Tensor> = model
            .named_parameters()
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

    fn shapes(model: &Classifier) -> BTreeMap<String, Vec<i64>> {
        model
            .variables()
            .into_iter()
            .map(|v| (v.name, v.tensor.size()))
            .collect()
    }

    #[test]
    fn tutorial_model_has_pytorch_names_and_shapes() {
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
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
        assert_eq!(shapes(&model), expected);
        assert_eq!(model.parameter_count(), 34_826);
        let names = model.variable_names();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    }

    #[test]
    fn initialisation_follows_keras() {
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
        let params = model.named_parameters();
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
            &Tensor::zeros(batch_shape(3), (Kind::Float, Device::Cpu)),
            false,
        );
        assert_eq!(logits.size(), vec![3, 10]);
    }

    #[test]
    fn vgg_sizes_names_and_trainable_variables() {
        let model = Classifier::new(Architecture::Vgg { width: 32 }, Device::Cpu);
        assert_eq!(model.parameter_count(), 289_130);
        assert_eq!(
            Classifier::new(Architecture::Vgg { width: 16 }, Device::Cpu).parameter_count(),
            75_450
        );
        let names = model.variable_names();
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
            .map(|v| v.name)
            .collect();
        assert_eq!(
            trainable.len(),
            names.len() - 10,
            "five batch norms, two buffers each"
        );
        assert!(!trainable.iter().any(|n| n.contains("running")));
        let logits = model.forward(
            &Tensor::rand(batch_shape(2), (Kind::Float, Device::Cpu)),
            true,
        );
        assert_eq!(logits.size(), vec![2, 10]);
    }

    #[test]
    fn a_snapshot_restores_every_variable() {
        let model = Classifier::new(Architecture::Vgg { width: 4 }, Device::Cpu);
        let before = model.snapshot();
        let _ = model.forward(
            &Tensor::rand(batch_shape(4), (Kind::Float, Device::Cpu)),
            true,
        );
        let same = |now: Vec<Tensor>| now.iter().zip(&before).all(|(a, b)| a.equal(b));
        assert!(!same(model.snapshot()), "the running statistics moved");
        model.restore(&before);
        assert!(same(model.snapshot()));
    }

    /// The relative L2 distance between two tensors.
    fn relative_distance(a: &Tensor, b: &Tensor) -> f64 {
        let difference = (a - b).norm().double_value(&[]);
        difference / b.norm().double_value(&[]).max(1e-12)
    }

    /// Loss and gradients of `images` in `precision`, from `start`'s weights (copied, so that
    /// both precisions start alike even while other tests draw from libtorch's generator).
    fn loss_and_gradients(
        start: &Classifier,
        images: &Tensor,
        precision: Precision,
    ) -> (Tensor, Tensor, Vec<Tensor>) {
        let mut model = Classifier::new(start.architecture(), Device::Cpu);
        model.restore(&start.snapshot());
        model.set_precision(precision);
        let labels = Tensor::arange(16, (Kind::Int64, Device::Cpu)).remainder(10);
        // Evaluation mode: dropout would draw differently in each precision.
        let logits = model.forward(images, false);
        let loss = logits.cross_entropy_for_logits(&labels);
        loss.backward();
        let grads = model
            .trainable_variables()
            .iter()
            .map(|v| v.tensor.grad().copy())
            .collect();
        (logits, loss, grads)
    }

    #[test]
    fn bf16_forward_and_backward_agree_with_fp32_within_bf16s_precision() {
        for architecture in [Architecture::Tutorial, Architecture::Vgg { width: 8 }] {
            tch::manual_seed(7);
            let start = Classifier::new(architecture, Device::Cpu);
            let images = Tensor::rand(batch_shape(16), (Kind::Float, Device::Cpu));
            let (logits32, loss32, grads32) = loss_and_gradients(&start, &images, Precision::Fp32);
            let (logits16, loss16, grads16) = loss_and_gradients(&start, &images, Precision::Bf16);
            // The logits and the loss leave the network in fp32, the gradients reach the fp32
            // weights in fp32.
            assert_eq!(logits16.kind(), Kind::Float);
            assert!(grads16.iter().all(|g| g.kind() == Kind::Float));
            // bf16 keeps 8 bits of mantissa (a relative step of 2^-8 ≈ 0.4%); sums of many
            // such products stay within a few percent.
            let logits_off = relative_distance(&logits16, &logits32);
            assert!(
                logits_off < 0.03,
                "{architecture}: logits off by {logits_off}"
            );
            let loss_off = relative_distance(&loss16, &loss32);
            assert!(loss_off < 0.01, "{architecture}: loss off by {loss_off}");
            // The gradients of the first layers are sums of many terms that cancel, computed
            // through the bf16 backward of every layer above: over seeds 0-30 (libtorch's
            // generator is shared with the tests running beside this one, so the draw is not
            // always seed 7's) up to 42% off in L2, but pointing the same way (cosine at least
            // 0.909).
            for (g16, g32) in grads16.iter().zip(&grads32) {
                let off = relative_distance(g16, g32);
                let cosine = (g16 * g32).sum(Kind::Float).double_value(&[])
                    / (g16.norm().double_value(&[]) * g32.norm().double_value(&[]));
                assert!(
                    off < 0.5 && cosine > 0.9,
                    "{architecture}: a gradient {:?} off by {off} (cosine {cosine})",
                    g32.size()
                );
            }
            // And the low precision did compute: the results are not fp32's bit for bit.
            assert!(
                !logits16.equal(&logits32),
                "{architecture}: bf16 changed nothing"
            );
        }
    }
}
