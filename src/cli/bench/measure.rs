//! Throughput measurements: training steps per second on the real data path, inference in
//! large batches, and the latency of `predict` on one picture from process start.
//!
//! The training loop here is the one `train` runs ([`crate::train::train_step`] on batches taken
//! by index from a per-epoch permutation of the data held on the device); only the bookkeeping
//! around it (progress, evaluation) is left out.

use crate::data::images::save_field_png;
use crate::data::Split;
use crate::io::checkpoint;
use crate::model::Classifier;
use crate::nn::Architecture;
use crate::optim::{self, LossScale, Optimizer};
use crate::precision::Precision;
use crate::train::{train_step, Batch};
use anyhow::{ensure, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The same fields as `scripts/bench_pytorch.py` prints, and this machine's ceiling.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub implementation: String,
    pub device: String,
    pub precision: Precision,
    pub threads: i32,
    pub batch_size: usize,
    pub train_steps: usize,
    pub train_seconds: f64,
    pub train_images_per_second: f64,
    pub inference_images_per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predict_latency_ms: Option<f64>,
    #[serde(flatten)]
    pub ceiling: Ceiling,
}

/// What the machine could do at best: its matrix-product throughput with the same threads,
/// and the training throughput as a fraction of what that allows.
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    /// n×n fp32 matrix products, the best of several, in GFLOP/s.
    pub matmul_gflops_fp32: f64,
    /// The same in bf16, where the device computes it natively (AVX512-BF16, AMX, CUDA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matmul_gflops_bf16: Option<f64>,
    pub training_flops_per_image: i64,
    /// Training images per second × FLOPs per image ÷ the matmul peak of the precision used.
    pub fraction_of_ceiling: f64,
}

/// The side of the square matrices [`matmul_gflops`] multiplies: large enough for the best
/// kernels, small enough to take a fraction of a second.
const MATMUL_SIDE: i64 = 1024;

