//! Wires central together: TLS material, the store, the gRPC ingest and the JSON API.
//!
//! `Application::build` refuses a database role that owns the schema (the audit trail's
//! append-only protections do not hold against the owner) unless told it is development,
//! migrates (with the owner's URL when given) or checks the schema is current, and binds the
//! listeners (port 0 works; the bound ports are reported); `run_until_stopped` serves until the
//! shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use fleet_tls::config::{self, ALPN_H2, ALPN_HTTP11};
use fleet_tls::listen::{
    ListenerLimits, Revocations, serve_https, serve_https_revocable, tls_incoming,
};
use proto::fleet::v1::fleet_uplink_server::FleetUplinkServer;
use tokio::net::TcpListener;

use central_core::maintenance::{self, MaintenanceConfig};
use central_ingest::ingest::{Ingest, MAX_MESSAGE_BYTES};
use central_ingest::limits::RateLimiter;
use central_ingest::writer::{Writer, WriterConfig};
use central_store::{self as store, DatabaseUrl, Pooler, Store, WriteMethod};

/// How central is started. Every field has a flag and an environment variable (see `main.rs`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub grpc_listen: SocketAddr,
    /// The JSON API for operators (client certificates required).
    pub http_listen: SocketAddr,
    /// The dashboard and the JSON API for accounts (sign-in or API token; no client
    /// certificate asked). None: no dashboard.
    pub web_listen: Option<SocketAddr>,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// The chain CA: operators must present a certificate it issued itself (a certificate
    /// under a sub-CA, the agent CA's included, is refused on the operator listener).
    pub client_ca: PathBuf,
    /// The agent sub-CA: the only issuer the agent listener takes (besides central's own
    /// certificate, for its health probe), so an operator's certificate is refused there.
    pub agent_ca: PathBuf,
    /// central's own login role: a member of `onshi_app`, owning nothing.
    pub database_url: DatabaseUrl,
    /// What stands between central and `database_url`: with nothing (or a session-mode
    /// pooler), ingest keeps its statements prepared.
    pub database_pooler: Pooler,
    /// A replica for the pages, the JSON API's listings and the auditor's search (reads that
    /// tolerate lag); None: the primary serves them.
    pub read_database_url: Option<DatabaseUrl>,
    /// From how far behind the replica the pages say how old their data is.
    pub replica_lag_warning: std::time::Duration,
    pub db_pool_size: usize,
    /// Migrate at start (without: only check the schema is current).
    pub migrate_on_start: bool,
    /// The schema owner's URL, for migrating at start; without it, central migrates with
    /// `database_url` only if that is the owner (development), and otherwise checks the schema
    /// is current (a separate `central migrate` ran as the owner).
    pub migrate_database_url: Option<DatabaseUrl>,
    /// Serve even when `database_url` is the schema owner or a superuser (development only;
    /// the append-only protections do not hold then, and a warning says so at every start).
    pub allow_schema_owner: bool,
    /// Refuse to serve unless the database commits synchronously to a standby (an ack then
    /// survives a failover; `store::durability`).
    pub require_synchronous_standby: bool,
    /// The key that signs the daily seals (`central seal-key init`); without one, no seals.
    pub seal_key: Option<PathBuf>,
    /// The chain's patient hash key (the agents' `patient_hash_key_file`): lets auditors search
    /// by insurance card details. Without it, searches name the patient by `patient_ref`.
    pub patient_key: Option<PathBuf>,
    /// The chain CA's certificate and key, to sign agents' certificate renewals; without,
    /// renewals are refused (and the sites renew through the chain's PKI process).
    pub renewal: Option<central_ingest::renewal::RenewalSettings>,
    /// Webhooks and mail.
    pub notify: central_core::notify::NotifySettings,
    pub tuning: Tuning,
}

