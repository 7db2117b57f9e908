//! Run folders and config files checked like flags, outputs that never replace inputs, flags
//! with bounds, and messages that say what is wrong: every file the tool reads may be damaged
//! or edited, and every path it writes may be the wrong one.

use crate::common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A small finished run on generated data (one epoch, batch 16), with its data folder.
struct Run {
    scratch: tempfile::TempDir,
    data: PathBuf,
    run: PathBuf,
}

fn finished_run(extra: &[&str]) -> Run {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 64, 16);
    let run = scratch.path().join("run");
    let mut args = vec!["--no-report"];
    args.extend_from_slice(extra);
    assert_success(&train_small(&data, &run, &args));
    Run { scratch, data, run }
}

fn status(run: &Path) -> String {
    read_json(&run.join("config.json"))["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn make_fifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn every_config_edit_a_flag_would_refuse_ends_resume_at_once_naming_the_key() {
    let base = finished_run(&[]);
    let edits: [(&str, serde_json::Value, &str); 9] = [
        ("batch_size", 0.into(), "batch_size is 0"),
        ("label_smoothing", 5.into(), "label_smoothing is 5"),
        ("epochs", serde_json::json!(1e300), "epochs is 1e300"),
        ("learning_rate", (-1).into(), "learning_rate is -1"),
        (
            "learning_rate",
            "fast".into(),
            "learning_rate: invalid type: string",
        ),
        ("weight_averaging", 1.into(), "weight_averaging is 1"),
        ("patience", 0.into(), "patience is 0"),
        (
            "threads",
            100_000.into(),
            "threads 100000: must be from 1 to",
        ),
        ("seed", (-3).into(), "seed: invalid value"),
    ];
    for (key, value, expected) in edits {
        let run = base.scratch.path().join(format!("edited-{key}"));
        fs::create_dir_all(&run).unwrap();
        for file in ["model.ot", "metrics.jsonl", "resume.ot", "config.json"] {
            fs::copy(base.run.join(file), run.join(file)).unwrap();
        }
        let mut config = read_json(&run.join("config.json"));
        config[key] = value;
        config["status"] = "interrupted".into();
        fs::write(run.join("config.json"), config.to_string()).unwrap();
        let args = [
            "train",
            "--resume",
            run.to_str().unwrap(),
            "--epochs",
            "3",
            "--no-report",
        ];
        let (output, finished) = mnist_cnn_within(&args, Duration::from_secs(30));
        assert!(finished, "{key}: still running");
        assert_eq!(output.status.code(), Some(1), "{key}: {}", stderr(&output));
        assert_clean_failure(&output, &["config.json", expected]);
        assert_eq!(status(&run), "interrupted", "{key}: the status changed");
    }
    // A finished run resumed with nothing left to train stays completed.
    let again = mnist_cnn(&["train", "--resume", base.run.to_str().unwrap()]);
    assert_clean_failure(&again, &["already completed 1 of 1 epochs", "--epochs"]);
    assert_eq!(status(&base.run), "completed");
}

#[test]
fn overwrite_removes_the_old_runs_files_and_only_those() {
    let old = finished_run(&["--arch", "vgg-4"]);
    assert_success(&mnist_cnn(&[
        "report",
        old.run.to_str().unwrap(),
        "--data",
        old.data.to_str().unwrap(),
    ]));
    assert!(old.run.join("report.html").exists());
    fs::write(old.run.join("notes.txt"), "mine").unwrap();
    let old_log = file_names(&old.run)
        .into_iter()
        .find(|name| name.starts_with("events.out.tfevents."));
    assert!(old_log.is_some());
    let new = train_small(
        &old.data,
        &old.run,
        &["--overwrite", "--no-report", "--epochs", "0.5"],
    );
    assert_success(&new);
    assert!(!old.run.join(old_log.unwrap()).exists());
    assert_eq!(
        run_files(&old.run),
        [
            "config.json",
            "events.out.tfevents.*",
            "metrics.jsonl",
            "model.ot",
            "notes.txt",
            "resume.ot"
        ]
    );
    assert_eq!(
        read_json(&old.run.join("config.json"))["architecture"],
        "tutorial"
    );
    // The new model.ot is the new run's: it loads as the tutorial network.
    let eval = eval_json(&[&old.run.join("model.ot")], &old.data, &[]);
    assert_eq!(eval["architectures"][0], "tutorial", "{eval}");
}

#[test]
fn a_run_folder_must_be_new_empty_or_a_run_folder() {
    let base = finished_run(&[]);
    let data = base.data.to_str().unwrap();
    for (out, expected) in [("/", "not a run's"), (data, "not a run's")] {
        for overwrite in [false, true] {
            let mut args = vec!["train", "--data", data, "--out", out, "--epochs", "1"];
            if overwrite {
                args.push("--overwrite");
            }
            assert_clean_failure(&mnist_cnn(&args), &[expected]);
        }
    }
    assert_eq!(file_names(&base.data).len(), 4, "the data folder changed");
    let file = base.scratch.path().join("a-file");
    fs::write(&file, "x").unwrap();
    let output = train_small(&base.data, Path::new(&format!("{}/", file.display())), &[]);
    let err = stderr(&output);
    assert_clean_failure(&output, &["a-file/", "not a folder"]);
    assert_eq!(err.matches("not a folder").count(), 1, "said once: {err}");
    let empty = base.scratch.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert_success(&train_small(&base.data, &empty, &["--no-report"]));
}

#[test]
fn outputs_never_replace_inputs() {
    let base = finished_run(&[]);
    let model = base.run.join("model.ot");
    let before = fs::read(&model).unwrap();
    let same = base.run.join(".").join("model.ot");
    let export = try_export(&model, "npz", &same);
    assert_clean_failure(&export, &["--out", "an input"]);
    let picture = base.scratch.path().join("digit.png");
    fs::write(&picture, png_with_header(28, 28)).unwrap();
    let predict = mnist_cnn(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--show-input",
        model.to_str().unwrap(),
        picture.to_str().unwrap(),
    ]);
    assert_clean_failure(&predict, &["--show-input", "an input"]);
    assert_eq!(
        fs::read(&model).unwrap(),
        before,
        "the checkpoint was replaced"
    );

    // The config.json read beside --model, and --data's files, are inputs too.
    let config = base.run.join("config.json");
    let config_before = fs::read(&config).unwrap();
    let (model, config_path) = (model.to_str().unwrap(), config.to_str().unwrap());
    let labels = base.data.join("t10k-labels-idx1-ubyte");
    let labels_before = fs::read(&labels).unwrap();
    let data = base.data.to_str().unwrap();
    let picture = picture.to_str().unwrap();
    let attempts: [(&[&str], &str); 4] = [
        (
            &[
                "predict",
                "--model",
                model,
                "--show-input",
                config_path,
                picture,
            ],
            "--show-input",
        ),
        (
            &[
                "export",
                "--model",
                model,
                "--format",
                "onnx",
                "--out",
                config_path,
            ],
            "--out",
        ),
        (
            &[
                "lr-find",
                "--from",
                model,
                "--data",
                data,
                "--out",
                config_path,
            ],
            "--out",
        ),
        (
            &["lr-find", "--data", data, "--out", labels.to_str().unwrap()],
            "--out",
        ),
    ];
    for (args, flag) in attempts {
        assert_clean_failure(&mnist_cnn(args), &[flag, "an input"]);
    }
    assert_eq!(fs::read(&config).unwrap(), config_before);
    assert_eq!(fs::read(&labels).unwrap(), labels_before);
}

