//! The central binary's wiring: `app` builds the store, the uplink (`central_ingest`), the HTTP
//! listeners (`central_http`) and the background tasks (`central_core`) and runs them until
//! stopped; `health` is `central health`. See ARCHITECTURE.md for the whole picture.

pub mod app;
pub mod health;