/// Ingest, limits and background work; the defaults suit production, tests shrink them.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    pub writer: WriterConfig,
    /// A session that waited this long for its commit ends with UNAVAILABLE.
    pub write_timeout: std::time::Duration,
    /// Events per second per site (0: no limit), and the burst a site may send at once.
    pub events_per_second: u32,
    pub events_burst: u32,
    pub maintenance: MaintenanceConfig,
    /// How new rows are written; only the benchmark changes it.
    pub write_method: WriteMethod,
    /// How often readiness (the uplink's gRPC health status) asks PostgreSQL.
    pub readiness_interval: std::time::Duration,
    /// Sign-in passwords checked at once (argon2id, 19 MiB each); more attempts at the same
    /// moment are answered 429 with Retry-After. Default: one per core.
    pub sign_in_checks: usize,
    /// Logins and addresses the sign-in limiter remembers at most.
    pub sign_in_keys: usize,
    /// Agent sessions one site may hold open on this replica at once.
    pub sessions_per_site: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            writer: WriterConfig::default(),
            write_timeout: std::time::Duration::from_secs(30),
            events_per_second: 5_000,
            events_burst: 50_000,
            maintenance: MaintenanceConfig::default(),
            write_method: WriteMethod::Copy,
            readiness_interval: std::time::Duration::from_secs(5),
            sign_in_checks: central_core::auth::rate_limit::Limits::default().concurrent_checks,
            sign_in_keys: central_core::auth::rate_limit::MAX_KEYS,
            sessions_per_site: central_ingest::ingest::DEFAULT_SESSIONS_PER_SITE,
        }
    }
}

/// Connections of the notification worker's own pool (claims and outcomes are short).
const NOTIFY_POOL_SIZE: usize = 2;

