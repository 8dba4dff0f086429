//! Wires central together: TLS material, the store, the gRPC ingest and the JSON API.
//!
//! `Application::build` binds the listeners (port 0 works; the bound ports are reported) and
//! runs migrations; `run_until_stopped` serves until the shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use fleet_tls::config::{self, ALPN_H2, ALPN_HTTP11};
use fleet_tls::listen::{serve_https, tls_incoming};
use proto::fleet::v1::fleet_uplink_server::FleetUplinkServer;
use tokio::net::TcpListener;

use crate::ingest::{Ingest, MAX_BATCH_BYTES};
use crate::store::{self, DatabaseUrl, Store};

/// How central is started. Every field has a flag and an environment variable (see `main.rs`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// The chain CA: agents and operators must present a certificate it issued.
    pub client_ca: PathBuf,
    pub database_url: DatabaseUrl,
    pub db_pool_size: usize,
    pub migrate_on_start: bool,
}

pub struct Application {
    grpc: TcpListener,
    http: TcpListener,
    grpc_tls: std::sync::Arc<rustls::ServerConfig>,
    http_tls: std::sync::Arc<rustls::ServerConfig>,
    store: Store,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("grpc", &self.grpc.local_addr().ok())
            .field("http", &self.http.local_addr().ok())
            .finish()
    }
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let identity = config::Identity::from_pem_files(&settings.tls_cert, &settings.tls_key)
            .context("loading central's server certificate")?;
        let client_roots =
            config::load_certificates(&settings.client_ca).context("loading the chain CA")?;
        let grpc_tls = config::server_config(&identity, &client_roots, &[ALPN_H2])?;
        let http_tls = config::server_config(&identity, &client_roots, &[ALPN_H2, ALPN_HTTP11])?;

        let pool = store::connect(&settings.database_url, settings.db_pool_size)?;
        if settings.migrate_on_start {
            let applied = store::migrate::migrate(&pool)
                .await
                .context("applying database migrations")?;
            if !applied.is_empty() {
                tracing::info!(?applied, "database migrated");
            }
        }
        let grpc = TcpListener::bind(settings.grpc_listen)
            .await
            .with_context(|| format!("binding gRPC listener {}", settings.grpc_listen))?;
        let http = TcpListener::bind(settings.http_listen)
            .await
            .with_context(|| format!("binding HTTPS listener {}", settings.http_listen))?;
        Ok(Self {
            grpc,
            http,
            grpc_tls,
            http_tls,
            store: Store::new(pool),
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<FleetUplinkServer<Ingest>>()
            .await;
        let uplink = FleetUplinkServer::new(Ingest::new(self.store.clone()))
            .max_decoding_message_size(MAX_BATCH_BYTES);
        let grpc = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(uplink)
            .serve_with_incoming_shutdown(
                tls_incoming(self.grpc, self.grpc_tls),
                stopped(stop_rx.clone()),
            );
        let http = serve_https(
            self.http,
            self.http_tls,
            crate::api::router(self.store.clone()),
            stopped(stop_rx),
        );
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
        let (grpc, ()) = tokio::join!(grpc, http);
        grpc.context("gRPC server")?;
        Ok(())
    }
}
