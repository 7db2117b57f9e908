//! The HTTP endpoints: `POST /v1/predict`, `GET /`, `GET /healthz`, `GET /metrics`, and the
//! errors they answer with (JSON `{"error": "…"}` and a 4xx/5xx status).

use super::batcher::{Answer, BatcherHandle, Refused, FIELD_VALUES};
use super::metrics::Metrics;
use crate::data::images::{self, DecodeLimits};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use base64::Engine;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The draw-a-digit page: one file, no external resources.
const PAGE: &str = include_str!("page.html");

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

/// Counts a request as in flight until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An error answer: a status and a sentence for the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The route label for metrics: one of the known routes, or `other` (so that scanners cannot
/// grow the metrics without bound).
fn route_label(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/healthz" => "/healthz",
        "/metrics" => "/metrics",
        "/v1/predict" => "/v1/predict",
        _ => "other",
    }
}

/// Middleware: counts every response by route and status, and times `/v1/predict`.
pub async fn record(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = route_label(request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .observe_response(route, response.status().as_u16(), started.elapsed());
    response
}

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub async fn healthz(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(serde_json::json!({ "status": "ok", "model": state.model }))
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint: POST /v1/predict, GET /, GET /healthz and GET /metrics exist",
    )
}

pub async fn method_not_allowed() -> Response {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "/v1/predict takes POST with a picture or JSON body",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// One answer: the digit, its probability, all ten, and the 28×28 input the network saw
/// (values in [0, 1], white ink on black, row by row).
#[derive(Debug, Serialize)]
pub struct Prediction {
    pub digit: usize,
    pub probability: f32,
    pub probabilities: Vec<f32>,
    pub input: Vec<Vec<f32>>,
}

/// `POST /v1/predict`.
pub async fn predict(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let _in_flight = InFlight::enter(&state.in_flight);
    let kind = payload_kind(&headers)?;
    let bytes = read_body(body, &headers, &state.limits).await?;
    let fields = match kind {
        Payload::Picture => Fields {
            fields: vec![picture_field(&state, bytes, "the picture").await?],
            list: false,
        },
        Payload::Json => json_fields(&state, &bytes).await?,
    };
    let count = fields.fields.len();
    let answers = infer(&state, &fields.fields).await?;
    state.metrics.observe_pictures(count);
    let predictions: Vec<Prediction> = fields
        .fields
        .into_iter()
        .zip(answers)
        .map(|(field, probabilities)| prediction(field, probabilities))
        .collect();
    Ok(if fields.list {
        Json(serde_json::json!({ "predictions": predictions })).into_response()
    } else {
        let one = predictions.into_iter().next().expect("one field");
        Json(one).into_response()
    })
}

enum Payload {
    Picture,
    Json,
}

const PICTURE_TYPES: [&str; 5] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/bmp",
    "image/webp",
];

fn payload_kind(headers: &HeaderMap) -> Result<Payload, ApiError> {
    let unsupported = |what: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "{what}: send a picture as image/png or image/jpeg (also gif, bmp, webp), or \
                 application/json with {{\"pixels\": [784 numbers 0-255]}} or a list of those"
            ),
        )
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported("no Content-Type"));
    };
    let text = value
        .to_str()
        .map_err(|_| unsupported("unreadable Content-Type"))?;
    let mime = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" {
        Ok(Payload::Json)
    } else if PICTURE_TYPES.contains(&mime.as_str()) {
        Ok(Payload::Picture)
    } else {
        Err(unsupported(&format!(
            "Content-Type {mime:?} is not accepted"
        )))
    }
}

/// Reads the whole body within the size and time limits: 413 past `max_body` (at once when
/// Content-Length says so), 408 when it does not arrive in time.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limits: &RequestLimits,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than this server accepts ({} bytes, --max-body)",
                limits.max_body
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max_body as u64) {
        return Err(too_large());
    }
    let collected = tokio::time::timeout(
        limits.body_timeout,
        Limited::new(body, limits.max_body).collect(),
    )
    .await;
    match collected {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} s",
                limits.body_timeout.as_secs_f64()
            ),
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}"),
        )),
        Ok(Ok(collected)) => {
            let bytes = collected.to_bytes();
            if bytes.is_empty() {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "the body is empty"));
            }
            Ok(bytes)
        }
    }
}

/// Decodes and preprocesses one picture on the blocking pool, a few at a time.
async fn picture_field(state: &AppState, bytes: Bytes, name: &str) -> Result<Vec<f32>, ApiError> {
    let _slot =
        state.decode_slots.acquire().await.map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping")
        })?;
    let limits = state.limits.decode;
    let name = name.to_owned();
    let decoded = tokio::task::spawn_blocking(move || {
        let grey = images::decode_bytes_within(&bytes, &name, limits)?;
        images::preprocess(&grey).map_err(|e| e.context(name))
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "preprocessing failed"))?;
    decoded.map_err(|e| ApiError::unprocessable(format!("{e:#}")))
}

