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
    /// Inspect the outbox (works with the agent stopped).
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// The Windows service: install, configure, uninstall, run.
    #[cfg(windows)]
    #[command(subcommand)]
    Service(ServiceCommand),
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
    /// Check eligibility with the My Number card on a reader (the agent must be running). The
    /// PIN is read from the terminal without echo, or from the first line of stdin.
    CardLookup {
        /// The reader's name, as `edge-agent readers` lists it.
        #[arg(long)]
        reader: String,
        /// Read the PIN from the first line of stdin instead of the terminal.
        #[arg(long)]
        pin_stdin: bool,
        /// The face-recognition reader matched the patient's face (no PIN).
        #[arg(long)]
        face_verified: bool,
        #[arg(long, default_value = "")]
        terminal: String,
        /// The patient agreed to share copay-limit information (限度額情報).
        #[arg(long)]
        limit_consent: bool,
        /// What the patient agreed on the reader to share, comma-separated: limit (限度額),
        /// drug (薬剤), checkup (特定健診), diagnosis (診療), surgery (手術). Each must be
        /// offered at the site (`cards.consent_categories`).
        #[arg(long, value_delimiter = ',')]
        consent: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show a patient's drug or checkup information to a staff member (the agent must be
    /// running): allowed by the site's access policy with the patient's card consent or in a
    /// disaster window, and recorded either way. The patient is named by a card lookup's
    /// view handle or by the insurance numbers.
    View {
        /// drug (薬剤情報) or checkup (特定健診情報).
        #[arg(long)]
        category: String,
        /// The staff member's id in the site's roster.
        #[arg(long)]
        staff: String,
        /// The view_handle a card lookup printed.
        #[arg(long, conflicts_with_all = ["insurer", "number"])]
        handle: Option<String>,
        /// 保険者番号
        #[arg(long, required_unless_present = "handle")]
        insurer: Option<String>,
        /// 記号
        #[arg(long, default_value = "")]
        symbol: String,
        /// 番号
        #[arg(long, required_unless_present = "handle")]
        number: Option<String>,
        /// 枝番
        #[arg(long, default_value = "")]
        branch: String,
        #[arg(long, default_value = "")]
        terminal: String,
        #[arg(long)]
        json: bool,
    },
    /// List the card readers the agent sees, with their health counters.
    Readers {
        #[arg(long)]
        json: bool,
    },
    /// Batch inquiry (一括照会): check every row of a CSV (保険者番号/insurer_number, 記号/symbol,
    /// 番号/number, 枝番/branch, 生年月日/birthdate, optional 患者ID/row_id; UTF-8 or
    /// Shift_JIS) and write 有効 / 無効 / エラー per row (the agent must be running).
    Batch {
        /// The input CSV.
        #[arg(long)]
        csv: PathBuf,
        /// The results CSV (default: <input>_result.csv beside the input), same encoding.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value = "")]
        terminal: String,
        /// Lookups in flight at once (1–16).
        #[arg(long, default_value_t = 4)]
        concurrency: u32,
        /// `row`: row by row through single confirmations (the default); `national`: the
        /// national two-step batch inquiry (OQSmuquc01, then OQSmuquc02 until ready).
        #[arg(long, default_value = "row")]
        mode: String,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show outbox depth, oldest unacked event and the link to central.
    Status {
        #[arg(long)]
        json: bool,
    },
}

/// The Windows service (`onshi-fleet-agent`): see `edge_agent::service`.
#[cfg(windows)]
#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Register the service (as Administrator): automatic start, account
    /// `NT SERVICE\onshi-fleet-agent`, after `SCardSvr`, restarted on failure. Runs this
    /// binary with this `--config` (an absolute path).
    Install,
    /// Set the description, recovery actions and service SID of a service an MSI registered.
    Configure,
    /// Stop and remove the service; configuration, keys and outbox are kept.
    Uninstall,
    /// What the Service Control Manager starts (not for a console: use `run`).
    Run,
}

