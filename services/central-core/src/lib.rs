//! Central's use cases and what they stand on, below every interface: `service` (one function
//! per capability, called by the JSON API and the dashboard alike), who asks and what they may
//! do (`auth`), the one error type of every interface (`error`), notifications (`notify`),
//! exports (`audit_report`, `spreadsheet`), background work (`maintenance`, `fleet_metrics`).
//! Invariant: knows no HTTP server or HTML (no axum, no maud; a tidy test reads the manifest).

pub mod audit_report;
pub mod auth;
pub mod error;
pub mod fleet_metrics;
pub mod form;
pub mod maintenance;
pub mod notify;
pub mod service;
pub mod spreadsheet;
