//! `central health`: asks a running central's standard gRPC health service over mutual TLS.
//!
//! Kubernetes' native gRPC probe cannot present a client certificate, and central's gRPC port
//! requires one, so the chart runs this as an exec probe inside the pod: it connects to
//! 127.0.0.1 with central's own certificate (issued with the clientAuth purpose too) and verifies
//! central's certificate for the name the certificate carries.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use fleet_tls::config::{self, ALPN_H2};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Which status a probe asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The uplink: SERVING while central can store what agents send (PostgreSQL answers).
    Readiness,
    /// The process: SERVING while central runs and answers at all.
    Liveness,
    /// The database commits synchronously to a standby: an ack survives a failover.
    SynchronousStandby,
}

/// The health service name central reports synchronous replication under.
pub(crate) const SYNCHRONOUS_STANDBY_SERVICE: &str = "onshi.fleet.v1.SynchronousStandby";

/// The status `probe` asks for.
pub async fn check(
    probe: Probe,
    addr: SocketAddr,
    server_name: &str,
    cert: &Path,
    key: &Path,
    ca: &Path,
    timeout: Duration,
) -> anyhow::Result<ServingStatus> {
    let identity =
        config::Identity::from_pem_files(cert, key).context("loading the certificate")?;
    let roots = config::load_certificates(ca).context("loading the chain CA")?;
    let tls = config::client_config(Some(&identity), &roots, &[ALPN_H2])?;
    let channel = fleet_tls::connect::grpc_channel_via(
        &addr.ip().to_string(),
        addr.port(),
        server_name,
        tls,
    )?;
    let service = match probe {
        Probe::Readiness => proto::fleet::v1::fleet_uplink_server::SERVICE_NAME,
        Probe::Liveness => "",
        Probe::SynchronousStandby => SYNCHRONOUS_STANDBY_SERVICE,
    };
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    let response = tokio::time::timeout(timeout, HealthClient::new(channel).check(request))
        .await
        .with_context(|| format!("no answer from {addr} within {timeout:?}"))?
        .with_context(|| format!("the health check of {addr} failed"))?;
    Ok(response.into_inner().status())
}
