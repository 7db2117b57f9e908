//! The command line: one module per subcommand turns its flags into the library's options in
//! one step, calls the library and prints the outcome; nothing below this module knows about
//! flags.

pub mod args;
pub mod bench;
pub mod data;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod info;
pub mod lr_find;
pub mod output;
pub mod predict;
pub mod report;
pub mod serve;
pub mod settings_flags;
pub mod summary;
pub mod train;
pub mod values;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// Train, evaluate and ship a convolutional MNIST digit classifier on libtorch.
///
/// Typical use: `mnist-cnn data` (fetch and verify MNIST), `mnist-cnn train` (the Keras
/// tutorial's recipe: 10 epochs, batch 32, Adam 1e-3), `mnist-cnn eval --model runs/…/model.ot`.
/// Logs go to stderr (set RUST_LOG=debug for more); results go to stdout, as JSON with --json.
#[derive(Debug, Parser)]
#[command(name = "mnist-cnn", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the tch and libtorch versions, CUDA and cuDNN availability, devices and threads.
    Info(info::InfoArgs),
    /// Download (or import with --from) the MNIST files, verify them, and write them to --dir.
    Data(data::DataArgs),
    /// Train a CNN (the tutorial's, or a larger vgg-N); writes model.ot, metrics.jsonl and config.json to a run folder.
    Train(train::TrainArgs),
    /// Reload a checkpoint and retrain it (lower learning rate, frozen layers, augmentation),
    /// on MNIST or on a folder of your own pictures; the best epoch on a validation split wins.
    Finetune(finetune::FinetuneArgs),
    /// Evaluate a checkpoint on the MNIST test set (or a picture folder): accuracy, loss, per-class
    /// precision/recall/F1, confusion matrix.
    Eval(eval::EvalArgs),
    /// Predict the digit in each picture (PNG, JPEG, GIF, BMP or WebP), with its probability and
    /// the runners-up.
    Predict(predict::PredictArgs),
    /// Export a checkpoint as safetensors or npz (PyTorch state-dict names), TorchScript, or
    /// ONNX (one model, or several averaged in one graph).
    Export(export::ExportArgs),
    /// Draw a run's training curves, confusion matrix, most confident mistakes and first-layer
    /// filters as PNG, and write them with the tables into one self-contained report.html.
    Report(report::ReportArgs),
    /// Measure training throughput, inference throughput and predict's latency (compare with
    /// scripts/bench_pytorch.py, or run both with scripts/bench.sh).
    Bench(bench::BenchArgs),
    /// Serve the model over HTTP: POST /v1/predict (pictures or pixels, batched), a
    /// draw-a-digit page on /, /healthz and Prometheus /metrics.
    Serve(serve::ServeArgs),
    /// A network's layers with their output shapes, parameters and multiply-adds, and the
    /// training FLOPs per image (as Keras's model.summary()).
    Summary(summary::SummaryArgs),
    /// The learning-rate range test: train a few batches at exponentially rising rates, suggest
    /// the rate where the loss fell fastest, and draw lr_find.png. Saves no model.
    LrFind(lr_find::LrFindArgs),
}

/// Parses the command line, runs the command, and turns its outcome into the exit status.
pub fn main() -> ExitCode {
    let cli = parse();
    // Training and evaluation reuse the same large blocks every step; a server's memory comes
    // in bursts and should go back to the system after one (measured in docs/results.md's serving
    // section), so `serve` keeps glibc's default.
    if !matches!(cli.command, Command::Serve(_)) {
        crate::runtime::keep_freed_memory();
    }
    init_logging();
    let result = match &cli.command {
        Command::Info(args) => info::run(args),
        Command::Data(args) => data::run(args),
        Command::Train(args) => train::run(args),
        Command::Finetune(args) => finetune::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Export(args) => export::run(args),
        Command::Report(args) => report::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Summary(args) => summary::run(args),
        Command::LrFind(args) => lr_find::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            // Ctrl-C / SIGTERM during training: 130 / 143, as a shell expects.
            match err.downcast_ref::<crate::interrupt::Interrupted>() {
                Some(interrupted) => ExitCode::from(interrupted.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// The command line, parsed (clap's own errors and help end the process here).
fn parse() -> Cli {
    let command = Cli::command().mut_subcommand("train", args::resuming);
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|err| err.exit())
}

/// Logs on stderr, filtered by RUST_LOG (default: info); colours only on a terminal.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .compact()
        .init();
}
