//! onshi-sim: a stand-in for the national online eligibility system (オンライン資格確認) for
//! development, demos and tests.
//!
//! - [`population`]: the synthetic insured population, deterministic for a seed;
//! - [`service`]: the business rules, request in, result out, without I/O;
//! - [`http`]: the axum routes (`POST /oqs/OQSsiquc01`, `GET /healthz`);
//! - [`app`]: [`app::SimSettings`] and [`app::Simulator`], which bind and serve over TLS 1.3
//!   with terminal client certificates;
//! - [`errors`]: the simulator's own `SIM-` error codes (the national ones are not public).

pub mod app;
pub mod errors;
pub mod http;
pub mod population;
pub mod service;

pub use app::{SimSettings, Simulator};
