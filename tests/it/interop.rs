//! Weights moving both ways between mnist-cnn and PyTorch, through scripts/pytorch_interop.py run
//! by the virtualenv's python3 (first on PATH under scripts/test.sh; MNIST_CNN_PYTHON overrides).

use crate::common::*;
use mnist_cnn::io::checkpoint;
use serde_json::Value;
use std::path::Path;
use tch::{Device, Kind};

fn python(args: &[&str]) -> Value {
    let output = venv_script("pytorch_interop.py", args);
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).unwrap()
}

fn eval_accuracy(model: &Path, data: &Path) -> f64 {
    eval_json(&[model], data, &["--device", "cpu"])["accuracy"]
        .as_f64()
        .unwrap()
}

/// A model of `architecture` trained briefly by the tool, and its logits on the first 20 test
/// images.
fn trained_model(dir: &Path, architecture: &str) -> (std::path::PathBuf, Vec<Vec<f64>>) {
    let data = real_mnist_dir();
    let run = dir.join(format!("run-{architecture}"));
    train_on_real_mnist(&run, &["--limit", "2000", "--arch", architecture]);
    let model_path = run.join("model.ot");
    let model = checkpoint::load(&model_path, Device::Cpu).unwrap();
    let mnist = mnist_cnn::data::Mnist::load(&data).unwrap();
    let logits = tch::no_grad(|| model.forward(&mnist.test.images.narrow(0, 0, 20), false));
    let rows: Vec<Vec<f64>> = (0..20)
        .map(|i| Vec::<f64>::try_from(logits.get(i).to_kind(Kind::Double)).unwrap())
        .collect();
    (model_path, rows)
}

fn max_difference(a: &Value, b: &[Vec<f64>]) -> f64 {
    a.as_array()
        .unwrap()
        .iter()
        .zip(b)
        .flat_map(|(row, expected)| {
            row.as_array()
                .unwrap()
                .iter()
                .zip(expected)
                .map(|(x, y)| (x.as_f64().unwrap() - y).abs())
        })
        .fold(0.0, f64::max)
}

/// Both architectures: the tutorial CNN, and vgg-N with its batch-norm buffers (PyTorch's
/// strict load also wants `num_batches_tracked`, which the export adds).
#[test]
fn exported_safetensors_and_torchscript_agree_with_the_tool_in_pytorch() {
    for architecture in ["tutorial", "vgg-8"] {
        exports_agree_in_pytorch(architecture);
    }
}

fn exports_agree_in_pytorch(architecture: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let data = real_mnist_dir();
    let (model, logits) = trained_model(scratch.path(), architecture);
    let accuracy = eval_accuracy(&model, &data);
    let model = model.to_str().unwrap();
    let data_arg = data.to_str().unwrap();

    let safetensors = scratch.path().join("model.safetensors");
    let pt = scratch.path().join("model.pt");
    for (format, out) in [("safetensors", &safetensors), ("torchscript", &pt)] {
        export(Path::new(model), format, out);
    }
    let from_state_dict = python(&[
        "eval-safetensors",
        safetensors.to_str().unwrap(),
        "--data",
        data_arg,
        "--logits",
        "20",
    ]);
    assert_eq!(
        from_state_dict["accuracy"].as_f64().unwrap(),
        accuracy,
        "{architecture}"
    );
    let diff = max_difference(&from_state_dict["logits"], &logits);
    assert!(diff < 1e-4, "{architecture}: logits differ by {diff}");

    let traced = python(&[
        "eval-torchscript",
        pt.to_str().unwrap(),
        "--data",
        data_arg,
        "--logits",
        "20",
    ]);
    assert_eq!(traced["accuracy"].as_f64().unwrap(), accuracy);
    assert_eq!(traced["predictions"], from_state_dict["predictions"]);
}

#[test]
fn a_state_dict_written_by_pytorch_evaluates_in_the_tool_as_in_pytorch() {
    for architecture in ["tutorial", "vgg-8"] {
        pytorch_state_dict_works_in_the_tool(architecture);
    }
}

fn pytorch_state_dict_works_in_the_tool(architecture: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let data = real_mnist_dir();
    let state_dict = scratch.path().join("from-pytorch.safetensors");
    let trained = python(&[
        "train-state-dict",
        state_dict.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--steps",
        "200",
        "--arch",
        architecture,
    ]);
    let pytorch_accuracy = trained["accuracy"].as_f64().unwrap();
    assert!(
        pytorch_accuracy > 0.8,
        "{architecture}: PyTorch's short training reached {pytorch_accuracy}"
    );
    // Same weights, same arithmetic up to rounding: at most one of 10,000 answers may differ.
    let tool_accuracy = eval_accuracy(&state_dict, &data);
    assert!(
        (tool_accuracy - pytorch_accuracy).abs() <= 1e-4,
        "{architecture}: the tool gives {tool_accuracy}, PyTorch {pytorch_accuracy}"
    );
    // And it fine-tunes: finetune --from takes the PyTorch file, architecture and all.
    let out = scratch.path().join("tuned");
    let output = finetune(
        &state_dict,
        &data,
        &out,
        &[
            "--epochs", "1", "--limit", "2000", "--device", "cpu", "--json",
        ],
    );
    assert_success(&output);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architecture"], architecture);
}
