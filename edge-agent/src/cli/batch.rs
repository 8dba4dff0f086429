//! `edge-agent batch --csv FILE`: the batch inquiry's command line half. Reads the file (UTF-8
//! with or without BOM, or Shift_JIS as Japanese spreadsheets save it), sends the rows to the
//! running agent, shows progress (a bar on a terminal, plain counts otherwise) and writes the
//! results beside it in the same encoding. A row id / 患者ID column never leaves the CLI. The
//! agent's half (validation, lookups, recording) is [`crate::batch`].

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use proto::agent::v1 as pb;

use crate::batch::{
    BatchMode, RowResult, RowStatus, Summary, default_output, parse_csv, write_results,
};

/// A progress display: a bar on a terminal, a count line every tenth otherwise.
#[derive(Debug)]
struct Progress {
    tty: bool,
    total: usize,
    last_tenth: usize,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            total,
            last_tenth: 0,
        }
    }

    fn show(&mut self, done: usize, summary: Summary) {
        if self.tty {
            let width = 30;
            let filled = (done * width).checked_div(self.total).unwrap_or(width);
            eprint!(
                "\r[{}{}] {done}/{} 有効 {} 無効 {} エラー {}",
                "#".repeat(filled),
                "-".repeat(width - filled),
                self.total,
                summary.valid,
                summary.invalid,
                summary.error
            );
            if done == self.total {
                eprintln!();
            }
        } else {
            let tenth = (done * 10).checked_div(self.total).unwrap_or(10);
            if tenth > self.last_tenth || done == self.total {
                self.last_tenth = tenth;
                eprintln!("{done}/{} rows", self.total);
            }
        }
    }
}

/// `edge-agent batch`: runs the file through the agent at `socket`, writes the results.
pub(super) async fn run(
    socket: &Path,
    csv_path: &Path,
    out: Option<PathBuf>,
    terminal: String,
    concurrency: u32,
    mode: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(mode) = BatchMode::parse(mode) else {
        eprintln!("--mode {mode:?}: use row (the default) or national");
        return Ok(ExitCode::from(2));
    };
    let bytes =
        std::fs::read(csv_path).with_context(|| format!("reading {}", csv_path.display()))?;
    let input = match parse_csv(&bytes) {
        Ok(input) => input,
        Err(error) => {
            eprintln!("{}: {error}", csv_path.display());
            return Ok(ExitCode::from(2));
        }
    };
    let out = out.unwrap_or_else(|| default_output(csv_path));
    let mut client = crate::control::connect(socket).await?;
    let request = pb::BatchInquiryRequest {
        rows: input
            .rows
            .iter()
            .map(|r| pb::BatchRow {
                insurer_number: r.insurer_number.clone(),
                insured_card_symbol: r.symbol.clone(),
                insured_identification_number: r.number.clone(),
                insured_branch_number: r.branch.clone(),
                birthdate: r.birthdate.clone(),
            })
            .collect(),
        terminal_id: terminal,
        concurrency,
        mode: mode.as_str().to_string(),
    };
    let mut stream = client
        .batch_inquiry(request)
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let total = input.rows.len();
    let mut results: Vec<Option<RowResult>> = vec![None; total];
    let mut progress = Progress::new(total);
    let mut batch_id = String::new();
    let mut done = 0usize;
    let mut running = Summary::default();
    while let Some(message) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("the batch stopped: {}", s.message()))?
    {
        batch_id = message.batch_id.clone();
        let index = message.index as usize;
        let Some(slot) = results.get_mut(index) else {
            anyhow::bail!("the agent answered row {index} of {total}");
        };
        if slot.is_some() {
            continue;
        }
        let status = RowStatus::parse(&message.status).unwrap_or(RowStatus::Error);
        match status {
            RowStatus::Valid => running.valid += 1,
            RowStatus::Invalid => running.invalid += 1,
            RowStatus::Error => running.error += 1,
        }
        *slot = Some(RowResult {
            status,
            message: message.message,
        });
        done += 1;
        progress.show(done, running);
    }
    let results: Vec<RowResult> = results
        .into_iter()
        .map(|r| {
            r.unwrap_or(RowResult {
                status: RowStatus::Error,
                message: "未処理 / not answered (the batch was interrupted)".into(),
            })
        })
        .collect();
    let summary = Summary::of(&results);
    crate::folder::fsio::write_atomic(&out, &write_results(&input, &results))
        .with_context(|| format!("writing {}", out.display()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "batch_id": batch_id,
                "rows": total,
                "valid": summary.valid,
                "invalid": summary.invalid,
                "error": summary.error,
                "out": out,
            })
        );
    } else {
        println!(
            "一括照会 / batch {batch_id}: 有効 {} / 無効 {} / エラー {}（計 {total}） → {}",
            summary.valid,
            summary.invalid,
            summary.error,
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
