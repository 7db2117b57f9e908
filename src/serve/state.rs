//! What every handler shares: the batcher, the metrics, the limits and what `/healthz` says.

use super::batcher::BatcherHandle;
use super::metrics::Metrics;
use crate::data::images::DecodeLimits;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// What the server enforces on every request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest body accepted, bytes.
    pub max_body: usize,
    /// Time allowed for the body to arrive.
    pub body_timeout: Duration,
    /// Pictures or fields in one request.
    pub max_items: usize,
    /// Per decoded picture.
    pub decode: DecodeLimits,
}

/// What `/healthz` says about the model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub models: Vec<PathBuf>,
    pub architectures: Vec<String>,
    pub tta: bool,
    pub device: String,
    pub max_batch: usize,
}

/// Shared by every handler.
pub struct AppState {
    pub batcher: BatcherHandle,
    pub metrics: Arc<Metrics>,
    pub limits: RequestLimits,
    /// Pictures decoded at once (decoding takes memory and CPU; the rest wait their turn).
    pub decode_slots: Semaphore,
    pub model: ModelInfo,
    /// `/v1/predict` requests being handled (the batcher waits for more fields only while a
    /// batch holds fewer).
    pub in_flight: Arc<AtomicUsize>,
}
