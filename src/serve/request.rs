//! Reading a prediction request: its content type, its body within the limits, and the 28×28
//! fields in it (decoded pictures, or pixels given as JSON).

use super::error::ApiError;
use super::state::{AppState, RequestLimits};
use crate::data::images;
use crate::shape::IMAGE_PIXELS;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

/// What the body holds.
pub enum Payload {
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

pub fn payload_kind(headers: &HeaderMap) -> Result<Payload, ApiError> {
    let unsupported = |what: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "{what}: send a picture as image/png or image/jpeg (also gif, bmp, webp), or \
                 application/json with {{\"pixels\": [{IMAGE_PIXELS} numbers 0-255]}} or a list of those"
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
pub async fn read_body(
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
pub async fn picture_field(
    state: &AppState,
    bytes: Bytes,
    name: &str,
) -> Result<Vec<f32>, ApiError> {
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

pub struct Fields {
    pub fields: Vec<Vec<f32>>,
    /// The request was a list: answer with a list.
    pub list: bool,
}

/// `{"pixels": […]}`, `{"image": "<base64>"}`, or a list of those.
pub async fn json_fields(state: &AppState, bytes: &[u8]) -> Result<Fields, ApiError> {
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
            "{name}: pixels must be a list of {IMAGE_PIXELS} numbers"
        )));
    };
    if values.len() != IMAGE_PIXELS {
        return Err(ApiError::unprocessable(format!(
            "{name}: pixels has {} values; {IMAGE_PIXELS} (28×28) expected",
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
