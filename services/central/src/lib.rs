//! The central service: ingests the event streams of every site's agent into PostgreSQL and
//! serves what chain IT and auditors need to see. See ARCHITECTURE.md for the whole picture.

pub mod api;
pub mod app;
pub mod audit;
pub mod audit_report;
pub mod auth;
pub mod error;
pub mod extract;
pub mod fleet_metrics;
pub mod health;
pub mod ingest;
pub mod limits;
pub mod maintenance;
pub mod notify;
pub mod renewal;
pub mod sealing;
pub mod spreadsheet;
pub mod store;
pub mod web;
pub mod writer;
