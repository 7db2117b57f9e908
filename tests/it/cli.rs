//! CLI behaviour of every subcommand on small generated data: outputs, files, and errors.

use crate::common::*;
use mnist_cnn::data::idx::build;
use std::fs;
use std::path::Path;

#[test]
fn help_lists_every_subcommand() {
    let output = mnist_cnn(&["--help"]);
    assert_success(&output);
    for sub in ["info", "data", "train", "eval"] {
        assert!(stdout(&output).contains(sub), "{sub} missing from --help");
    }
}

/// Only `train` can resume a run, so only its help says what --device and --precision default
/// to then.
#[test]
fn only_train_says_what_a_resumed_run_computes_on() {
    let help = |command: &str| stdout(&mnist_cnn(&[command, "--help"]));
    let train = help("train");
    assert!(
        train.contains("with --resume, the device the run was trained on"),
        "{train}"
    );
    assert!(train.contains("with --resume, the run's own"), "{train}");
    for command in [
        "finetune", "eval", "predict", "serve", "report", "bench", "lr-find",
    ] {
        let text = help(command);
        assert!(text.contains("[default: fp32]"), "{command}: {text}");
        assert!(!text.contains("with --resume,"), "{command}: {text}");
    }
}

#[test]
fn info_reports_versions_cuda_and_threads() {
    let output = mnist_cnn(&["info", "--json"]);
    assert_success(&output);
    let info = stdout_json(&output);
    assert_eq!(info["tch_version"], "0.24.0");
    assert!(info["libtorch_version"]
        .as_str()
        .unwrap()
        .starts_with("2.11.0"));
    assert!(info["cuda_available"].is_boolean());
    assert!(info["cudnn_available"].is_boolean());
    assert!(info["cuda_device_count"].as_i64().unwrap() >= 0);
    assert!(info["intra_op_threads"].as_i64().unwrap() >= 1);
    let table = mnist_cnn(&["info"]);
    assert_success(&table);
    assert!(stdout(&table).contains("CUDA available"));
}

#[test]
fn data_imports_a_local_copy_once_and_then_does_nothing() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    write_small_mnist(src.path(), 30, 10);
    let dir = dst.path().join("mnist");
    let args = [
        "data",
        "--dir",
        dir.to_str().unwrap(),
        "--from",
        src.path().to_str().unwrap(),
        "--no-verify",
    ];
    let first = mnist_cnn(&args);
    assert_success(&first);
    assert_eq!(stdout(&first).matches("written from").count(), 4);
    assert_eq!(
        fs::read(dir.join("t10k-labels-idx1-ubyte")).unwrap(),
        fs::read(src.path().join("t10k-labels-idx1-ubyte")).unwrap()
    );
    let second = mnist_cnn(&args);
    assert_success(&second);
    assert_eq!(stdout(&second).matches("already present").count(), 4);
}

#[test]
fn data_refuses_files_that_are_not_the_canonical_mnist() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    write_small_mnist(src.path(), 30, 10);
    let dir = dst.path().join("mnist");
    let output = mnist_cnn(&[
        "data",
        "--dir",
        dir.to_str().unwrap(),
        "--from",
        src.path().to_str().unwrap(),
    ]);
    assert_clean_failure(&output, &["train-images-idx3-ubyte", "SHA-256"]);
    assert!(file_names(&dir).is_empty(), "{:?}", file_names(&dir));
}

#[test]
fn data_from_a_missing_folder_names_it() {
    let dst = tempfile::tempdir().unwrap();
    let output = mnist_cnn(&[
        "data",
        "--dir",
        dst.path().to_str().unwrap(),
        "--from",
        "/nonexistent/mnist-copy",
    ]);
    assert_clean_failure(&output, &["/nonexistent/mnist-copy"]);
}

