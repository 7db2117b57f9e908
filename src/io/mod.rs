//! Files: everything the tool reads from and writes to disk apart from MNIST itself, each
//! write atomic.

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
