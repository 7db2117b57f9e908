//! `train --config`: a TOML file or a run's config.json as the settings, under the flags and
//! over the recipe; a finished run repeated from its config.json is bit-identical.

use crate::common::*;
use std::fs;

#[test]
fn a_runs_config_json_repeats_it_bit_for_bit() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 200, 40);
    let (first, again) = (scratch.path().join("first"), scratch.path().join("again"));
    let settings = [
        "--arch",
        "vgg-4",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--augment",
        "--seed",
        "5",
        "--optimizer",
        "sgd",
        "--lr",
        "0.05",
        "--momentum",
        "0.9",
        "--nesterov",
        "--schedule",
        "cosine",
        "--val-split",
        "0.2",
        "--clip-grad-norm",
        "2",
        "--no-report",
    ];
    assert_success(&train_small(&data, &first, &settings));
    let repeated = mnist_cnn(&[
        "train",
        "--config",
        first.join("config.json").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
        "--no-report",
    ]);
    assert_success(&repeated);
    let (a, b) = (
        tensors(&first.join("model.ot")),
        tensors(&again.join("model.ot")),
    );
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, tensor) in &a {
        assert!(tensor.equal(&b[name]), "{name} differs in the repeated run");
    }
    let (c1, c2) = (
        read_json(&first.join("config.json")),
        read_json(&again.join("config.json")),
    );
    assert_same_keys(
        &c1,
        &c2,
        &[
            "architecture",
            "epochs",
            "optimizer",
            "momentum",
            "nesterov",
            "seed",
            "threads",
            "data",
        ],
    );
}

#[test]
fn a_toml_file_sits_between_the_recipe_and_the_flags_and_is_checked() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 64, 16);
    let toml = scratch.path().join("run.toml");
    fs::write(
        &toml,
        "# a run\nepochs = 0.5\nbatch_size = 8\nlearning_rate = 0.01\noptimizer = \"adamw\"\n\
         [data]\nsource = \"elsewhere\"\n",
    )
    .unwrap();
    let out = scratch.path().join("run");
    let output = mnist_cnn(&[
        "train",
        "--config",
        toml.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--lr",
        "0.02",
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-report",
    ]);
    assert_success(&output);
    let config = read_json(&out.join("config.json"));
    assert_eq!(config["batch_size"], 8, "the file's");
    assert_eq!(config["learning_rate"], 0.02, "the flag's");
    assert_eq!(config["optimizer"], "adamw");
    assert_eq!(config["weight_decay"], 0.01, "adamw's default, recorded");
    assert_eq!(config["label_smoothing"], 0.0, "the recipe's");

    for (text, key) in [
        ("learning_rat = 0.01", "learning_rat"),
        ("batch_size = \"eight\"", "batch_size"),
        ("momentum = 1.5\noptimizer = \"sgd\"", "momentum"),
        ("[data]\nlimit = 0", "data.limit"),
    ] {
        fs::write(&toml, text).unwrap();
        let output = mnist_cnn(&[
            "train",
            "--config",
            toml.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_clean_failure(&output, &["run.toml", key]);
        assert_eq!(output.status.code(), Some(1));
    }
}

/// `train --config` given a fine-tune's config.json never trains from scratch: it refuses,
/// naming the file, the fine-tune's parent and the command that fine-tunes it, and writes no run.
#[test]
fn train_config_refuses_a_finetunes_record() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 64, 16);
    let parent = scratch.path().join("parent");
    assert_success(&train_small(&data, &parent, &["--no-report"]));
    let tuned = scratch.path().join("tuned");
    let from = parent.join("model.ot");
    assert_success(&finetune(
        &from,
        &data,
        &tuned,
        &[
            "--device",
            "cpu",
            "--threads",
            "1",
            "--epochs",
            "1",
            "--no-report",
        ],
    ));
    let replay = scratch.path().join("replay");
    let config = tuned.join("config.json");
    let output = mnist_cnn(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        replay.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert_clean_failure(
        &output,
        &[
            "--config",
            "record of a fine-tune",
            &format!("parent {}", from.display()),
            "mnist-cnn finetune --config",
        ],
    );
    assert!(!replay.exists());

    // The command it names replays it, bit for bit on the CPU.
    assert_success(&mnist_cnn(&[
        "finetune",
        "--config",
        config.to_str().unwrap(),
        "--out",
        replay.to_str().unwrap(),
        "--no-report",
    ]));
    assert_same_tensors(&tuned.join("model.ot"), &replay.join("model.ot"));
    assert_same_tensors(&tuned.join("resume.ot"), &replay.join("resume.ot"));
    let (a, b) = (read_json(&config), read_json(&replay.join("config.json")));
    assert_same_keys(
        &a,
        &b,
        &[
            "parent",
            "data",
            "learning_rate",
            "epochs",
            "seed",
            "threads",
        ],
    );
}

/// Two runs' records agree on `keys`.
fn assert_same_keys(a: &serde_json::Value, b: &serde_json::Value, keys: &[&str]) {
    for key in keys {
        assert_eq!(a[key], b[key], "{key}");
    }
}

