//! mnist-cnn: train, evaluate and ship the Keras tutorial's convolutional MNIST classifier on
//! libtorch through tch-rs.
//!
//! The modules form layers, and dependencies point one way, from the top of this list down
//! (see `docs/architecture.md`):
//!
//! - front ends: [`cli`] (flags → options, one module per subcommand), [`serve`] (the HTTP
//!   service), [`report`] (pictures and report.html), [`bench`] (throughput and latency);
//! - [`run`]: one training run from start to end, keeping its run folder up to date;
//! - [`io`]: files: checkpoints, exports, and the run folder's one reader and writer;
//! - [`train`] and [`eval`]: training and evaluation, in memory;
//! - core: [`nn`] (the networks), [`model`] (a network with its weights; what answers),
//!   [`optim`] (Adam, AdamW, SGD, clipping), [`schedule`], [`augment`], [`data`] (MNIST, pictures, datasets);
//! - foundations every layer may use: [`shape`] (28×28, ten classes), [`choice`] (named
//!   options), [`rule`] (accepted ranges of settings), [`rng`], [`device`], [`runtime`],
//!   [`interrupt`], [`progress`], [`fsutil`] (safe reads, atomic writes), [`machine`] (CPU
//!   extensions, CUDA compute capability), [`precision`] (fp32, bf16 and fp16 autocast).

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