pub struct Application {
    grpc: TcpListener,
    http: TcpListener,
    web: Option<TcpListener>,
    grpc_tls: std::sync::Arc<rustls::ServerConfig>,
    http_tls: std::sync::Arc<rustls::ServerConfig>,
    web_tls: std::sync::Arc<rustls::ServerConfig>,
    store: Store,
    /// The group writers' own pool, its connections on the writers' runtime (`Writer::spawn`).
    writer_store: Store,
    seal_key: Option<std::sync::Arc<central_store::sealing::SealKey>>,
    patient_key: Option<std::sync::Arc<onshi_domain::patient::PatientHashKey>>,
    deny: fleet_tls::deny::DenyList,
    /// Reports a revoked certificate refused at a handshake or, on the operator listener, at a
    /// request of a connection opened before the revocation.
    on_refused: fleet_tls::deny::OnRefused,
    refused: tokio::sync::mpsc::Receiver<[u8; 32]>,
    renewals: central_ingest::renewal::Renewals,
    notification_key: Option<std::sync::Arc<central_core::notify::key::NotificationKey>>,
    notifier: central_core::notify::worker::Notifier,
    durability: store::durability::Durability,
    /// With a read replica: from how far behind the pages say so.
    replica_lag_warning: Option<std::time::Duration>,
    tuning: Tuning,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("grpc", &self.grpc.local_addr().ok())
            .field("http", &self.http.local_addr().ok())
            .field("web", &self.web_addr())
            .finish()
    }
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let identity = config::Identity::from_pem_files(&settings.tls_cert, &settings.tls_key)
            .context("loading central's server certificate")?;
        let client_roots =
            config::load_certificates(&settings.client_ca).context("loading the chain CA")?;
        let agent_roots =
            config::load_certificates(&settings.agent_ca).context("loading the agent CA")?;
        // Revoked certificates are refused at every handshake; the refusals are audited by a
        // task of `run_until_stopped` (the verifier cannot wait for the database).
        let deny = fleet_tls::deny::DenyList::default();
        let (refused_tx, refused) = tokio::sync::mpsc::channel::<[u8; 32]>(REFUSALS_QUEUE);
        let on_refused: fleet_tls::deny::OnRefused = std::sync::Arc::new(move |fingerprint| {
            let _ = refused_tx.try_send(fingerprint); // a full queue: the log line below stands
            tracing::warn!(fingerprint = %onshi_domain::hex::encode(&fingerprint), "a revoked certificate was refused");
        });
        // Agents' certificates come from the agent sub-CA, operators' from the chain CA itself:
        // each listener takes only its own, so the agent CA's key (which central holds online
        // to sign renewals) can mint nothing an operator listener takes.
        let grpc_tls = config::server_config_with_deny_list(
            &identity,
            &agent_roots,
            &[ALPN_H2],
            fleet_tls::deny::Trust::ChainsAnd(identity.leaf().clone()),
            deny.clone(),
            on_refused.clone(),
        )?;
        let http_tls = config::server_config_with_deny_list(
            &identity,
            &client_roots,
            &[ALPN_H2, ALPN_HTTP11],
            fleet_tls::deny::Trust::DirectlyIssued,
            deny.clone(),
            on_refused.clone(),
        )?;
        // People's browsers have no client certificate: the dashboard listener does not ask
        // for one, and every request there is authenticated by session or API token.
        let web_tls =
            config::server_config_without_client_auth(&identity, &[ALPN_H2, ALPN_HTTP11])?;

        let pool = store::connect(&settings.database_url, settings.db_pool_size)?;
        let mut store = Store::new(pool).with_write_method(settings.tuning.write_method);
        if let Some(url) = &settings.read_database_url {
            store = store.with_replica(store::connect(url, settings.db_pool_size)?);
        }
        let durability = prepare_database(settings, &store).await?;
        let grpc = TcpListener::bind(settings.grpc_listen)
            .await
            .with_context(|| format!("binding gRPC listener {}", settings.grpc_listen))?;
        let http = TcpListener::bind(settings.http_listen)
            .await
            .with_context(|| format!("binding HTTPS listener {}", settings.http_listen))?;
        let web = match settings.web_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the dashboard listener {addr}"))?,
            ),
            None => None,
        };
        let patient_key = settings
            .patient_key
            .as_ref()
            .map(|path| -> anyhow::Result<_> {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the patient hash key {}", path.display()))?;
                let key = onshi_domain::patient::PatientHashKey::from_hex(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                Ok(std::sync::Arc::new(key))
            })
            .transpose()?;
        deny.replace(
            store
                .revoked_fingerprints()
                .await
                .context("loading the revoked certificates")?,
        );
        deny.replace_sites(
            store
                .revoked_sites()
                .await
                .context("loading the revoked sites")?,
        );
        let seal_key = match &settings.seal_key {
            Some(path) => Some(std::sync::Arc::new(central_store::sealing::SealKey::load(
                path,
            )?)),
            None => {
                tracing::warn!("no seal key (--seal-key): streams are verified but not sealed");
                None
            }
        };
        let renewals = match &settings.renewal {
            Some(renewal) => central_ingest::renewal::Renewals::load(renewal)
                .context("loading the chain CA that signs agent renewals")?,
            None => central_ingest::renewal::Renewals::disabled(),
        };
        let notification_key = settings
            .notify
            .key()
            .context("loading the notification key")?;
        let writer_store = Store::new(store::connect(
            &settings.database_url,
            settings.tuning.writer.writers.max(1),
        )?)
        .with_write_method(settings.tuning.write_method)
        .with_pooler(settings.database_pooler);
        // Its own small pool: deliveries waiting on slow receivers never take ingest's slots.
        let notify_pool = store::connect(&settings.database_url, NOTIFY_POOL_SIZE)?;
        let notifier = settings
            .notify
            .notifier(Store::new(notify_pool), notification_key.clone())
            .context("setting up notifications")?;
        Ok(Self {
            grpc,
            http,
            web,
            grpc_tls,
            http_tls,
            web_tls,
            store,
            writer_store,
            seal_key,
            patient_key,
            deny,
            on_refused,
            refused,
            renewals,
            notification_key,
            notifier,
            durability,
            replica_lag_warning: settings
                .read_database_url
                .as_ref()
                .map(|_| settings.replica_lag_warning),
            tuning: settings.tuning,
        })
    }

    /// What the database promised at start about acknowledged commits.
    pub fn durability(&self) -> &store::durability::Durability {
        &self.durability
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Where the dashboard answers, when it was asked for.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web
            .as_ref()
            .map(|web| web.local_addr().expect("bound listener has an address"))
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
        // As read at start; the readiness follower keeps it current.
        health_reporter
            .set_service_status(
                crate::health::SYNCHRONOUS_STANDBY_SERVICE,
                if self.durability.synchronous() {
                    tonic_health::ServingStatus::Serving
                } else {
                    tonic_health::ServingStatus::NotServing
                },
            )
            .await;
        health_reporter
            .set_serving::<FleetUplinkServer<Ingest>>()
            .await;
        let tuning = self.tuning;
        tokio::spawn(follow_revocations(
            self.store.clone(),
            self.deny.clone(),
            self.refused,
            stopped(stop_rx.clone()),
        ));
        tokio::spawn(follow_readiness(
            self.store.clone(),
            health_reporter,
            tuning.readiness_interval,
            stopped(stop_rx.clone()),
        ));
        // Kept until the end: the pool gauge is read at each metrics collection.
        let _pool_gauge = pool_gauge(self.store.clone());
        let writer = Writer::spawn(self.writer_store.clone(), tuning.writer);
        let limits = std::sync::Arc::new(RateLimiter::new(
            tuning.events_per_second,
            tuning.events_burst,
        ));
        let ingest = Ingest::new(
            self.store.clone(),
            writer,
            limits,
            tuning.write_timeout,
            self.deny.clone(),
        )
        .with_renewals(self.renewals.clone())
        .with_silence(tuning.maintenance.silence)
        .with_sessions_per_site(tuning.sessions_per_site);
        let uplink = FleetUplinkServer::new(ingest).max_decoding_message_size(MAX_MESSAGE_BYTES);
        tokio::spawn(maintenance::run(
            self.store.clone(),
            tuning.maintenance,
            self.seal_key.clone(),
            stopped(stop_rx.clone()),
        ));
        tokio::spawn(self.notifier.run(stopped(stop_rx.clone())));
        if let Some(warn_after) = self.replica_lag_warning {
            tokio::spawn(central_http::web::freshness::follow(
                self.store.clone(),
                warn_after,
                stopped(stop_rx.clone()),
            ));
        }
        // Explicit HTTP/2 windows: with the one decoded batch a waiting session holds, they bound
        // what a connection can make central buffer while its writes wait for PostgreSQL.
        let grpc = tonic::transport::Server::builder()
            .initial_stream_window_size(Some(1024 * 1024))
            .initial_connection_window_size(Some(1024 * 1024))
            .add_service(health_service)
            .add_service(uplink)
            .serve_with_incoming_shutdown(
                tls_incoming(self.grpc, self.grpc_tls),
                stopped(stop_rx.clone()),
            );
        let router = central_http::routes::router_with(central_http::state::ApiState {
            store: self.store.clone(),
            patient_key: self.patient_key.clone(),
            deny: self.deny.clone(),
            limiter: central_core::auth::rate_limit::SignInLimiter::new(
                central_core::auth::rate_limit::Limits {
                    concurrent_checks: tuning.sign_in_checks,
                    max_keys: tuning.sign_in_keys,
                    ..central_core::auth::rate_limit::Limits::default()
                },
            ),
            notification_key: self.notification_key.clone(),
        });
        let web = {
            let (listener, tls, router) = (self.web, self.web_tls, router.clone());
            let stop = stopped(stop_rx.clone());
            async move {
                if let Some(listener) = listener {
                    serve_https(listener, tls, router, stop).await;
                }
            }
        };
        // Operators' connections are checked against the deny list at every request too: a
        // certificate revoked while its HTTP/2 connection is open is refused and the
        // connection closed.
        let http = serve_https_revocable(
            self.http,
            self.http_tls,
            router,
            ListenerLimits::DEFAULT,
            Revocations {
                deny: self.deny.clone(),
                refused: self.on_refused.clone(),
            },
            stopped(stop_rx),
        );
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
        let (grpc, (), ()) = tokio::join!(grpc, http, web);
        grpc.context("gRPC server")?;
        Ok(())
    }
}

