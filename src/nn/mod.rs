//! The networks (the tutorial CNN and the `vgg-N` family, built on `nn::seq()`), the
//! [`Architecture`] that names them, and the parameter names they share with PyTorch.

pub mod architecture;
pub mod layout;
pub mod names;
pub mod summary;
pub mod tutorial;
pub mod vgg;

pub use architecture::Architecture;
