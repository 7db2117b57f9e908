//! ONNX export, written here from the weights (libtorch's C++ API has no ONNX exporter): one
//! graph for a model or an ensemble, opset 17, a dynamic batch dimension.
//!
//! - Input `images`: N×1×28×28 float32, pixels/255 (0 to 1), white ink on black, as MNIST.
//! - Outputs `logits` (N×10) and `probabilities` (N×10, the softmax). For an ensemble,
//!   `probabilities` is the mean of the members' probabilities, as `eval` computes it, and
//!   `logits` its logarithm (so that softmax(logits) gives back the mean).
//! - Batch norms (`vgg-N`) are folded into the convolutions before them: inference only, one
//!   Conv node each. Dropout is the identity in inference and leaves no node.
//!
//! The messages are `onnx-protobuf`'s, generated from the official onnx.proto.

use crate::model::Classifier;
use crate::nn::{names, Architecture};
use crate::shape::{IMAGE_SIDE, NUM_CLASSES};
use anyhow::{ensure, Context, Result};
use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// The operator set the graph is written for.
pub const OPSET: i64 = 17;
/// The IR version that goes with opset 17.
const IR_VERSION: i64 = 8;
/// PyTorch's (and tch's) batch-norm epsilon.
const BATCH_NORM_EPSILON: f64 = 1e-5;
pub const INPUT: &str = "images";
pub const LOGITS: &str = "logits";
pub const PROBABILITIES: &str = "probabilities";

/// What the file says about itself beyond the graph (ONNX metadata_props).
#[derive(Debug, Clone, Default)]
pub struct Description {
    /// The run's test accuracy, when the checkpoint is a run's model.ot.
    pub test_accuracy: Option<f64>,
}

/// The ONNX file's bytes for `members` (one model, or an ensemble that averages them).
pub fn encode(members: &[Classifier], description: &Description) -> Result<Vec<u8>> {
    let model = model_proto(members, description)?;
    model
        .write_to_bytes()
        .context("cannot encode the ONNX model")
}

fn model_proto(members: &[Classifier], description: &Description) -> Result<ModelProto> {
    ensure!(!members.is_empty(), "no model to export");
    let mut graph = Graph::default();
    let mut member_logits = Vec::new();
    for (index, member) in members.iter().enumerate() {
        let prefix = if members.len() == 1 {
            String::new()
        } else {
            format!("m{index}.")
        };
        member_logits.push(graph.member(member, &prefix)?);
    }
    if let [only] = member_logits.as_slice() {
        graph.node("Identity", &[only], &[LOGITS], vec![]);
        graph.node("Softmax", &[LOGITS], &[PROBABILITIES], vec![int("axis", 1)]);
    } else {
        let mut probabilities = Vec::new();
        for (index, logits) in member_logits.iter().enumerate() {
            let name = format!("m{index}.probabilities");
            graph.node("Softmax", &[logits], &[&name], vec![int("axis", 1)]);
            probabilities.push(name);
        }
        let inputs: Vec<&str> = probabilities.iter().map(String::as_str).collect();
        graph.node("Mean", &inputs, &[PROBABILITIES], vec![]);
        graph.node("Log", &[PROBABILITIES], &[LOGITS], vec![]);
    }
    let architectures: Vec<String> = members
        .iter()
        .map(|m| m.architecture().to_string())
        .collect();
    let mut model = ModelProto::new();
    model.ir_version = IR_VERSION;
    model.producer_name = "mnist-cnn".to_owned();
    model.producer_version = env!("CARGO_PKG_VERSION").to_owned();
    model.doc_string = format!(
        "MNIST digit classifier ({}) exported by mnist-cnn",
        architectures.join(" + ")
    );
    let mut opset = OperatorSetIdProto::new();
    opset.domain = String::new();
    opset.version = OPSET;
    model.opset_import.push(opset);
    model.metadata_props = metadata(&architectures, description);
    model.graph = Some(graph.finish()).into();
    Ok(model)
}