#[test]
fn train_writes_a_complete_run_folder_and_eval_reads_it() {
    let data = tempfile::tempdir().unwrap();
    let runs = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 100, 40);
    let out = runs.path().join("run");
    let output = train_small(data.path(), &out, &["--epochs", "2", "--json"]);
    assert_success(&output);
    let summary = stdout_json(&output);
    assert_eq!(summary["epochs_completed"], 2);
    assert_eq!(
        run_files(&out),
        [
            "config.json",
            "confusion.png",
            "curves.png",
            "events.out.tfevents.*",
            "filters.png",
            "metrics.jsonl",
            "mistakes.png",
            "model.ot",
            "report.html",
            "resume.ot"
        ]
    );

    let lines = read_json_lines(&out.join("metrics.jsonl"));
    assert_eq!(lines.len(), 2);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["epoch"], i + 1);
        for key in [
            "train_loss",
            "test_loss",
            "test_accuracy",
            "seconds",
            "images_per_second",
        ] {
            assert!(line[key].is_number(), "{key} missing in {line}");
        }
    }
    let config = read_json(&out.join("config.json"));
    assert_eq!(config["status"], "completed");
    assert_eq!(config["architecture"], "tutorial");
    assert_eq!(config["epochs"], 2);
    assert_eq!(config["batch_size"], 16);
    assert_eq!(config["optimizer"], "adam");
    assert_eq!(config["seed"], 42);
    assert_eq!(config["device"], "cpu");
    assert_eq!(config["tch_version"], "0.24.0");
    assert!(config["libtorch_version"]
        .as_str()
        .unwrap()
        .starts_with("2.11.0"));
    assert_eq!(
        config["final_metrics"]["test_accuracy"],
        lines[1]["test_accuracy"]
    );

    let eval = mnist_cnn(&[
        "eval",
        "--model",
        out.join("model.ot").to_str().unwrap(),
        "--data",
        data.path().to_str().unwrap(),
        "--json",
    ]);
    assert_success(&eval);
    let report = stdout_json(&eval);
    assert_eq!(report["accuracy"], lines[1]["test_accuracy"]);
    let confusion = confusion_rows(&report);
    assert_eq!(confusion.len(), 10);
    assert_eq!(confusion.iter().flatten().sum::<u64>(), 40);
    assert_eq!(report["per_class"].as_array().unwrap().len(), 10);
    assert_eq!(report["per_class"][3]["support"], 4);
    for key in ["precision", "recall", "f1"] {
        assert!(report["macro"][key].is_number());
    }

    let table = mnist_cnn(&[
        "eval",
        "--model",
        out.join("model.ot").to_str().unwrap(),
        "--data",
        data.path().to_str().unwrap(),
    ]);
    assert_success(&table);
    assert!(stdout(&table).contains("confusion matrix"));
    assert!(stdout(&table).contains("precision"));
}

#[test]
fn the_same_seed_gives_bit_identical_weights_on_the_cpu() {
    let data = tempfile::tempdir().unwrap();
    let runs = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 200, 20);
    let weights = |name: &str, seed: &str| {
        let out = runs.path().join(name);
        assert_success(&train_small(data.path(), &out, &["--seed", seed]));
        let tensors = tch::Tensor::load_multi(out.join("model.ot")).unwrap();
        tensors
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let a = weights("a", "5");
    let b = weights("b", "5");
    let c = weights("c", "6");
    assert_eq!(a.len(), 6);
    for ((name, ta), (_, tb)) in a.iter().zip(&b) {
        assert!(
            ta.equal(tb),
            "{name} differs between runs with the same seed"
        );
    }
    assert!(a.iter().zip(&c).any(|((_, ta), (_, tc))| !ta.equal(tc)));
}

#[test]
fn train_refuses_to_overwrite_a_run_unless_asked() {
    let data = tempfile::tempdir().unwrap();
    let runs = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 20, 10);
    let out = runs.path().join("run");
    assert_success(&train_small(data.path(), &out, &[]));
    let before = fs::read(out.join("model.ot")).unwrap();
    let again = train_small(data.path(), &out, &["--seed", "9"]);
    assert_clean_failure(&again, &["--overwrite", "run"]);
    assert_eq!(fs::read(out.join("model.ot")).unwrap(), before);
    assert_success(&train_small(
        data.path(),
        &out,
        &["--seed", "9", "--overwrite"],
    ));
}

