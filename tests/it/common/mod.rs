//! Helpers shared by the integration tests: running the binary, small generated datasets, the
//! real MNIST folder, and the checks every failure must pass.

pub mod server;

use mnist_cnn::data::idx::build;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// How the tests start the `mnist-cnn` binary: logs reduced to warnings, no proxy in the way of
/// loopback, and OpenMP threads that sleep rather than spin while they wait. Tests run side by
/// side, so two libtorch processes often share the machine's cores, and spinning threads then
/// take each other's time (on a 2-core Zen 3 the suite took 329 s spinning, 208 s sleeping).
/// The waiting policy changes no result, only how idle threads wait.
pub fn tool() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mnist-cnn"));
    command
        .env("RUST_LOG", "warn")
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy");
    command
}

/// Runs `mnist-cnn ARGS...` (see [`tool`]) for at most `limit`; killed after that (a command
/// that should have failed would otherwise serve forever). The output, and whether it finished.
pub fn mnist_cnn_within(args: &[&str], limit: std::time::Duration) -> (Output, bool) {
    let mut child = tool()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the mnist-cnn binary runs");
    let finished = wait_within(&mut child, limit);
    if !finished {
        let _ = child.kill();
    }
    (child.wait_with_output().unwrap(), finished)
}

/// Waits for `child` to exit, for at most `limit`; whether it did (it is left running if not).
pub fn wait_within(child: &mut std::process::Child, limit: std::time::Duration) -> bool {
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Runs a script of scripts/ with the virtualenv's python3 (first on PATH under scripts/test.sh;
/// MNIST_CNN_PYTHON overrides), which must succeed.
pub fn venv_script(script: &str, args: &[&str]) -> Output {
    let python = std::env::var("MNIST_CNN_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(script);
    let output = Command::new(&python)
        .arg(&path)
        .args(args)
        .env("PYTHONWARNINGS", "ignore")
        // As for the tool's processes (see `tool`): PyTorch's OpenMP threads sleep, not spin,
        // while tests beside them run.
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python}: {e} (run the tests through scripts/test.sh)")
        });
    assert!(
        output.status.success(),
        "{python} {} failed (is the venv with torch and safetensors first on PATH?):\n{}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `mnist-cnn ARGS...` (see [`tool`]) to the end.
pub fn mnist_cnn(args: &[&str]) -> Output {
    tool()
        .args(args)
        .output()
        .expect("the mnist-cnn binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success, showing stderr otherwise.
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "failed with {:?}\nstderr:\n{}",
        output.status,
        stderr(output)
    );
}

/// Asserts the tool failed as a user should see it: exit status 1 or 2 (not a panic's 101 or
/// an abort's signal), an error that mentions every one of `names`, and no panic message.
pub fn assert_clean_failure(output: &Output, names: &[&str]) {
    let err = stderr(output);
    let code = output.status.code();
    assert!(
        matches!(code, Some(1) | Some(2)),
        "expected exit 1 or 2, got {:?}\nstderr:\n{err}",
        output.status
    );
    assert!(!err.contains("panicked"), "panic:\n{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "panic:\n{err}");
    assert!(err.contains("error"), "no error message:\n{err}");
    for name in names {
        assert!(err.contains(name), "error does not name {name:?}:\n{err}");
    }
}

/// The real MNIST folder: $MNIST_CNN_DATA (set by scripts/test.sh), else data/mnist.
pub fn real_mnist_dir() -> PathBuf {
    let dir = std::env::var_os("MNIST_CNN_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"));
    assert!(
        dir.join("train-images-idx3-ubyte").is_file(),
        "the real MNIST is not in {}: run scripts/test.sh, or `mnist-cnn data --dir {}` and set MNIST_CNN_DATA",
        dir.display(),
        dir.display()
    );
    dir
}

/// `mnist-cnn COMMAND --data DATA --out OUT EXTRA...`.
fn run_command(command: &str, data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        command,
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    mnist_cnn(&args)
}

/// Trains for one epoch on the CPU on the real MNIST into `out`, with `extra` flags (a limit, a
/// seed, a batch size); asserts success and returns the output.
pub fn train_on_real_mnist(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--epochs", "1", "--device", "cpu"];
    args.extend_from_slice(extra);
    let output = run_command("train", &real_mnist_dir(), out, &args);
    assert_success(&output);
    output
}

/// `mnist-cnn finetune --from FROM --data DATA --out OUT EXTRA...`.
pub fn finetune(from: &Path, data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--from", from.to_str().unwrap()];
    args.extend_from_slice(extra);
    run_command("finetune", data, out, &args)
}

/// `mnist-cnn eval --data DATA --json --model M...` plus `extra`, which must succeed; its JSON.
pub fn eval_json(models: &[&Path], data: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["eval", "--data", data.to_str().unwrap(), "--json"];
    for model in models {
        args.extend(["--model", model.to_str().unwrap()]);
    }
    args.extend_from_slice(extra);
    let output = mnist_cnn(&args);
    assert_success(&output);
    stdout_json(&output)
}

/// Saves a freshly initialised tutorial model (whatever libtorch's generator gives) to `path`.
pub fn save_fresh_model(path: &Path) {
    let model =
        mnist_cnn::model::Classifier::new(mnist_cnn::nn::Architecture::Tutorial, tch::Device::Cpu);
    mnist_cnn::io::checkpoint::save(&model, path).unwrap();
}

/// `mnist-cnn export --model MODEL --format FORMAT --out OUT`, whatever its outcome.
pub fn try_export(model: &Path, format: &str, out: &Path) -> Output {
    mnist_cnn(&[
        "export",
        "--model",
        model.to_str().unwrap(),
        "--format",
        format,
        "--out",
        out.to_str().unwrap(),
    ])
}

/// `mnist-cnn export --model MODEL --format FORMAT --out OUT`, which must succeed.
pub fn export(model: &Path, format: &str, out: &Path) {
    assert_success(&try_export(model, format, out));
}

/// Arguments of `train` on the data in `data` into `out`, on the CPU with one thread and no
/// report, then `extra`.
pub fn cpu_train_args(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let base = [
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-report",
    ];
    base.iter().chain(extra).map(|a| a.to_string()).collect()
}

/// `train` arguments for a run on generated data: 320 digits in batches of 16 are 20 steps an
/// epoch, 3 epochs, with clipping; then `extra`.
pub fn small_run(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let run = [
        "--limit",
        "320",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--clip-grad-norm",
        "1",
    ];
    cpu_train_args(data, out, &[&run, extra].concat())
}

/// Trains on a small generated dataset: one epoch, batch 16, CPU, one thread, unless `extra`
/// sets those flags itself.
pub fn train_small(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = Vec::new();
    for (flag, value) in [
        ("--epochs", "1"),
        ("--batch-size", "16"),
        ("--device", "cpu"),
        ("--threads", "1"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    run_command("train", data, out, &args)
}

/// A digit-like pattern for generated images: label `l` lights row band `2 + 2l`, plus a
/// little texture so images differ.
pub fn pattern_image(index: usize, label: u8, pixel: usize) -> u8 {
    let (row, col) = (pixel / 28, pixel % 28);
    if row == 2 + 2 * label as usize && (4..24).contains(&col) {
        255
    } else {
        ((index * 31 + pixel * 7) % 50) as u8
    }
}

/// Writes a small, valid dataset in MNIST format (raw idx files under the canonical names).
pub fn write_small_mnist(dir: &Path, train: usize, test: usize) {
    fs::create_dir_all(dir).unwrap();
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let images = build::images(n as u32, |i, p| pattern_image(i, labels[i], p));
        fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        fs::write(
            dir.join(format!("{prefix}-labels-idx1-ubyte")),
            build::labels(&labels),
        )
        .unwrap();
    }
}

/// Parses stdout as one JSON value.
pub fn stdout_json(output: &Output) -> serde_json::Value {
    serde_json::from_str(stdout(output).trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}):\n{}", stdout(output)))
}

/// Parses a JSON file (config.json).
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// Parses each line of a JSON-lines file (metrics.jsonl).
pub fn read_json_lines(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The rows of an eval report's confusion matrix, as numbers.
pub fn confusion_rows(report: &serde_json::Value) -> Vec<Vec<u64>> {
    report["confusion_matrix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap())
                .collect()
        })
        .collect()
}

/// Files in `dir` (names), sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The tensors of a checkpoint or resume.ot, by name (read without libtorch's loader).
pub fn tensors(path: &Path) -> std::collections::BTreeMap<String, tch::Tensor> {
    mnist_cnn::io::checkpoint::read_tensors(path).unwrap()
}

/// Two checkpoints hold the same tensors, bit for bit.
pub fn assert_same_tensors(a: &Path, b: &Path) {
    let (a, b) = (tensors(a), tensors(b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, t) in &a {
        assert!(t.equal(&b[name]), "{name} differs");
    }
}

/// [`file_names`], with each TensorBoard event file (named by time, host and process) shown as
/// `events.out.tfevents.*`, so that a run folder's listing can be compared whole.
pub fn run_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = file_names(dir)
        .into_iter()
        .map(|name| match name.starts_with("events.out.tfevents.") {
            true => "events.out.tfevents.*".to_owned(),
            false => name,
        })
        .collect();
    names.sort();
    names
}

/// A PNG whose header declares `width`×`height` 8-bit grey pixels, followed by a few bytes of
/// compressed data: enough for a decoder to believe the header.
pub fn png_with_header(width: u32, height: u32) -> Vec<u8> {
    fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        png.extend((data.len() as u32).to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        png.extend(kind);
        png.extend(data);
        png.extend(crc.finalize().to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend(width.to_be_bytes());
    header.extend(height.to_be_bytes());
    header.extend([8, 0, 0, 0, 0]); // 8-bit grey, deflate, no filter, no interlace
    chunk(&mut png, b"IHDR", &header);
    // zlib stream of a few zero bytes.
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}