fn metadata(architectures: &[String], description: &Description) -> Vec<StringStringEntryProto> {
    let mut entries = vec![
        ("architecture", architectures.join(" + ")),
        ("ensemble_members", architectures.len().to_string()),
        ("mnist_cnn_version", env!("CARGO_PKG_VERSION").to_owned()),
        (
            "input",
            "images: N×1×28×28 float32, pixels/255 in 0..1, white ink on black as in MNIST; \
             pictures need MNIST's preprocessing first (mnist-cnn predict --show-input shows it)"
                .to_owned(),
        ),
        (
            "outputs",
            "logits: N×10; probabilities: N×10 softmax (an ensemble's mean, logits its log)"
                .to_owned(),
        ),
    ];
    if let Some(accuracy) = description.test_accuracy {
        entries.push(("test_accuracy", format!("{accuracy}")));
    }
    entries
        .into_iter()
        .map(|(key, value)| {
            let mut entry = StringStringEntryProto::new();
            entry.key = key.to_owned();
            entry.value = value;
            entry
        })
        .collect()
}

/// The graph as it is built: nodes in order, and the weights.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

/// One step of a network's forward pass, in inference.
enum Step {
    /// A 3×3 convolution with `padding`, and the batch norm folded into it when there is one.
    Convolution {
        layer: String,
        batch_norm: Option<String>,
        padding: i64,
    },
    MaxPool,
    Relu,
    Flatten,
    Dense,
}

/// The inference steps of an architecture, in the order the tool runs them (max-pool before
/// ReLU: they commute).
fn steps(architecture: Architecture) -> Vec<Step> {
    let convolution = |index: usize, batch_norm: bool, padding: i64| Step::Convolution {
        layer: names::convolution(index),
        batch_norm: batch_norm.then(|| names::batch_norm(index)),
        padding,
    };
    match architecture {
        Architecture::Tutorial => vec![
            convolution(1, false, 0),
            Step::MaxPool,
            Step::Relu,
            convolution(2, false, 0),
            Step::MaxPool,
            Step::Relu,
            Step::Flatten,
            Step::Dense,
        ],
        Architecture::Vgg { .. } => vec![
            convolution(1, true, 1),
            Step::MaxPool,
            Step::Relu,
            convolution(2, true, 1),
            Step::Relu,
            convolution(3, true, 1),
            Step::MaxPool,
            Step::Relu,
            convolution(4, true, 1),
            Step::Relu,
            convolution(5, true, 1),
            Step::MaxPool,
            Step::Relu,
            Step::Flatten,
            Step::Dense,
        ],
    }
}

impl Graph {
    /// Adds one model's nodes and weights (names prefixed with `prefix`); returns the name of
    /// its logits.
    fn member(&mut self, model: &Classifier, prefix: &str) -> Result<String> {
        let weights = model.named_parameters();
        let weight = |name: &str| -> Result<&Tensor> {
            weights
                .get(name)
                .with_context(|| format!("the model has no tensor {name}"))
        };
        let mut current = INPUT.to_owned();
        for (index, step) in steps(model.architecture()).into_iter().enumerate() {
            let output = format!("{prefix}{index}");
            match step {
                Step::Convolution {
                    layer,
                    batch_norm,
                    padding,
                } => {
                    let (kernel, bias) = match batch_norm {
                        Some(bn) => {
                            fold_batch_norm(weight(&names::weight_of(&layer))?, &weights, &bn)?
                        }
                        None => (
                            weight(&names::weight_of(&layer))?.shallow_clone(),
                            weight(&format!("{layer}.bias"))?.shallow_clone(),
                        ),
                    };
                    let w = self.initializer(&format!("{prefix}{layer}.weight"), &kernel)?;
                    let b = self.initializer(&format!("{prefix}{layer}.bias"), &bias)?;
                    let attributes = vec![
                        ints("kernel_shape", &[3, 3]),
                        ints("pads", &[padding; 4]),
                        ints("strides", &[1, 1]),
                    ];
                    self.node("Conv", &[&current, &w, &b], &[&output], attributes);
                }
                Step::MaxPool => self.node(
                    "MaxPool",
                    &[&current],
                    &[&output],
                    vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
                ),
                Step::Relu => self.node("Relu", &[&current], &[&output], vec![]),
                Step::Flatten => {
                    self.node("Flatten", &[&current], &[&output], vec![int("axis", 1)])
                }
                Step::Dense => {
                    let head = names::HEAD;
                    let w = self.initializer(
                        &format!("{prefix}{head}.weight"),
                        weight(&names::weight_of(head))?,
                    )?;
                    let b = self.initializer(
                        &format!("{prefix}{head}.bias"),
                        weight(&format!("{head}.bias"))?,
                    )?;
                    self.node(
                        "Gemm",
                        &[&current, &w, &b],
                        &[&output],
                        vec![int("transB", 1)],
                    );
                }
            }
            current = output;
        }
        Ok(current)
    }

