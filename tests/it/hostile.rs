//! Hostile and damaged checkpoints: a `.ot` that runs code under libtorch's own loader, storages
//! cut short, a scalar and a wrong-rank first convolution, NaN weights. Every command that loads
//! a checkpoint (predict, eval, export, finetune, serve, and `train --resume` for resume.ot)
//! refuses each one with exit 1 and an error naming the file, runs nothing, and crashes not. And
//! the checkpoints an earlier release wrote still read the same.

use crate::common::*;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the hostile file's code would write into the marker.
const UNTOUCHED: &[u8] = b"intact";

/// A small trained run on generated data, and a picture to predict.
struct Setup {
    scratch: tempfile::TempDir,
    data: PathBuf,
    run: PathBuf,
    picture: PathBuf,
}

fn setup() -> Setup {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 64, 16);
    let run = scratch.path().join("run");
    assert_success(&train_small(&data, &run, &["--no-report"]));
    let picture = scratch.path().join("digit.png");
    let mut field = vec![0u8; 28 * 28];
    for row in 4..24 {
        field[row * 28 + 14] = 255;
    }
    image::GrayImage::from_raw(28, 28, field)
        .unwrap()
        .save(&picture)
        .unwrap();
    Setup {
        scratch,
        data,
        run,
        picture,
    }
}

/// Every command that loads `model`, as arguments; each must fail.
fn loading_commands(setup: &Setup, model: &Path) -> Vec<Vec<String>> {
    let model = model.to_str().unwrap();
    let data = setup.data.to_str().unwrap();
    let out = |name: &str| setup.scratch.path().join(name).display().to_string();
    let commands: [&[&str]; 5] = [
        &["predict", "--model", model, setup.picture.to_str().unwrap()],
        &["eval", "--model", model, "--data", data],
        &[
            "export",
            "--model",
            model,
            "--format",
            "npz",
            "--out",
            &out("x.npz"),
        ],
        &[
            "finetune",
            "--from",
            model,
            "--data",
            data,
            "--out",
            &out("tuned"),
            "--device",
            "cpu",
            "--threads",
            "1",
            "--epochs",
            "1",
            "--no-report",
        ],
        &[
            "serve",
            "--model",
            model,
            "--addr",
            "127.0.0.1:0",
            "--device",
            "cpu",
        ],
    ];
    commands
        .iter()
        .map(|args| args.iter().map(|a| a.to_string()).collect())
        .collect()
}

/// Runs each command on `model`: each must fail cleanly naming `names`, within seconds.
fn assert_every_command_refuses(setup: &Setup, model: &Path, names: &[&str]) {
    for args in loading_commands(setup, model) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (output, finished) = mnist_cnn_within(&args, Duration::from_secs(60));
        assert!(finished, "{args:?} did not stop: it accepted the file");
        assert_clean_failure(&output, names);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
    }
    assert!(!setup.scratch.path().join("x.npz").exists());
    assert!(!setup.scratch.path().join("tuned").join("model.ot").exists());
}

#[test]
fn a_checkpoint_that_carries_code_is_refused_and_its_code_never_runs() {
    let setup = setup();
    let weights = setup.scratch.path().join("weights.safetensors");
    export(&setup.run.join("model.ot"), "safetensors", &weights);
    let marker = setup.scratch.path().join("marker");
    fs::write(&marker, UNTOUCHED).unwrap();
    let hostile = setup.scratch.path().join("hostile.ot");
    venv_script(
        "hostile_checkpoint.py",
        &[
            hostile.to_str().unwrap(),
            marker.to_str().unwrap(),
            weights.to_str().unwrap(),
        ],
    );
    assert_every_command_refuses(&setup, &hostile, &["hostile.ot", "__torch__.Checkpoint"]);

    // As the training state of a run to resume.
    fs::copy(&hostile, setup.run.join("resume.ot")).unwrap();
    let resumed = mnist_cnn(&[
        "train",
        "--resume",
        setup.run.to_str().unwrap(),
        "--epochs",
        "2",
        "--no-report",
    ]);
    assert_clean_failure(&resumed, &["resume.ot", "__torch__.Checkpoint"]);
    assert_eq!(fs::read(&marker).unwrap(), UNTOUCHED, "the file's code ran");
}

