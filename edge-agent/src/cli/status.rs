//! What an operator asks a site about itself: `status` (the running agent, over its control
//! channel) and `outbox verify` (the outbox on disk, with the agent stopped for `--repair`).

use std::process::ExitCode;

use proto::agent::v1 as pb;

use crate::config::AgentConfig;
use crate::control;

pub(super) async fn status(config: &AgentConfig, json: bool) -> anyhow::Result<ExitCode> {
    let mut client = control::connect(&config.control_socket()).await?;
    let s = client.status(pb::StatusRequest {}).await?.into_inner();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "site_code": s.site_code,
                "outbox_depth": s.outbox_depth,
                "last_produced_sequence": s.last_produced_sequence,
                "last_acked_sequence": s.last_acked_sequence,
                "oldest_unacked_age_seconds": s.oldest_unacked_age_seconds,
                "central_link": s.central_link,
                "last_ack_at_unix": s.last_ack_at_unix,
                "outbox_used_bytes": s.outbox_used_bytes,
                "outbox_budget_bytes": s.outbox_budget_bytes,
                "national_link": s.national_link,
            })
        );
    } else {
        println!("site            {}", s.site_code);
        println!("central link    {}", s.central_link);
        println!("national link   {}", s.national_link);
        println!("outbox depth    {}", s.outbox_depth);
        println!("oldest unacked  {} s", s.oldest_unacked_age_seconds);
        println!(
            "sequence        produced {} / acked {}",
            s.last_produced_sequence, s.last_acked_sequence
        );
        let last_ack = time::OffsetDateTime::from_unix_timestamp(s.last_ack_at_unix)
            .ok()
            .filter(|_| s.last_ack_at_unix > 0)
            .map_or("never".to_string(), |t| t.to_string());
        println!("last ack        {last_ack}");
        println!(
            "outbox disk     {} of {} bytes ({} %)",
            s.outbox_used_bytes,
            s.outbox_budget_bytes,
            s.outbox_used_bytes * 100 / s.outbox_budget_bytes.max(1)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// 0: clean; 3: damaged (repaired or not).
pub(super) async fn verify_outbox(
    config: &AgentConfig,
    repair: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let socket = config.control_socket();
    if repair && control::agent_is_running(&socket) {
        anyhow::bail!(
            "the agent is running (socket {}); stop it before --repair. A running agent \
             also replaces damaged records by itself when it reaches them",
            socket.display()
        );
    }
    let outbox = crate::outbox::Outbox::open(&config.outbox_path(), config.outbox_options())?;
    let report = outbox.verify(repair).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("records         {}", report.records);
        println!("intact          {}", report.intact);
        println!("damaged         {:?}", report.damaged);
        println!("missing         {:?}", report.missing);
        if report.is_clean() {
            println!("verdict         clean");
        } else if report.repaired {
            println!("verdict         repaired: replaced by loss events sent to central");
        } else {
            println!("verdict         damaged: run with --repair (agent stopped)");
        }
    }
    Ok(ExitCode::from(if report.is_clean() { 0 } else { 3 }))
}
