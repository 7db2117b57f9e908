//! The networks: the tutorial CNN and the `vgg-N` family on `nn::seq()`, the [`Architecture`]
//! that names them, and the parameter names they share with PyTorch.
//!
//! - [`architecture`]: the families by name, and how a checkpoint's tensors tell them apart;
//! - [`tutorial`]: the Keras tutorial's two-convolution CNN, initialised as Keras does;
//! - [`vgg`]: batch-normalised 3×3 convolutions in three stages;
//! - [`names`]: `conv1.weight`, `bn1.running_mean`, `fc.bias`: which layer a tensor belongs to;
//! - [`layout`]: channels-last kernels, for speed;
//! - [`summary`]: layers, output shapes, parameters and multiply-adds, as Keras's
//!   `model.summary()`.

pub mod architecture;
pub mod layout;
pub mod names;
pub mod summary;
pub mod tutorial;
pub mod vgg;

pub use architecture::Architecture;
