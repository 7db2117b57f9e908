//! `--precision`: bf16 mixed precision trains, resumes bit-identical and saves fp32 weights;
//! evaluation in bf16 agrees with fp32; fp16 is refused without CUDA; `info` and `bench` report
//! the CPU's extensions, `auto`'s choice and the machine's ceiling.

use crate::common::*;
use std::path::Path;

/// A run in `precision` on generated data: 3 epochs of 20 steps, with augmentation and clipping.
fn small_run_args(data: &Path, out: &Path, precision: &str) -> Vec<String> {
    small_run(data, out, &["--precision", precision, "--augment"])
}

#[test]
fn bf16_training_resumes_bit_identical_and_saves_fp32_weights() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 320, 40);
    let runs = tempfile::tempdir().unwrap();
    let whole = runs.path().join("whole");
    assert_success(
        &tool()
            .args(small_run_args(data.path(), &whole, "bf16"))
            .output()
            .unwrap(),
    );
    assert_eq!(read_json(&whole.join("config.json"))["precision"], "bf16");
    for (name, tensor) in tensors(&whole.join("model.ot")) {
        assert_eq!(tensor.kind(), tch::Kind::Float, "{name}");
    }

    // Ctrl-C after step 27 (epoch 2), then --resume: the same weights and state, bit for bit.
    let cut = runs.path().join("cut");
    let stopped = tool()
        .env(mnist_cnn::interrupt::SIGNAL_AT_STEP_VARIABLE, "27")
        .args(small_run_args(data.path(), &cut, "bf16"))
        .output()
        .unwrap();
    assert!(!stopped.status.success());
    assert_success(&mnist_cnn(&[
        "train",
        "--resume",
        cut.to_str().unwrap(),
        "--no-report",
    ]));
    assert_same_tensors(&whole.join("model.ot"), &cut.join("model.ot"));
    assert_same_tensors(&whole.join("resume.ot"), &cut.join("resume.ot"));

    // The same run in fp32 differs: bf16 did compute in bf16.
    let fp32 = runs.path().join("fp32");
    assert_success(
        &tool()
            .args(small_run_args(data.path(), &fp32, "fp32"))
            .output()
            .unwrap(),
    );
    assert!(read_json(&fp32.join("config.json"))
        .get("precision")
        .is_none());
    let (a, b) = (
        tensors(&whole.join("model.ot")),
        tensors(&fp32.join("model.ot")),
    );
    assert!(a.iter().any(|(name, t)| !t.equal(&b[name])));
}

#[test]
fn fp16_without_cuda_and_a_new_precision_on_resume_are_refused() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 64, 16);
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    let refused = train_small(data.path(), &run, &["--precision", "fp16"]);
    assert_clean_failure(&refused, &["--precision fp16", "CUDA"]);
    assert!(!run.join("config.json").exists());
    let eval = mnist_cnn(&[
        "eval",
        "--model",
        "nothing.ot",
        "--precision",
        "fp16",
        "--device",
        "cpu",
    ]);
    assert_clean_failure(&eval, &["--precision fp16"]);

    assert_success(&train_small(data.path(), &run, &["--no-report"]));
    let resumed = mnist_cnn(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--epochs",
        "2",
        "--precision",
        "bf16",
    ]);
    assert_clean_failure(&resumed, &["--precision bf16", "its own precision"]);
}

#[test]
fn evaluation_in_bf16_agrees_with_fp32() {
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    train_on_real_mnist(&run, &["--limit", "4000", "--no-report"]);
    let model = run.join("model.ot");
    let data = real_mnist_dir();
    let fp32 = eval_json(&[&model], &data, &["--device", "cpu"]);
    let bf16 = eval_json(
        &[&model],
        &data,
        &["--device", "cpu", "--precision", "bf16"],
    );
    let (a, b) = (
        fp32["accuracy"].as_f64().unwrap(),
        bf16["accuracy"].as_f64().unwrap(),
    );
    assert!(a > 0.9, "{a}");
    // bf16 rounds the activations to 3 significant digits: a few of 10,000 borderline digits
    // may change class, no more.
    assert!((a - b).abs() <= 0.002, "fp32 {a}, bf16 {b}");
}

#[test]
fn info_and_bench_report_the_cpu_auto_and_the_ceiling() {
    let info = stdout_json(&mnist_cnn(&["info", "--json"]));
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let has = |flag: &str| cpuinfo.split_whitespace().any(|f| f == flag);
    assert_eq!(info["cpu"]["avx2"], has("avx2"));
    assert_eq!(info["cpu"]["amx_bf16"], has("amx_bf16"));
    let auto = &info["precision_auto_cpu"];
    let expected = if has("amx_bf16") { "bf16" } else { "fp32" };
    assert_eq!(auto["precision"], expected, "{auto}");
    assert!(!auto["reason"].as_str().unwrap().is_empty());

    let bench = mnist_cnn(&[
        "bench",
        "--data",
        real_mnist_dir().to_str().unwrap(),
        "--device",
        "cpu",
        "--precision",
        "bf16",
        "--steps",
        "5",
        "--warmup",
        "2",
        "--no-latency",
        "--json",
    ]);
    assert_success(&bench);
    let bench = stdout_json(&bench);
    assert_eq!(bench["precision"], "bf16");
    assert!(bench["matmul_gflops_fp32"].as_f64().unwrap() > 0.0);
    assert_eq!(bench["training_flops_per_image"], 14_256_384);
    let fraction = bench["fraction_of_ceiling"].as_f64().unwrap();
    assert!(fraction > 0.0 && fraction < 2.0, "{fraction}");
}
