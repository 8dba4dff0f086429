//! The central service: ingests the event streams of every site's agent into PostgreSQL and
//! serves what chain IT and auditors need to see. See ARCHITECTURE.md for the whole picture.

pub(crate) mod api;
pub mod app;
pub mod error;
pub(crate) mod extract;
pub mod health;
pub(crate) mod middleware;
pub mod routes;
pub mod state;
pub(crate) mod web;
