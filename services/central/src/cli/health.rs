//! `central health`: the Kubernetes probe, asking a running central over mTLS.

use std::net::SocketAddr;

use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// Where central's gRPC listener answers (inside a pod: 127.0.0.1 and the gRPC port).
    #[arg(long, env = "CENTRAL_HEALTH_ADDR", default_value = "127.0.0.1:7443")]
    pub(crate) addr: SocketAddr,
    /// The name central's certificate is verified for (one of its DNS names).
    #[arg(long, env = "CENTRAL_HEALTH_SERVER_NAME", default_value = "localhost")]
    pub(crate) server_name: String,
    // central's own certificate (issued for clientAuth too) and the chain CA.
    #[command(flatten)]
    pub(crate) tls: super::TlsFiles,
    #[arg(long, default_value_t = 2)]
    pub(crate) timeout_secs: u64,
    /// Ask for liveness (the process answers) instead of readiness (it can store events).
    #[arg(long, conflicts_with = "synchronous_standby")]
    pub(crate) liveness: bool,
    /// Ask whether the database commits synchronously to a standby (an ack survives a
    /// failover): SERVING when it does.
    #[arg(long)]
    pub(crate) synchronous_standby: bool,
}

/// Asks central's health service; an error (exit 1) unless it is serving.
pub(crate) async fn check(args: HealthArgs) -> anyhow::Result<()> {
    let probe = if args.liveness {
        central::health::Probe::Liveness
    } else if args.synchronous_standby {
        central::health::Probe::SynchronousStandby
    } else {
        central::health::Probe::Readiness
    };
    let status = central::health::check(
        probe,
        args.addr,
        &args.server_name,
        &args.tls.tls_cert,
        &args.tls.tls_key,
        &args.tls.client_ca,
        std::time::Duration::from_secs(args.timeout_secs.max(1)),
    )
    .await?;
    println!("{}", status.as_str_name());
    if status == tonic_health::pb::health_check_response::ServingStatus::Serving {
        Ok(())
    } else {
        anyhow::bail!(
            "central at {} is not serving: {}",
            args.addr,
            status.as_str_name()
        )
    }
}