/// Refuses a schema owner (unless allowed), migrates or checks the schema, makes this month's
/// partitions and says whether acks survive a failover (refusing to serve without a synchronous
/// standby when told to), before anything is served.
async fn prepare_database(
    settings: &Settings,
    store: &Store,
) -> anyhow::Result<store::durability::Durability> {
    // Before migrating: a refused owner changes nothing.
    check_session_role(store, settings.allow_schema_owner, false).await?;
    if settings.migrate_on_start {
        let applied = match &settings.migrate_database_url {
            Some(owner_url) => {
                let owner = store::connect(owner_url, 1)?;
                store::migrate::migrate(&owner).await
            }
            None => {
                let role = store.session_role().await?;
                if role.owns_schema() {
                    store::migrate::migrate(store.pool()).await
                } else {
                    require_current_schema(store).await?;
                    Ok(Vec::new())
                }
            }
        }
        .context("applying database migrations")?;
        if !applied.is_empty() {
            tracing::info!(?applied, "database migrated");
        }
    } else {
        require_current_schema(store).await?;
    }
    // After migrating: `events` exists now, and its owner is known.
    check_session_role(store, settings.allow_schema_owner, true).await?;
    // Ingest must find this month's partition from the first batch on; the maintenance loop
    // keeps creating them ahead.
    let created = store
        .ensure_partitions(
            time::OffsetDateTime::now_utc(),
            settings.tuning.maintenance.partition_months_ahead,
        )
        .await
        .context("creating event partitions")?;
    if !created.is_empty() {
        tracing::info!(?created, "event partitions created");
    }
    let durability = store
        .durability()
        .await
        .context("reading the database's replication settings")?;
    if durability.synchronous() {
        tracing::info!(durability = %durability.describe(), "acks wait for a synchronous standby");
    } else if settings.require_synchronous_standby {
        anyhow::bail!(
            "the database does not commit synchronously to a standby ({}), and \
             --require-synchronous-standby was given: an ack would be on the primary alone and \
             lost by a failover. Set synchronous_standby_names and synchronous_commit = on \
             (docs/scale.md, High availability)",
            durability.describe()
        );
    } else {
        tracing::warn!(
            durability = %durability.describe(),
            "acks are on the primary alone: a failover to a standby can lose acknowledged events"
        );
    }
    Ok(durability)
}

