//! `export --format onnx` checked by the real consumers: the ONNX checker and onnxruntime (CPU),
//! through scripts/onnx_check.py in the virtualenv (first on PATH under scripts/test.sh;
//! MNIST_CNN_PYTHON overrides): the same accuracy as `eval` on the MNIST test set, and the same
//! outputs on a batch, for `tutorial`, `vgg-16` and a two-model ensemble.

use crate::common::*;
use mnist_cnn::eval::{infer, Ensemble};
use mnist_cnn::io::checkpoint;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Test digits compared output by output.
const BATCH: i64 = 64;

fn onnx_check(args: &[&str]) -> Value {
    let output = venv_script("onnx_check.py", args);
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).unwrap()
}

fn export_onnx(models: &[&Path], out: &Path) {
    let mut args = vec!["export", "--format", "onnx", "--out", out.to_str().unwrap()];
    for model in models {
        args.extend(["--model", model.to_str().unwrap()]);
    }
    assert_success(&mnist_cnn(&args));
}

fn train(dir: &Path, architecture: &str, seed: &str) -> PathBuf {
    let run = dir.join(format!("run-{architecture}-{seed}"));
    train_on_real_mnist(
        &run,
        &["--limit", "2000", "--arch", architecture, "--seed", seed],
    );
    run.join("model.ot")
}

/// The tool's logits and probabilities for the first test digits (an ensemble: its
/// probabilities, and their log).
fn tool_outputs(models: &[&Path], images: &Tensor) -> (Tensor, Tensor) {
    let members = models
        .iter()
        .map(|m| checkpoint::load(m, Device::Cpu).unwrap())
        .collect::<Vec<_>>();
    let pixels = Vec::<f32>::try_from(images.flatten(0, -1)).unwrap();
    let ensemble = Ensemble::new(members, false);
    let probabilities = infer::probabilities(&ensemble, &pixels);
    let logits = if models.len() == 1 {
        tch::no_grad(|| ensemble.members()[0].forward(images, false))
    } else {
        probabilities.log()
    };
    (logits, probabilities)
}

fn max_difference(onnx: &Value, tool: &Tensor) -> f64 {
    let rows = onnx.as_array().unwrap();
    assert_eq!(rows.len() as i64, BATCH);
    let mut worst: f64 = 0.0;
    for (i, row) in rows.iter().enumerate() {
        let expected = Vec::<f64>::try_from(tool.get(i as i64).to_kind(Kind::Double)).unwrap();
        for (value, want) in row.as_array().unwrap().iter().zip(expected) {
            worst = worst.max((value.as_f64().unwrap() - want).abs());
        }
    }
    worst
}

