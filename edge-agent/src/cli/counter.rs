//! The counter's commands: a lookup by insurance card, by My Number card (the PIN read without
//! echo and never printed), an information view, the card readers. Each asks the running agent
//! over its control channel and prints what the clerk needs, Japanese first; `--json` for
//! receipt computers and scripts. Exit codes: 0 answered, 2 input refused before any network
//! call, 3 answered but refused (card check, view), 1 anything else.

use std::process::ExitCode;

use anyhow::Context;
use proto::agent::v1 as pb;

use crate::config::AgentConfig;
use crate::control;

/// 2: the input was refused before any network call; 1: anything else.
fn refused(status: &tonic::Status) -> ExitCode {
    eprintln!("{}", status.message());
    ExitCode::from(if status.code() == tonic::Code::InvalidArgument {
        2
    } else {
        1
    })
}

pub(super) async fn lookup(
    config: &AgentConfig,
    request: pb::InsuranceCardLookupRequest,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut client = control::connect(&config.control_socket()).await?;
    match client.lookup_insurance_card(request).await {
        Ok(reply) => {
            let reply = reply.into_inner();
            if json {
                println!("{}", lookup_json(&reply));
            } else {
                print_lookup(&reply);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(status) => Ok(refused(&status)),
    }
}

pub(super) async fn card_lookup(
    config: &AgentConfig,
    request: pb::CardLookupRequest,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut client = control::connect(&config.control_socket()).await?;
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
            Ok(ExitCode::from(if r.card_check == "ok" { 0 } else { 3 }))
        }
        Err(status) => Ok(refused(&status)),
    }
}

pub(super) async fn view(
    config: &AgentConfig,
    request: pb::InfoViewRequest,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut client = control::connect(&config.control_socket()).await?;
    let r = match client.info_view(request).await {
        Ok(reply) => reply.into_inner(),
        Err(status) => return Ok(refused(&status)),
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
        print!("{}", crate::views::render_lines(&r.drugs, &r.checkups));
        println!("(recorded as event {} #{})", r.event_id, r.sequence);
    }
    // 0: shown; 3: refused (and recorded).
    Ok(ExitCode::from(if r.allowed { 0 } else { 3 }))
}

pub(super) async fn readers(config: &AgentConfig, json: bool) -> anyhow::Result<ExitCode> {
    let mut client = control::connect(&config.control_socket()).await?;
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
    Ok(ExitCode::SUCCESS)
}

/// The PIN, from the terminal without echo or from stdin's first line. Never printed or logged.
pub(super) fn read_pin(from_stdin: bool) -> anyhow::Result<String> {
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
