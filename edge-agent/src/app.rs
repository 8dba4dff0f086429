//! Wires the agent: configuration → TLS identities → outbox → lookups, uplink, control socket.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleet_tls::config::{self, ALPN_H2};
use onshi_domain::patient::PatientHashKey;
use tokio::sync::Notify;

use crate::config::AgentConfig;
use crate::control::{self, Control};
use crate::filex::FileExchange;
use crate::identity::AgentIdentity;
use crate::lookup::Lookups;
use crate::national::{National, OnshiClient, TerminalMode, TransportKind};
use crate::outbox::Outbox;
use crate::probe::Probes;
use crate::recorder::Recorder;
use crate::uplink::{AgentFacts, Uplink};

pub struct Agent {
    uplink: Uplink,
    control: Control,
    listener: control::ControlListener,
    socket: PathBuf,
    cards: Option<Arc<crate::cards::Cards>>,
    file_exchange: Option<FileExchange>,
    probes: Option<Probes>,
    terminal: Option<TerminalTasks>,
    certificates: Option<crate::certs::CertificateWatch>,
    /// Samples the outbox and the link for the metrics, only when metrics are exported.
    metrics: Option<MetricsSampler>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("socket", &self.socket)
            .finish()
    }
}

impl Agent {
    pub async fn build(config: &AgentConfig) -> anyhow::Result<Self> {
        Self::build_with_env(config, &std::env::vars().collect()).await
    }

