//! `mnist-cnn serve`: the model behind HTTP. axum routes on hyper's HTTP/1 server (driven here
//! rather than through `axum::serve`, which cannot bound how long a client may take to send
//! its headers); a batching thread owns the model (see [`batcher`]).
//!
//! Safe by default: loopback address, bounded bodies, body and header timeouts, a bounded
//! queue (503 when full), a bounded number of connections and of pictures decoded at once;
//! Ctrl-C or SIGTERM stops accepting, lets in-flight requests finish, then exits.

pub mod api;
pub mod batcher;
pub mod error;
pub mod metrics;
pub mod request;
pub mod state;

use crate::data::images::DecodeLimits;
use crate::eval::Ensemble;
use anyhow::{Context, Result};
use axum::routing::{get, post};
use axum::Router;
use batcher::BatchPolicy;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use metrics::Metrics;
use state::{AppState, ModelInfo, RequestLimits};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

/// Everything `serve` is told.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    pub batch: BatchPolicy,
    pub limits: RequestLimits,
    /// Time a client has to send its request headers.
    pub header_timeout: Duration,
    /// Open connections at once; more wait to be accepted.
    pub max_connections: usize,
    /// After Ctrl-C, how long in-flight requests may take to finish.
    pub drain_timeout: Duration,
}

impl ServeOptions {
    /// The defaults, apart from what the command line sets.
    pub fn new(addr: SocketAddr, max_batch: usize, max_wait: Duration, max_body: usize) -> Self {
        Self {
            addr,
            batch: BatchPolicy {
                max_batch,
                max_wait,
                queue_capacity: (max_batch * 16).max(1024),
            },
            limits: RequestLimits {
                max_body,
                body_timeout: Duration::from_secs(10),
                max_items: 1024,
                // Tighter than `predict`'s: many pictures may be decoded at once.
                decode: DecodeLimits {
                    max_side: 8192,
                    max_bytes: 128 << 20,
                },
            },
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// The routes, for the server and for tests.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(api::page))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route(
            "/v1/predict",
            post(api::predict).fallback(api::method_not_allowed),
        )
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::record,
        ))
        .with_state(state)
}

/// Serves until Ctrl-C or SIGTERM; prints the address (`http://…`) on stdout once listening.
pub fn run(model: Ensemble, info: ModelInfo, options: ServeOptions) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .build()
        .context("cannot start the async runtime")?;
    let metrics = Arc::new(Metrics::new());
    let in_flight = Arc::new(AtomicUsize::new(0));
    let model_thread = batcher::start(model, options.batch, metrics.clone(), in_flight.clone());
    let state = Arc::new(AppState {
        batcher: model_thread.handle,
        metrics,
        limits: options.limits,
        decode_slots: Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()) * 2,
        ),
        model: info,
        in_flight,
    });
    let served = runtime.block_on(serve(state, &options));
    // The state (and with it the last batcher handle) is gone: the model thread answers what is
    // queued and stops.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let _ = model_thread.thread.join();
    served
}

async fn serve(state: Arc<AppState>, options: &ServeOptions) -> Result<()> {
    let listener = TcpListener::bind(options.addr)
        .await
        .with_context(|| format!("--addr {}: cannot listen", options.addr))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        warn!("listening on {local}: reachable from other machines");
    }
    info!(
        "serving {} on http://{local} (max batch {}, wait {:?}); Ctrl-C stops",
        state.model.architectures.join(" + "),
        options.batch.max_batch,
        options.batch.max_wait
    );
    println!("http://{local}");
    let _ = std::io::stdout().flush();

    let app = router(state);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(options.max_connections));
    let mut stop = std::pin::pin!(shutdown_signal());
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit?,
            () = &mut stop => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!("connection from {peer}: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    info!("stopping: finishing the requests in flight (Ctrl-C again stops at once)");
    tokio::spawn(async {
        shutdown_signal().await;
        warn!("second signal: stopping without waiting");
        std::process::exit(130);
    });
    tokio::select! {
        () = graceful.shutdown() => info!("all connections closed"),
        () = tokio::time::sleep(options.drain_timeout) => {
            warn!("connections still open after {:?}; stopping anyway", options.drain_timeout)
        }
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
