//! The integration tests, in one binary (each test binary links libtorch, so one links once):
//! the command line end to end on small generated data and on the real MNIST, hostile and
//! damaged inputs, interop with PyTorch, the HTTP service and its page in Chromium.

mod common;

mod architectures;
mod bounds;
mod browser;
mod cli;
mod cuda_written;
mod download;
mod end_to_end;
mod faults;
mod gpu_check;
mod hostile;
mod interop;
mod onnx;
mod optimizers;
mod pictures;
mod precision;
mod report;
mod selection;
mod serve;
mod serve_hostile;
mod settings;
mod tensorboard;
mod trust;
mod walkthrough;
