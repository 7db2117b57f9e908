//! The HTTP endpoints: `POST /v1/predict`, `GET /`, `GET /healthz`, `GET /metrics`, and the
//! errors they answer with (JSON `{"error": "…"}` and a 4xx/5xx status).

use super::batcher::Job;
use super::error::ApiError;
use super::request::{
    form_request, json_request, payload_kind, picture_request, read_body, Fields, Payload,
};
use super::state::{AppState, LARGE_BODY};
use crate::shape::IMAGE_SIDE;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The draw-a-digit page: one file, no external resources.
const PAGE: &str = include_str!("page.html");

/// Counts a request as arriving (its body here, its fields being prepared) until dropped.
struct Arriving<'a>(&'a AtomicUsize);

impl<'a> Arriving<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for Arriving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Marks the heap for trimming when a large request ends, however it ends.
struct TrimWhenDone<'a>(Option<&'a AtomicBool>);

impl<'a> TrimWhenDone<'a> {
    fn after(state: &'a AppState, body_bytes: usize) -> Self {
        Self((body_bytes >= LARGE_BODY).then_some(&state.trim_due))
    }
}

impl Drop for TrimWhenDone<'_> {
    fn drop(&mut self) {
        if let Some(flag) = self.0 {
            flag.store(true, Ordering::Release);
        }
    }
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
    let kind = payload_kind(&headers)?;
    let (bytes, _body_bytes_held) = read_body(body, &headers, &state).await?;
    let _trim = TrimWhenDone::after(&state, bytes.len());
    let arriving = Arriving::enter(&state.arriving);
    let Fields {
        fields,
        list,
        ticket,
    } = match kind {
        Payload::Picture => picture_request(&state, bytes).await?,
        Payload::Json => json_request(&state, bytes).await?,
        Payload::Form(boundary) => form_request(&state, bytes, boundary).await?,
    };
    let inputs: Vec<Vec<Vec<f32>>> = fields.iter().map(|f| round_input(f)).collect();
    let (job, answer) = Job::new(fields, ticket);
    // No longer arriving before it is handed over: the model thread must not wait for a
    // request it already holds.
    drop(arriving);
    state
        .batcher
        .submit(job)
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model has stopped"))?;
    // If the client goes away now, this future is dropped with `answer`, and the model thread
    // drops the request's fields not yet computed.
    let answers = answer
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the model thread stopped",
            )
        })?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let predictions: Vec<Prediction> = inputs
        .into_iter()
        .zip(answers)
        .map(|(input, probabilities)| prediction(input, probabilities))
        .collect();
    if !list {
        let one = predictions.into_iter().next().expect("one field");
        return Ok(Json(one).into_response());
    }
    list_answer(predictions).await
}

/// The answer to a list of fields: `{"predictions": [...]}`.
async fn list_answer(predictions: Vec<Prediction>) -> Result<Response, ApiError> {
    if predictions.len() <= INLINE_ANSWERS {
        return Ok(Json(serde_json::json!({ "predictions": predictions })).into_response());
    }
    // A long list's answer is megabytes of JSON: written on the blocking pool, so that the
    // async threads keep answering everyone else meanwhile.
    let body = tokio::task::spawn_blocking(move || {
        serde_json::to_vec(&serde_json::json!({ "predictions": predictions }))
    })
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "writing the answer failed",
        )
    })?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// Answers of up to this many fields are written on the async thread.
const INLINE_ANSWERS: usize = 16;

/// The 28×28 input as the answer shows it: rows of values rounded to three decimals.
fn round_input(field: &[f32]) -> Vec<Vec<f32>> {
    field
        .chunks(IMAGE_SIDE as usize)
        .map(|row| row.iter().map(|v| (v * 1000.0).round() / 1000.0).collect())
        .collect()
}

fn prediction(input: Vec<Vec<f32>>, probabilities: Vec<f32>) -> Prediction {
    let (digit, probability) =
        probabilities
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0, f32::MIN),
                |best, (i, p)| if p > best.1 { (i, p) } else { best },
            );
    Prediction {
        digit,
        probability,
        probabilities,
        input,
    }
}
