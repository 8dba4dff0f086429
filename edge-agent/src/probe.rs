//! Closed-network link probes: the national endpoint (onshi-sim's `GET /healthz` over the
//! terminal-certificate TLS client) and central (`grpc.health.v1.Health/Check` over the agent's
//! mTLS channel) are probed separately, and each link's state is recorded as a `LinkChange`
//! event when it changes (the first probe counts as a change), never on every probe.
//!
//! States: **up** (answered within `degraded_rtt_ms`), **degraded** (answered slowly, or fewer
//! than `down_after` probes in a row failed), **down** (`down_after` failures in a row). The
//! national link's events carry the configured line type.
//!
//! ```toml
//! [link]
//! line_type = "ip_vpn"         # or "ipsec_ike"
//! probe_interval_ms = 30000
//! probe_timeout_ms = 3000
//! degraded_rtt_ms = 500
//! down_after = 2
//! onshi_probe_path = "/healthz"  # onshi-sim's; the national system's is not public (UNCONFIRMED)
//! ```
//!
//! Without a `[link]` section nothing is probed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use onshi_domain::events::{EventBody, LineType, LinkChange, LinkState, LinkTarget};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use crate::recorder::Recorder;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    #[serde(default = "default_line_type")]
    pub line_type: LineType,
    #[serde(default = "default_interval_ms")]
    pub probe_interval_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub probe_timeout_ms: u64,
    #[serde(default = "default_degraded_rtt_ms")]
    pub degraded_rtt_ms: u64,
    #[serde(default = "default_down_after")]
    pub down_after: u32,
    /// The path probed on the national endpoint with `GET`. onshi-sim serves `/healthz`; what
    /// the real national endpoint offers for this is not public (UNCONFIRMED), so it is
    /// configurable.
    #[serde(default = "default_onshi_probe_path")]
    pub onshi_probe_path: String,
}

fn default_onshi_probe_path() -> String {
    "/healthz".into()
}

fn default_line_type() -> LineType {
    LineType::IpVpn
}
fn default_interval_ms() -> u64 {
    30_000
}
fn default_timeout_ms() -> u64 {
    3_000
}
fn default_degraded_rtt_ms() -> u64 {
    500
}
fn default_down_after() -> u32 {
    2
}

/// Records one link's new state as a `LinkChange` event; `false` when it could not be recorded
/// (the caller tries again on its next look). Shared by the probes and the terminal's health
/// ([`crate::national::health`]).
pub async fn record_change(
    recorder: &Recorder,
    terminal: &onshi_domain::site::TerminalId,
    target: LinkTarget,
    change: Change,
    line_type: Option<LineType>,
) -> bool {
    tracing::info!(target = ?target, state = ?change.state, rtt_ms = ?change.rtt_ms, "link state changed");
    let body = EventBody::LinkChange(LinkChange {
        target,
        state: change.state,
        detail: change.detail,
        rtt_ms: change.rtt_ms,
        line_type,
    });
    match recorder.record(terminal.clone(), body).await {
        Ok(_) => true,
        Err(error) => {
            tracing::error!(%error, "cannot record a link change");
            false
        }
    }
}

/// One link's state as the probes see it; reports a state only when it changes.
#[derive(Debug, Clone)]
pub struct Tracker {
    degraded_rtt: Duration,
    down_after: u32,
    state: Option<LinkState>,
    failures: u32,
}

/// A state to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub state: LinkState,
    pub rtt_ms: Option<u32>,
    pub detail: Option<String>,
}

impl Tracker {
    pub fn new(config: &LinkConfig) -> Self {
        Self {
            degraded_rtt: Duration::from_millis(config.degraded_rtt_ms),
            down_after: config.down_after.max(1),
            state: None,
            failures: 0,
        }
    }

    /// Takes one probe's result (its round-trip time, or why it failed).
    pub fn observe(&mut self, probe: Result<Duration, String>) -> Option<Change> {
        let (state, rtt_ms, detail) = match probe {
            Ok(rtt) => {
                self.failures = 0;
                let rtt_ms = u32::try_from(rtt.as_millis()).unwrap_or(u32::MAX);
                if rtt > self.degraded_rtt {
                    let detail = format!(
                        "slow: {rtt_ms} ms (threshold {} ms)",
                        self.degraded_rtt.as_millis()
                    );
                    (LinkState::Degraded, Some(rtt_ms), Some(detail))
                } else {
                    (LinkState::Up, Some(rtt_ms), None)
                }
            }
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                let state = if self.failures >= self.down_after {
                    LinkState::Down
                } else {
                    LinkState::Degraded
                };
                let detail = format!("{} failed probe(s) in a row: {error}", self.failures);
                (state, None, Some(detail))
            }
        };
        if self.state == Some(state) {
            return None;
        }
        self.state = Some(state);
        Some(Change {
            state,
            rtt_ms,
            detail,
        })
    }
}

type OnshiProbeClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// The probes of both links, run until stopped.
#[derive(Debug)]
pub struct Probes {
    config: LinkConfig,
    /// The national endpoint and its client; `None` in terminal mode, where the terminal's
    /// health ([`crate::national::health`]) stands for the national link.
    onshi: Option<(String, OnshiProbeClient)>,
    central: Channel,
    recorder: Recorder,
    terminal: onshi_domain::site::TerminalId,
}

