//! One error type for every interface of central, so the same failure says the same thing over
//! gRPC and HTTP: each variant has a stable machine-readable code and a gRPC status here, and
//! an HTTP status in the HTTP crate (`central_http::error`, which alone knows axum).

use central_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("the client certificate speaks for site {certificate}, not for site {claimed}")]
    ForeignSite {
        certificate: String,
        claimed: String,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    /// A site outside an area manager's scope.
    #[error("site {0} is outside your scope (担当範囲外のサイトです)")]
    OutOfScope(String),
    /// No credential, or one that is unknown, expired or revoked.
    #[error("{0}")]
    Unauthenticated(String),
    /// Too many sign-in attempts; the message says when to try again.
    #[error(
        "サインインの試行が多すぎます。{retry_after_secs}秒後にもう一度お試しください: too many sign-in attempts; try again in {retry_after_secs} seconds"
    )]
    RateLimited { retry_after_secs: u64 },
    /// Every password-check slot is taken (argon2id is costly by design); try again shortly.
    #[error(
        "サインインが混み合っています。{retry_after_secs}秒後にもう一度お試しください: sign-in is busy; try again in {retry_after_secs} s"
    )]
    Busy { retry_after_secs: u64 },
    /// Every slot for a streamed export is taken (each holds a database connection for its
    /// whole download); try again shortly.
    #[error(
        "書き出しが同時に多すぎます。{retry_after_secs}秒後にもう一度お試しください: too many exports are running at once; try again in {retry_after_secs} s"
    )]
    ExportsBusy { retry_after_secs: u64 },
    /// A state-changing request from a browser session without the session's CSRF token.
    #[error(
        "the form is out of date or came from another site; reload the page and try again (CSRF)"
    )]
    Csrf,
    /// A message or request beyond a limit central announces; the message says which and what
    /// to do.
    #[error("{0}")]
    TooLarge(String),
    /// A write whose body is not declared JSON, where only JSON is taken.
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the database is unavailable; the agent keeps its events and retries")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl ServiceError {
    /// Stable code for programs (JSON `code`, logs).
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::ForeignSite { .. } => "foreign_site",
            ServiceError::BadRequest(_) => "bad_request",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::Forbidden(_) => "forbidden",
            ServiceError::OutOfScope(_) => "out_of_scope",
            ServiceError::Unauthenticated(_) => "unauthenticated",
            ServiceError::RateLimited { .. } => "rate_limited",
            ServiceError::Busy { .. } => "busy",
            ServiceError::ExportsBusy { .. } => "exports_busy",
            ServiceError::Csrf => "csrf",
            ServiceError::TooLarge(_) => "too_large",
            ServiceError::UnsupportedMediaType(_) => "unsupported_media_type",
            ServiceError::Unavailable(_) => "unavailable",
            ServiceError::Internal(_) => "internal",
        }
    }

    fn grpc_code(&self) -> tonic::Code {
        match self {
            ServiceError::ForeignSite { .. }
            | ServiceError::Forbidden(_)
            | ServiceError::OutOfScope(_)
            | ServiceError::Csrf => tonic::Code::PermissionDenied,
            ServiceError::Unauthenticated(_) => tonic::Code::Unauthenticated,
            ServiceError::RateLimited { .. }
            | ServiceError::Busy { .. }
            | ServiceError::ExportsBusy { .. } => tonic::Code::ResourceExhausted,
            ServiceError::BadRequest(_) => tonic::Code::InvalidArgument,
            ServiceError::NotFound(_) => tonic::Code::NotFound,
            ServiceError::TooLarge(_) => tonic::Code::ResourceExhausted,
            ServiceError::UnsupportedMediaType(_) => tonic::Code::InvalidArgument,
            ServiceError::Unavailable(_) => tonic::Code::Unavailable,
            ServiceError::Internal(_) => tonic::Code::Internal,
        }
    }
}

impl ServiceError {
    /// The `Retry-After` of a refusal that passes with time.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ServiceError::RateLimited { retry_after_secs }
            | ServiceError::Busy { retry_after_secs }
            | ServiceError::ExportsBusy { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

/// When to try an export again after [`ServiceError::ExportsBusy`].
const EXPORTS_RETRY_AFTER_SECS: u64 = 10;

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        if let StoreError::BadQuery(message) = error {
            return ServiceError::BadRequest(message);
        }
        if let StoreError::ExportsBusy = error {
            return ServiceError::ExportsBusy {
                retry_after_secs: EXPORTS_RETRY_AFTER_SECS,
            };
        }
        if error.is_unavailable() {
            tracing::warn!(%error, "database call failed");
            ServiceError::Unavailable(error)
        } else {
            tracing::error!(%error, "store error");
            ServiceError::Internal(error)
        }
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(error: ServiceError) -> Self {
        tonic::Status::new(error.grpc_code(), error.to_string())
    }
}