/// Central serving as the schema owner (or a superuser) would pass the append-only trigger and
/// every grant: refused, unless `allow` (development), which is then said loudly (once per
/// start, when `warn`).
async fn check_session_role(store: &Store, allow: bool, warn: bool) -> anyhow::Result<()> {
    let role = store
        .session_role()
        .await
        .context("asking PostgreSQL which role central is")?;
    if !role.owns_schema() {
        return Ok(());
    }
    if !allow {
        anyhow::bail!(
            "データベースのロール {user} はスキーマの所有者権限を持つため起動しません（監査ログの追記専用の保護が効きません）: \
             central's database role {user} {why}, so the audit trail's append-only protections \
             would not apply to it; central refuses to serve. Give DATABASE_URL a login role \
             that is a member of onshi_app and owns nothing (CREATE ROLE central_app LOGIN \
             PASSWORD '...' IN ROLE onshi_app), and run the migrations with the owner's URL \
             (`central migrate`, or --migrate-database-url). For development only, \
             --allow-schema-owner (CENTRAL_ALLOW_SCHEMA_OWNER=true) serves anyway.",
            user = role.user,
            why = role.why(),
        );
    }
    if warn {
        tracing::warn!(
            role = %role.user,
            why = role.why(),
            "DEVELOPMENT ONLY: serving as the schema owner (--allow-schema-owner): the audit \
             trail is NOT append-only for this process; never run like this in production"
        );
    }
    Ok(())
}

/// Without migrating, the schema must have every migration this binary knows. A newer schema
/// (the migration job of an upgrade ran before this replica restarted) is served, with a warning.
async fn require_current_schema(store: &Store) -> anyhow::Result<()> {
    let status = store::migrate::status(store.pool())
        .await
        .context("reading the schema version")?;
    if status.current_version < status.latest_version {
        anyhow::bail!(
            "データベースのスキーマ（バージョン{}）が古いため起動しません（このcentralは{}）: the \
             database schema is at version {}, this central needs {}; run `central migrate` as \
             the schema owner first (or give --migrate-database-url)",
            status.current_version,
            status.latest_version,
            status.current_version,
            status.latest_version
        );
    }
    if status.current_version > status.latest_version {
        tracing::warn!(
            database = status.current_version,
            binary = status.latest_version,
            "the database schema is newer than this central knows; upgrade central"
        );
    }
    Ok(())
}

/// `central_db_pool_connections{state}`: connections in use, idle, the pool's maximum, and
/// callers waiting for one. Read at each metrics collection; a no-op when metrics are off.
fn pool_gauge(store: Store) -> opentelemetry::metrics::ObservableGauge<u64> {
    use opentelemetry::KeyValue;
    opentelemetry::global::meter("central")
        .u64_observable_gauge("central_db_pool_connections")
        .with_description("PostgreSQL connections by state: in_use, idle, max, waiting")
        .with_callback(move |observer| {
            let status = store.pool_status();
            for (value, state) in [
                (status.in_use, "in_use"),
                (status.idle, "idle"),
                (status.max, "max"),
                (status.waiting, "waiting"),
            ] {
                observer.observe(value as u64, &[KeyValue::new("state", state)]);
            }
        })
        .build()
}

