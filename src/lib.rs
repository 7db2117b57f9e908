//! mnist-cnn: train, evaluate, fine-tune, serve and export the Keras tutorial's convolutional
//! MNIST classifier on libtorch through tch-rs; the modules' layers and their one rule are in
//! `docs/architecture.md`.

pub mod choice;
pub mod cli;
pub mod data;
pub mod device;
pub mod eval;
pub mod fsutil;
pub mod interrupt;
pub mod io;
pub mod machine;
pub mod model;
pub mod nn;
pub mod optim;
pub mod precision;
pub mod progress;
pub mod report;
pub mod rng;
pub mod rule;
pub mod run;
pub mod runtime;
pub mod serve;
pub mod shape;
pub mod train;
