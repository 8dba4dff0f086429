//! Wiring: settings → TLS, population and router → a bound listener → serving until stopped.
//!
//! [`Simulator::build`] binds the listener (port 0 is fine) and reports the address it got, so
//! tests and scripts can start the simulator on a free port.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleet_tls::config::{ALPN_H2, ALPN_HTTP11, Identity, load_certificates, server_config};
use rustls::ServerConfig;

use crate::faults::Faults;
use crate::http;
use crate::population::Population;
use crate::service::Service;

/// Everything `onshi-sim serve` needs.
#[derive(Debug, Clone)]
pub struct SimSettings {
    pub listen: SocketAddr,
    /// The simulator's server certificate chain (PEM).
    pub tls_cert: PathBuf,
    /// Its private key (PEM).
    pub tls_key: PathBuf,
    /// The CA(s) whose terminal certificates are accepted (the common CA).
    pub client_ca: PathBuf,
    pub seed: u64,
    pub population: usize,
    /// Delay before every eligibility answer.
    pub latency: Duration,
}

/// A simulator with its listener bound, ready to serve.
#[derive(Debug)]
pub struct Simulator {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    tls: Arc<ServerConfig>,
    population: Arc<Population>,
    router: axum::Router,
    faults: Arc<Faults>,
    consents: Arc<crate::consent::Consents>,
    windows: Arc<crate::disaster::DisasterWindows>,
    bulk: Arc<crate::bulk::BulkRoute>,
}

impl Simulator {
    /// Loads the TLS material, generates the population and binds the listener.
    pub fn build(settings: &SimSettings) -> anyhow::Result<Self> {
        let identity = Identity::from_pem_files(&settings.tls_cert, &settings.tls_key)
            .context("loading the simulator's server certificate and key")?;
        let client_roots = load_certificates(&settings.client_ca)
            .context("loading the CA that issues terminal certificates")?;
        let tls = server_config(&identity, &client_roots, &[ALPN_H2, ALPN_HTTP11])
            .context("building the TLS configuration")?;

        let population = Arc::new(Population::generate(settings.seed, settings.population));
        let service = Arc::new(Service::new(population.clone()));
        let faults = Arc::new(Faults::default());
        let consents = Arc::new(crate::consent::Consents::default());
        let windows = Arc::new(crate::disaster::DisasterWindows::default());
        let info = Arc::new(crate::info::InfoRoute::new(
            service.clone(),
            consents.clone(),
            windows.clone(),
            faults.clone(),
        ));
        let bulk = Arc::new(crate::bulk::BulkRoute::new(service.clone(), faults.clone()));
        let router = http::router_with_faults(service, settings.latency, faults.clone())
            .merge(info.router())
            .merge(bulk.clone().router());

        let listener = std::net::TcpListener::bind(settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        listener
            .set_nonblocking(true)
            .context("making the listener non-blocking")?;
        let addr = listener.local_addr().context("reading the bound address")?;
        Ok(Self {
            listener,
            addr,
            tls,
            population,
            router,
            faults,
            consents,
            windows,
            bulk,
        })
    }

    /// Sets the time from a batch inquiry's acceptance to its results being ready
    /// ([`crate::bulk`]; default [`crate::bulk::DEFAULT_BATCH_DELAY`]).
    pub fn with_batch_delay(self, delay: Duration) -> Self {
        self.bulk.set_delay(delay);
        self
    }

    /// The batch inquiry route (`OQSmuquc01`/`OQSmuquc02`), live while serving.
    pub fn bulk(&self) -> &Arc<crate::bulk::BulkRoute> {
        &self.bulk
    }

    /// Adds the My Number card route ([`crate::card`]) for cards issued by the J-LIS CA
    /// certificate in `jlis_ca` (PEM).
    pub fn with_card_route(mut self, jlis_ca: &std::path::Path) -> anyhow::Result<Self> {
        let service = Arc::new(Service::new(self.population.clone()));
        let route = Arc::new(
            crate::card::CardRoute::load(service, jlis_ca)?.with_consents(self.consents.clone()),
        );
        self.router = self.router.merge(route.router());
        Ok(self)
    }

    /// The disaster windows (災害時医療情報閲覧) in force, live while serving.
    pub fn disaster_windows(&self) -> &Arc<crate::disaster::DisasterWindows> {
        &self.windows
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The people this simulator answers for.
    pub fn population(&self) -> &Arc<Population> {
        &self.population
    }

    /// The fault knobs (outage, injected errors), live while serving.
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// Serves HTTPS until `shutdown` completes, then lets requests in flight finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::from_std(self.listener)
            .context("handing the listener to the runtime")?;
        tracing::info!(addr = %self.addr, people = self.population.len(), "onshi-sim serving");
        fleet_tls::listen::serve_https(listener, self.tls, self.router, shutdown).await;
        tracing::info!("onshi-sim stopped");
        Ok(())
    }
}
