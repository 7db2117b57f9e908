//! scripts/gpu_check.sh, the GPU acceptance run, with DEVICE=cpu and small limits: the same
//! chain (train, eval, predict, the three exports checked in PyTorch and onnxruntime,
//! fine-tune, the same seed twice, Ctrl-C and --resume, serve, models across devices, the bench
//! table), so that the script a lent GPU runs cannot rot between GPUs.

use crate::common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn the_gpu_check_passes_on_the_cpu() {
    let out = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gpu_check.sh");
    let python = std::env::var("MNIST_CNN_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = Command::new("bash")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_mnist-cnn"))
        .arg(real_mnist_dir())
        .arg(out.path())
        .env("DEVICE", "cpu")
        .env("PYTHON", python)
        .env("TRAIN_ARGS", "--limit 2000 --epochs 1 --threads 1")
        .env(
            "SHORT_ARGS",
            "--limit 640 --epochs 1 --batch-size 64 --threads 1",
        )
        .env("SIGNAL_STEP", "4")
        .env("TUNE_ARGS", "--epochs 1 --limit 500 --threads 1")
        .env("BENCH_BATCHES", "64")
        .env("BENCH_STEPS", "5")
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .unwrap();
    let text = stdout(&output);
    assert!(
        output.status.success(),
        "gpu_check.sh failed ({:?}):\n{text}\n{}",
        output.status,
        stderr(&output)
    );
    // Every item ran and passed: one PASS line each, no FAIL.
    for item in [
        "libtorch",
        "train",
        "cpu-storages",
        "eval-cpu",
        "predict",
        "export-safetensors",
        "export-torchscript",
        "export-onnx",
        "finetune",
        "same-seed",
        "ctrl-c-resume",
        "serve",
        "cpu-model-on-cpu",
        "gpu-model-on-cpu",
        "bench",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("PASS") && l.split_whitespace().nth(1) == Some(item)),
            "no PASS for {item}:\n{text}"
        );
    }
    assert!(!text.contains("FAIL"), "{text}");
    assert!(text.contains("| check"), "no summary table:\n{text}");
}
