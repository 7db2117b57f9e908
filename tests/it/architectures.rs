//! Every architecture trains for a few steps on a small generated set, and its checkpoints
//! carry the architecture through eval, export, predict, finetune and ensembles, with no
//! `--arch` after training; unknown or inconsistent architectures are clear errors.

use crate::common::*;
use std::path::Path;

const ARCHITECTURES: [&str; 2] = ["tutorial", "vgg-8"];

#[test]
fn each_architecture_trains_and_its_checkpoints_round_trip_with_it() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 320, 80);
    let mut runs = Vec::new();
    for architecture in ARCHITECTURES {
        let run = scratch.path().join(architecture);
        let output = train_small(
            &data,
            &run,
            &["--arch", architecture, "--epochs", "0.5", "--no-report"],
        );
        assert_success(&output);
        let config = read_json(&run.join("config.json"));
        assert_eq!(config["architecture"], architecture);

        // eval of the .ot (architecture from the run's config.json and the tensors) …
        let model = run.join("model.ot");
        let from_ot = eval_json(&[&model], &data, &[]);
        assert_eq!(from_ot["architectures"][0], architecture);
        // … and of the safetensors export, which carries it in its metadata, anywhere.
        let exported = scratch.path().join(format!("{architecture}.safetensors"));
        export(&model, "safetensors", &exported);
        let header = std::fs::read(&exported).unwrap();
        let header = String::from_utf8_lossy(&header[..2048.min(header.len())]).into_owned();
        assert!(
            header.contains(&format!("\"architecture\":\"{architecture}\"")),
            "{header}"
        );
        let from_safetensors = eval_json(&[&exported], &data, &[]);
        assert_eq!(from_safetensors["accuracy"], from_ot["accuracy"]);
        assert_eq!(from_safetensors["loss"], from_ot["loss"]);

        // finetune --from continues with the checkpoint's architecture.
        let tuned = scratch.path().join(format!("{architecture}-tuned"));
        let output = finetune(
            &exported,
            &data,
            &tuned,
            &["--epochs", "0.5", "--threads", "1", "--no-report"],
        );
        assert_success(&output);
        assert_eq!(
            read_json(&tuned.join("config.json"))["architecture"],
            architecture
        );
        runs.push(model);
    }

    // The two architectures as an ensemble, with and without test-time augmentation.
    let models: Vec<&Path> = runs.iter().map(|p| p.as_path()).collect();
    let ensemble = eval_json(&models, &data, &[]);
    assert_eq!(ensemble["architectures"], serde_json::json!(ARCHITECTURES));
    assert_eq!(ensemble["tta"], false);
    let total: u64 = confusion_rows(&ensemble).iter().flatten().sum();
    assert_eq!(total, 80);
    let augmented = eval_json(&models, &data, &["--tta"]);
    assert_eq!(augmented["tta"], true);
    assert_ne!(
        augmented["loss"], ensemble["loss"],
        "test-time augmentation changed nothing"
    );
}

/// A checkpoint whose declared architecture disagrees with its tensors, or names one this
/// version does not know, is refused with a message that names the file and both sides.
#[test]
fn unknown_or_inconsistent_architectures_are_clear_errors() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 64, 16);
    let tutorial = scratch.path().join("tutorial");
    let vgg = scratch.path().join("vgg");
    assert_success(&train_small(
        &data,
        &tutorial,
        &["--epochs", "0.25", "--no-report"],
    ));
    assert_success(&train_small(
        &data,
        &vgg,
        &["--arch", "vgg-8", "--epochs", "0.25", "--no-report"],
    ));

    // A vgg model.ot copied into the tutorial run's folder: config.json says otherwise.
    let misplaced = tutorial.join("from-elsewhere.ot");
    std::fs::copy(vgg.join("model.ot"), &misplaced).unwrap();
    let output = mnist_cnn(&[
        "eval",
        "--model",
        misplaced.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_clean_failure(&output, &["from-elsewhere.ot", "config.json"]);
    let err = stderr(&output);
    assert!(
        err.contains("gives the architecture as tutorial") && err.contains("those of vgg-8"),
        "{err}"
    );

    // A config.json naming an architecture this version does not know.
    let config = vgg.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"vgg-8\"", "\"resnet-50\"")).unwrap();
    let model = vgg.join("model.ot");
    let output = mnist_cnn(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_clean_failure(&output, &["model.ot"]);
    assert!(
        stderr(&output).contains("unknown architecture \"resnet-50\""),
        "{}",
        stderr(&output)
    );

    // safetensors metadata naming an unknown architecture (same length, so the header stays
    // valid: "tutorial" → "lenet-v5").
    let exported = scratch.path().join("t.safetensors");
    export(&tutorial.join("model.ot"), "safetensors", &exported);
    let mut bytes = std::fs::read(&exported).unwrap();
    let at = bytes
        .windows(10)
        .position(|w| w == b"\"tutorial\"")
        .expect("the architecture in the metadata");
    bytes[at..at + 10].copy_from_slice(b"\"lenet-v5\"");
    std::fs::write(&exported, &bytes).unwrap();
    let output = mnist_cnn(&[
        "eval",
        "--model",
        exported.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_clean_failure(&output, &["t.safetensors"]);
    assert!(
        stderr(&output).contains("metadata declares unknown architecture \"lenet-v5\""),
        "{}",
        stderr(&output)
    );

    // And on the command line.
    let output = train_small(&data, &scratch.path().join("x"), &["--arch", "vgg-2"]);
    assert_clean_failure(&output, &["--arch"]);
    assert!(
        stderr(&output).contains("from 4 to 256"),
        "{}",
        stderr(&output)
    );
}

/// vgg-N draws dropout masks from libtorch's generator and keeps batch-norm statistics: a run
/// extended with `--resume` must still end bit-identical to one trained in one go.
#[test]
fn a_resumed_vgg_run_ends_bit_identical_to_an_uninterrupted_one() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 96, 16);
    let flags = |epochs: &'static str| {
        [
            "--arch",
            "vgg-4",
            "--epochs",
            epochs,
            "--augment",
            "--seed",
            "3",
            "--no-report",
        ]
    };
    let (whole, cut) = (scratch.path().join("whole"), scratch.path().join("cut"));
    assert_success(&train_small(&data, &whole, &flags("2")));
    assert_success(&train_small(&data, &cut, &flags("1")));
    let resumed = mnist_cnn(&[
        "train",
        "--resume",
        cut.to_str().unwrap(),
        "--epochs",
        "2",
        "--no-report",
    ]);
    assert_success(&resumed);
    let load = |run: &Path| -> std::collections::BTreeMap<String, tch::Tensor> {
        tch::Tensor::load_multi(run.join("model.ot"))
            .unwrap()
            .into_iter()
            .collect()
    };
    let (a, b) = (load(&whole), load(&cut));
    assert!(a.contains_key("bn1.running_mean"));
    assert_eq!(a.len(), b.len());
    for (name, tensor) in &a {
        assert!(tensor.equal(&b[name]), "{name} differs after resuming");
    }
}

