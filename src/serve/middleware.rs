//! What wraps every route: the access rules (Host header, API key), JSON bodies for every
//! error, and the metrics of each response.

use super::error::ApiError;
use super::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;

/// Routes anyone who can reach the server may use, with or without the API key.
const OPEN_ROUTES: [&str; 2] = ["/", "/healthz"];

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

/// Counts every response by route and status, and times `/v1/predict`.
pub async fn record(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = route_label(request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .observe_response(route, response.status().as_u16(), started.elapsed());
    response
}

/// Refuses a request for another host (421: a page that rebinds its DNS name to this machine
/// still sends its own name), then one without the API key where a key is set (401).
pub async fn access(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(hosts) = &state.access.hosts {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()));
        match host {
            Some(host) if hosts.allows(host) => {}
            Some(_) => {
                return ApiError::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    "this server does not answer for that Host (see serve --allow-host)",
                )
                .into_response()
            }
            None => {
                return ApiError::new(StatusCode::MISDIRECTED_REQUEST, "the request has no Host")
                    .into_response()
            }
        }
    }
    if let Some(key) = &state.access.api_key {
        let open = OPEN_ROUTES.contains(&request.uri().path());
        if !open && !key.admits(request.headers().get(header::AUTHORIZATION)) {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this server needs an API key: send Authorization: Bearer KEY",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// Gives every error response a JSON body `{"error": "…"}`: the ones axum writes itself (405 on
/// a route that exists for another method, rejections) come without one.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path: String = request.uri().path().chars().take(100).collect();
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status().as_u16() < 400 || is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    if parts.status == StatusCode::METHOD_NOT_ALLOWED && !parts.headers.contains_key(header::ALLOW)
    {
        if let Some(allowed) = allowed_methods(&path) {
            parts
                .headers
                .insert(header::ALLOW, HeaderValue::from_static(allowed));
        }
    }
    let message = describe(
        parts.status,
        &method,
        &path,
        parts.headers.get(header::ALLOW),
    );
    let mut answer = ApiError::new(parts.status, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// The methods each route takes (axum's 405 does not say).
fn allowed_methods(path: &str) -> Option<&'static str> {
    match route_label(path) {
        "/v1/predict" => Some("POST"),
        "other" => None,
        _ => Some("GET, HEAD"),
    }
}

fn describe(
    status: StatusCode,
    method: &Method,
    path: &str,
    allow: Option<&HeaderValue>,
) -> String {
    let reason = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase();
    match (status, allow.and_then(|v| v.to_str().ok())) {
        (StatusCode::METHOD_NOT_ALLOWED, Some(allowed)) => {
            format!("{method} is not allowed on {path:?}; it takes {allowed}")
        }
        _ => format!("{} {reason}", status.as_u16()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    /// An error answer with no body, as axum writes some.
    fn bare(status: StatusCode) -> Response {
        (status, Body::empty()).into_response()
    }

    use axum::routing::get;
    use axum::Router;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn call(router: Router, method: &str, path: &str) -> (StatusCode, serde_json::Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn errors_without_a_body_get_a_json_one() {
        let router = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/teapot", get(|| async { bare(StatusCode::IM_A_TEAPOT) }))
            .layer(axum::middleware::from_fn(json_errors));
        let (status, body) = call(router.clone(), "POST", "/healthz").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains("POST is not allowed on \"/healthz\"; it takes GET, HEAD"),
            "{error}"
        );
        let (status, body) = call(router, "GET", "/teapot").await;
        assert_eq!(status, StatusCode::IM_A_TEAPOT);
        assert_eq!(body["error"], "418 i'm a teapot");
    }
}