    /// A float32 weight, stored as raw little-endian data.
    fn initializer(&mut self, name: &str, tensor: &Tensor) -> Result<String> {
        let values = Vec::<f32>::try_from(tensor.to_kind(Kind::Float).contiguous().flatten(0, -1))
            .with_context(|| format!("cannot read {name}"))?;
        ensure!(
            values.iter().all(|v| v.is_finite()),
            "{name} holds a value that is not finite"
        );
        let mut proto = TensorProto::new();
        proto.name = name.to_owned();
        proto.dims = tensor.size();
        proto.data_type = DataType::FLOAT as i32;
        proto.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(proto);
        Ok(name.to_owned())
    }

    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) {
        let mut node = NodeProto::new();
        node.op_type = op.to_owned();
        node.name = format!("{op}_{}", self.nodes.len());
        node.input = inputs.iter().map(|s| s.to_string()).collect();
        node.output = outputs.iter().map(|s| s.to_string()).collect();
        node.attribute = attributes;
        self.nodes.push(node);
    }

    fn finish(self) -> GraphProto {
        let mut graph = GraphProto::new();
        graph.name = "mnist_cnn".to_owned();
        graph.node = self.nodes;
        graph.initializer = self.initializers;
        graph.input.push(value_info(
            INPUT,
            &[None, Some(1), Some(IMAGE_SIDE), Some(IMAGE_SIDE)],
        ));
        for output in [LOGITS, PROBABILITIES] {
            graph
                .output
                .push(value_info(output, &[None, Some(NUM_CLASSES)]));
        }
        graph
    }
}

/// A convolution without bias followed by a batch norm, as one convolution: the kernel of
/// output channel c scaled by γ_c / √(σ²_c + ε), and the bias β_c − μ_c · γ_c / √(σ²_c + ε).
fn fold_batch_norm(
    kernel: &Tensor,
    weights: &BTreeMap<String, Tensor>,
    batch_norm: &str,
) -> Result<(Tensor, Tensor)> {
    let get = |what: &str| -> Result<Tensor> {
        let name = format!("{batch_norm}.{what}");
        Ok(weights
            .get(&name)
            .with_context(|| format!("the model has no tensor {name}"))?
            .to_kind(Kind::Double))
    };
    let (gamma, beta, mean, variance) = (
        get("weight")?,
        get("bias")?,
        get("running_mean")?,
        get("running_var")?,
    );
    let scale = &gamma / (variance + BATCH_NORM_EPSILON).sqrt();
    let folded = kernel.to_kind(Kind::Double) * scale.view([-1, 1, 1, 1]);
    let bias = beta - mean * &scale;
    Ok((folded.to_kind(Kind::Float), bias.to_kind(Kind::Float)))
}

/// A float32 tensor's name and shape (None: the dynamic batch dimension, `N`).
fn value_info(name: &str, shape: &[Option<i64>]) -> ValueInfoProto {
    let mut dims = TensorShapeProto::new();
    for side in shape {
        let mut dim = tensor_shape_proto::Dimension::new();
        dim.value = Some(match side {
            Some(n) => tensor_shape_proto::dimension::Value::DimValue(*n),
            None => tensor_shape_proto::dimension::Value::DimParam("N".to_owned()),
        });
        dims.dim.push(dim);
    }
    let mut tensor = type_proto::Tensor::new();
    tensor.elem_type = DataType::FLOAT as i32;
    tensor.shape = Some(dims).into();
    let mut kind = TypeProto::new();
    kind.value = Some(type_proto::Value::TensorType(tensor));
    let mut info = ValueInfoProto::new();
    info.name = name.to_owned();
    info.type_ = Some(kind).into();
    info
}

fn int(name: &str, value: i64) -> AttributeProto {
    let mut attribute = AttributeProto::new();
    attribute.name = name.to_owned();
    attribute.type_ = AttributeType::INT.into();
    attribute.i = value;
    attribute
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    let mut attribute = AttributeProto::new();
    attribute.name = name.to_owned();
    attribute.type_ = AttributeType::INTS.into();
    attribute.ints = values.to_vec();
    attribute
}