/// `summary` prints Keras's counts: 34,826 parameters for the tutorial network, 289,130 for
/// vgg-32, the multiply-adds per layer, and the same for a checkpoint's network.
#[test]
fn summary_counts_parameters_and_multiply_adds_per_layer() {
    let tutorial = mnist_cnn(&["summary", "--arch", "tutorial"]);
    assert_success(&tutorial);
    let text = stdout(&tutorial);
    assert!(text.contains("total parameters: 34,826"), "{text}");
    assert!(
        text.contains("[1, 32, 26, 26]") && text.contains("2,230,272"),
        "{text}"
    );
    let vgg = stdout_json(&mnist_cnn(&["summary", "--arch", "vgg-32", "--json"]));
    assert_eq!(vgg["parameters"], 289_130);
    let layers = vgg["layers"].as_array().unwrap();
    let conv1 = layers.iter().find(|l| l["name"] == "conv1").unwrap();
    assert_eq!(conv1["mult_adds"], 28 * 28 * 32 * 9);

    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 32, 16);
    let run = scratch.path().join("run");
    assert_success(&train_small(
        &data,
        &run,
        &["--arch", "vgg-4", "--no-report"],
    ));
    let model = run.join("model.ot");
    let from_model = stdout_json(&mnist_cnn(&[
        "summary",
        "--model",
        model.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(from_model["architecture"], "vgg-4");
    assert_eq!(
        from_model,
        stdout_json(&mnist_cnn(&["summary", "--arch", "vgg-4", "--json"]))
    );
}

/// `lr-find` sweeps the rates, suggests one inside the range, draws its chart, and leaves no
/// model behind.
#[test]
fn lr_find_suggests_a_rate_and_draws_it() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 320, 16);
    let chart = scratch.path().join("lr.png");
    let output = mnist_cnn(&[
        "lr-find",
        "--data",
        data.to_str().unwrap(),
        "--steps",
        "40",
        "--batch-size",
        "16",
        "--out",
        chart.to_str().unwrap(),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--json",
    ]);
    assert_success(&output);
    let finding = stdout_json(&output);
    let suggestion = finding["suggestion"].as_f64().unwrap();
    assert!((1e-7..=10.0).contains(&suggestion), "{finding}");
    let points = finding["points"].as_array().unwrap();
    assert!(points.len() > 10 && points.len() <= 40);
    let rates: Vec<f64> = points
        .iter()
        .map(|p| p["learning_rate"].as_f64().unwrap())
        .collect();
    assert!(
        rates.windows(2).all(|w| w[1] > w[0]),
        "rates rise: {rates:?}"
    );
    let picture = image::open(&chart).unwrap();
    assert_eq!((picture.width(), picture.height()), (800, 500));
    let mut left = file_names(scratch.path());
    left.sort();
    assert_eq!(left, ["data", "lr.png"], "nothing else written");
    let refused = mnist_cnn(&[
        "lr-find",
        "--data",
        data.to_str().unwrap(),
        "--start",
        "1",
        "--end",
        "0.1",
    ]);
    assert_clean_failure(&refused, &["--start", "--end"]);
}
