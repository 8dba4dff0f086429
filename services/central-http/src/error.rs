//! A [`ServiceError`] as an HTTP answer: its status, the JSON body `{"code", "message"}` and
//! `Retry-After` on a refusal that passes with time. The error type, its codes and its gRPC
//! status are `central_core::error`'s; only the HTTP side knows axum, so the mapping is here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use central_core::error::ServiceError;
use central_store::StoreError;

/// What a handler, an extractor or a middleware answers on failure: a [`ServiceError`] that
/// knows how to be a response (`?` turns a `ServiceError` or a `StoreError` into one).
#[derive(Debug)]
pub struct HttpError(pub ServiceError);

impl From<ServiceError> for HttpError {
    fn from(error: ServiceError) -> Self {
        HttpError(error)
    }
}

impl From<StoreError> for HttpError {
    fn from(error: StoreError) -> Self {
        HttpError(error.into())
    }
}

/// The HTTP status of each failure.
pub fn http_status(error: &ServiceError) -> StatusCode {
    match error {
        ServiceError::ForeignSite { .. }
        | ServiceError::Forbidden(_)
        | ServiceError::OutOfScope(_)
        | ServiceError::Csrf => StatusCode::FORBIDDEN,
        ServiceError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        ServiceError::RateLimited { .. }
        | ServiceError::Busy { .. }
        | ServiceError::ExportsBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
        ServiceError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
        ServiceError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ServiceError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let HttpError(error) = self;
        let body = serde_json::json!({ "code": error.code(), "message": error.to_string() });
        let mut response = (http_status(&error), axum::Json(body)).into_response();
        if let Some(secs) = error.retry_after_secs() {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        response
    }
}