/// `model.ot` rewritten with every storage (`data/N`) cut to `keep` bytes.
fn with_storages_cut(model: &Path, keep: usize, out: &Path) {
    let mut archive = zip::ZipArchive::new(fs::File::open(model).unwrap()).unwrap();
    let mut writer = zip::ZipWriter::new(fs::File::create(out).unwrap());
    let stored =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).unwrap();
        let name = entry.name().to_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if name.contains("/data/") {
            bytes.truncate(keep);
        }
        writer.start_file(name, stored).unwrap();
        writer.write_all(&bytes).unwrap();
    }
    writer.finish().unwrap();
}

/// The trained run's weights with `name` replaced by `tensor`, written to `out` (by extension).
fn with_tensor(setup: &Setup, name: &str, tensor: tch::Tensor, out: &Path) {
    let mut tensors = mnist_cnn::io::checkpoint::read_tensors(&setup.run.join("model.ot")).unwrap();
    tensors.insert(name.to_owned(), tensor);
    let named: Vec<(&str, &tch::Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    if out.extension().unwrap() == "safetensors" {
        tch::Tensor::write_safetensors(&named, out).unwrap();
    } else {
        tch::Tensor::save_multi(&named, out).unwrap();
    }
}

#[test]
fn damaged_checkpoints_fail_every_command_naming_the_file_and_the_tensor() {
    let setup = setup();
    let dir = setup.scratch.path();
    for keep in [0, 4, 64] {
        let cut = dir.join(format!("cut-{keep}.ot"));
        with_storages_cut(&setup.run.join("model.ot"), keep, &cut);
        assert_every_command_refuses(&setup, &cut, &[&format!("cut-{keep}.ot"), "storage holds"]);
    }

    let scalar = dir.join("scalar.safetensors");
    with_tensor(&setup, "conv1.weight", tch::Tensor::from(1.0f32), &scalar);
    // Beside a batch norm's statistics, the checkpoint claims to be a vgg-N.
    let mut tensors = mnist_cnn::io::checkpoint::read_tensors(&scalar).unwrap();
    tensors.insert(
        "bn1.running_mean".to_owned(),
        tch::Tensor::zeros([4], tch::kind::FLOAT_CPU),
    );
    let named: Vec<(&str, &tch::Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    tch::Tensor::write_safetensors(&named, &scalar).unwrap();
    assert_every_command_refuses(&setup, &scalar, &["scalar.safetensors", "conv1.weight"]);

    let flat = dir.join("flat.ot");
    with_tensor(
        &setup,
        "conv1.weight",
        tch::Tensor::zeros([32, 9], tch::kind::FLOAT_CPU),
        &flat,
    );
    assert_every_command_refuses(&setup, &flat, &["flat.ot", "conv1.weight", "[32, 9]"]);

    for (file, value) in [("nan.ot", f32::NAN), ("inf.safetensors", f32::INFINITY)] {
        let path = dir.join(file);
        let bias = tch::Tensor::from_slice(&[value; 10]);
        with_tensor(&setup, "fc.bias", bias, &path);
        assert_every_command_refuses(&setup, &path, &[file, "fc.bias", "NaN or infinite"]);
    }
}

#[test]
fn checkpoints_an_earlier_release_wrote_still_read_the_same() {
    let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/release-0.1.0");
    for file in ["model.ot", "resume.ot"] {
        let path = release.join(file);
        let ours = mnist_cnn::io::checkpoint::read_tensors(&path).unwrap();
        // libtorch's own loader, trusted here: the file is one this project wrote.
        let libtorch: std::collections::BTreeMap<String, tch::Tensor> =
            tch::Tensor::load_multi(&path)
                .unwrap()
                .into_iter()
                .collect();
        assert_eq!(ours.len(), libtorch.len(), "{file}");
        for (name, tensor) in &libtorch {
            assert_eq!(ours[name].kind(), tensor.kind(), "{file}: {name}");
            assert!(ours[name].equal(tensor), "{file}: {name} differs");
        }
    }
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 20, 10);
    let report = eval_json(
        &[&release.join("model.ot")],
        data.path(),
        &["--device", "cpu"],
    );
    assert_eq!(report["architectures"][0], "vgg-4");
}
