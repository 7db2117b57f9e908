//! The README's walkthrough, run as the README writes it: every ```sh and ```python block between
//! its walkthrough markers, in order, as one bash script in a fresh folder that holds `data/mnist`
//! (the real MNIST, so that `mnist-cnn data` finds it verified) and `scripts/`, with the binary
//! first on PATH as `mnist-cnn`. The commands come from the README itself, so the two cannot
//! drift apart. Only what makes the run quick and safe beside other tests is changed, line by
//! line ([`test_line`]): `train` learns from 640 images, the server takes a free port, and the
//! line that says to press Ctrl-C gets the signal at a step.

use crate::common::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const README: &str = include_str!("../../README.md");
const BEGIN: &str = "<!-- walkthrough:";
const END: &str = "<!-- end of walkthrough -->";
/// Training images for the walkthrough's `train` runs: 20 steps an epoch at batch 32.
const TRAINING_IMAGES: &str = "640";
/// The step after which the Ctrl-C line is sent its SIGINT (in its second epoch).
const CTRL_C_AT_STEP: &str = "30";

/// A fenced block of the walkthrough.
struct Block {
    language: String,
    body: String,
}

/// The fenced blocks between the walkthrough markers, in order.
fn walkthrough_blocks() -> Vec<Block> {
    let start = README.find(BEGIN).expect("the README's walkthrough marker");
    let end = start
        + README[start..]
            .find(END)
            .expect("the walkthrough's end marker");
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for line in README[start..end].lines() {
        match (line.strip_prefix("```"), open.take()) {
            (Some(language), None) => {
                open = Some(Block {
                    language: language.trim().to_owned(),
                    body: String::new(),
                })
            }
            (Some(_), Some(block)) => blocks.push(block),
            (None, Some(mut block)) => {
                block.body.push_str(line);
                block.body.push('\n');
                open = Some(block);
            }
            (None, None) => {}
        }
    }
    assert!(
        open.is_none(),
        "a fenced block of the walkthrough is not closed"
    );
    blocks
}

/// One line of a ```sh block as the test runs it (see the module's documentation).
fn test_line(line: &str, port: &str) -> String {
    let line = line.replace("8080", port);
    let is_training = line.starts_with("mnist-cnn train")
        && !line.contains("--resume")
        && !line.contains("--config");
    let line = match is_training {
        true => line.replacen(
            "mnist-cnn train",
            &format!("mnist-cnn train --limit {TRAINING_IMAGES}"),
            1,
        ),
        false => line,
    };
    if line.contains("Ctrl-C") {
        // The command must stop as Ctrl-C stops it: exit status 130.
        return format!(
            "set +e; MNIST_CNN_SIGNAL_AT_STEP={CTRL_C_AT_STEP} {line}\nstatus=$?; set -e; \
             [ \"$status\" -eq 130 ] || {{ echo \"Ctrl-C gave exit status $status\" >&2; exit 1; }}"
        );
    }
    line
}

/// The walkthrough as one bash script; background jobs (the server) end with it.
fn script(blocks: &[Block], port: &str) -> String {
    let mut script = String::from(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\nset -x\n",
    );
    for block in blocks {
        match block.language.as_str() {
            "sh" => {
                for line in block.body.lines() {
                    script.push_str(&test_line(line, port));
                    script.push('\n');
                }
            }
            "python" => {
                script.push_str("python3 - <<'PYTHON_OF_THE_README'\n");
                script.push_str(&block.body);
                script.push_str("PYTHON_OF_THE_README\n");
            }
            _ => {} // output shown, or a command the test leaves out (said in the README)
        }
    }
    script
}

/// The outcome of the walkthrough's script.
struct Run {
    succeeded: bool,
    stdout: String,
    stderr: String,
}

/// The most the walkthrough may take (it takes well under a minute alone).
const LIMIT: Duration = Duration::from_secs(900);

/// Runs `command` in a process group of its own with its output in files of `dir`, for at most
/// [`LIMIT`]; then the whole group is killed, so that a server the script left running (or a
/// command that hangs) cannot outlive the test or keep it waiting.
fn run_bounded(command: &mut Command, dir: &Path) -> Run {
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = command
        .process_group(0)
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let finished = wait_within(&mut child, LIMIT);
    // SAFETY: a plain system call on the group this test started.
    unsafe { libc::killpg(child.id() as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    let mut stderr = fs::read_to_string(&err_path).unwrap();
    if !finished {
        stderr.push_str(&format!("\n(killed after {} s)", LIMIT.as_secs()));
    }
    Run {
        succeeded: finished && status.success(),
        stdout: fs::read_to_string(&out_path).unwrap(),
        stderr,
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port().to_string()
}

/// A folder of programs: `mnist-cnn` (this build) and, when MNIST_CNN_PYTHON names one, that
/// `python3`.
fn programs(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    fs::create_dir(&bin).unwrap();
    symlink(env!("CARGO_BIN_EXE_mnist-cnn"), bin.join("mnist-cnn")).unwrap();
    if let Ok(python) = std::env::var("MNIST_CNN_PYTHON") {
        symlink(python, bin.join("python3")).unwrap();
    }
    bin
}

#[test]
fn the_readmes_walkthrough_runs_as_written() {
    let blocks = walkthrough_blocks();
    let languages: Vec<&str> = blocks.iter().map(|b| b.language.as_str()).collect();
    assert!(
        languages.contains(&"sh") && languages.contains(&"python"),
        "{languages:?}"
    );
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path().join("work");
    fs::create_dir_all(work.join("data")).unwrap();
    symlink(
        real_mnist_dir().canonicalize().unwrap(),
        work.join("data/mnist"),
    )
    .unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    symlink(repo.join("scripts"), work.join("scripts")).unwrap();
    let bin = programs(scratch.path());
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let port = free_port();
    let run = run_bounded(
        Command::new("bash")
            .arg("-c")
            .arg(script(&blocks, &port))
            .current_dir(&work)
            .env("PATH", path)
            .env("RUST_LOG", "warn")
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .env("PYTHONWARNINGS", "ignore")
            .env("NO_PROXY", "127.0.0.1")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy"),
        scratch.path(),
    );
    let (out, err) = (&run.stdout, &run.stderr);
    assert!(
        run.succeeded,
        "the walkthrough failed:\n--- stdout\n{out}\n--- stderr (the commands run, and logs)\n{err}"
    );
    // What each step should have left, beyond succeeding.
    for (step, words) in [
        ("train", "from epoch 10 of 10"),
        ("eval", "macro "),
        ("predict", "pictures/7/digit-0015.png: "),
        ("finetune", "from epoch"),
        ("serve", "\"digit\":"),
    ] {
        assert!(
            out.contains(words),
            "{step}: no {words:?} in stdout:\n{out}"
        );
    }
    for file in [
        "runs/tutorial/model.ot",
        "runs/pictures/model.ot",
        "tutorial.safetensors",
        "tutorial.onnx",
        "runs/again/model.ot",
    ] {
        assert!(work.join(file).is_file(), "{file} was not made");
    }
    assert!(
        err.contains("interrupted by SIGINT (Ctrl-C) after step"),
        "{err}"
    );
    let interrupted = read_json(&work.join("runs/interrupted/config.json"));
    assert_eq!(interrupted["status"], "completed", "{interrupted}");
    assert_eq!(
        read_json_lines(&work.join("runs/interrupted/metrics.jsonl")).len(),
        10
    );
}