/// This device's matrix-product throughput in `kind`, in GFLOP/s with the current threads: the
/// best of five timings of four n×n products, after a warm-up.
pub fn matmul_gflops(device: Device, kind: Kind) -> f64 {
    let a = Tensor::randn([MATMUL_SIDE, MATMUL_SIDE], (kind, device));
    let b = Tensor::randn([MATMUL_SIDE, MATMUL_SIDE], (kind, device));
    for _ in 0..3 {
        let _ = a.mm(&b);
    }
    sync(device);
    let flops = 2.0 * (MATMUL_SIDE as f64).powi(3);
    let mut best: f64 = 0.0;
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..4 {
            let _ = a.mm(&b);
        }
        sync(device);
        best = best.max(4.0 * flops / started.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// Whether `device` computes bf16 natively: CUDA, or a CPU with AVX512-BF16 or AMX (elsewhere
/// libtorch converts, and a bf16 figure would measure the conversion).
pub fn has_native_bf16(device: Device) -> bool {
    device.is_cuda() || crate::machine::CpuFeatures::detect().has_native_bf16()
}

/// The ceiling of training at `images_per_second` in `precision` with the tutorial network.
pub fn ceiling(device: Device, precision: Precision, images_per_second: f64) -> Ceiling {
    let fp32 = matmul_gflops(device, Kind::Float);
    let bf16 = has_native_bf16(device).then(|| matmul_gflops(device, Kind::BFloat16));
    let peak = match precision {
        Precision::Fp32 => fp32,
        Precision::Bf16 => bf16.unwrap_or(fp32),
        // fp16 runs on CUDA only, where the bf16 and fp16 tensor-core peaks are the same.
        Precision::Fp16 => bf16.unwrap_or(fp32),
    };
    let flops = crate::nn::summary::Summary::of(Architecture::Tutorial).training_flops_per_image;
    Ceiling {
        matmul_gflops_fp32: fp32,
        matmul_gflops_bf16: bf16,
        training_flops_per_image: flops,
        fraction_of_ceiling: images_per_second * flops as f64 / (peak * 1e9),
    }
}

/// What [`time_training`] measured.
pub struct TrainingTiming {
    pub seconds: f64,
    /// The mean loss of the timed steps (read back once, at the end).
    pub mean_loss: f64,
}

/// Times `steps` training steps at `batch_size` after `warmup` untimed ones.
pub fn time_training(
    model: &Classifier,
    train: &Split,
    batch_size: usize,
    warmup: usize,
    steps: usize,
) -> Result<TrainingTiming> {
    ensure!(
        train.len() >= batch_size,
        "the training set is smaller than a batch"
    );
    let device = model.device();
    let mut optimizer = Optimizer::for_model(model, optim::Settings::default(), 1e-3);
    // fp16 needs a loss scale, as in training.
    let mut loss_scale = (model.precision() == Precision::Fp16).then(LossScale::default);
    let n = train.len();
    let per_epoch = n / batch_size;
    let mut order = train.epoch_order(0, 1);
    let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
    let mut started = Instant::now();
    for step in 0..warmup + steps {
        if step == warmup {
            sync(device);
            loss_sum = Tensor::zeros([], (Kind::Float, device));
            started = Instant::now();
        }
        let within = step % per_epoch;
        if within == 0 && step > 0 {
            let epoch = 1 + step / per_epoch;
            order = train.epoch_order(0, epoch);
        }
        let indices = order.narrow(0, (within * batch_size) as i64, batch_size as i64);
        let batch = train.gather(&indices);
        let batch = Batch {
            images: &batch.images,
            labels: &batch.labels,
        };
        loss_sum += train_step(model, &mut optimizer, batch, 0.0, None, loss_scale.as_mut())
            .loss
            .detach();
    }
    let mean_loss = loss_sum.double_value(&[]) / steps.max(1) as f64;
    sync(device);
    Ok(TrainingTiming {
        seconds: started.elapsed().as_secs_f64(),
        mean_loss,
    })
}

/// Images per second classified in batches of 1000 without gradients (best of three passes).
pub fn time_inference(model: &Classifier, images: &Tensor) -> f64 {
    let device = model.device();
    let n = images.size()[0];
    let pass = || {
        tch::no_grad(|| {
            let mut start = 0;
            while start < n {
                let len = 1000.min(n - start);
                let _ = model
                    .forward(&images.narrow(0, start, len), false)
                    .argmax(-1, false);
                start += len;
            }
        });
        sync(device);
    };
    pass();
    (0..3)
        .map(|_| {
            let started = Instant::now();
            pass();
            n as f64 / started.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

/// Median wall time of `mnist-cnn predict --model MODEL PICTURE` (three runs, CPU), from
/// process start to exit.
pub fn time_predict(binary: &Path, model: &Path, picture: &Path, threads: i32) -> Result<f64> {
    let mut times: Vec<f64> = (0..3)
        .map(|_| {
            let started = Instant::now();
            let output = Command::new(binary)
                .args(["predict", "--device", "cpu", "--threads"])
                .arg(threads.to_string())
                .arg("--model")
                .arg(model)
                .arg(picture)
                .env("RUST_LOG", "warn")
                .output()
                .with_context(|| format!("cannot run {}", binary.display()))?;
            ensure!(
                output.status.success(),
                "predict failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            Ok(started.elapsed().as_secs_f64() * 1000.0)
        })
        .collect::<Result<_>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

/// The files [`time_predict`] runs `predict` on.
pub struct PredictInputs {
    pub model: PathBuf,
    pub picture: PathBuf,
}

/// Saves `model` and one digit as a PNG in `dir`, for [`time_predict`].
pub fn predict_inputs(model: &Classifier, digit: &Tensor, dir: &Path) -> Result<PredictInputs> {
    let model_path = dir.join("bench-model.ot");
    checkpoint::save(model, &model_path)?;
    let pixels = Vec::<f32>::try_from(
        digit
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .flatten(0, -1),
    )?;
    let picture_path = dir.join("bench-digit.png");
    save_field_png(&pixels, &picture_path, 1)?;
    Ok(PredictInputs {
        model: model_path,
        picture: picture_path,
    })
}

/// A fresh tutorial model for benchmarking (fixed seed).
pub fn fresh_model(device: Device) -> Classifier {
    tch::manual_seed(0);
    Classifier::new(Architecture::Tutorial, device)
}

fn sync(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}
