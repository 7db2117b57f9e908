//! What every handler shares: the batcher, the admission of fields, the metrics, the limits,
//! the access rules and what `/healthz` says.

use super::access::Access;
use super::admission::Admission;
use super::batcher::BatcherHandle;
use super::metrics::Metrics;
use crate::data::images::DecodeLimits;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicUsize};
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
    /// Pixels all the pictures of one request may declare together (checked on their headers,
    /// before any is decoded).
    pub max_pixels: u64,
}

/// One served model, as `/healthz` names it: the file name, never the path.
#[derive(Debug, Clone, Serialize)]
pub struct ServedModel {
    pub file: String,
    pub architecture: String,
}

/// What `/healthz` says about the model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub models: Vec<ServedModel>,
    pub tta: bool,
    pub device: String,
    pub max_batch: usize,
}

/// Shared by every handler.
pub struct AppState {
    pub batcher: BatcherHandle,
    pub admission: Admission,
    pub metrics: Arc<Metrics>,
    pub limits: RequestLimits,
    pub access: Access,
    /// Pictures decoded at once (decoding takes memory and CPU; the rest wait their turn).
    pub decode_slots: Semaphore,
    /// Bytes of JSON parsed at once, server-wide (one permit a byte).
    pub json_budget: Semaphore,
    /// Bytes of request bodies held at once, server-wide, pictures and JSON alike (one permit a
    /// byte), and its size.
    pub body_budget: Semaphore,
    pub body_budget_bytes: usize,
    pub model: ModelInfo,
    /// Requests whose bodies have arrived and whose fields are being prepared: a batch that is
    /// not full waits for more only while there are some.
    pub arriving: Arc<AtomicUsize>,
    /// A large request has ended since the heap was last trimmed.
    pub trim_due: AtomicBool,
}

/// Bodies from this size on leave memory worth handing back to the system when they are done.
pub const LARGE_BODY: usize = 1 << 20;