#[test]
fn bad_flags_are_refused_before_anything_is_written() {
    let data = tempfile::tempdir().unwrap();
    let runs = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 20, 10);
    let out = runs.path().join("run");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--batch-size", "0"],
            vec!["--batch-size", "at least 1"],
        ),
        (vec!["--epochs", "0"], vec!["--epochs"]),
        (
            vec!["--epochs", "NaN"],
            vec!["--epochs", "positive number of epochs"],
        ),
        (vec!["--epochs", "-1"], vec!["--epochs"]),
        (vec!["--lr", "NaN"], vec!["--lr", "positive"]),
        (vec!["--lr", "inf"], vec!["--lr", "positive"]),
        (vec!["--lr", "-0.001"], vec!["--lr", "positive"]),
        (vec!["--lr", "0"], vec!["--lr"]),
        (vec!["--device", "tpu"], vec!["--device", "tpu"]),
        (vec!["--limit", "21"], vec!["--limit 21", "20"]),
        (vec!["--limit", "0"], vec!["--limit"]),
        (vec!["--threads", "0"], vec!["--threads"]),
    ];
    for (flags, names) in cases {
        let output = train_small(data.path(), &out, &flags);
        assert_clean_failure(&output, &names);
        assert!(!out.exists(), "{flags:?} left {:?}", file_names(&out));
    }
}

#[test]
fn cuda_on_a_machine_without_a_gpu_is_a_clear_error() {
    if tch::Cuda::is_available() {
        return; // the check only means something without a GPU, as on CI
    }
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 20, 10);
    let out = data.path().join("run");
    let output = train_small(data.path(), &out, &["--device", "cuda"]);
    assert_clean_failure(&output, &["--device cuda", "CUDA is not available"]);
    assert!(!out.exists());
}

#[test]
fn an_output_folder_that_cannot_be_created_is_named() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 20, 10);
    let blocker = data.path().join("a-file");
    fs::write(&blocker, b"not a folder").unwrap();
    let out = blocker.join("run");
    let output = train_small(data.path(), &out, &[]);
    assert_clean_failure(&output, &["a-file/run"]);
}

#[test]
fn a_missing_data_folder_says_how_to_get_the_data() {
    let runs = tempfile::tempdir().unwrap();
    let output = train_small(Path::new("/nonexistent/mnist"), &runs.path().join("r"), &[]);
    assert_clean_failure(&output, &["/nonexistent/mnist", "mnist-cnn data"]);
}

/// Each broken idx file, the file it replaces, and what the error must say.
fn broken_idx_corpus() -> Vec<(&'static str, &'static str, Vec<u8>, &'static str)> {
    let images = |n: u32| build::images(n, |i, p| pattern_image(i, (i % 10) as u8, p));
    let five_images = images(5);
    let labels = build::labels(&[0, 1, 2, 3, 4]);
    vec![
        (
            "empty",
            "train-images-idx3-ubyte",
            vec![],
            "truncated header",
        ),
        (
            "short header",
            "train-images-idx3-ubyte",
            five_images[..10].to_vec(),
            "truncated header",
        ),
        (
            "short body",
            "train-images-idx3-ubyte",
            five_images[..five_images.len() - 100].to_vec(),
            "truncated",
        ),
        (
            "wrong magic",
            "train-images-idx3-ubyte",
            labels.clone(),
            "wrong magic number",
        ),
        (
            "2^32-1 images",
            "train-images-idx3-ubyte",
            build::images_with_header(u32::MAX, 28, 28, &[0; 784]),
            "4294967295 images",
        ),
        (
            "zero images",
            "t10k-images-idx3-ubyte",
            build::images_with_header(0, 28, 28, &[]),
            "zero images",
        ),
        (
            "27x28",
            "t10k-images-idx3-ubyte",
            build::images_with_header(5, 27, 28, &[0; 5 * 27 * 28]),
            "27×28",
        ),
        (
            "label 10",
            "train-labels-idx1-ubyte",
            build::labels(&[0, 1, 10, 3, 4]),
            "label 10",
        ),
        (
            "label 255",
            "t10k-labels-idx1-ubyte",
            build::labels(&[255, 1, 2, 3, 4]),
            "label 255",
        ),
        (
            "fewer labels",
            "train-labels-idx1-ubyte",
            build::labels(&[0, 1, 2]),
            "3 labels but",
        ),
        (
            "short labels",
            "t10k-labels-idx1-ubyte",
            labels[..10].to_vec(),
            "truncated",
        ),
    ]
}

fn dataset_with(dir: &Path, file: &str, bytes: &[u8]) {
    write_small_mnist(dir, 5, 5);
    fs::write(dir.join(file), bytes).unwrap();
}