    /// [`Agent::build`] with the environment passed in (only the test fault-injection hook,
    /// [`crate::fault::FAULT_ENV`], is read from it).
    pub async fn build_with_env(
        config: &AgentConfig,
        env: &std::collections::HashMap<String, String>,
    ) -> anyhow::Result<Self> {
        let patient_key = load_patient_key(&config.patient_hash_key_file)?;
        let fault = crate::fault::Fault::from_env(env);
        if let Some(exposure) = crate::owner_only::private_folder(&config.data_dir)
            .with_context(|| format!("the data folder {}", config.data_dir.display()))?
        {
            tracing::warn!(folder = %config.data_dir.display(), was = %exposure.who, "the data folder could be read by other users; it is now the agent's alone");
        }
        let outbox = Outbox::open(&config.outbox_path(), config.outbox_options())?;
        // Damaged or missing records become loss events now, before anything is sent, so a bad
        // record can neither stall the stream nor stop the agent from starting.
        let report = outbox.verify(true).await?;
        if !report.is_clean() {
            tracing::warn!(
                damaged = report.damaged.len(),
                missing = report.missing.len(),
                "outbox records quarantined and replaced by loss events"
            );
        }

        // The national transport: the qualification terminal's folders (a real site) or
        // onshi-sim's HTTPS protocol ([`crate::national`]).
        let mut tap_parts = None;
        let (onshi, onshi_probe) = match config.onshi.transport {
            TransportKind::Direct => {
                let (endpoint, ca, cert, key) = config
                    .onshi
                    .direct()
                    .context("[onshi] transport = \"direct\" needs endpoint, ca, cert and key")?;
                let terminal = config::Identity::from_pem_files(cert, key)
                    .context("loading the terminal certificate for the national system")?;
                let onshi_roots = config::load_certificates(ca)?;
                // No ALPN here: hyper-rustls sets it from the HTTP versions it enables (and
                // panics if the config already has one).
                let onshi_tls = config::client_config(Some(&terminal), &onshi_roots, &[])?;
                let client = OnshiClient::new(
                    endpoint,
                    onshi_tls.clone(),
                    Duration::from_millis(config.onshi.timeout_ms),
                );
                (
                    National::Direct(Box::new(client)),
                    Some((endpoint.to_string(), onshi_tls)),
                )
            }
            TransportKind::Terminal => {
                let settings = config
                    .onshi
                    .terminal_settings()
                    .context("[onshi] transport = \"terminal\" needs folder")?;
                let journal = crate::national::journal::Journal::open(
                    &config.terminal_journal_path(),
                    outbox.stream_id().0.to_string(),
                )
                .context("opening the terminal journal")?;
                match settings.mode {
                    TerminalMode::Client => {
                        let terminal =
                            crate::national::terminal::Terminal::start(settings, journal, fault)?;
                        (National::Terminal(terminal), None)
                    }
                    // Tap mode sends nothing: the watcher is built once the recorder exists.
                    TerminalMode::Tap => {
                        let health = crate::observed::tap::Tap::health_for(&settings);
                        tap_parts = Some((settings, journal, health.clone()));
                        (National::Tap(health), None)
                    }
                }
            }
        };

        let agent_id = Arc::new(
            AgentIdentity::load(
                &config.central.cert,
                &config.central.key,
                config.site_code.clone(),
                config
                    .central
                    .renew_before_days
                    .map(|days| time::Duration::days(days.into())),
            )
            .context("loading the agent's certificate for central")?,
        );
        let central_roots = config::load_certificates(&config.central.ca)?;
        let central_tls =
            config::client_config_swappable(agent_id.presented(), &central_roots, &[ALPN_H2])?;
        let keepalive = Duration::from_secs(config.central.keepalive_secs.max(1));
        let channel = fleet_tls::connect::grpc_channel_with_keepalive(
            &config.central.endpoint,
            central_tls.clone(),
            keepalive,
        )?;
        let renewal = {
            let endpoint = config.central.endpoint.clone();
            crate::uplink::Renewal {
                identity: agent_id,
                connect: Arc::new(move || {
                    fleet_tls::connect::grpc_channel_with_keepalive(
                        &endpoint,
                        central_tls.clone(),
                        keepalive,
                    )
                }),
            }
        };

        let new_events = Arc::new(Notify::new());
        let facts = AgentFacts {
            site: config.site_code.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            config_hash: config.config_hash(),
        };
        let (uplink, link) = Uplink::new(
            outbox.clone(),
            channel.clone(),
            facts,
            new_events.clone(),
            Duration::from_millis(config.central.reconnect_max_ms),
        );
        let recorder = Recorder::new(config.site_code.clone(), outbox.clone(), new_events);
        let certificates = config.certificates.is_some().then(|| {
            crate::certs::CertificateWatch::new(
                config.watched_certificates(),
                config.certificates.clone().unwrap_or_default(),
                config.terminal_id.clone(),
                recorder.clone(),
            )
        });
        let consents = crate::consents::ConsentStore::open(&config.consents_path())
            .context("opening the consent store")?;
        let views = Arc::new(crate::views::Views::new(
            crate::views::ViewRules {
                site_kind: config.site_kind,
                prefecture: config.prefecture,
                policy: config.access_policy,
                staff: config.staff.clone(),
                disaster_windows: config.disaster_windows.clone(),
            },
            config.access_rules_path(),
            consents,
            onshi.clone(),
            recorder.clone(),
            patient_key.clone(),
            config.terminal_id.clone(),
        ));
        let cards = config.cards.as_ref().map(|settings| {
            Arc::new(
                crate::cards::Cards::new(
                    settings.clone(),
                    Arc::new(card_reader::pcsc_readers::PcscReaders::new()),
                    recorder.clone(),
                    onshi.clone(),
                    patient_key.clone(),
                    config.terminal_id.clone(),
                )
                .with_views(views.clone()),
            )
        });
        let patient_key_for_face = patient_key.clone();
        let lookups = Arc::new(Lookups::new(
            config.terminal_id.clone(),
            onshi.clone(),
            recorder,
            patient_key,
        ));
        let socket = config.control_socket();
        let listener = control::bind_private(&socket)?;
        // After the socket is bound (no other agent runs on this data folder) and before
        // anything else records: requests a previous run left in flight are finished first.
        // Terminal mode: exchanges and face results a previous run left unfinished are
        // recorded first (each once), then the face folder is watched.
        let mut terminal_tasks = None;
        let terminal_parts = match (onshi.terminal(), tap_parts) {
            (Some(terminal), _) => {
                let resume = crate::resume::Resume::new(lookups.clone());
                let left = terminal.recover(&resume, &outbox).await?;
                if left > 0 {
                    tracing::warn!(
                        left,
                        "finished terminal exchanges the previous run left open"
                    );
                }
                Some((
                    terminal.settings().clone(),
                    terminal.journal().clone(),
                    terminal.health().clone(),
                    None,
                ))
            }
            (None, Some((settings, journal, health))) => {
                let tap = crate::observed::tap::Tap::new(
                    &settings,
                    journal.clone(),
                    health.clone(),
                    lookups.recorder().clone(),
                    patient_key_for_face.clone(),
                    config.terminal_id.clone(),
                )?;
                let left = tap.recover(&outbox).await?;
                if left > 0 {
                    tracing::warn!(
                        left,
                        "finished observed exchanges the previous run left open"
                    );
                }
                Some((settings, journal, health, Some(tap)))
            }
            (None, None) => None,
        };
        if let Some((settings, journal, health, tap)) = terminal_parts {
            let face = if settings.watch_face {
                let face = crate::observed::face::FaceWatch::new(
                    &settings,
                    journal,
                    lookups.recorder().clone(),
                    patient_key_for_face.clone(),
                    config.terminal_id.clone(),
                )
                .with_views(views.clone());
                face.recover(&outbox).await?;
                Some(face)
            } else {
                None
            };
            terminal_tasks = Some(TerminalTasks {
                health,
                every: settings.rescan,
                face,
                tap,
                recorder: lookups.recorder().clone(),
                terminal_id: config.terminal_id.clone(),
            });
        }
        let file_exchange = match &config.file_exchange {
            Some(settings) => {
                let exchange =
                    FileExchange::new(settings.clone(), lookups.clone(), outbox.clone(), fault)?;
                exchange.recover().await?;
                Some(exchange)
            }
            None => None,
        };
        let probes = config.link.clone().map(|settings| {
            Probes::new(
                settings,
                onshi_probe
                    .as_ref()
                    .map(|(endpoint, tls)| (endpoint.as_str(), tls.clone())),
                channel.clone(),
                lookups.recorder().clone(),
                config.terminal_id.clone(),
            )
        });
        let rules_views = views.clone();
        let uplink = uplink
            .with_renewal(renewal)
            .with_update_target_file(config.data_dir.join("update-target.json"))
            .with_heartbeat_every(Duration::from_secs(config.central.heartbeat_secs.max(1)))
            .with_access_rules(crate::uplink::RulesSink::new(move |rules| {
                rules_views.apply_central_rules(rules)
            }))
            .with_inventory(inventory_source(
                cards.clone(),
                certificates.as_ref().map(|c| c.current()),
                config.terminal_id.clone(),
            ));
        let metrics = MetricsSampler::from_env(env, outbox.clone(), link.clone());
        let control = Control::new(lookups, outbox, link, config.site_code.to_string())
            .with_cards(cards.clone())
            .with_views(views);
        Ok(Self {
            uplink,
            cards,
            control,
            listener,
            socket,
            file_exchange,
            probes,
            terminal: terminal_tasks,
            certificates,
            metrics,
        })
    }

