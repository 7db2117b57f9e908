//! Files a GPU wrote, read on the CPU: the run folders in tests/data/cuda-written (made on an
//! NVIDIA H200 by the version before the reader took `cuda:0` storages; see its README). Every
//! storage in them is tagged `cuda:0`, and every command must use them as it uses files written
//! on the CPU.

use crate::common::*;
use mnist_cnn::io::{checkpoint, ot, RunFolder};
use mnist_cnn::model::Classifier;
use mnist_cnn::train::{state, trainer::Trainer};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

const MODELS: [&str; 2] = ["tutorial-cuda", "vgg4-cuda"];
const INTERRUPTED: [&str; 3] = [
    "tutorial-cuda-interrupted",
    "vgg4-cuda-fp16-interrupted",
    "tutorial-cuda-sgd-bf16-ema-interrupted",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/cuda-written")
        .join(name)
}

/// The fixtures are what they claim: storages tagged cuda:0, which the reader now takes.
#[test]
fn the_fixtures_hold_cuda_storages() {
    for name in MODELS.iter().chain(&INTERRUPTED) {
        let dir = fixture(name);
        for file in ["model.ot", "resume.ot"] {
            let path = dir.join(file);
            if !path.exists() {
                continue;
            }
            // The weights were on the GPU; resume.ot's counters (state.epoch...) on the CPU.
            let locations =
                ot::storage_locations(fs::File::open(&path).unwrap(), Default::default()).unwrap();
            assert!(
                locations.contains(&ot::StorageLocation::Cuda(Some(0))),
                "{}: {locations:?}",
                path.display()
            );
        }
    }
}

/// `eval` of each GPU-written model on the CPU gives the test accuracy its run recorded (the
/// H200 computed it; convolutions on the CPU may round a few borderline images the other way).
#[test]
fn gpu_written_models_evaluate_to_their_recorded_accuracy_on_the_cpu() {
    let data = real_mnist_dir();
    for name in MODELS {
        let dir = fixture(name);
        let recorded = read_json(&dir.join("config.json"))["final_metrics"]["test_accuracy"]
            .as_f64()
            .unwrap();
        let eval = eval_json(&[&dir.join("model.ot")], &data, &["--device", "cpu"]);
        let accuracy = eval["accuracy"].as_f64().unwrap();
        assert!(
            (accuracy - recorded).abs() <= 0.003,
            "{name}: {accuracy} on the CPU, {recorded} recorded on the GPU"
        );
    }
}

/// The rest of the chain from a GPU-written model: predict, the three exports (with PyTorch
/// and onnxruntime agreeing with the tool), and a fine-tune whose files are CPU-tagged.
#[test]
fn gpu_written_models_predict_export_and_finetune() {
    let data = real_mnist_dir();
    let scratch = tempfile::tempdir().unwrap();
    let picture = scratch.path().join("seven.png");
    write_digit_png(&picture);
    for name in MODELS {
        let model = fixture(name).join("model.ot");
        let output = mnist_cnn(&[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--device",
            "cpu",
            "--json",
            picture.to_str().unwrap(),
        ]);
        assert_success(&output);
        let answers = stdout_json(&output);
        assert!(answers[0]["digit"].is_i64(), "{name}: {answers}");

        let tool_accuracy = eval_json(&[&model], &data, &["--device", "cpu"])["accuracy"]
            .as_f64()
            .unwrap();
        let out = |file: &str| scratch.path().join(format!("{name}-{file}"));
        for (format, file, script, command) in [
            (
                "safetensors",
                "model.safetensors",
                "pytorch_interop.py",
                "eval-safetensors",
            ),
            (
                "torchscript",
                "model.pt",
                "pytorch_interop.py",
                "eval-torchscript",
            ),
            ("onnx", "model.onnx", "onnx_check.py", "eval-onnx"),
        ] {
            export(&model, format, &out(file));
            let exported = out(file);
            let mut args = vec![
                command,
                exported.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
            ];
            if format == "onnx" {
                args.push("--json");
            }
            let output = venv_script(script, &args);
            let text = String::from_utf8_lossy(&output.stdout);
            let result: serde_json::Value =
                serde_json::from_str(text.lines().last().unwrap()).unwrap();
            let accuracy = result["accuracy"].as_f64().unwrap();
            // The same weights on the same CPU: at most a borderline image or two apart.
            assert!(
                (accuracy - tool_accuracy).abs() <= 0.0002,
                "{name} {format}: {accuracy} in Python, {tool_accuracy} in the tool"
            );
        }

        let tuned = scratch.path().join(format!("{name}-tuned"));
        let output = finetune(
            &model,
            &data,
            &tuned,
            &[
                "--device",
                "cpu",
                "--epochs",
                "1",
                "--limit",
                "500",
                "--no-report",
                "--no-tensorboard",
            ],
        );
        assert_success(&output);
        assert_only_cpu_storages(&tuned.join("model.ot"));
        assert_only_cpu_storages(&tuned.join("resume.ot"));
    }
}

fn assert_only_cpu_storages(path: &Path) {
    let locations =
        ot::storage_locations(fs::File::open(path).unwrap(), Default::default()).unwrap();
    assert_eq!(
        locations.into_iter().collect::<Vec<_>>(),
        [ot::StorageLocation::Cpu],
        "{}",
        path.display()
    );
}

