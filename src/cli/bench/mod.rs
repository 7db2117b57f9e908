//! `mnist-cnn bench`: training and inference throughput, and predict's latency, measured by
//! [`measure`].

pub mod measure;

use super::args::DeviceArgs;
use super::output::print_json;
use super::values;
use crate::data::{self, Mnist};
use crate::device::DeviceName;
use crate::model::Classifier;
use crate::rule::Rule;
use crate::train::rules;
use anyhow::{Context, Result};
use measure::BenchResult;
use std::path::PathBuf;
use tch::Tensor;

const STEPS: Rule<usize> = Rule::new(|n| (1..=1_000_000).contains(&n), "from 1 to 1000000");
const WARMUP: Rule<usize> = Rule::new(|n| n <= 100_000, "from 0 to 100000");

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Folder holding the MNIST idx files (the benchmark trains on the real data path).
    #[arg(long, default_value = data::DEFAULT_DIR)]
    pub data: PathBuf,

    /// Images per training step (up to 65536).
    #[arg(long, default_value_t = 32, value_parser = values::number(rules::BATCH_SIZE))]
    pub batch_size: usize,

    /// Timed training steps (after the warm-up), up to 1000000.
    #[arg(long, default_value_t = 300, value_parser = values::number(STEPS))]
    pub steps: usize,

    /// Untimed training steps first (allocator, kernel choice, caches), up to 100000.
    #[arg(long, default_value_t = 30, value_parser = values::number(WARMUP))]
    pub warmup: usize,

    /// Skip the predict latency measurement (which starts the binary three times).
    #[arg(long)]
    pub no_latency: bool,

    #[command(flatten)]
    pub compute: DeviceArgs,

    /// Print one JSON object on stdout (the fields scripts/bench_pytorch.py prints).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let device = args.compute.resolve()?;
    let mnist = Mnist::load(&args.data)?;
    let train = mnist.train.to_device(device);
    let test_images = mnist.test.images.to_device(device);
    let mut model = measure::fresh_model(device);
    let precision = args.compute.precision(device)?;
    model.set_precision(precision);
    let training =
        measure::time_training(&model, &train, args.batch_size, args.warmup, args.steps)?;
    let inference = measure::time_inference(&model, &test_images);
    let latency = match args.no_latency {
        true => None,
        false => Some(predict_latency(&model, &mnist.test.images.get(0))?),
    };
    let train_images_per_second = (args.steps * args.batch_size) as f64 / training.seconds;
    let result = BenchResult {
        implementation: format!(
            "mnist-cnn {} (tch {})",
            env!("CARGO_PKG_VERSION"),
            crate::runtime::TCH_VERSION
        ),
        device: DeviceName(device).to_string(),
        precision,
        threads: tch::get_num_threads(),
        batch_size: args.batch_size,
        train_steps: args.steps,
        train_seconds: training.seconds,
        train_images_per_second,
        inference_images_per_second: inference,
        predict_latency_ms: latency,
        ceiling: measure::ceiling(device, precision, train_images_per_second),
    };
    if args.json {
        return print_json(&result);
    }
    print_result(&result);
    Ok(())
}

/// predict's latency on one picture, from process start: a model and a picture written to a
/// scratch folder, predicted by this binary.
fn predict_latency(model: &Classifier, image: &Tensor) -> Result<f64> {
    let scratch = tempfile::tempdir().context("cannot create a scratch folder")?;
    let inputs = measure::predict_inputs(model, image, scratch.path())?;
    let binary = std::env::current_exe().context("cannot find the mnist-cnn binary")?;
    measure::time_predict(
        &binary,
        &inputs.model,
        &inputs.picture,
        tch::get_num_threads(),
    )
}

/// The result as two lines of text.
fn print_result(result: &BenchResult) {
    let ceiling = &result.ceiling;
    println!(
        "{} on {}, {}, {} thread(s), batch {}: training {:.0} images/s ({} steps in {:.2} s); inference {:.0} images/s{}",
        result.implementation,
        result.device,
        result.precision,
        result.threads,
        result.batch_size,
        result.train_images_per_second,
        result.train_steps,
        result.train_seconds,
        result.inference_images_per_second,
        result
            .predict_latency_ms
            .map_or(String::new(), |ms| format!("; predict on one picture {ms:.0} ms from process start"))
    );
    println!(
        "ceiling: matmul {:.0} GFLOP/s fp32{}; training uses {:.0}% of it ({:.2} MFLOP per image)",
        ceiling.matmul_gflops_fp32,
        ceiling
            .matmul_gflops_bf16
            .map_or(", bf16 not native here".to_owned(), |g| format!(
                ", {g:.0} GFLOP/s bf16"
            )),
        100.0 * ceiling.fraction_of_ceiling,
        ceiling.training_flops_per_image as f64 / 1e6
    );
}
