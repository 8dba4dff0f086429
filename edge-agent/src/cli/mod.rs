//! The `edge-agent` command line: the site daemon (`run`) and the commands a counter, a receipt
//! computer or an operator runs against it. `main.rs` only calls [`main`]; each command's work
//! is in the module named for it, and talks to the running agent over its control channel.

mod args;
mod batch;
mod counter;
#[cfg(windows)]
mod service;
mod status;

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use proto::agent::v1 as pb;

use crate::app::Agent;
use crate::config::AgentConfig;
use args::{Cli, Command, OutboxCommand};

/// Parses the command line, sets up telemetry, runs the command; its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(windows)]
    if let Command::Service(command) = &cli.command {
        return service::service_command(command, cli.config.as_deref());
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Only the daemon exports telemetry: a counter command must not wait at exit on a collector.
    let mut env: HashMap<String, String> = std::env::vars().collect();
    if !matches!(cli.command, Command::Run) {
        env.retain(|key, _| !key.starts_with("OTEL_"));
    }
    // Inside the runtime: the OTLP exporter's gRPC channel lives on it. The guard flushes on
    // drop, before the runtime goes.
    let telemetry = {
        let _entered = runtime.enter();
        match fleet_telemetry::init("edge-agent", &env) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("error: telemetry: {error:#}");
                return ExitCode::FAILURE;
            }
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    };
    drop(telemetry);
    code
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let path = cli
        .config
        .context("no configuration: pass --config FILE or set EDGE_AGENT_CONFIG")?;
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = AgentConfig::load(&path, &env)?;
    match cli.command {
        #[cfg(windows)]
        Command::Service(_) => anyhow::bail!("`service` commands run outside the runtime"),
        Command::Run => daemon(&config, &env).await,
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
            let request = pb::InsuranceCardLookupRequest {
                insurer_number: insurer,
                insured_card_symbol: symbol,
                insured_identification_number: number,
                insured_branch_number: branch,
                birthdate,
                terminal_id: terminal,
                limit_consent,
            };
            counter::lookup(&config, request, json).await
        }
        Command::Outbox(OutboxCommand::Verify { repair, json }) => {
            status::verify_outbox(&config, repair, json).await
        }
        Command::CardLookup {
            reader,
            pin_stdin,
            face_verified,
            terminal,
            limit_consent,
            consent,
            json,
        } => {
            let request = pb::CardLookupRequest {
                consent,
                reader,
                pin: if face_verified {
                    String::new()
                } else {
                    counter::read_pin(pin_stdin)?
                },
                face_verified,
                terminal_id: terminal,
                limit_consent,
            };
            counter::card_lookup(&config, request, json).await
        }
        Command::Readers { json } => counter::readers(&config, json).await,
        Command::View {
            category,
            staff,
            handle,
            insurer,
            symbol,
            number,
            branch,
            terminal,
            json,
        } => {
            let request = pb::InfoViewRequest {
                category,
                staff_id: staff,
                view_handle: handle.unwrap_or_default(),
                insurer_number: insurer.unwrap_or_default(),
                insured_card_symbol: symbol,
                insured_identification_number: number.unwrap_or_default(),
                insured_branch_number: branch,
                terminal_id: terminal,
            };
            counter::view(&config, request, json).await
        }
        Command::Batch {
            csv,
            out,
            terminal,
            concurrency,
            mode,
            json,
        } => {
            batch::run(
                &config.control_socket(),
                &csv,
                out,
                terminal,
                concurrency,
                &mode,
                json,
            )
            .await
        }
        Command::Status { json } => status::status(&config, json).await,
    }
}

/// `run`: the agent until a stop signal, after one ready line on stdout that scripts and tests
/// read.
async fn daemon(config: &AgentConfig, env: &HashMap<String, String>) -> anyhow::Result<ExitCode> {
    let agent = Agent::build_with_env(config, env).await?;
    let stop = fleet_telemetry::stop::stop_signal().context("installing the stop signals")?;
    println!(
        "{}",
        serde_json::json!({
            "ready": true,
            "site_code": config.site_code.as_str(),
            "control_socket": agent.control_socket(),
        })
    );
    tracing::info!(site = %config.site_code, "edge agent running");
    agent.run_until_stopped(stop).await?;
    Ok(ExitCode::SUCCESS)
}