    pub fn control_socket(&self) -> &Path {
        &self.socket
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        if let Some(certificates) = self.certificates {
            tokio::spawn(certificates.run(stopped(stop_rx.clone())));
        }
        if let Some(probes) = self.probes {
            tokio::spawn(probes.run(stopped(stop_rx.clone())));
        }
        if let Some(tasks) = self.terminal {
            tokio::spawn(tasks.health.run(
                tasks.recorder,
                tasks.terminal_id,
                tasks.every,
                stopped(stop_rx.clone()),
            ));
            if let Some(face) = tasks.face {
                tokio::spawn(face.run(stopped(stop_rx.clone())));
            }
            if let Some(tap) = tasks.tap {
                tokio::spawn(tap.run(stopped(stop_rx.clone())));
            }
        }
        if let Some(exchange) = self.file_exchange {
            tokio::spawn(exchange.run(stopped(stop_rx.clone())));
        }
        if let Some(cards) = self.cards {
            tokio::spawn(cards.run_watch(stopped(stop_rx.clone())));
        }
        if let Some(metrics) = self.metrics {
            tokio::spawn(metrics.run(stopped(stop_rx.clone())));
        }
        let uplink = self.uplink.run(stopped(stop_rx.clone()));
        let control = self.control.serve(self.listener, stopped(stop_rx));
        let ((), control) = tokio::join!(uplink, control);
        control
    }
}

/// Terminal mode's background work: its health as link events, the face folder, and in tap
/// mode the watch of `req` and `res`.
#[derive(Debug)]
struct TerminalTasks {
    health: Arc<crate::national::health::Health>,
    every: Duration,
    face: Option<crate::observed::face::FaceWatch>,
    tap: Option<crate::observed::tap::Tap>,
    recorder: Recorder,
    terminal_id: onshi_domain::site::TerminalId,
}

