//! Reading a prediction request: its content type, its body within the limits, and the 28×28
//! fields in it (decoded pictures, or pixels given as JSON), admitted before they are built.

use super::admission::Ticket;
use super::error::ApiError;
use super::json_body::{self, BodyError, Item};
use super::multipart::{self, FormError};
use super::state::AppState;
use crate::data::images;
use crate::shape::IMAGE_PIXELS;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::SemaphorePermit;

/// What the body holds.
pub enum Payload {
    Picture,
    Json,
    /// A `multipart/form-data` upload, with its boundary.
    Form(String),
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
                "{what}: send a picture as image/png or image/jpeg (also gif, bmp, webp), as a \
                 multipart/form-data file upload, or as application/json with \
                 {{\"pixels\": [{IMAGE_PIXELS} numbers 0-255]}} or a list of those"
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
    } else if mime == "multipart/form-data" {
        let boundary = multipart::boundary(text).map_err(malformed_form)?;
        Ok(Payload::Form(boundary))
    } else if PICTURE_TYPES.contains(&mime.as_str()) {
        Ok(Payload::Picture)
    } else {
        Err(unsupported(&format!(
            "Content-Type {mime:?} is not accepted"
        )))
    }
}

/// Reads the whole body within the size and time limits: 413 past `max_body` (at once when
/// Content-Length says so), 408 when it does not arrive in time. Its bytes count against the
/// server-wide body budget as they arrive (all at once when Content-Length declares them): 503
/// with Retry-After when it is spent. The permit returned holds the bytes' place until the
/// request is done with them.
pub async fn read_body<'a>(
    body: Body,
    headers: &HeaderMap,
    state: &'a AppState,
) -> Result<(Bytes, SemaphorePermit<'a>), ApiError> {
    let limits = &state.limits;
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
    let mut held = hold_body_bytes(state, declared.unwrap_or(0) as usize)?;
    let collected = tokio::time::timeout(limits.body_timeout, async {
        let mut body = Limited::new(body, limits.max_body);
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue; // trailers
            };
            let beyond = (bytes.len() + data.len()).saturating_sub(held.num_permits());
            if beyond > 0 {
                held.merge(hold_body_bytes(state, beyond)?);
            }
            bytes.extend_from_slice(&data);
        }
        Ok::<_, BodyReadError>(bytes)
    })
    .await;
    match collected {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} s",
                limits.body_timeout.as_secs_f64()
            ),
        )),
        Ok(Err(BodyReadError::Budget(e))) => Err(e),
        Ok(Err(BodyReadError::Read(e))) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(too_large())
        }
        Ok(Err(BodyReadError::Read(e))) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}"),
        )),
        Ok(Ok(bytes)) => {
            if bytes.is_empty() {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "the body is empty"));
            }
            Ok((Bytes::from(bytes), held))
        }
    }
}

/// Why a body could not be read whole.
enum BodyReadError {
    Read(Box<dyn std::error::Error + Send + Sync>),
    Budget(ApiError),
}

impl From<Box<dyn std::error::Error + Send + Sync>> for BodyReadError {
    fn from(e: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Self::Read(e)
    }
}

impl From<ApiError> for BodyReadError {
    fn from(e: ApiError) -> Self {
        Self::Budget(e)
    }
}

/// Places for `bytes` more bytes of request bodies, or 503 at once when the server holds its
/// budget's worth already.
fn hold_body_bytes(state: &AppState, bytes: usize) -> Result<SemaphorePermit<'_>, ApiError> {
    let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
    state.body_budget.try_acquire_many(permits).map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the server holds as many request bodies as it may ({} bytes in all); retry \
                     shortly",
                state.body_budget_bytes
            ),
        )
    })
}

/// A request's fields, admitted: the model's inputs and the ticket that holds their place.
pub struct Fields {
    pub fields: Vec<Vec<f32>>,
    /// The request was a list: answer with a list.
    pub list: bool,
    pub ticket: Ticket,
}

/// Admits `count` fields, all or none: 503 at once when they do not fit.
fn admit(state: &AppState, count: usize) -> Result<Ticket, ApiError> {
    state.admission.try_admit(count).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the server is at capacity ({} fields in flight); retry shortly",
                state.admission.in_flight()
            ),
        )
    })
}

/// A picture body: one field.
pub async fn picture_request(state: &AppState, bytes: Bytes) -> Result<Fields, ApiError> {
    let ticket = admit(state, 1)?;
    let pictures = vec![(bytes, "the picture".to_owned())];
    Ok(Fields {
        fields: decode_pictures(state, pictures).await?,
        list: false,
        ticket,
    })
}

/// A `multipart/form-data` body: its file parts (at most `max_items` parts), each a picture;
/// one file is answered as one picture body is, several as a list.
pub async fn form_request(
    state: &AppState,
    bytes: Bytes,
    boundary: String,
) -> Result<Fields, ApiError> {
    let max_items = state.limits.max_items;
    let size = bytes.len();
    let files = parse(size, move || {
        multipart::file_parts(&bytes, &boundary, max_items)
    })
    .await?
    .map_err(|e| form_error(e, max_items))?;
    if files.is_empty() {
        return Err(ApiError::unprocessable(
            "the form holds no file: send the picture as a file field (curl -F image=@digit.png)",
        ));
    }
    let ticket = admit(state, files.len())?;
    let list = files.len() > 1;
    let pictures = files.into_iter().map(|f| (f.bytes, f.name)).collect();
    Ok(Fields {
        fields: decode_pictures(state, pictures).await?,
        list,
        ticket,
    })
}