/// A folder of another program's, with a config.json of its own, is no run folder: `train
/// --out DIR --overwrite` refuses it and removes nothing.
#[test]
fn overwrite_deletes_nothing_from_a_folder_that_is_not_a_run() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 64, 16);
    let project = scratch.path().join("proj");
    fs::create_dir_all(&project).unwrap();
    let own = [
        ("config.json", "{\"name\":\"app\"}"),
        ("report.html", "<p>mine</p>"),
        ("model.ot", "not a checkpoint"),
    ];
    for (name, text) in own {
        fs::write(project.join(name), text).unwrap();
    }
    let output = train_small(&data, &project, &["--overwrite", "--no-report"]);
    assert_clean_failure(&output, &["proj", "not a run's record", "removes nothing"]);
    for (name, text) in own {
        assert_eq!(fs::read_to_string(project.join(name)).unwrap(), text);
    }
}

#[test]
fn fifos_and_devices_are_refused_without_blocking() {
    let base = finished_run(&[]);
    let dir = base.scratch.path();
    // A run folder whose config.json is a FIFO, and one whose metrics.jsonl is.
    for file in ["config.json", "metrics.jsonl"] {
        let run = dir.join(format!("fifo-{file}"));
        fs::create_dir(&run).unwrap();
        for copied in ["model.ot", "metrics.jsonl", "config.json", "resume.ot"] {
            if copied != file {
                fs::copy(base.run.join(copied), run.join(copied)).unwrap();
            }
        }
        make_fifo(&run.join(file));
        let model = run.join("model.ot");
        let commands: Vec<Vec<&str>> = vec![
            vec![
                "report",
                run.to_str().unwrap(),
                "--data",
                base.data.to_str().unwrap(),
            ],
            vec!["train", "--resume", run.to_str().unwrap()],
        ];
        let mut commands = commands;
        if file == "config.json" {
            // predict and serve read the config beside the checkpoint.
            commands.push(vec![
                "predict",
                "--model",
                model.to_str().unwrap(),
                "/dev/null",
            ]);
            commands.push(vec![
                "serve",
                "--model",
                model.to_str().unwrap(),
                "--addr",
                "127.0.0.1:0",
            ]);
        }
        for args in commands {
            let (output, finished) = mnist_cnn_within(&args, Duration::from_secs(30));
            assert!(finished, "{args:?} blocked on the FIFO");
            assert_clean_failure(&output, &[file, "named pipe"]);
        }
    }
    let device = mnist_cnn(&[
        "eval",
        "--model",
        "/dev/zero",
        "--data",
        base.data.to_str().unwrap(),
    ]);
    assert_clean_failure(&device, &["/dev/zero", "a device"]);
    let folder = base.scratch.path().join("folder-as-resume");
    fs::create_dir(&folder).unwrap();
    for file in ["model.ot", "metrics.jsonl", "config.json"] {
        fs::copy(base.run.join(file), folder.join(file)).unwrap();
    }
    fs::create_dir(folder.join("resume.ot")).unwrap();
    let resume = mnist_cnn(&[
        "train",
        "--resume",
        folder.to_str().unwrap(),
        "--epochs",
        "2",
    ]);
    assert_clean_failure(&resume, &["resume.ot", "a folder, not a regular file"]);
}