struct Fields {
    fields: Vec<Vec<f32>>,
    /// The request was a list: answer with a list.
    list: bool,
}

/// `{"pixels": […]}`, `{"image": "<base64>"}`, or a list of those.
async fn json_fields(state: &AppState, bytes: &[u8]) -> Result<Fields, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))?;
    let (items, list) = match value {
        Value::Array(items) => (items, true),
        item @ Value::Object(_) => (vec![item], false),
        _ => {
            return Err(ApiError::unprocessable(
                "expected {\"pixels\": [...]} or {\"image\": \"<base64>\"}, or a list of them",
            ))
        }
    };
    if items.is_empty() {
        return Err(ApiError::unprocessable("the list is empty"));
    }
    if items.len() > state.limits.max_items {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} items in one request; at most {} are accepted",
                items.len(),
                state.limits.max_items
            ),
        ));
    }
    let mut fields = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let name = if list {
            format!("item {index}")
        } else {
            "the request".to_owned()
        };
        fields.push(json_item(state, item, &name).await?);
    }
    Ok(Fields { fields, list })
}

async fn json_item(state: &AppState, item: Value, name: &str) -> Result<Vec<f32>, ApiError> {
    let Value::Object(object) = item else {
        return Err(ApiError::unprocessable(format!("{name} is not an object")));
    };
    if let Some(extra) = object.keys().find(|k| *k != "pixels" && *k != "image") {
        return Err(ApiError::unprocessable(format!(
            "{name} has an unknown field {extra:?} (pixels or image expected)"
        )));
    }
    match (object.get("pixels"), object.get("image")) {
        (Some(pixels), None) => pixels_field(pixels, name),
        (None, Some(Value::String(encoded))) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| {
                    ApiError::unprocessable(format!("{name}: image is not base64: {e}"))
                })?;
            if bytes.len() > state.limits.max_body {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("{name}: the picture is too large"),
                ));
            }
            picture_field(state, Bytes::from(bytes), &format!("{name}'s image")).await
        }
        (None, Some(_)) => Err(ApiError::unprocessable(format!(
            "{name}: image must be a base64 string of a PNG or JPEG file"
        ))),
        (Some(_), Some(_)) => Err(ApiError::unprocessable(format!(
            "{name} has both pixels and image; send one"
        ))),
        (None, None) => Err(ApiError::unprocessable(format!(
            "{name} has neither pixels nor image"
        ))),
    }
}

/// 784 numbers from 0 to 255, row by row, white ink on black as in MNIST: the network's input
/// as it is (scaled to [0, 1]), with no picture preprocessing.
fn pixels_field(pixels: &Value, name: &str) -> Result<Vec<f32>, ApiError> {
    let Value::Array(values) = pixels else {
        return Err(ApiError::unprocessable(format!(
            "{name}: pixels must be a list of {FIELD_VALUES} numbers"
        )));
    };
    if values.len() != FIELD_VALUES {
        return Err(ApiError::unprocessable(format!(
            "{name}: pixels has {} values; {FIELD_VALUES} (28×28) expected",
            values.len()
        )));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| match v.as_f64() {
            Some(x) if (0.0..=255.0).contains(&x) => Ok((x / 255.0) as f32),
            _ => Err(ApiError::unprocessable(format!(
                "{name}: pixels[{i}] is {v}; numbers from 0 to 255 expected"
            ))),
        })
        .collect()
}

/// Queues every field for the model and waits for all answers.
async fn infer(state: &AppState, fields: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, ApiError> {
    let mut pending = Vec::with_capacity(fields.len());
    for field in fields {
        let receiver = state
            .batcher
            .submit(field.clone())
            .map_err(|refused| match refused {
                Refused::Busy => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is at capacity; retry shortly",
                ),
                Refused::Stopped => {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model has stopped")
                }
            })?;
        pending.push(receiver);
    }
    let mut answers = Vec::with_capacity(pending.len());
    for receiver in pending {
        let answer: Answer = receiver.await.map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the model thread stopped",
            )
        })?;
        answers.push(answer.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?);
    }
    Ok(answers)
}

fn prediction(field: Vec<f32>, probabilities: Vec<f32>) -> Prediction {
    let (digit, probability) =
        probabilities
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0, f32::MIN),
                |best, (i, p)| if p > best.1 { (i, p) } else { best },
            );
    let input = field
        .chunks(28)
        .map(|row| row.iter().map(|v| (v * 1000.0).round() / 1000.0).collect())
        .collect();
    Prediction {
        digit,
        probability,
        probabilities,
        input,
    }
}
