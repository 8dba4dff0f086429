//! TLS for every onshi-fleet process.
//!
//! One place decides how the processes trust each other, so that no binary can drift:
//! - [`config`] builds rustls configs: TLS 1.3 only, the ring provider, client certificates
//!   required on every server.
//! - [`identity`] reads who a peer is from its certificate (the site code of an agent, the
//!   institution code and terminal of a qualification terminal) and summarises certificates
//!   for the inventory.
//! - [`deny`] refuses revoked client certificates at the handshake.
//! - [`renewal`] makes an agent's certificate signing request and signs it at central with
//!   the chain CA (self-renewing agent certificates).
//! - [`devpki`] generates the development PKI (`central pki init`); no key is ever committed.
//! - [`listen`] turns a bound TCP listener into TLS connections for tonic and axum, handshaking
//!   concurrently so one slow client cannot stall the accept loop.

pub mod config;
pub mod connect;
pub mod deny;
pub mod devpki;
pub mod identity;
pub mod listen;
pub mod renewal;

pub use config::{Identity, TlsError};
