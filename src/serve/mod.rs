//! `mnist-cnn serve`: the model behind HTTP (axum on hyper's HTTP/1 server, a batching thread
//! owning the model), safe by default against slow, greedy and hostile clients.

pub mod access;
pub mod admission;
pub mod api;
pub mod batcher;
pub mod connections;
pub mod error;
pub mod json_body;
pub mod metrics;
pub mod middleware;
pub mod multipart;
pub mod request;
pub mod state;
pub mod stream;

use crate::data::images::DecodeLimits;
use crate::eval::Ensemble;
use access::Access;
use admission::{Admission, AdmissionPolicy};
use anyhow::{Context, Result};
use axum::routing::{get, post};
use axum::Router;
use batcher::BatchPolicy;
use connections::ClientSlots;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use metrics::Metrics;
use state::{AppState, ModelInfo, RequestLimits};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
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
    pub admission: AdmissionPolicy,
    pub limits: RequestLimits,
    pub access: Access,
    /// Time a connection has to send each request's headers, counted from when it starts
    /// waiting for them: also the time an idle keep-alive connection is kept.
    pub header_timeout: Duration,
    /// Open connections at once; more wait to be accepted.
    pub max_connections: usize,
    /// Open connections from one client address; more are answered 429 and closed.
    pub max_connections_per_client: usize,
    /// Bytes of JSON parsed at once, server-wide.
    pub json_budget: usize,
    /// Bytes of request bodies held at once, server-wide, counted as they arrive.
    pub body_budget: usize,
    /// After Ctrl-C, how long in-flight requests may take to finish.
    pub drain_timeout: Duration,
}

/// Pictures or fields one request may hold.
pub const MAX_ITEMS: usize = 1024;

impl ServeOptions {
    /// The defaults, apart from what the command line sets.
    pub fn new(addr: SocketAddr, max_batch: usize, max_wait: Duration, max_body: usize) -> Self {
        Self {
            addr,
            batch: BatchPolicy {
                max_batch,
                max_wait,
            },
            // Four maximal requests in flight; the last one's worth kept for requests of at
            // most one batch, so that lists sent in a loop never lock single digits out.
            admission: AdmissionPolicy {
                capacity: 4 * MAX_ITEMS,
                reserve: MAX_ITEMS,
                small_request: max_batch,
            },
            limits: RequestLimits {
                max_body,
                body_timeout: Duration::from_secs(10),
                max_items: MAX_ITEMS,
                // Tighter than `predict`'s: many pictures may be decoded at once.
                decode: DecodeLimits {
                    max_side: 8192,
                    max_bytes: 128 << 20,
                },
                // One maximal picture, or a thousand of 256×256.
                max_pixels: 8192 * 8192,
            },
            access: Access {
                hosts: access::HostRule::new(addr, &[]),
                api_key: None,
            },
            header_timeout: Duration::from_secs(5),
            max_connections: 1024,
            max_connections_per_client: 256,
            json_budget: (2 * max_body).max(32 << 20),
            // Four maximal bodies.
            body_budget: (4 * max_body).max(64 << 20),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// The routes, for the server and for tests.
pub fn router(state: Arc<AppState>) -> Router {
    // The last layer added runs first: record sees every final status, access refuses before
    // any handler runs, json_errors fills in the bodies axum leaves empty.
    Router::new()
        .route("/", get(api::page))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route(
            "/v1/predict",
            post(api::predict).fallback(api::method_not_allowed),
        )
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn(middleware::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::access,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::record,
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
    let arriving = Arc::new(AtomicUsize::new(0));
    let model_thread = batcher::start(model, options.batch, metrics.clone(), arriving.clone());
    let state = Arc::new(AppState {
        batcher: model_thread.handle,
        admission: Admission::new(options.admission),
        metrics,
        limits: options.limits,
        access: options.access.clone(),
        decode_slots: Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()) * 2,
        ),
        json_budget: Semaphore::new(options.json_budget.min(Semaphore::MAX_PERMITS)),
        body_budget: Semaphore::new(options.body_budget.min(Semaphore::MAX_PERMITS)),
        body_budget_bytes: options.body_budget,
        model: info,
        arriving,
        trim_due: AtomicBool::new(false),
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
    announce(&state, local, options);

    tokio::spawn(trim_after_bursts(Arc::downgrade(&state)));
    let app = router(state);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(options.max_connections));
    let clients = ClientSlots::new(options.max_connections_per_client);
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
        let Some(client_slot) = clients.try_take(peer.ip()) else {
            connections::refuse(stream, options.max_connections_per_client);
            continue;
        };
        // A client that never takes its answers loses the connection after the client timeout,
        // and none pipelines without end.
        let stream = stream::WriteDeadline::new(stream, options.limits.body_timeout);
        let service = stream::Capped::new(TowerToHyperService::new(app.clone()));
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!("connection from {peer}: {e}");
            }
            drop(client_slot);
            drop(permit);
        });
    }
    drop(listener);
    drain(graceful, options).await;
    Ok(())
}

/// Says what is served where: the models in the log, the address on stdout (where scripts
/// wait for it).
fn announce(state: &AppState, local: std::net::SocketAddr, options: &ServeOptions) {
    let architectures: Vec<&str> = state
        .model
        .models
        .iter()
        .map(|m| m.architecture.as_str())
        .collect();
    info!(
        "serving {} on http://{local} (max batch {}, wait {:?}); Ctrl-C stops",
        architectures.join(" + "),
        options.batch.max_batch,
        options.batch.max_wait
    );
    println!("http://{local}");
    let _ = std::io::stdout().flush();
}

/// Lets the requests in flight finish (a second signal, or the drain timeout, stops at once).
async fn drain(graceful: GracefulShutdown, options: &ServeOptions) {
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
}

/// Every two seconds, hands the heap's free memory back to the system if a large request has
/// ended since: the allocator keeps freed memory otherwise, and a burst of 16 MiB bodies would
/// stay in the server's footprint.
/// (It holds the state weakly, so that the model thread still stops when the server does.)
async fn trim_after_bursts(state: std::sync::Weak<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else { return };
        if state
            .trim_due
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            let _ = tokio::task::spawn_blocking(crate::runtime::release_free_memory).await;
        }
    }
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