#[test]
fn data_import_never_replaces_another_datasets_files_unless_forced() {
    let scratch = tempfile::tempdir().unwrap();
    let other = scratch.path().join("other");
    write_small_mnist(&other, 20, 10);
    let before = fs::read(other.join("train-images-idx3-ubyte")).unwrap();
    let mnist = real_mnist_dir();
    let args = [
        "data",
        "--dir",
        other.to_str().unwrap(),
        "--from",
        mnist.to_str().unwrap(),
    ];
    assert_clean_failure(&mnist_cnn(&args), &["train-images-idx3-ubyte", "--force"]);
    assert_eq!(
        fs::read(other.join("train-images-idx3-ubyte")).unwrap(),
        before
    );
    let mut forced = args.to_vec();
    forced.push("--force");
    assert_success(&mnist_cnn(&forced));
    assert_eq!(
        fs::metadata(other.join("train-images-idx3-ubyte"))
            .unwrap()
            .len(),
        47_040_016
    );
}

#[test]
fn flags_out_of_bounds_are_refused_with_their_bounds() {
    let base = finished_run(&[]);
    let data = base.data.to_str().unwrap();
    let model = base.run.join("model.ot");
    let model = model.to_str().unwrap();
    let out = base.scratch.path().join("x");
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &[&str]); 6] = [
        (
            &["train", "--data", data, "--out", out, "--ema", "1"],
            &["--ema", "below 1"],
        ),
        (
            &[
                "predict",
                "--model",
                model,
                "--threads",
                "4096",
                "/dev/null",
            ],
            &["--threads 4096", "four per CPU"],
        ),
        (
            &["bench", "--data", data, "--warmup", "18446744073709551615"],
            &["--warmup"],
        ),
        (
            &["bench", "--data", data, "--warmup", "100001"],
            &["--warmup", "from 0 to 100000"],
        ),
        (
            &[
                "serve",
                "--model",
                model,
                "--max-batch",
                "18446744073709551615",
            ],
            &["--max-batch"],
        ),
        (
            &["serve", "--model", model, "--max-batch", "100000000"],
            &["--max-batch", "from 1 to 4096"],
        ),
    ];
    for (args, names) in cases {
        let (output, finished) = mnist_cnn_within(args, Duration::from_secs(30));
        assert!(finished, "{args:?} was accepted");
        assert_clean_failure(&output, names);
    }
    // Class folders that are numbers but not the digits 0 … 9 are refused, by name.
    let pictures = base.scratch.path().join("pictures");
    for class in ["1", "07"] {
        fs::create_dir_all(pictures.join(class)).unwrap();
        fs::write(pictures.join(class).join("a.png"), png_with_header(28, 28)).unwrap();
    }
    let tune = mnist_cnn(&[
        "finetune",
        "--from",
        model,
        "--images",
        pictures.to_str().unwrap(),
        "--out",
        out,
    ]);
    assert_clean_failure(&tune, &["\"07\"", "0 … 9"]);
}

