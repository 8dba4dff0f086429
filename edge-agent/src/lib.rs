//! The edge agent: runs at a site, performs eligibility lookups, records every one as an event in
//! a durable outbox before answering, and streams the outbox to central. See ARCHITECTURE.md.

pub mod app;
pub mod backoff;
pub mod batch;
pub mod cards;
pub mod certs;
pub mod cli;
pub mod config;
pub mod consents;
pub mod control;
pub mod exchanges;
pub mod fault;
pub mod filex;
pub mod folder;
pub mod identity;
pub mod judge;
pub mod lookup;
pub mod national;
pub mod observed;
pub mod onshi;
pub mod outbox;
pub mod owner_only;
pub mod probe;
pub mod recorder;
pub mod resume;
#[cfg(windows)]
pub mod service;
pub mod uplink;
pub mod views;

/// The Windows service's name, which its certificate store is named after too
/// (`onshi-fleet-agent\MY`): [`service`] registers it, [`certs`] reads that store.
pub const SERVICE_NAME: &str = "onshi-fleet-agent";