#[test]
fn every_broken_idx_file_fails_train_eval_and_data_naming_the_file() {
    let scratch = tempfile::tempdir().unwrap();
    let model = scratch.path().join("model.ot");
    save_fresh_model(&model);
    for (case, file, bytes, message) in broken_idx_corpus() {
        let dir = scratch.path().join(case.replace(' ', "-"));
        dataset_with(&dir, file, &bytes);
        let data = dir.to_str().unwrap();
        let out = scratch
            .path()
            .join(format!("run-{}", case.replace(' ', "-")));
        let train = train_small(&dir, &out, &[]);
        assert_clean_failure(&train, &[file, message]);
        assert!(!out.exists(), "{case}: train left a run folder");
        let eval = mnist_cnn(&["eval", "--model", model.to_str().unwrap(), "--data", data]);
        assert_clean_failure(&eval, &[file, message]);
        let imported = scratch
            .path()
            .join(format!("import-{}", case.replace(' ', "-")));
        let import = mnist_cnn(&[
            "data",
            "--dir",
            imported.to_str().unwrap(),
            "--from",
            data,
            "--no-verify",
        ]);
        if file.ends_with("labels-idx1-ubyte") && message.contains("labels but") {
            continue; // a label file that is valid on its own is importable
        }
        assert_clean_failure(&import, &[file, message]);
        assert!(
            !imported.join(file).exists(),
            "{case}: data wrote the broken file"
        );
    }
}

#[test]
fn a_folder_or_a_missing_file_in_place_of_an_idx_file_is_named() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("folder");
    write_small_mnist(&dir, 5, 5);
    fs::remove_file(dir.join("t10k-images-idx3-ubyte")).unwrap();
    fs::create_dir(dir.join("t10k-images-idx3-ubyte")).unwrap();
    let output = train_small(&dir, &scratch.path().join("r1"), &[]);
    assert_clean_failure(&output, &["t10k-images-idx3-ubyte", "not a regular file"]);

    let dir = scratch.path().join("missing");
    write_small_mnist(&dir, 5, 5);
    fs::remove_file(dir.join("train-labels-idx1-ubyte")).unwrap();
    let output = train_small(&dir, &scratch.path().join("r2"), &[]);
    assert_clean_failure(&output, &["train-labels-idx1-ubyte"]);
}

