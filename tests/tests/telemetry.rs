//! OpenTelemetry end to end: central and an agent export to a small OTLP receiver in the test;
//! one lookup is one trace across both processes, and the named metrics arrive from both.

use e2e::otlp::OtlpReceiver;
use e2e::{
    AgentSite, Pki, Running, TestDb, eventually, https_endpoint, sim_people, site_code,
    start_central_with_env, start_sim, start_sim_with_env,
};

const CENTRAL_METRICS: [&str; 13] = [
    "central_ingest_events_total",
    "central_ingest_batch_size_events",
    "central_commit_duration_seconds",
    "central_db_pool_connections",
    "central_acks_total",
    "central_agents_connected",
    // From the test's own session that skips a sequence.
    "central_ingest_gaps_total",
    // The fleet-wide gauges the maintenance loop publishes (fleet_metrics.rs).
    "central_alerts_open",
    "central_sites",
    "central_certificates_expiring",
    "central_ingest_backlog_events",
    "central_db_synchronous_standby",
    "central_db_replica_lag_seconds",
];

/// The metric names the chart's Prometheus rules and Grafana dashboard query (a histogram's
/// `_bucket` series by its own name).
fn monitored_metrics() -> std::collections::BTreeSet<String> {
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/onshi-fleet-central");
    let mut names = std::collections::BTreeSet::new();
    for file in [
        "files/prometheus-rules.yaml",
        "files/grafana-dashboard.json",
    ] {
        let text = std::fs::read_to_string(chart.join(file)).expect("the chart's monitoring file");
        for (at, _) in text.match_indices("central_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let name = name.strip_suffix("_bucket").unwrap_or(&name).to_string();
            names.insert(name);
        }
    }
    assert!(
        names.len() >= 8,
        "the chart queries central's metrics: {names:?}"
    );
    names
}

