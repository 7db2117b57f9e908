//! `mnist-cnn serve`: an HTTP prediction service with a draw-a-digit page.

use super::args::DeviceArgs;
use super::values;
use crate::device::DeviceName;
use crate::io::checkpoint;
use crate::rule::Rule;
use crate::serve::state::ModelInfo;
use crate::serve::{self, ServeOptions};
use anyhow::Result;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Pictures per forward pass: the queue and the batch are allocated for this many up front.
const MAX_BATCH: Rule<usize> = Rule::new(|n| (1..=4096).contains(&n), "from 1 to 4096");
const MAX_BODY: Rule<usize> = Rule::new(|n| (1..=256 << 20).contains(&n), "from 1 to 268435456");

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The checkpoint to serve (`.ot` or `.safetensors`; the architecture comes with it).
    /// Given several times, the models answer as an ensemble.
    #[arg(long = "model", value_name = "PATH", required = true)]
    pub models: Vec<PathBuf>,

    /// Test-time augmentation (three views per picture, turned 0° and ±7°; three times the compute).
    #[arg(long)]
    pub tta: bool,

    /// Address to listen on. The default answers this machine only; 0.0.0.0:8080 opens it to
    /// the network. Port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    #[command(flatten)]
    pub compute: DeviceArgs,

    /// Most pictures per forward pass (up to 4096): concurrent requests are gathered into
    /// batches.
    #[arg(long, default_value_t = 64, value_parser = values::number(MAX_BATCH))]
    pub max_batch: usize,

    /// How long a batch that is not full may wait for more pictures, milliseconds (up to 1000).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub batch_wait_ms: u64,

    /// Largest request body, bytes (larger ones get 413), up to 256 MiB.
    #[arg(long, default_value_t = 16 << 20, value_parser = values::number(MAX_BODY))]
    pub max_body: usize,

    /// Seconds a client has to send its request headers, and again its body; slower clients
    /// are cut off (408 for a late body).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub client_timeout: u64,
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let device = args.compute.resolve()?;
    let model = checkpoint::load_ensemble(&args.models, device, args.tta)?;
    let info = ModelInfo {
        models: args.models.clone(),
        architectures: model.architectures(),
        tta: args.tta,
        device: DeviceName(device).to_string(),
        max_batch: args.max_batch,
    };
    let mut options = ServeOptions::new(
        args.addr,
        args.max_batch,
        Duration::from_millis(args.batch_wait_ms),
        args.max_body,
    );
    options.header_timeout = Duration::from_secs(args.client_timeout);
    options.limits.body_timeout = Duration::from_secs(args.client_timeout);
    serve::run(model, info, options)
}