#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// Check every record's integrity and the sequence continuity, and report what was found.
    /// Exit status 0: clean; 3: damage found (and repaired with --repair).
    Verify {
        /// Quarantine damaged or missing records and put loss events in their place (they reach
        /// central like any event). Only with the agent stopped.
        #[arg(long)]
        repair: bool,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    #[cfg(windows)]
    if let Command::Service(command) = &cli.command {
        return service_command(command, cli.config.as_deref());
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
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
                return std::process::ExitCode::FAILURE;
            }
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    };
    drop(telemetry);
    code
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let path = cli
        .config
        .context("no configuration: pass --config FILE or set EDGE_AGENT_CONFIG")?;
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = AgentConfig::load(&path, &env)?;
    match cli.command {
        #[cfg(windows)]
        Command::Service(_) => anyhow::bail!("`service` commands run outside the runtime"),
        Command::Run => {
            let agent = Agent::build_with_env(&config, &env).await?;
            let stop =
                fleet_telemetry::stop::stop_signal().context("installing the stop signals")?;
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
            agent.run_until_stopped(stop).await?;
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
        Command::Outbox(OutboxCommand::Verify { repair, json }) => {
            let socket = config.control_socket();
            if repair && edge_agent::control::agent_is_running(&socket) {
                anyhow::bail!(
                    "the agent is running (socket {}); stop it before --repair. A running agent \
                     also replaces damaged records by itself when it reaches them",
                    socket.display()
                );
            }
            let outbox =
                edge_agent::outbox::Outbox::open(&config.outbox_path(), config.outbox_options())?;
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
            Ok(std::process::ExitCode::from(if report.is_clean() {
                0
            } else {
                3
            }))
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
                    read_pin(pin_stdin)?
                },
                face_verified,
                terminal_id: terminal,
                limit_consent,
            };
            card_lookup_command(&config, request, json).await
        }
        Command::Readers { json } => readers_command(&config, json).await,
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
            view_command(&config, request, json).await
        }
        Command::Batch {
            csv,
            out,
            terminal,
            concurrency,
            mode,
            json,
        } => {
            edge_agent::batch::cli(
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
        "details": r.details,
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
    for line in &r.details {
        println!("{line}");
    }
    println!(
        "(recorded as event {} #{}, {} ms)",
        r.event_id, r.sequence, r.latency_ms
    );
}

/// `service …`: outside the async runtime, since `service run` hands the thread to the Service
/// Control Manager, which starts the agent on a thread (and runtime) of its own.
#[cfg(windows)]
fn service_command(
    command: &ServiceCommand,
    config: Option<&std::path::Path>,
) -> std::process::ExitCode {
    use edge_agent::service;
    let config = || {
        config
            .map(std::path::Path::to_path_buf)
            .context("no configuration: pass --config FILE or set EDGE_AGENT_CONFIG")
    };
    let result = match command {
        ServiceCommand::Install => config().and_then(|c| service::install(&c)),
        ServiceCommand::Configure => service::configure(),
        ServiceCommand::Uninstall => service::uninstall(),
        ServiceCommand::Run => config().and_then(|c| {
            // Logs only (stderr, which the SCM discards unless redirected): the OTLP exporter
            // needs a runtime of its own, which this thread does not have.
            let mut env: HashMap<String, String> = std::env::vars().collect();
            env.retain(|key, _| !key.starts_with("OTEL_"));
            let _telemetry = fleet_telemetry::init("edge-agent", &env);
            service::run(c)
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The PIN, from the terminal without echo or from stdin's first line. Never printed or logged.
fn read_pin(from_stdin: bool) -> anyhow::Result<String> {
    let pin = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the PIN from stdin")?;
        line
    } else {
        rpassword::prompt_password("暗証番号 / PIN: ")
            .context("reading the PIN from the terminal")?
    };
    Ok(pin.trim().to_string())
}

async fn card_lookup_command(
    config: &AgentConfig,
    request: pb::CardLookupRequest,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let mut client = edge_agent::control::connect(&config.control_socket()).await?;
    match client.card_lookup(request).await {
        Ok(reply) => {
            let r = reply.into_inner();
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "card_check": r.card_check,
                        "pin_tries_left": r.pin_tries_left,
                        "identity_verification": r.identity_verification,
                        "message": r.message,
                        "event_id": r.event_id,
                        "sequence": r.sequence,
                        "latency_ms": r.latency_ms,
                        "lookup": r.lookup.as_ref().map(lookup_json),
                        "view_handle": r.view_handle,
                        "consented": r.consented,
                        "consent_available_until": r.consent_available_until,
                    })
                );
            } else if let Some(lookup) = &r.lookup {
                print_lookup(lookup);
                if !r.view_handle.is_empty() {
                    println!(
                        "同意 / consent     {} (until {}); view handle {}",
                        r.consented.join(","),
                        r.consent_available_until,
                        r.view_handle
                    );
                }
            } else {
                println!("{}", r.message);
                println!(
                    "(recorded as event {} #{}, {} ms)",
                    r.event_id, r.sequence, r.latency_ms
                );
            }
            // 0: the card was read and the national system answered; 3: the card check failed.
            Ok(std::process::ExitCode::from(if r.card_check == "ok" {
                0
            } else {
                3
            }))
        }
        Err(status) => {
            eprintln!("{}", status.message());
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

async fn view_command(
    config: &AgentConfig,
    request: pb::InfoViewRequest,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let mut client = edge_agent::control::connect(&config.control_socket()).await?;
    let r = match client.info_view(request).await {
        Ok(reply) => reply.into_inner(),
        Err(status) => {
            eprintln!("{}", status.message());
            return Ok(std::process::ExitCode::from(
                if status.code() == tonic::Code::InvalidArgument {
                    2
                } else {
                    1
                },
            ));
        }
    };
    if json {
        let drugs: Vec<serde_json::Value> = r
            .drugs
            .iter()
            .map(|d| {
                serde_json::json!({
                    "source": d.source, "month": d.month, "date": d.date,
                    "prescription_date": d.prescription_date,
                    "institution": d.institution, "institution_code": d.institution_code,
                    "drug_code": d.drug_code, "drug_name": d.drug_name, "ingredient": d.ingredient,
                    "quantity": d.quantity, "unit": d.unit, "usage": d.usage, "times": d.times,
                    "special_instruction": d.special_instruction,
                })
            })
            .collect();
        let checkups: Vec<serde_json::Value> = r
            .checkups
            .iter()
            .map(|c| {
                serde_json::json!({
                    "date": c.date, "item_code": c.item_code, "item_name": c.item_name,
                    "value": c.value, "value_name": c.value_name, "unit": c.unit,
                    "data_type": c.data_type, "oid": c.oid,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "allowed": r.allowed,
                "message": r.message,
                "refusal_reason": r.refusal_reason,
                "basis": r.basis,
                "disaster_window_id": r.disaster_window_id,
                "policy_version": r.policy_version,
                "drugs": drugs,
                "checkups": checkups,
                "event_id": r.event_id,
                "sequence": r.sequence,
            })
        );
    } else {
        println!("{}", r.message);
        print!("{}", edge_agent::views::render_lines(&r.drugs, &r.checkups));
        println!("(recorded as event {} #{})", r.event_id, r.sequence);
    }
    // 0: shown; 3: refused (and recorded).
    Ok(std::process::ExitCode::from(if r.allowed { 0 } else { 3 }))
}

async fn readers_command(
    config: &AgentConfig,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let mut client = edge_agent::control::connect(&config.control_socket()).await?;
    let r = client.readers(pb::ReadersRequest {}).await?.into_inner();
    let readers: Vec<serde_json::Value> = r
        .readers
        .iter()
        .map(|x| {
            serde_json::json!({
                "name": x.name,
                "state": x.state,
                "face_recognition": x.face_recognition,
                "cards_read": x.cards_read,
                "errors": x.errors,
                "last_error": x.last_error,
            })
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::json!({ "enabled": r.enabled, "readers": readers })
        );
    } else if !r.enabled {
        println!("card readers are not enabled ([cards] in the configuration)");
    } else {
        for x in &r.readers {
            println!(
                "{:<28} {:<14} face={} read={} errors={} {}",
                x.name, x.state, x.face_recognition, x.cards_read, x.errors, x.last_error
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
