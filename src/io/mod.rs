//! Files: everything the tool reads from and writes to disk apart from MNIST itself, above the
//! training and evaluation that work in memory.
//!
//! - [`checkpoint`]: `.ot` and `.safetensors` weights, and the models and ensembles loaded from
//!   them (with their declared architecture checked);
//! - [`ot`]: libtorch's `.ot` archives, read without running anything they carry;
//! - [`safetensors`]: the safetensors writer with metadata;
//! - [`export`]: safetensors, npz, TorchScript and ONNX ([`onnx`]) for use outside this tool;
//! - [`inputs`]: the files a command reads, which its outputs may not replace;
//! - [`settings_file`]: `train --config`'s TOML file or run record;
//! - [`tensorboard`]: the run's TensorBoard event files;
//! - [`run_folder`] and [`run_config`]: the run folder (`config.json`, `metrics.jsonl`,
//!   `model.ot`, `resume.ot`), its one reader and writer.
//!
//! Every write is atomic (see [`crate::fsutil`]).

pub mod checkpoint;
pub mod export;
pub mod figure;
pub mod inputs;
pub mod onnx;
pub mod ot;
pub mod run_config;
pub mod run_folder;
pub mod safetensors;
pub mod settings_file;
pub mod tensorboard;

pub use run_config::{RunCommand, RunConfig, RunStatus};
pub use run_folder::RunFolder;
