//! `mnist-cnn serve`: an HTTP prediction service with a draw-a-digit page.

use super::args::DeviceArgs;
use super::values;
use crate::device::DeviceName;
use crate::io::checkpoint;
use crate::rule::Rule;
use crate::runtime;
use crate::serve::access::{self, Access, ApiKey, HostRule, API_KEY_VARIABLE};
use crate::serve::state::{ModelInfo, ServedModel};
use crate::serve::{self, ServeOptions};
use anyhow::{ensure, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Pictures per forward pass: the queue and the batch are allocated for this many up front.
const MAX_BATCH: Rule<usize> = Rule::new(|n| (1..=4096).contains(&n), "from 1 to 4096");
const MAX_BODY: Rule<usize> = Rule::new(|n| (1..=256 << 20).contains(&n), "from 1 to 268435456");
const CONNECTIONS: Rule<usize> = Rule::new(|n| (1..=65536).contains(&n), "from 1 to 65536");

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The checkpoint to serve (a run folder, a `.ot` or a `.safetensors`; the architecture comes
    /// with it).
    /// Given several times, the models answer as an ensemble.
    #[arg(long = "model", value_name = "PATH", required = true)]
    pub models: Vec<PathBuf>,

    /// Test-time augmentation (three views per picture, turned 0° and ±7°; three times the compute).
    #[arg(long)]
    pub tta: bool,

    /// Address to listen on. The default answers this machine only; 0.0.0.0:8080 opens it to
    /// the network (with an API key, or --insecure-public). Port 0 picks a free port (printed
    /// on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    #[command(flatten)]
    pub compute: DeviceArgs,

    /// Most pictures per forward pass (up to 4096): concurrent requests are gathered into
    /// batches.
    #[arg(long, default_value_t = 64, value_parser = values::number(MAX_BATCH))]
    pub max_batch: usize,

    /// How long a batch that is not full may wait for requests already arriving (bodies
    /// received, pictures being decoded), milliseconds, up to 100. Never for a slow upload.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub batch_wait_ms: u64,

    /// Largest request body, bytes (larger ones get 413), up to 256 MiB.
    #[arg(long, default_value_t = 16 << 20, value_parser = values::number(MAX_BODY))]
    pub max_body: usize,

    /// Seconds a client has to send a request's body once its headers are in (408 after), and
    /// to take each part of an answer (the connection is closed after).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub client_timeout: u64,

    /// Seconds a connection has to send each request's headers, counted from when it starts
    /// waiting for them: also how long an idle keep-alive connection is kept (hyper times both
    /// with one timer).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,

    /// Connections open at once; more wait in the kernel's queue.
    #[arg(long, default_value_t = 1024, value_parser = values::number(CONNECTIONS))]
    pub max_connections: usize,

    /// Connections open at once from one client address; more are answered 429 and closed.
    #[arg(long, default_value_t = 256, value_parser = values::number(CONNECTIONS))]
    pub max_connections_per_client: usize,

    /// Another name this server answers for in the Host header (besides localhost and its
    /// addresses); may be repeated. Off loopback, naming any turns the Host check on.
    #[arg(long = "allow-host", value_name = "NAME", value_parser = access::check_host_name)]
    pub allow_hosts: Vec<String>,

    /// A file holding the API key (one line, at least 16 characters): every route but / and
    /// /healthz then needs `Authorization: Bearer KEY`. The key may come from the environment
    /// variable MNIST_CNN_API_KEY instead.
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,

    /// Serve a non-loopback --addr without an API key: anyone who can reach the address can
    /// use the model.
    #[arg(long)]
    pub insecure_public: bool,
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let access = access_rules(args)?;
    let device = args.compute.resolve()?;
    let precision = args.compute.precision(device)?;
    let model =
        checkpoint::load_ensemble(&args.models, device, args.tta)?.with_precision(precision);
    let info = ModelInfo {
        models: args
            .models
            .iter()
            .zip(model.architectures())
            .map(|(path, architecture)| ServedModel {
                file: file_name(path),
                architecture,
            })
            .collect(),
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
    options.header_timeout = Duration::from_secs(args.header_timeout);
    options.limits.body_timeout = Duration::from_secs(args.client_timeout);
    options.max_connections = args.max_connections;
    options.max_connections_per_client = args.max_connections_per_client;
    options.access = access;
    // Each connection holds a descriptor; the model, the log and the listener need a few more.
    let wanted = args.max_connections as u64 + 64;
    if let Some(allowed) = runtime::allow_open_files(wanted).filter(|&n| n < wanted) {
        tracing::warn!(
            "the open-file limit is {allowed} (its hard limit here), below the {wanted} that \
             --max-connections {} needs: connections past it will be refused by the system; \
             raise the hard limit (ulimit -Hn) or lower --max-connections",
            args.max_connections
        );
    }
    serve::run(model, info, options)
}

/// The Host rule and the API key; refuses a public address without a key unless told.
fn access_rules(args: &ServeArgs) -> Result<Access> {
    let from_file = args
        .api_key_file
        .as_deref()
        .map(ApiKey::from_file)
        .transpose()?;
    let from_environment = match std::env::var(API_KEY_VARIABLE) {
        Ok(text) if from_file.is_none() => Some(ApiKey::parse(&text, API_KEY_VARIABLE)?),
        _ => None,
    };
    let api_key = from_file.or(from_environment);
    ensure!(
        args.addr.ip().is_loopback() || api_key.is_some() || args.insecure_public,
        "--addr {}: a non-loopback address needs an API key (--api-key-file FILE or \
         {API_KEY_VARIABLE}), or --insecure-public to serve anyone who can reach it",
        args.addr
    );
    Ok(Access {
        hosts: HostRule::new(args.addr, &args.allow_hosts),
        api_key,
    })
}

/// A model's file name, as /healthz shows it (never the directories above it).
fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned())
}