/// A 28×28 "7" as an 8-bit grey PNG, through the image crate the tool itself reads with.
fn write_digit_png(path: &Path) {
    let mut picture = image::GrayImage::from_pixel(28, 28, image::Luma([255u8]));
    for x in 6..22 {
        picture.put_pixel(x, 6, image::Luma([0]));
    }
    for step in 0..16 {
        picture.put_pixel(21 - step / 2, 7 + step, image::Luma([0]));
    }
    picture.save(path).unwrap();
}

/// A copy of an interrupted fixture in a fresh folder whose `data/mnist` is the real MNIST,
/// since the run's config.json names its data relatively, as `data/mnist`; the folder is the
/// working directory the resume runs in.
struct ResumeSite {
    _dir: tempfile::TempDir,
    cwd: PathBuf,
    run: PathBuf,
}

fn resume_site(name: &str) -> ResumeSite {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_owned();
    fs::create_dir_all(cwd.join("data")).unwrap();
    std::os::unix::fs::symlink(real_mnist_dir(), cwd.join("data/mnist")).unwrap();
    let run = cwd.join(name);
    fs::create_dir_all(&run).unwrap();
    for entry in fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), run.join(entry.file_name())).unwrap();
    }
    ResumeSite {
        _dir: dir,
        cwd,
        run,
    }
}

fn resume_in(site: &ResumeSite, extra: &[&str]) -> std::process::Output {
    tool()
        .current_dir(&site.cwd)
        .args(["train", "--resume", site.run.to_str().unwrap()])
        .args(["--no-report", "--no-tensorboard", "--json"])
        .args(extra)
        .output()
        .unwrap()
}

/// Each interrupted GPU run (Adam in fp32; vgg-4 in fp16 with its loss scale; SGD with
/// momentum in bf16 with a weight average) finishes on the CPU.
#[test]
fn interrupted_gpu_runs_finish_on_the_cpu() {
    for name in INTERRUPTED {
        let site = resume_site(name);
        let output = resume_in(&site, &["--device", "cpu"]);
        assert_success(&output);
        let err = stderr(&output);
        let config = read_json(&site.run.join("config.json"));
        assert_eq!(config["status"], "completed", "{name}");
        assert_eq!(config["device"], "cpu", "{name}");
        let summary = stdout_json(&output);
        assert_eq!(summary["epochs_completed"], 2, "{name}: {summary}");
        // Better than chance (SGD at 1e-3 under a 0.99 average is slow: about 20% here).
        assert!(summary["test_accuracy"].as_f64().unwrap() > 0.15, "{name}");
        assert_eq!(read_json_lines(&site.run.join("metrics.jsonl")).len(), 2);
        assert!(err.contains("not bit-identical"), "{name}: {err}");
        assert_only_cpu_storages(&site.run.join("model.ot"));
        assert_only_cpu_storages(&site.run.join("resume.ot"));
    }
}

/// Without --device, a run trained on CUDA is not silently moved to the CPU: the error names
/// the device, the run's config.json, and the flag that moves it.
#[test]
fn a_gpu_run_without_a_gpu_asks_for_device_cpu() {
    if tch::Cuda::is_available() {
        return; // the run's own device is here: nothing to refuse
    }
    let site = resume_site(INTERRUPTED[0]);
    let output = resume_in(&site, &[]);
    assert_clean_failure(&output, &["cuda:0", "config.json", "--device cpu"]);
    assert_eq!(
        read_json(&site.run.join("config.json"))["status"],
        "interrupted"
    );
}

/// The state each interrupted GPU run saved is loaded, not reset: restored into a trainer on
/// the CPU and captured again, it gives back every tensor of resume.ot, value for value (the
/// Adam moments and step, SGD's momentum, the fp16 loss scale, the weight average, the partial
/// epoch's sums).
#[test]
fn gpu_saved_state_is_restored_whole_on_the_cpu() {
    for name in INTERRUPTED {
        let dir = fixture(name);
        let config = RunFolder::open(&dir).read_config().unwrap();
        let saved = checkpoint::read_tensors(&dir.join("resume.ot")).unwrap();
        let state = mnist_cnn::train::TrainingState::new(
            saved.iter().map(|(k, v)| (k.clone(), v.copy())).collect(),
        );
        let mut model = Classifier::new(config.architecture, Device::Cpu);
        model.set_precision(config.options.precision);
        let examples = config.data.train_examples;
        let mut trainer = Trainer::new(&model, &config.options, examples).unwrap();
        let best = state.restore(&mut trainer).unwrap();
        let epoch = state.completed_epochs().unwrap() + 1;
        let steps = trainer.steps_in(epoch);
        let partial = state.partial(epoch, steps, Device::Cpu).unwrap();
        assert!(partial.is_some(), "{name} was saved within an epoch");
        let captured: BTreeMap<String, Tensor> =
            state::capture(epoch - 1, &trainer, best.as_ref(), partial.as_ref())
                .into_iter()
                .map(|t| (t.name, t.tensor))
                .collect();
        assert_eq!(
            captured.keys().collect::<Vec<_>>(),
            saved.keys().collect::<Vec<_>>(),
            "{name}"
        );
        for (key, tensor) in &saved {
            let again = &captured[key];
            assert!(
                again
                    .to_kind(Kind::Double)
                    .equal(&tensor.to_kind(Kind::Double)),
                "{name}: {key} was not restored as saved"
            );
        }
        let kinds: Vec<&str> = saved.keys().map(String::as_str).collect();
        let expected = match name {
            "vgg4-cuda-fp16-interrupted" => "amp.scale",
            "tutorial-cuda-sgd-bf16-ema-interrupted" => "ema.fc.weight",
            _ => "adam.v.fc.weight",
        };
        assert!(kinds.contains(&expected), "{name}: {kinds:?}");
    }
}