#[test]
fn messages_say_what_is_wrong() {
    let base = finished_run(&[]);
    let scratch = base.scratch.path();
    let model = base.run.join("model.ot");
    // --data given a file.
    let file = base.data.join("train-images-idx3-ubyte");
    let output = train_small(&file, &scratch.join("x"), &[]);
    assert_clean_failure(&output, &["is a file", "the four MNIST idx files"]);
    // The training state given as a model.
    let eval = mnist_cnn(&[
        "eval",
        "--model",
        base.run.join("resume.ot").to_str().unwrap(),
        "--data",
        base.data.to_str().unwrap(),
    ]);
    assert_clean_failure(&eval, &["resume.ot", "training state", "model.ot"]);
    // A 0×0 BMP is empty, not too large.
    let bmp = scratch.join("empty.bmp");
    let mut header = b"BM".to_vec();
    for v in [54u32, 0, 54, 40, 0, 0] {
        header.extend(v.to_le_bytes());
    }
    header.extend(1u16.to_le_bytes());
    header.extend(24u16.to_le_bytes());
    header.extend([0u8; 24]);
    fs::write(&bmp, &header).unwrap();
    let predict = mnist_cnn(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        bmp.to_str().unwrap(),
    ]);
    assert!(
        stderr(&predict).contains("empty (0×0)"),
        "{}",
        stderr(&predict)
    );
    // A newline in a file name cannot forge a line of predict's output.
    let forged = scratch.join("a.png\nforged.png: 3 (99.9%)");
    fs::write(&forged, png_with_header(28, 28)).unwrap();
    let predict = mnist_cnn(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        forged.to_str().unwrap(),
    ]);
    let out = stdout(&predict);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("a.png\\nforged.png"), "{out}");
    // report refuses impossible metrics instead of drawing them.
    let run = scratch.join("edited");
    fs::create_dir(&run).unwrap();
    for file in ["model.ot", "config.json", "resume.ot"] {
        fs::copy(base.run.join(file), run.join(file)).unwrap();
    }
    let line = read_json_lines(&base.run.join("metrics.jsonl")).remove(0);
    for (key, value, expected) in [
        (
            "test_accuracy",
            serde_json::json!(2.5),
            "test_accuracy is 2.5",
        ),
        ("train_loss", serde_json::json!(-1.0), "train_loss is -1"),
        (
            "epoch",
            serde_json::json!(u64::MAX),
            "epoch is 18446744073709551615",
        ),
    ] {
        let mut edited = line.clone();
        edited[key] = value;
        fs::write(run.join("metrics.jsonl"), format!("{edited}\n")).unwrap();
        let report = mnist_cnn(&[
            "report",
            run.to_str().unwrap(),
            "--data",
            base.data.to_str().unwrap(),
        ]);
        assert_clean_failure(&report, &["metrics.jsonl line 1", expected]);
    }
}

/// Messages name what the user wrote: a thread count from a settings file by the file and its
/// key (not as a flag never given), and an architecture a safetensors file's metadata declares
/// cut short, however long.
#[test]
fn messages_name_the_file_key_and_cut_long_values() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 64, 16);
    let settings = scratch.path().join("many.toml");
    fs::write(&settings, "threads = 4096\n").unwrap();
    let output = mnist_cnn(&[
        "train",
        "--config",
        settings.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        scratch.path().join("run").to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert_clean_failure(&output, &["many.toml: threads 4096", "four per CPU"]);
    assert!(!stderr(&output).contains("--threads 4096"));

    // The tutorial network's tensors, under 1 MB of declared architecture.
    let weights = scratch.path().join("long.safetensors");
    let model =
        mnist_cnn::model::Classifier::new(mnist_cnn::nn::Architecture::Tutorial, tch::Device::Cpu);
    let tensors: Vec<(String, Vec<i64>, Vec<u8>)> = model
        .named_parameters()
        .into_iter()
        .map(|(name, t)| {
            let values = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, t.size(), bytes)
        })
        .collect();
    let views = tensors.iter().map(|(name, size, bytes)| {
        let shape = size.iter().map(|&d| d as usize).collect();
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, bytes);
        (name.as_str(), view.unwrap())
    });
    let metadata =
        std::collections::HashMap::from([("architecture".to_owned(), "vgg-".repeat(250_000))]);
    safetensors::serialize_to_file(views, &Some(metadata), &weights).unwrap();
    let output = mnist_cnn(&["summary", "--model", weights.to_str().unwrap()]);
    assert_clean_failure(&output, &["long.safetensors", "1000000 bytes"]);
    assert!(stderr(&output).len() < 2_000, "{}", stderr(&output));
}
