//! Central's HTTP side: one route table (`routes::table`: method, path, permission, handler)
//! feeding the router, the permission check and the OpenAPI test; the JSON API (`api`) and the
//! server-rendered dashboard (`web`) as thin adapters over `central_core::service`; who asks
//! (`middleware`), the extractors and the HTTP mapping of errors (`extract`, `error`), and the
//! Prometheus scrape endpoint (`metrics`). Invariant: the only central crate that knows axum,
//! maud, JSON shapes and HTML.

pub(crate) mod api;
pub mod error;
pub(crate) mod extract;
pub mod metrics;
pub(crate) mod middleware;
pub mod routes;
pub mod state;
pub mod web;
