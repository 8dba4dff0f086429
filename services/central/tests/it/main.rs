//! Central's tests, one binary (one link instead of one per file): the store, the ingest
//! session, the API and the dashboard against real PostgreSQL, through the real router and
//! real TLS on loopback; a module per area, and `support` for what they all start from.

mod support;

mod access;
mod availability;
mod browser;
mod certificates;
mod chain;
mod dashboard;
mod dashboard_rollout;
mod fleet_gauges;
mod grace;
mod notifications;
mod openapi;
mod retention;
mod roles;
mod rollouts;
mod sign_in;
mod store;
mod summaries;
mod uplink;