#[test]
fn broken_checkpoints_fail_eval_naming_the_file() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 10, 10);
    let good = scratch.path().join("good.ot");
    save_fresh_model(&good);
    let good_bytes = fs::read(&good).unwrap();
    let wrong_shape = scratch.path().join("wrong-shape.ot");
    write_zero_checkpoint(&wrong_shape, ("conv2.weight", &[64, 16, 3, 3]));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.ot", vec![], "empty"),
        (
            "truncated.ot",
            good_bytes[..good_bytes.len() / 3].to_vec(),
            "not a readable",
        ),
        (
            "random.ot",
            (0..5000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            "not a readable",
        ),
        ("notes.ot", b"just some text\n".to_vec(), "not a readable"),
    ];
    for (name, bytes, message) in cases {
        let path = scratch.path().join(name);
        fs::write(&path, bytes).unwrap();
        let output = mnist_cnn(&[
            "eval",
            "--model",
            path.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ]);
        assert_clean_failure(&output, &[name, message]);
    }
    let output = mnist_cnn(&[
        "eval",
        "--model",
        wrong_shape.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_clean_failure(
        &output,
        &[
            "wrong-shape.ot",
            "conv2.weight",
            "[64, 16, 3, 3]",
            "[64, 32, 3, 3]",
        ],
    );
    let output = mnist_cnn(&[
        "eval",
        "--model",
        "/nonexistent/model.ot",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_clean_failure(&output, &["/nonexistent/model.ot"]);
}

/// Writes a checkpoint with the tutorial model's names and shapes, all zeros, except that
/// `changed` gets another shape. The format follows the extension.
fn write_zero_checkpoint(path: &Path, changed: (&str, &[i64])) {
    let shapes: [(&str, &[i64]); 6] = [
        ("conv1.weight", &[32, 1, 3, 3]),
        ("conv1.bias", &[32]),
        ("conv2.weight", &[64, 32, 3, 3]),
        ("conv2.bias", &[64]),
        ("fc.weight", &[10, 1600]),
        ("fc.bias", &[10]),
    ];
    let tensors: Vec<(&str, tch::Tensor)> = shapes
        .iter()
        .map(|&(name, shape)| {
            let shape = if name == changed.0 { changed.1 } else { shape };
            (
                name,
                tch::Tensor::zeros(shape, (tch::Kind::Float, tch::Device::Cpu)),
            )
        })
        .collect();
    let named: Vec<(&str, &tch::Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    if path.extension().is_some_and(|e| e == "safetensors") {
        tch::Tensor::write_safetensors(&named, path).unwrap();
    } else {
        tch::Tensor::save_multi(&named, path).unwrap();
    }
}

fn weights(path: &Path) -> std::collections::BTreeMap<String, tch::Tensor> {
    tch::Tensor::load_multi(path).unwrap().into_iter().collect()
}

#[test]
fn finetune_with_frozen_convolutions_keeps_them_bit_identical_and_records_before_and_after() {
    let data = tempfile::tempdir().unwrap();
    let runs = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 120, 30);
    let parent = runs.path().join("parent");
    assert_success(&train_small(data.path(), &parent, &["--val-split", "0.2"]));
    let out = runs.path().join("tuned");
    let output = finetune(
        &parent.join("model.ot"),
        data.path(),
        &out,
        &[
            "--freeze",
            "conv",
            "--epochs",
            "2",
            "--lr",
            "1e-2",
            "--augment",
            "--schedule",
            "onecycle",
            "--batch-size",
            "16",
            "--device",
            "cpu",
            "--json",
        ],
    );
    assert_success(&output);
    let (before, after) = (
        weights(&parent.join("model.ot")),
        weights(&out.join("model.ot")),
    );
    for name in ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"] {
        assert!(before[name].equal(&after[name]), "frozen {name} changed");
    }
    assert!(
        !before["fc.weight"].equal(&after["fc.weight"]),
        "fc did not train"
    );

    let config = read_json(&out.join("config.json"));
    assert_eq!(config["command"], "finetune");
    assert!(config["parent"]
        .as_str()
        .unwrap()
        .ends_with("parent/model.ot"));
    assert_eq!(config["freeze"], "conv");
    assert_eq!(config["schedule"], "onecycle");
    // The parent's held-out split is reused: 2 of the 12 images of each class, never trained on.
    assert_eq!(config["data"]["validation_examples"], 20);
    assert_eq!(config["data"]["split_seed"], 42);
    for key in ["validation_accuracy", "test_accuracy"] {
        assert!(config["before"][key].is_number(), "before.{key}");
        assert!(
            config["final_metrics"][key].is_number(),
            "final_metrics.{key}"
        );
    }
    let lines = read_json_lines(&out.join("metrics.jsonl"));
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["epoch"], 0);
    assert_eq!(lines[0]["test_accuracy"], config["before"]["test_accuracy"]);
    assert!(
        lines[1]["learning_rate"].as_f64().unwrap()
            < lines[1]["learning_rate_end"].as_f64().unwrap()
    );
    let summary = stdout_json(&output);
    assert_eq!(summary["before"], config["before"]);
}

#[test]
fn finetune_refuses_bad_starting_points_and_flags() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 20, 10);
    let good = scratch.path().join("good.ot");
    save_fresh_model(&good);
    let small = scratch.path().join("small.safetensors");
    write_zero_checkpoint(&small, ("fc.weight", &[10, 800]));
    let out = scratch.path().join("out");
    let run = |from: &Path, extra: &[&str]| {
        let mut args = vec!["--device", "cpu"];
        args.extend_from_slice(extra);
        finetune(from, &data, &out, &args)
    };
    assert_clean_failure(
        &run(Path::new("/nonexistent/m.ot"), &[]),
        &["--from /nonexistent/m.ot"],
    );
    assert_clean_failure(
        &run(&small, &[]),
        &["small.safetensors", "fc.weight", "[10, 800]", "[10, 1600]"],
    );
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--val-split", "0"], vec!["--val-split"]),
        (vec!["--val-split", "1"], vec!["--val-split"]),
        (vec!["--ema", "0"], vec!["--ema"]),
        (vec!["--label-smoothing", "1"], vec!["--label-smoothing"]),
        (vec!["--freeze", "everything"], vec!["--freeze"]),
        (vec!["--schedule", "sawtooth"], vec!["--schedule"]),
        (
            vec!["--images", "/nonexistent/pictures"],
            vec!["/nonexistent/pictures"],
        ),
        (vec!["--patience", "0"], vec!["--patience"]),
    ];
    for (flags, names) in cases {
        assert_clean_failure(&run(&good, &flags), &names);
        assert!(!out.exists(), "{flags:?} left a run folder");
    }
}

