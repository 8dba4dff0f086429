//! `edge-agent`: the site daemon (`run`) and the counter commands that talk to it.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use edge_agent::app::Agent;
use edge_agent::config::AgentConfig;
use proto::agent::v1 as pb;

#[derive(Debug, Parser)]
#[command(name = "edge-agent", version, about = "onshi-fleet site agent")]
struct Cli {
    /// The agent's configuration file.
    #[arg(long, short, env = "EDGE_AGENT_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: serve the counter, stream events to central.
    Run,
    /// Check eligibility from a health insurance card's numbers (the agent must be running).
    Lookup {
        /// 保険者番号 (6 or 8 digits)
        #[arg(long)]
        insurer: String,
        /// 記号 (may be empty)
        #[arg(long, default_value = "")]
        symbol: String,
        /// 番号
        #[arg(long)]
        number: String,
        /// 枝番 (2 digits, may be empty)
        #[arg(long, default_value = "")]
        branch: String,
        /// 生年月日 yyyyMMdd
        #[arg(long)]
        birthdate: String,
        #[arg(long, default_value = "")]
        terminal: String,
        /// The patient agreed to share copay-limit information (限度額情報).
        #[arg(long)]
        limit_consent: bool,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show outbox depth, oldest unacked event and the link to central.
    Status {
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let path = cli
        .config
        .context("no configuration: pass --config FILE or set EDGE_AGENT_CONFIG")?;
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = AgentConfig::load(&path, &env)?;
    match cli.command {
        Command::Run => {
            let agent = Agent::build(&config).await?;
            // One line on stdout that scripts and tests read: the agent is ready.
            println!(
                "{}",
                serde_json::json!({
                    "ready": true,
                    "site_code": config.site_code.as_str(),
                    "control_socket": agent.control_socket(),
                })
            );
            tracing::info!(site = %config.site_code, "edge agent running");
            agent.run_until_stopped(shutdown_signal()).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Lookup {
            insurer,
            symbol,
            number,
            branch,
            birthdate,
            terminal,
            limit_consent,
            json,
        } => {
            let mut client = edge_agent::control::connect(&config.control_socket()).await?;
            let request = pb::InsuranceCardLookupRequest {
                insurer_number: insurer,
                insured_card_symbol: symbol,
                insured_identification_number: number,
                insured_branch_number: branch,
                birthdate,
                terminal_id: terminal,
                limit_consent,
            };
            match client.lookup_insurance_card(request).await {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    if json {
                        println!("{}", lookup_json(&reply));
                    } else {
                        print_lookup(&reply);
                    }
                    Ok(std::process::ExitCode::SUCCESS)
                }
                Err(status) => {
                    eprintln!("{}", status.message());
                    // 2: the input was refused before any network call; 1: anything else.
                    Ok(std::process::ExitCode::from(
                        if status.code() == tonic::Code::InvalidArgument {
                            2
                        } else {
                            1
                        },
                    ))
                }
            }
        }
        Command::Status { json } => {
            let mut client = edge_agent::control::connect(&config.control_socket()).await?;
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
                    })
                );
            } else {
                println!("site            {}", s.site_code);
                println!("central link    {}", s.central_link);
                println!("outbox depth    {}", s.outbox_depth);
                println!("oldest unacked  {} s", s.oldest_unacked_age_seconds);
                println!(
                    "sequence        produced {} / acked {}",
                    s.last_produced_sequence, s.last_acked_sequence
                );
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

fn lookup_json(r: &pb::LookupReply) -> serde_json::Value {
    serde_json::json!({
        "outcome": r.outcome,
        "qualification_validity": r.qualification_validity,
        "message": r.message,
        "name": r.name,
        "name_kana": r.name_kana,
        "insurer_name": r.insurer_name,
        "insured_partial_contribution_ratio": r.insured_partial_contribution_ratio,
        "disqualification_date": r.disqualification_date,
        "event_id": r.event_id,
        "sequence": r.sequence,
        "latency_ms": r.latency_ms,
    })
}

fn print_lookup(r: &pb::LookupReply) {
    println!("{}", r.message);
    if !r.name.is_empty() {
        println!("氏名 / name        {} ({})", r.name, r.name_kana);
    }
    if !r.insurer_name.is_empty() {
        println!("保険者 / insurer   {}", r.insurer_name);
    }
    if !r.insured_partial_contribution_ratio.is_empty() {
        println!(
            "負担割合 / copay   {}",
            r.insured_partial_contribution_ratio
        );
    }
    if !r.disqualification_date.is_empty() {
        println!("資格喪失日 / lost  {}", r.disqualification_date);
    }
    println!(
        "(recorded as event {} #{}, {} ms)",
        r.event_id, r.sequence, r.latency_ms
    );
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
