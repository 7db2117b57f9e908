//! The optimizers and gradient clipping against PyTorch's (`scripts/optimizer_check.py` in the
//! venv): the same starting weights and the same gradients at every step (the networks' own
//! gradients would differ by rounding, and Adam's normalised step amplifies the sign of a tiny
//! one), with the no-decay parameter group; the weights must agree within 1e-6.

use crate::common::*;
use mnist_cnn::optim::{clip, Optimizer, OptimizerKind, Parameter, Settings};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

const STEPS: usize = 6;

/// Weights of every kind the networks have: decayed (conv and dense weights) and not (biases,
/// batch-norm weights).
const SHAPES: [(&str, &[i64]); 6] = [
    ("bn1.bias", &[4]),
    ("bn1.weight", &[4]),
    ("conv1.bias", &[4]),
    ("conv1.weight", &[4, 1, 3, 3]),
    ("fc.bias", &[10]),
    ("fc.weight", &[10, 8]),
];

struct Case {
    settings: Settings,
    learning_rate: f64,
    clip: Option<f64>,
}

impl Case {
    fn json(&self) -> serde_json::Value {
        let s = &self.settings;
        serde_json::json!({
            "optimizer": s.kind.to_string(),
            "lr": self.learning_rate,
            "weight_decay": s.weight_decay,
            "momentum": s.momentum,
            "nesterov": s.nesterov,
            "betas": s.betas,
            "eps": s.eps,
            "clip_grad_norm": self.clip,
        })
    }
}

fn cases() -> Vec<Case> {
    let base = Settings::default();
    let sgd = Settings {
        kind: OptimizerKind::Sgd,
        ..base
    };
    let case = |settings, learning_rate, clip| Case {
        settings,
        learning_rate,
        clip,
    };
    vec![
        case(base, 1e-2, None),
        case(
            Settings {
                weight_decay: 0.05,
                ..base
            },
            1e-2,
            None,
        ),
        case(
            Settings {
                kind: OptimizerKind::AdamW,
                weight_decay: 0.01,
                ..base
            },
            3e-2,
            None,
        ),
        case(
            Settings {
                kind: OptimizerKind::AdamW,
                weight_decay: 0.1,
                betas: [0.8, 0.99],
                eps: 1e-6,
                ..base
            },
            1e-2,
            Some(1.0),
        ),
        case(sgd, 0.1, None),
        case(
            Settings {
                momentum: 0.9,
                weight_decay: 1e-3,
                ..sgd
            },
            0.05,
            None,
        ),
        case(
            Settings {
                momentum: 0.9,
                nesterov: true,
                weight_decay: 1e-2,
                ..sgd
            },
            0.05,
            Some(2.0),
        ),
    ]
}

/// Our optimizer over `init`, fed `grads[k]` at step k; the final weights and the norms before
/// clipping.
fn run_ours(
    case: &Case,
    init: &BTreeMap<String, Tensor>,
    grads: &[BTreeMap<String, Tensor>],
) -> (BTreeMap<String, Tensor>, Vec<f64>) {
    let weights: BTreeMap<String, Tensor> = init
        .iter()
        .map(|(n, t)| (n.clone(), t.copy().set_requires_grad(true)))
        .collect();
    let named = weights
        .iter()
        .map(|(name, tensor)| mnist_cnn::model::NamedTensor {
            name: name.clone(),
            tensor: tensor.shallow_clone(),
        })
        .collect();
    let mut optimizer = Optimizer::new(Parameter::all(named), case.settings, case.learning_rate);
    let mut norms = Vec::new();
    for step_grads in grads {
        optimizer.zero_grad();
        // d/dp Σ p·g = g exactly.
        let loss = weights
            .iter()
            .map(|(name, p)| (p * &step_grads[name]).sum(Kind::Float))
            .reduce(|a, b| a + b)
            .unwrap();
        loss.backward();
        if let Some(max) = case.clip {
            norms.push(clip::clip_grad_norm(&optimizer.parameters(), max).double_value(&[]));
        }
        optimizer.update();
    }
    (weights, norms)
}

#[test]
fn each_optimizer_and_clipping_match_pytorch_within_1e_6() {
    let scratch = tempfile::tempdir().unwrap();
    tch::manual_seed(11);
    let init: BTreeMap<String, Tensor> = SHAPES
        .iter()
        .map(|(name, shape)| {
            (
                name.to_string(),
                Tensor::randn(*shape, tch::kind::FLOAT_CPU),
            )
        })
        .collect();
    // Gradients of varied size, so that clipping acts on some steps and not on others.
    let grads: Vec<BTreeMap<String, Tensor>> = (0..STEPS)
        .map(|step| {
            let scale = [0.1, 3.0, 0.5, 2.0, 0.05, 1.0][step];
            SHAPES
                .iter()
                .map(|(name, shape)| {
                    (
                        name.to_string(),
                        Tensor::randn(*shape, tch::kind::FLOAT_CPU) * scale,
                    )
                })
                .collect()
        })
        .collect();
    let mut inputs: Vec<(String, &Tensor)> =
        init.iter().map(|(n, t)| (format!("init.{n}"), t)).collect();
    for (step, step_grads) in grads.iter().enumerate() {
        inputs.extend(
            step_grads
                .iter()
                .map(|(n, t)| (format!("grad.{step}.{n}"), t)),
        );
    }
    let input = scratch.path().join("input.safetensors");
    let named: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    Tensor::write_safetensors(&named, &input).unwrap();
    let cases = cases();
    let cases_file = scratch.path().join("cases.json");
    let listed: Vec<serde_json::Value> = cases.iter().map(Case::json).collect();
    std::fs::write(&cases_file, serde_json::to_string(&listed).unwrap()).unwrap();
    let output = scratch.path().join("pytorch.safetensors");
    venv_script(
        "optimizer_check.py",
        &[
            input.to_str().unwrap(),
            cases_file.to_str().unwrap(),
            output.to_str().unwrap(),
        ],
    );
    let theirs: BTreeMap<String, Tensor> = Tensor::read_safetensors(&output)
        .unwrap()
        .into_iter()
        .collect();

    for (index, case) in cases.iter().enumerate() {
        let what = case.json();
        let (ours, norms) = run_ours(case, &init, &grads);
        for (name, weight) in &ours {
            let reference = &theirs[&format!("case.{index}.{name}")];
            let moved = (weight - &init[name]).abs().max().double_value(&[]);
            assert!(moved > 1e-4, "case {what}: {name} did not move");
            let gap = (weight - reference).abs().max().double_value(&[]);
            assert!(
                gap < 1e-6,
                "case {what}: {name} differs from PyTorch by {gap}"
            );
        }
        for (step, norm) in norms.iter().enumerate() {
            let reference = theirs[&format!("case.{index}.grad_norm.{step}")].double_value(&[0]);
            assert!(
                (norm - reference).abs() < 1e-5 * reference.max(1.0),
                "case {what}: the norm at step {step} is {norm}, PyTorch's {reference}"
            );
        }
    }
}
