//! The HTTP endpoints: `POST /v1/predict`, `GET /`, `GET /healthz`, `GET /metrics`, and the
//! errors they answer with (JSON `{"error": "…"}` and a 4xx/5xx status).

use super::batcher::{Answer, Refused};
use super::error::ApiError;
use super::request::{json_fields, payload_kind, picture_field, read_body, Fields, Payload};
use super::state::AppState;
use crate::shape::IMAGE_SIDE;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The draw-a-digit page: one file, no external resources.
const PAGE: &str = include_str!("page.html");

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
        .chunks(IMAGE_SIDE as usize)
        .map(|row| row.iter().map(|v| (v * 1000.0).round() / 1000.0).collect())
        .collect();
    Prediction {
        digit,
        probability,
        probabilities,
        input,
    }
}
