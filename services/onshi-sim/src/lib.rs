//! onshi-sim: a stand-in for the national online eligibility system (オンライン資格確認) for
//! development, demos and tests.
//!
//! - [`population`]: the synthetic insured population, deterministic for a seed;
//! - [`service`]: the business rules, request in, result out, without I/O;
//! - [`http`]: the axum routes (`POST /oqs/OQSsiquc01`, `GET /healthz`);
//! - [`app`]: [`app::SimSettings`] and [`app::Simulator`], which bind and serve over TLS 1.3
//!   with terminal client certificates;
//! - [`bulk`]: the two-step batch inquiry (`OQSmuquc01`, `OQSmuquc02`), a reception number
//!   then the results, each row answered by [`service`];
//! - [`card`]: the My Number card route (challenge, certificate and signature checks);
//! - [`errors`]: the simulator's own `SIM-` error codes (the national ones are not public);
//! - [`faults`]: knobs for outages and injected errors, set at start or at run time;
//! - [`info`]: drug and checkup information (`YZKsiquc01`, `TKKsiquc01`), answered from
//!   [`histories`] only with a card consent ([`consent`]) or an open [`disaster`] window;
//! - [`terminal`]: the qualification terminal's file interface (`req`/`res`/`face` folders),
//!   answering request files with the same logic, and the face reader (`terminal present`).

pub mod app;
pub mod bulk;
pub mod card;
pub mod consent;
pub mod disaster;
pub mod errors;
pub mod faults;
pub mod histories;
pub mod http;
pub mod info;
pub mod population;
pub mod service;
pub mod terminal;

pub use app::{SimSettings, Simulator};