/// One exported file against the tool: the checker, the declared interface, the accuracy on
/// the test set (equal to `eval`'s), the outputs on a batch (within 1e-4).
fn agrees_with_the_tool(models: &[&Path], out: &Path) {
    export_onnx(models, out);
    let file = out.to_str().unwrap();
    let declared = onnx_check(&["check", file]);
    assert_eq!(declared["checker"], "ok");
    assert_eq!(declared["opset"]["ai.onnx"], 17);
    assert_eq!(
        declared["inputs"]["images"],
        serde_json::json!(["N", 1, 28, 28])
    );
    assert_eq!(declared["outputs"]["logits"], serde_json::json!(["N", 10]));
    assert_eq!(
        declared["outputs"]["probabilities"],
        serde_json::json!(["N", 10])
    );
    assert_eq!(
        declared["metadata"]["ensemble_members"],
        models.len().to_string()
    );
    assert!(
        !declared["ops"]
            .as_array()
            .unwrap()
            .contains(&Value::from("BatchNormalization")),
        "batch norms are folded: {declared}"
    );

    let data = real_mnist_dir();
    let dump = out.with_extension("json");
    let onnx = onnx_check(&[
        "eval-onnx",
        file,
        "--data",
        data.to_str().unwrap(),
        "--json",
        "--dump",
        &BATCH.to_string(),
        "--out",
        dump.to_str().unwrap(),
    ]);
    let eval = eval_json(models, &data, &["--device", "cpu"]);
    let (onnx_correct, eval_correct) = (
        onnx["correct"].as_i64().unwrap(),
        (eval["accuracy"].as_f64().unwrap() * 10_000.0).round() as i64,
    );
    // Rounding differs between the runtimes by about 1e-6: a digit whose two best classes tie
    // that closely could flip; none did in any run, and one would be allowed.
    assert!(
        (onnx_correct - eval_correct).abs() <= 1,
        "{models:?}: onnxruntime {onnx_correct} correct, eval {eval_correct}"
    );
    let outputs = read_json(&dump);
    let mnist = mnist_cnn::data::Mnist::load(&data).unwrap();
    let images = mnist.test.images.narrow(0, 0, BATCH);
    let (logits, probabilities) = tool_outputs(models, &images);
    let (logit_gap, probability_gap) = (
        max_difference(&outputs["logits"], &logits),
        max_difference(&outputs["probabilities"], &probabilities),
    );
    eprintln!(
        "{models:?}: {onnx_correct} correct in onnxruntime, {eval_correct} in eval; largest \
         difference on {BATCH} digits: logits {logit_gap:.2e}, probabilities {probability_gap:.2e}"
    );
    assert!(
        probability_gap < 1e-4,
        "probabilities differ by {probability_gap}"
    );
    assert!(logit_gap < 1e-4, "logits differ by {logit_gap}");
}

#[test]
fn onnx_exports_run_in_onnxruntime_as_in_the_tool() {
    let scratch = tempfile::tempdir().unwrap();
    let tutorial = train(scratch.path(), "tutorial", "1");
    let vgg = train(scratch.path(), "vgg-16", "2");
    agrees_with_the_tool(&[&tutorial], &scratch.path().join("tutorial.onnx"));
    agrees_with_the_tool(&[&vgg], &scratch.path().join("vgg.onnx"));
    agrees_with_the_tool(&[&tutorial, &vgg], &scratch.path().join("ensemble.onnx"));

    // A run's model.ot carries its test accuracy into the metadata.
    let declared = onnx_check(&["check", scratch.path().join("vgg.onnx").to_str().unwrap()]);
    let config = read_json(&vgg.parent().unwrap().join("config.json"));
    assert_eq!(
        declared["metadata"]["test_accuracy"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap(),
        config["final_metrics"]["test_accuracy"].as_f64().unwrap()
    );
    assert_eq!(declared["metadata"]["architecture"], "vgg-16");
}

/// A damaged checkpoint, an unwritable path and an ensemble in a single-model format are
/// errors that leave no file behind.
#[test]
fn onnx_export_errors_leave_no_file() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 64, 16);
    let run = scratch.path().join("run");
    assert_success(&train_small(&data, &run, &["--no-report"]));
    let model = run.join("model.ot");

    let damaged = scratch.path().join("damaged.ot");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let out = scratch.path().join("damaged.onnx");
    let failed = try_export(&damaged, "onnx", &out);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("damaged.ot"),
        "{}",
        stderr(&failed)
    );
    assert!(!out.exists());

    let blocker = scratch.path().join("a-file");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let inside = blocker.join("model.onnx");
    let failed = try_export(&model, "onnx", &inside);
    assert_eq!(failed.status.code(), Some(1));
    assert!(stderr(&failed).contains("--out"), "{}", stderr(&failed));
    let leftovers: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("onnx"))
        .collect();
    assert!(leftovers.is_empty(), "partial files: {leftovers:?}");

    let model_arg = model.to_str().unwrap();
    let twice = mnist_cnn(&[
        "export",
        "--model",
        model_arg,
        "--model",
        model_arg,
        "--format",
        "safetensors",
        "--out",
        scratch.path().join("x.safetensors").to_str().unwrap(),
    ]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(
        stderr(&twice).contains("only --format onnx"),
        "{}",
        stderr(&twice)
    );
}