/// Keeps the uplink's gRPC health status on what agents need from this replica: SERVING while
/// PostgreSQL answers, NOT_SERVING while it does not (a batch could not be acked), so the load
/// balancer sends agents to replicas that can store. The overall status ("") stays SERVING:
/// that is liveness, and restarting central does not bring a database back.
async fn follow_readiness(
    store: Store,
    reporter: tonic_health::server::HealthReporter,
    interval: std::time::Duration,
    stop: impl Future<Output = ()>,
) {
    let follow = async {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ready = true;
        let mut synchronous = None::<bool>;
        loop {
            tick.tick().await;
            // `central health --synchronous-standby`: whether an ack is on two servers now.
            if let Ok(Ok(durability)) =
                tokio::time::timeout(interval.max(MIN_READINESS_WAIT), store.durability()).await
                && synchronous != Some(durability.synchronous())
            {
                synchronous = Some(durability.synchronous());
                let status = if durability.synchronous() {
                    tonic_health::ServingStatus::Serving
                } else {
                    tonic_health::ServingStatus::NotServing
                };
                reporter
                    .set_service_status(crate::health::SYNCHRONOUS_STANDBY_SERVICE, status)
                    .await;
            }
            let answers = tokio::time::timeout(interval.max(MIN_READINESS_WAIT), store.ping())
                .await
                .is_ok_and(|r| r.is_ok());
            if answers == ready {
                continue;
            }
            ready = answers;
            if ready {
                tracing::info!("PostgreSQL answers again: the uplink is ready");
                reporter.set_serving::<FleetUplinkServer<Ingest>>().await;
            } else {
                tracing::warn!("PostgreSQL does not answer: the uplink reports NOT_SERVING");
                reporter
                    .set_not_serving::<FleetUplinkServer<Ingest>>()
                    .await;
            }
        }
    };
    tokio::select! {
        () = stop => {}
        () = follow => {}
    }
}

/// The least time a readiness query gets, however short the interval.
const MIN_READINESS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Completed refusals of revoked certificates waiting to be audited.
const REFUSALS_QUEUE: usize = 256;
/// How often a replica reloads the deny list (revocations made through another replica).
const DENY_LIST_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);
/// One audit row per revoked certificate and minute at most (an agent retries with backoff).
const REFUSAL_AUDIT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Keeps the handshake's deny list on the database's revocations, and audits each refusal.
async fn follow_revocations(
    store: Store,
    deny: fleet_tls::deny::DenyList,
    mut refused: tokio::sync::mpsc::Receiver<[u8; 32]>,
    stop: impl Future<Output = ()>,
) {
    let follow = async {
        let mut tick = tokio::time::interval(DENY_LIST_REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut audited: std::collections::HashMap<[u8; 32], tokio::time::Instant> =
            std::collections::HashMap::new();
        loop {
            tokio::select! {
                _ = tick.tick() => match (store.revoked_fingerprints().await, store.revoked_sites().await) {
                    (Ok(list), Ok(sites)) => {
                        deny.replace(list);
                        deny.replace_sites(sites);
                    }
                    (Err(error), _) | (_, Err(error)) => tracing::warn!(%error, "could not reload the revocations; keeping the list in memory"),
                },
                Some(fingerprint) = refused.recv() => {
                    let now = tokio::time::Instant::now();
                    if audited.get(&fingerprint).is_some_and(|at| now - *at < REFUSAL_AUDIT_EVERY) {
                        continue;
                    }
                    audited.insert(fingerprint, now);
                    let detail = format!(
                        "a revoked certificate ({}) was refused (at the TLS handshake, or at a request on a connection opened before its revocation)",
                        onshi_domain::hex::encode(&fingerprint)
                    );
                    if let Err(error) = store
                        .record_security_event("revoked_certificate_refused", None, None, &detail)
                        .await
                    {
                        tracing::error!(%error, "could not audit a refused revoked certificate");
                    }
                }
            }
        }
    };
    tokio::select! {
        () = stop => {}
        () = follow => {}
    }
}