fn form_error(error: FormError, max_items: usize) -> ApiError {
    match error {
        FormError::Malformed(why) => malformed_form(why),
        FormError::TooMany => too_many(max_items, "parts in one form"),
    }
}

fn malformed_form(why: String) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("malformed multipart/form-data: {why}"),
    )
}

/// 413 for a request with more than `max_items` of `what`.
fn too_many(max_items: usize, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("more than {max_items} {what}; at most {max_items} are accepted"),
    )
}

/// A JSON body: its items counted first (413 past `max_items`, before anything is built), the
/// fields admitted, then the items read; both passes on the blocking pool for large bodies,
/// within the server's budget of JSON bytes parsed at once.
pub async fn json_request(state: &AppState, bytes: Bytes) -> Result<Fields, ApiError> {
    let permits = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let budget =
        state.json_budget.acquire_many(permits).await.map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping")
        })?;
    let max_items = state.limits.max_items;
    let counted = bytes.clone();
    let size = bytes.len();
    let outline = parse(size, move || json_body::outline(&counted, max_items))
        .await?
        .map_err(|e| body_error(e, max_items))?;
    if outline.items == 0 {
        return Err(ApiError::unprocessable("the list is empty"));
    }
    let ticket = admit(state, outline.items)?;
    let items = parse(size, move || json_body::items(&bytes))
        .await?
        .map_err(|e| body_error(e, max_items))?;
    drop(budget);
    let mut fields = Vec::with_capacity(items.len());
    let mut pictures = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let name = if outline.list {
            format!("item {index}")
        } else {
            "the request".to_owned()
        };
        match item {
            Item::Pixels(pixels) => fields.push(Some(pixels)),
            Item::Image(encoded) => {
                let picture = base64_picture(state, &encoded, &name)?;
                pictures.push((picture, format!("{name}'s image")));
                fields.push(None);
            }
        }
    }
    let mut decoded = decode_pictures(state, pictures).await?.into_iter();
    let fields = fields
        .into_iter()
        .map(|field| {
            field
                .or_else(|| decoded.next())
                .expect("one field per item")
        })
        .collect();
    Ok(Fields {
        fields,
        list: outline.list,
        ticket,
    })
}

fn body_error(error: BodyError, max_items: usize) -> ApiError {
    match error {
        BodyError::Malformed(e) => {
            ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}"))
        }
        BodyError::Invalid(e) => ApiError::unprocessable(e),
        BodyError::TooMany => too_many(max_items, "items in one request"),
    }
}

/// Bodies up to this size are parsed on the async thread: a few microseconds, less than the
/// hand-over to the blocking pool costs.
const INLINE_JSON_BYTES: usize = 64 << 10;

/// Runs `work` on the blocking pool, or here when `bytes` is small.
async fn parse<T: Send + 'static>(
    bytes: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    if bytes <= INLINE_JSON_BYTES {
        Ok(work())
    } else {
        blocking(work).await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading the request failed",
        )
    })
}

fn base64_picture(state: &AppState, encoded: &str, name: &str) -> Result<Bytes, ApiError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| ApiError::unprocessable(format!("{name}: image is not base64: {e}")))?;
    if bytes.len() > state.limits.max_body {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{name}: the picture is too large"),
        ));
    }
    Ok(Bytes::from(bytes))
}

/// Decodes and preprocesses the pictures of one request, after checking on their headers that
/// together they stay within the request's pixel budget (nothing is decoded otherwise); each
/// on the blocking pool, a few at a time server-wide.
async fn decode_pictures(
    state: &AppState,
    pictures: Vec<(Bytes, String)>,
) -> Result<Vec<Vec<f32>>, ApiError> {
    let max_side = state.limits.decode.max_side;
    let mut declared: u64 = 0;
    for (bytes, name) in &pictures {
        let (width, height) = images::declared_size(bytes, name)
            .map_err(|e| ApiError::unprocessable(format!("{e:#}")))?;
        // A picture past the side limit is refused by the decoder, from its header.
        if width <= max_side && height <= max_side {
            declared += u64::from(width) * u64::from(height);
        }
    }
    let budget = state.limits.max_pixels;
    if declared > budget {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the pictures of this request declare {declared} pixels; at most {budget} are \
                 decoded for one request"
            ),
        ));
    }
    let mut fields = Vec::with_capacity(pictures.len());
    for (bytes, name) in pictures {
        fields.push(picture_field(state, bytes, name).await?);
    }
    Ok(fields)
}

/// Decodes and preprocesses one picture on the blocking pool, a few at a time.
async fn picture_field(state: &AppState, bytes: Bytes, name: String) -> Result<Vec<f32>, ApiError> {
    let _slot =
        state.decode_slots.acquire().await.map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping")
        })?;
    let limits = state.limits.decode;
    state.metrics.observe_decoded();
    let decoded = tokio::task::spawn_blocking(move || {
        let grey = images::decode_bytes_within(&bytes, &name, limits)?;
        images::preprocess(&grey).map_err(|e| e.context(name))
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "preprocessing failed"))?;
    decoded.map_err(|e| ApiError::unprocessable(format!("{e:#}")))
}