const AGENT_METRICS: [&str; 6] = [
    "agent_lookup_duration_seconds",
    "agent_outbox_depth_events",
    "agent_outbox_oldest_age_seconds",
    "agent_uplink_state",
    // With the [link] section the test adds: the probes' state and round-trip time.
    "agent_link_state",
    "agent_link_rtt_seconds",
];

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `GET /metrics` over plain HTTP/1.0; the body.
async fn scrape(addr: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    anyhow::ensure!(response.starts_with("HTTP/1.0 200"), "{response}");
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

/// SIGTERM, then wait for the exit: the telemetry guard flushes on the way out.
async fn stop(mut running: Running) -> anyhow::Result<()> {
    e2e::signal(&running, "TERM").await?;
    let status = tokio::time::timeout(e2e::patience(), running.child.wait()).await??;
    anyhow::ensure!(status.success(), "exited with {status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lookup_is_one_trace_from_the_agent_to_centrals_commit() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let site = site_code("341071236");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let env = receiver.env();
    let mut central_env = as_refs(&env);
    central_env.push(("CENTRAL_METRICS_LISTEN", "127.0.0.1:0"));
    let central = start_central_with_env(&pki, &db, &central_env).await?;
    let sim = start_sim_with_env(&pki, &as_refs(&env)).await?;
    let agent_site = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        &https_endpoint(&sim, "https"),
    )?;
    agent_site.append_config(
        "[link]\nline_type = \"ip_vpn\"\nprobe_interval_ms = 200\nprobe_timeout_ms = 1000\n",
    )?;
    let _agent = agent_site.start_with_env(&as_refs(&env)).await?;
    let person = sim_people("valid", 1).await?.remove(0);

    let output = agent_site.lookup(&person).await?;
    assert!(
        output.status.success(),
        "lookup failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The link probes record events too: wait for the lookup's own sequence.
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let sequence = reply["sequence"].as_u64().expect("the lookup's sequence");
    eventually("central's ack of the lookup", || async {
        let s = agent_site.status().await.ok()?;
        (s["last_acked_sequence"].as_u64()? >= sequence).then_some(())
    })
    .await;

    // A stream that skips sequence 1 (the test's own session, beside the agent's): a gap.
    let mut gapped = e2e::uplink::Session::open(
        &https_endpoint(&central, "grpc"),
        e2e::uplink::agent_tls(&pki, &site)?,
        &site,
        uuid::Uuid::now_v7(),
    )
    .await?;
    let ack = gapped
        .send_batch(vec![e2e::uplink::lookup_event(&site, 2)])
        .await?;
    assert_eq!(ack.up_to_sequence, 0, "nothing contiguous before the gap");

    // The counter lookup's span at the agent...
    let lookup = receiver
        .wait_for("the agent's lookup span", |r| {
            r.spans()
                .into_iter()
                .find(|s| s.service == "edge-agent" && s.name == "insurance_card")
        })
        .await;
    // ...is the parent of central's commit span: its traceparent travelled with the event.
    let commit = receiver
        .wait_for("central's commit span in the lookup's trace", |r| {
            r.spans().into_iter().find(|s| {
                s.service == "central" && s.name == "commit" && s.trace_id == lookup.trace_id
            })
        })
        .await;
    assert_eq!(
        commit.parent_span_id, lookup.span_id,
        "the commit's parent is the lookup span: {commit:?} / {lookup:?}"
    );

    // onshi-sim exports its request spans too.
    receiver
        .wait_for("onshi-sim's request span", |r| {
            r.spans().into_iter().find(|s| s.service == "onshi-sim")
        })
        .await;

    // The session's opening: W3C trace context in the gRPC metadata.
    let connect = receiver
        .wait_for("the agent's uplink_connect span", |r| {
            r.spans()
                .into_iter()
                .find(|s| s.service == "edge-agent" && s.name == "uplink_connect")
        })
        .await;
    receiver
        .wait_for("central's session span joined to the agent's", |r| {
            r.spans().into_iter().find(|s| {
                s.service == "central"
                    && s.name == "uplink_session_open"
                    && s.trace_id == connect.trace_id
            })
        })
        .await;

    // The named metrics arrive from both processes.
    receiver
        .wait_for("every named metric from central and the agent", |r| {
            let points = r.points();
            let has = |service: &str, metric: &str| {
                points
                    .iter()
                    .any(|p| p.service == service && p.metric == metric)
            };
            (CENTRAL_METRICS.iter().all(|m| has("central", m))
                && AGENT_METRICS.iter().all(|m| has("edge-agent", m)))
            .then_some(())
        })
        .await;
    // The same metrics on central's Prometheus endpoint (plain HTTP, loopback).
    let metrics_addr = central.field("metrics");
    let scraped = eventually("the Prometheus endpoint to show the ingest", || async {
        let text = scrape(&metrics_addr).await.ok()?;
        (text
            .lines()
            .any(|l| l.starts_with("central_ingest_events_total{result=\"stored\"}"))
            && CENTRAL_METRICS
                .iter()
                .all(|name| text.contains(&format!("# TYPE {name} "))))
        .then_some(text)
    })
    .await;
    // What the chart's PrometheusRule and Grafana dashboard query is what central exports.
    for name in monitored_metrics() {
        assert!(
            scraped.contains(&format!("# TYPE {name} ")),
            "the chart queries {name}, which central does not export:\n{scraped}"
        );
    }
    // The fleet gauges carry their series at zero too: every alert kind is there.
    for kind in ["chain_break", "access_violation", "site_unavailable"] {
        assert!(
            scraped.contains(&format!("central_alerts_open{{kind=\"{kind}\"}}")),
            "{kind} missing:\n{scraped}"
        );
    }

    let points = receiver.points();
    assert!(
        points
            .iter()
            .any(|p| p.metric == "agent_lookup_duration_seconds"
                && p.attributes.iter().any(|a| a == "outcome=valid")),
        "the lookup latency is labelled by outcome: {points:?}"
    );
    // No patient identifier in any label.
    for point in &points {
        for attribute in &point.attributes {
            assert!(
                !attribute.contains(&person.number) && !attribute.contains(&person.birthdate),
                "a metric label holds a patient identifier: {point:?}"
            );
        }
    }
    Ok(())
}

/// The lookup's trace context is kept with its event in the outbox: recorded while central is
/// down, the agent restarted, central back at another address, and the commit still joins the
/// lookup's trace.
#[tokio::test(flavor = "multi_thread")]
async fn the_trace_survives_an_agent_restart_before_sending() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let site = site_code("271234567");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let env = receiver.env();
    let first_central = start_central_with_env(&pki, &db, &as_refs(&env)).await?;
    let first_endpoint = https_endpoint(&first_central, "grpc");
    let sim = start_sim(&pki).await?;
    let agent_site = AgentSite::new(&pki, &site, &first_endpoint, &https_endpoint(&sim, "https"))?;
    first_central.kill().await?;
    let agent = agent_site.start_with_env(&as_refs(&env)).await?;
    let person = sim_people("valid", 1).await?.remove(0);
    let output = agent_site.lookup(&person).await?;
    assert!(
        output.status.success(),
        "lookup failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lookup = receiver
        .wait_for("the agent's lookup span", |r| {
            r.spans()
                .into_iter()
                .find(|s| s.service == "edge-agent" && s.name == "insurance_card")
        })
        .await;
    stop(agent).await?;

    let central = start_central_with_env(&pki, &db, &as_refs(&env)).await?;
    agent_site.edit_config(&first_endpoint, &https_endpoint(&central, "grpc"))?;
    let _agent = agent_site.start_with_env(&as_refs(&env)).await?;
    eventually("central's ack of the lookup after the restart", || async {
        let s = agent_site.status().await.ok()?;
        (s["last_acked_sequence"].as_u64()? >= 1 && s["outbox_depth"] == 0).then_some(())
    })
    .await;
    let commit = receiver
        .wait_for("central's commit span in the lookup's trace", |r| {
            r.spans().into_iter().find(|s| {
                s.service == "central" && s.name == "commit" && s.trace_id == lookup.trace_id
            })
        })
        .await;
    assert_eq!(commit.parent_span_id, lookup.span_id);
    Ok(())
}

/// A receipt computer's request file: the agent's `file_request` span is the parent of central's
/// commit of its lookup event.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_file_is_one_trace_to_centrals_commit() -> anyhow::Result<()> {
    use onshi_domain::ids::{InsuranceCardQuery, MedicalInstitutionCode};
    use onshi_domain::xml::{
        QualificationConfirmSearchInfo, QualificationConfirmationRequest, RequestHeader,
        XmlEncoding,
    };
    let receiver = OtlpReceiver::start().await?;
    let site = site_code("341071236");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let env = receiver.env();
    let central = start_central_with_env(&pki, &db, &as_refs(&env)).await?;
    let sim = start_sim(&pki).await?;
    let agent_site = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        &https_endpoint(&sim, "https"),
    )?;
    let share = agent_site.dir().join("share");
    agent_site.append_config(&format!(
        "[file_exchange]\nfolder = \"{}\"\nsettle_ms = 150\nrescan_ms = 1000\n",
        share.display()
    ))?;
    let _agent = agent_site.start_with_env(&as_refs(&env)).await?;

    let person = sim_people("valid", 1).await?.remove(0);
    let today = time::OffsetDateTime::now_utc().date();
    let query = InsuranceCardQuery::parse(
        &person.insurer_number,
        &person.symbol,
        &person.number,
        &person.branch,
        &person.birthdate,
        today,
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let xml = QualificationConfirmationRequest {
        header: RequestHeader {
            qualification_confirmation_date: today,
            medical_institution_code: MedicalInstitutionCode::parse(&site)?,
            arbitrary_file_identifier: Some("R-OTEL".into()),
        },
        search: QualificationConfirmSearchInfo::from_query(&query, false),
    }
    .to_xml(XmlEncoding::Utf8);
    let name = "OQSsiquc01req_202604010001.xml";
    let staging = share.join(format!(".{name}.staging"));
    std::fs::write(&staging, xml)?;
    std::fs::rename(&staging, share.join("req").join(name))?;

    let request = receiver
        .wait_for("the agent's file_request span", |r| {
            r.spans()
                .into_iter()
                .find(|s| s.service == "edge-agent" && s.name == "file_request")
        })
        .await;
    let commit = receiver
        .wait_for("central's commit span in the request's trace", |r| {
            r.spans().into_iter().find(|s| {
                s.service == "central" && s.name == "commit" && s.trace_id == request.trace_id
            })
        })
        .await;
    assert_eq!(commit.parent_span_id, request.span_id);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_exported_when_the_sdk_is_disabled() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let site = site_code("134012345");
    let pki = Pki::new(&[&site])?;
    let db = TestDb::create().await?;
    let mut env = receiver.env();
    env.push(("OTEL_SDK_DISABLED", "true".into()));
    let central = start_central_with_env(&pki, &db, &as_refs(&env)).await?;
    let sim = start_sim(&pki).await?;
    let agent_site = AgentSite::new(
        &pki,
        &site,
        &https_endpoint(&central, "grpc"),
        &https_endpoint(&sim, "https"),
    )?;
    let agent = agent_site.start_with_env(&as_refs(&env)).await?;
    let person = sim_people("valid", 1).await?.remove(0);
    let output = agent_site.lookup(&person).await?;
    assert!(output.status.success());
    eventually("central's ack of the lookup", || async {
        let s = agent_site.status().await.ok()?;
        (s["last_acked_sequence"] == 1).then_some(())
    })
    .await;
    // Both exit cleanly; an exporter would have flushed on the way out.
    stop(agent).await?;
    stop(central).await?;
    assert_eq!(receiver.requests(), 0, "nothing may reach the receiver");
    Ok(())
}