impl Probes {
    /// `onshi`: the national endpoint and the terminal-certificate TLS client (direct mode).
    pub fn new(
        config: LinkConfig,
        onshi: Option<(&str, Arc<rustls::ClientConfig>)>,
        central: Channel,
        recorder: Recorder,
        terminal: onshi_domain::site::TerminalId,
    ) -> Self {
        let onshi = onshi.map(|(endpoint, tls)| {
            (
                endpoint.trim_end_matches('/').to_string(),
                https_client(&config, tls),
            )
        });
        Self {
            config,
            onshi,
            central,
            recorder,
            terminal,
        }
    }
}

fn https_client(config: &LinkConfig, onshi_tls: Arc<rustls::ClientConfig>) -> OnshiProbeClient {
    {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_millis(config.probe_timeout_ms)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*onshi_tls).clone())
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        Client::builder(TokioExecutor::new()).build(connector)
    }
}

impl Probes {
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut onshi = Tracker::new(&self.config);
        let mut central = Tracker::new(&self.config);
        let mut interval =
            tokio::time::interval(Duration::from_millis(self.config.probe_interval_ms.max(50)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = &mut shutdown => break,
            }
            let (national, fleet) = tokio::join!(self.probe_onshi(), self.probe_central());
            for (target, probe) in [
                (LinkTarget::Onshi, &national),
                (LinkTarget::Central, &Some(fleet.clone())),
            ] {
                if let Some(Ok(rtt)) = probe {
                    crate::recorder::metrics::link_rtt(target, *rtt);
                }
            }
            if let Some(national) = national
                && let Some(change) = onshi.observe(national)
            {
                self.record(LinkTarget::Onshi, change).await;
            }
            if let Some(change) = central.observe(fleet) {
                self.record(LinkTarget::Central, change).await;
            }
        }
    }

    async fn record(&self, target: LinkTarget, change: Change) {
        let line_type = (target == LinkTarget::Onshi).then_some(self.config.line_type);
        record_change(&self.recorder, &self.terminal, target, change, line_type).await;
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.probe_timeout_ms)
    }

    /// `None` in terminal mode (nothing to probe).
    async fn probe_onshi(&self) -> Option<Result<Duration, String>> {
        let (endpoint, client) = self.onshi.as_ref()?;
        Some(self.probe_https(endpoint, client).await)
    }

    async fn probe_https(
        &self,
        endpoint: &str,
        client: &OnshiProbeClient,
    ) -> Result<Duration, String> {
        let uri: hyper::Uri = format!("{endpoint}{}", self.config.onshi_probe_path)
            .parse()
            .map_err(|e| format!("bad endpoint: {e}"))?;
        let started = Instant::now();
        let call = async {
            let response = client
                .get(uri)
                .await
                .map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
            let status = response.status();
            // Drain the (tiny) body so the connection can be reused.
            let _ = response.into_body().collect().await;
            if status.is_success() {
                Ok(started.elapsed())
            } else {
                Err(format!("HTTP {}", status.as_u16()))
            }
        };
        tokio::time::timeout(self.timeout(), call)
            .await
            .map_err(|_| format!("no answer within {} ms", self.timeout().as_millis()))?
    }

    async fn probe_central(&self) -> Result<Duration, String> {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let mut client = HealthClient::new(self.central.clone());
        let started = Instant::now();
        let call = client.check(HealthCheckRequest {
            service: String::new(),
        });
        match tokio::time::timeout(self.timeout(), call).await {
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.timeout().as_millis()
            )),
            Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
            Ok(Ok(reply)) if reply.get_ref().status == ServingStatus::Serving as i32 => {
                Ok(started.elapsed())
            }
            Ok(Ok(reply)) => Err(format!("not serving (status {})", reply.get_ref().status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LinkConfig {
        toml::from_str("line_type = \"ipsec_ike\"\ndegraded_rtt_ms = 100\ndown_after = 2").unwrap()
    }

    #[test]
    fn states_are_reported_on_change_only() {
        let mut t = Tracker::new(&config());
        let ms = Duration::from_millis;
        assert_eq!(t.observe(Ok(ms(5))).map(|c| c.state), Some(LinkState::Up));
        assert_eq!(t.observe(Ok(ms(7))), None);
        assert_eq!(
            t.observe(Ok(ms(300))).map(|c| (c.state, c.rtt_ms)),
            Some((LinkState::Degraded, Some(300)))
        );
        assert_eq!(t.observe(Ok(ms(250))), None);
        assert_eq!(t.observe(Ok(ms(5))).map(|c| c.state), Some(LinkState::Up));
        // One failure is degraded, the second in a row is down; then silence until it changes.
        assert_eq!(
            t.observe(Err("timeout".into())).map(|c| c.state),
            Some(LinkState::Degraded)
        );
        let down = t.observe(Err("timeout".into())).unwrap();
        assert_eq!(down.state, LinkState::Down);
        assert!(down.detail.unwrap().contains("2 failed"));
        assert_eq!(t.observe(Err("timeout".into())), None);
        assert_eq!(t.observe(Ok(ms(5))).map(|c| c.state), Some(LinkState::Up));
    }

    #[test]
    fn config_defaults_and_refusals() {
        let c: LinkConfig = toml::from_str("").unwrap();
        assert_eq!(c.line_type, LineType::IpVpn);
        assert_eq!(c.probe_interval_ms, 30_000);
        assert_eq!(c.onshi_probe_path, "/healthz");
        assert_eq!(config().line_type, LineType::IpsecIke);
        assert!(toml::from_str::<LinkConfig>("line_type = \"adsl\"").is_err());
        assert!(toml::from_str::<LinkConfig>("colour = 1").is_err());
    }
}