/// The chain's patient-hash secret: 64 hex characters (32 bytes) or more, owner-only.
/// The outbox's depth and oldest age and the central link's state, as gauges. A background task
/// that reads the outbox, so it only runs when the binary exports metrics (the same OTEL_*
/// variables `fleet-telemetry` reads): with telemetry off the agent does no extra work.
#[derive(Debug)]
struct MetricsSampler {
    outbox: Outbox,
    link: tokio::sync::watch::Receiver<crate::uplink::LinkStatus>,
    every: Duration,
}

impl MetricsSampler {
    fn from_env(
        env: &std::collections::HashMap<String, String>,
        outbox: Outbox,
        link: tokio::sync::watch::Receiver<crate::uplink::LinkStatus>,
    ) -> Option<Self> {
        let get = |key: &str| env.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
        let disabled = get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || get("OTEL_METRICS_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
        let endpoint = get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
            .or_else(|| get("OTEL_EXPORTER_OTLP_ENDPOINT"))
            .is_some();
        if disabled || !endpoint {
            return None;
        }
        // Sample at the export interval (at most every 15 s, at least every 100 ms).
        let interval = get("OTEL_METRIC_EXPORT_INTERVAL")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(15_000)
            .clamp(100, 15_000);
        Some(Self {
            outbox,
            link,
            every: Duration::from_millis(interval),
        })
    }

    async fn run(self, stop: impl Future<Output = ()>) {
        use crate::uplink::LinkStatus;
        use opentelemetry::KeyValue;
        let meter = opentelemetry::global::meter("edge-agent");
        let depth = meter
            .u64_gauge("agent_outbox_depth_events")
            .with_description("Events in the outbox not yet acknowledged by central")
            .build();
        let age = meter
            .u64_gauge("agent_outbox_oldest_age_seconds")
            .with_description("Age of the oldest unacknowledged event (0 when empty)")
            .with_unit("s")
            .build();
        let link = meter
            .u64_gauge("agent_uplink_state")
            .with_description(
                "1 for the uplink's current state (connecting, connected, disconnected)",
            )
            .build();
        let mut tick = tokio::time::interval(self.every);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {}
            }
            if let Ok(status) = self.outbox.status().await {
                depth.record(status.depth, &[]);
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let oldest = status.oldest_recorded_at.map_or(0, |t| (now - t).max(0));
                age.record(oldest as u64, &[]);
            }
            let current = *self.link.borrow();
            for state in [
                LinkStatus::Connecting,
                LinkStatus::Connected,
                LinkStatus::Disconnected,
            ] {
                link.record(
                    u64::from(current == state),
                    &[KeyValue::new("state", state.as_str())],
                );
            }
        }
    }
}

/// The chain's patient hash key; refused when other accounts can read it (as the outbox key
/// and the agent's TLS key are): whoever holds it can tell which patient a hash stands for.
fn load_patient_key(path: &Path) -> anyhow::Result<PatientHashKey> {
    if let Some(exposure) = crate::owner_only::exposure(path)
        .with_context(|| format!("reading the patient hash key {}", path.display()))?
    {
        anyhow::bail!(
            "the patient hash key {} can be read by other users ({exposure})",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the patient hash key {}", path.display()))?;
    PatientHashKey::from_hex(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// What the uplink reports as the site's inventory: the readers as the card watch last saw
/// them, the certificates of the last inventory scan, the terminal.
fn inventory_source(
    cards: Option<Arc<crate::cards::Cards>>,
    certificates: Option<Arc<std::sync::Mutex<Vec<onshi_domain::events::CertificateInfo>>>>,
    terminal: onshi_domain::site::TerminalId,
) -> crate::uplink::InventorySource {
    crate::uplink::InventorySource::new(move || onshi_domain::events::Inventory {
        taken_at: time::OffsetDateTime::now_utc(),
        readers: cards
            .as_ref()
            .map(|c| c.reader_states())
            .unwrap_or_default(),
        certificates: certificates
            .as_ref()
            .and_then(|c| c.lock().ok().map(|c| c.clone()))
            .unwrap_or_default(),
        terminal_ids: vec![terminal.clone()],
    })
}

#[cfg(test)]
mod tests {
    #[cfg(unix)]
    #[test]
    fn a_patient_hash_key_other_users_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("patient-hash.key");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let message = format!("{:#}", super::load_patient_key(&path).unwrap_err());
        assert!(
            message.contains("patient hash key") && message.contains("chmod 600"),
            "{message}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(super::load_patient_key(&path).is_ok());
    }
}
