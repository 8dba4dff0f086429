//! The use cases: one function per capability, called by every interface that offers it (the
//! JSON API in `central_http::api`, the dashboard in `central_http::web`). Input arrives parsed (`TryFrom`
//! at the boundary), and every listing takes the principal's `SiteScope`, so no interface can
//! list without one.
//!
//! Invariant: nothing here knows HTTP or HTML (no axum, no maud; a tidy test checks it), so
//! the interfaces stay thin adapters and cannot drift apart.

pub mod alerts;
pub mod audit;
pub mod rollouts;
