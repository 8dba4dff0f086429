//! Request extractors whose rejections are central's JSON errors (`{"code": "bad_request",
//! "message": ...}`) instead of axum's plain-text ones, so a program calling the API always
//! gets a machine-readable code. Same names and shapes as axum's.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::HttpError;
use central_core::error::ServiceError;

/// The query string as `T`; a malformed one is a 400 naming what was wrong.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| {
                ServiceError::BadRequest(format!("query string: {}", rejection.body_text())).into()
            })
    }
}

/// The path parameters as `T`; one that does not parse (a rollout id that is not a number)
/// is a 400 saying which.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| {
                ServiceError::BadRequest(format!("path: {}", rejection.body_text())).into()
            })
    }
}
