//! The gateway's own responses. Bodies are fixed, generic texts: nothing about the token, the
//! target or the upstream ever appears in them (the reason goes to the debug log instead).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// Boxed error of the gateway's bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every body the gateway sends (its own, and upstream bodies streamed through).
pub type Body = BoxBody<Bytes, BoxError>;

/// A body from fixed bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body (no allocation: the boxed body has no size).
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A `text/plain` response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// 401 for every token refusal but an unavailable key (RFC 6750 §3 challenge, no reason).
pub fn unauthorized() -> Response<Body> {
    let mut res = text(StatusCode::UNAUTHORIZED, "401 Unauthorized\n");
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"abcdesktop\""),
    );
    res
}

/// 503: the payload key is unavailable.
pub fn key_unavailable() -> Response<Body> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "503 Service Temporarily Unavailable\n",
    )
}

/// 413: the request body is over the route's limit.
pub fn too_large() -> Response<Body> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        "413 Request Entity Too Large\n",
    )
}

/// 404: no route, or a `/container` port outside the allow-list.
pub fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "404 Not Found\n")
}

/// 400: a request the gateway cannot forward (e.g. an unusable URI).
pub fn bad_request() -> Response<Body> {
    text(StatusCode::BAD_REQUEST, "400 Bad Request\n")
}

/// 408: the client stopped sending its request body (nginx `client_body_timeout`); the
/// connection closes after it.
pub fn request_timeout() -> Response<Body> {
    let mut res = text(StatusCode::REQUEST_TIMEOUT, "408 Request Time-out\n");
    res.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    res
}

/// 502: the upstream refused, reset, or could not be resolved.
pub fn bad_gateway() -> Response<Body> {
    text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n")
}

/// 504: the upstream did not answer in time.
pub fn gateway_timeout() -> Response<Body> {
    text(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out\n")
}

/// The response for a token refusal: 503 for [`crate::token::Refusal::KeyUnavailable`], else 401.
pub fn refusal(refusal: crate::token::Refusal) -> Response<Body> {
    if refusal.status() == 503 {
        key_unavailable()
    } else {
        unauthorized()
    }
}

/// 429 with `Retry-After` (whole seconds, at least 1): a client that failed authentication too
/// often.
pub fn too_many_failures(retry_after: std::time::Duration) -> Response<Body> {
    let mut res = text(StatusCode::TOO_MANY_REQUESTS, "429 Too Many Requests\n");
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    if let Ok(value) = http::HeaderValue::from_str(&secs.max(1).to_string()) {
        res.headers_mut().insert(http::header::RETRY_AFTER, value);
    }
    res
}
