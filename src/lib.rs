//! mnist-cnn: train, evaluate and ship the Keras tutorial's convolutional MNIST classifier on
//! libtorch through tch-rs.
//!
//! The modules follow the pipeline, in the order data flows through it:
//!
//! - [`data`]: fetch, verify and validate the MNIST idx files, and load them as tensors;
//! - [`architecture`]: the model families (`tutorial`, `vgg-N`) and how checkpoints tell them;
//! - [`model`]: the tutorial CNN on `nn::seq()`, the classifier, checkpoints with PyTorch names;
//! - [`ensemble`]: several checkpoints (and test-time augmentation) answering as one;
//! - [`train`]: the training loop (Adam, per-epoch reshuffle from the seed, evaluation each epoch);
//! - [`metrics`]: loss, accuracy, confusion matrix, per-class precision/recall/F1;
//! - [`predict`]: pictures in, digits out;
//! - [`export`]: safetensors, TorchScript and npz for use outside this tool;
//! - [`bench`]: training and inference throughput, predict latency;
//! - [`report`]: curves, confusion matrix, mistakes and filters as PNG, and report.html;
//! - [`serve`]: the HTTP prediction service (batching, metrics, the draw-a-digit page);
//! - [`run`]: the run folder (`config.json`, `metrics.jsonl`, `model.ot`);
//! - [`commands`]: one function per subcommand, called by the thin `main.rs`.
//!
//! Supporting modules: [`device`] (choosing CPU/CUDA), [`runtime`] (libtorch build and thread
//! facts), [`fsutil`] (atomic file writes), [`progress`] (progress bars on stderr).

pub mod architecture;
pub mod augment;
pub mod bench;
pub mod commands;
pub mod data;
pub mod device;
pub mod ensemble;
pub mod export;
pub mod fsutil;
pub mod interrupt;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod predict;
pub mod progress;
pub mod report;
pub mod rng;
pub mod run;
pub mod runtime;
pub mod schedule;
pub mod serve;
pub mod train;