#[test]
fn export_writes_each_format_and_names_a_bad_destination() {
    let scratch = tempfile::tempdir().unwrap();
    let model = scratch.path().join("model.ot");
    save_fresh_model(&model);
    let expected = weights(&model);
    for (format, file) in [
        ("safetensors", "m.safetensors"),
        ("npz", "m.npz"),
        ("torchscript", "m.pt"),
    ] {
        let out = scratch.path().join(file);
        export(&model, format, &out);
        assert!(out.is_file(), "{format}");
    }
    let exported: std::collections::BTreeMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(scratch.path().join("m.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    for (name, tensor) in &expected {
        assert!(tensor.equal(&exported[name]), "{name}");
    }
    let traced = tch::CModule::load(scratch.path().join("m.pt")).unwrap();
    let logits = traced
        .forward_ts(&[tch::Tensor::zeros(
            [2, 1, 28, 28],
            (tch::Kind::Float, tch::Device::Cpu),
        )])
        .unwrap();
    assert_eq!(logits.size(), [2, 10]);

    let bad = scratch.path().join("no-such-folder").join("m.npz");
    let output = try_export(&model, "npz", &bad);
    assert_clean_failure(&output, &["no-such-folder"]);
    let output = try_export(&model, "onnx", &bad);
    assert_clean_failure(&output, &["no-such-folder"]);
    let output = try_export(&model, "tflite", &bad);
    assert_clean_failure(&output, &["--format"]);
}

#[test]
fn fractional_epochs_end_with_part_of_an_epoch_and_recipes_fill_unset_flags() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 160, 40);
    let runs = tempfile::tempdir().unwrap();
    let out = runs.path().join("run");
    let output = train_small(
        data.path(),
        &out,
        &["--recipe", "fast", "--epochs", "1.5", "--no-report"],
    );
    assert_success(&output);
    let config = read_json(&out.join("config.json"));
    // The recipe's settings, except the epochs given on the command line.
    assert_eq!(config["epochs"], 1.5);
    assert_eq!(
        config["batch_size"], 16,
        "--batch-size 16 from the helper wins"
    );
    assert_eq!(config["schedule"], "onecycle");
    assert_eq!(config["learning_rate"], 1e-2);
    assert_eq!(config["label_smoothing"], 0.1);
    let lines = read_json_lines(&out.join("metrics.jsonl"));
    assert_eq!(
        lines.len(),
        2,
        "1.5 epochs run two epochs, the second partial"
    );
    // 160 images at batch 16: 10 steps, then 5; the schedule spans the 15.
    let onecycle = mnist_cnn::optim::schedule::Schedule::Onecycle;
    for (line, (first, last)) in lines.iter().zip([(0, 9), (10, 14)]) {
        for (field, step) in [("learning_rate", first), ("learning_rate_end", last)] {
            let expected = onecycle.learning_rate(1e-2, step, 15);
            let got = line[field].as_f64().unwrap();
            assert!(
                (got - expected).abs() < 1e-12,
                "{field} at step {step}: {got} vs {expected}"
            );
        }
    }

    let whole = runs.path().join("whole");
    assert_success(&train_small(
        data.path(),
        &whole,
        &["--epochs", "2", "--no-report"],
    ));
    assert_eq!(read_json(&whole.join("config.json"))["epochs"], 2);
}

#[test]
fn bench_reports_throughput_and_latency_as_json() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 64, 1000);
    let output = mnist_cnn(&[
        "bench",
        "--data",
        data.path().to_str().unwrap(),
        "--batch-size",
        "16",
        "--steps",
        "6",
        "--warmup",
        "2",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--json",
    ]);
    assert_success(&output);
    let result = stdout_json(&output);
    assert_eq!(result["batch_size"], 16);
    assert_eq!(result["train_steps"], 6);
    assert_eq!(result["threads"], 1);
    for field in [
        "train_images_per_second",
        "inference_images_per_second",
        "predict_latency_ms",
    ] {
        let value = result[field].as_f64().unwrap_or(0.0);
        assert!(value > 0.0 && value.is_finite(), "{field}: {value}");
    }
    let too_big = mnist_cnn(&[
        "bench",
        "--data",
        data.path().to_str().unwrap(),
        "--batch-size",
        "100",
        "--steps",
        "1",
    ]);
    assert_clean_failure(&too_big, &["smaller than a batch"]);
}