/// `finetune --config` replays a fine-tune on a picture folder bit for bit too (its exact
/// validation split, drawn from the record); it refuses a training run's record (naming `train
/// --config`) and flags that would change the replay; and a TOML file sits between a
/// fine-tune's defaults and the flags.
#[test]
fn finetune_config_replays_picture_folder_runs_and_takes_toml_settings() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 64, 16);
    let parent = scratch.path().join("parent");
    assert_success(&train_small(&data, &parent, &["--no-report"]));
    let pictures = scratch.path().join("pictures");
    for label in 0..10u8 {
        let class = pictures.join(label.to_string());
        fs::create_dir_all(&class).unwrap();
        for i in 0..6usize {
            let pixels: Vec<u8> = (0..784)
                .map(|p| 255 - pattern_image(i * 10 + label as usize, label, p))
                .collect();
            image::GrayImage::from_raw(28, 28, pixels)
                .unwrap()
                .save(class.join(format!("{i}.png")))
                .unwrap();
        }
    }
    let from = parent.join("model.ot");
    let tuned = scratch.path().join("tuned");
    let cpu = ["--device", "cpu", "--threads", "1", "--no-report"];
    assert_success(&finetune(
        &from,
        &data,
        &tuned,
        &[
            &cpu[..],
            &[
                "--images",
                pictures.to_str().unwrap(),
                "--val-split",
                "0.25",
            ],
            &["--epochs", "2", "--batch-size", "8", "--seed", "7"],
        ]
        .concat(),
    ));
    let config = tuned.join("config.json");
    let replay = scratch.path().join("replay");
    let replayed = mnist_cnn(&[
        "finetune",
        "--config",
        config.to_str().unwrap(),
        "--out",
        replay.to_str().unwrap(),
        "--no-report",
    ]);
    assert_success(&replayed);
    assert_same_tensors(&tuned.join("model.ot"), &replay.join("model.ot"));
    assert_eq!(
        read_json(&config)["data"],
        read_json(&replay.join("config.json"))["data"]
    );

    let changed = mnist_cnn(&[
        "finetune",
        "--config",
        config.to_str().unwrap(),
        "--lr",
        "0.1",
        "--out",
        scratch.path().join("changed").to_str().unwrap(),
    ]);
    assert_clean_failure(&changed, &["--config", "replayed with its own settings"]);
    let training = parent.join("config.json");
    let wrong = mnist_cnn(&[
        "finetune",
        "--config",
        training.to_str().unwrap(),
        "--out",
        scratch.path().join("wrong").to_str().unwrap(),
    ]);
    assert_clean_failure(
        &wrong,
        &["record of a training run", "mnist-cnn train --config"],
    );

    let toml = scratch.path().join("tune.toml");
    fs::write(
        &toml,
        "epochs = 1\nlearning_rate = 0.0005\nfreeze = \"conv1\"\n",
    )
    .unwrap();
    let tomled = scratch.path().join("tomled");
    let output = mnist_cnn(
        &[
            &["finetune", "--config", toml.to_str().unwrap()][..],
            &[
                "--from",
                from.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
            ],
            &["--out", tomled.to_str().unwrap(), "--lr", "0.0002"],
            &cpu[..],
        ]
        .concat(),
    );
    assert_success(&output);
    let recorded = read_json(&tomled.join("config.json"));
    assert_eq!(recorded["epochs"], 1.0);
    assert_eq!(recorded["learning_rate"], 0.0002, "the flag over the file");
    assert_eq!(recorded["freeze"], "conv1");
}

/// An interrupted fine-tune goes on with `train --resume`, as every run does (its stop message
/// says so), and `finetune --resume` points there instead of failing on an unknown flag.
#[test]
fn a_finetune_resumes_with_train_resume_and_finetune_resume_says_so() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 320, 16);
    let parent = scratch.path().join("parent");
    assert_success(&train_small(&data, &parent, &["--no-report"]));
    let tuned = scratch.path().join("tuned");
    let args = [
        "--device",
        "cpu",
        "--threads",
        "1",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--no-report",
    ];
    let stopped = tool()
        .env(mnist_cnn::interrupt::SIGNAL_AT_STEP_VARIABLE, "5")
        .args([
            "finetune",
            "--from",
            parent.join("model.ot").to_str().unwrap(),
        ])
        .args([
            "--data",
            data.to_str().unwrap(),
            "--out",
            tuned.to_str().unwrap(),
        ])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(stopped.status.code(), Some(130), "{}", stderr(&stopped));
    let hint = format!("mnist-cnn train --resume {}", tuned.display());
    assert!(stderr(&stopped).contains(&hint), "{}", stderr(&stopped));

    let misdirected = mnist_cnn(&["finetune", "--resume", tuned.to_str().unwrap()]);
    assert_clean_failure(&misdirected, &["--resume", &hint]);
    assert_eq!(
        read_json(&tuned.join("config.json"))["status"],
        "interrupted"
    );

    let resumed = mnist_cnn(&["train", "--resume", tuned.to_str().unwrap(), "--no-report"]);
    assert_success(&resumed);
    let config = read_json(&tuned.join("config.json"));
    assert_eq!(config["status"], "completed");
    assert_eq!(config["command"], "finetune");
}
