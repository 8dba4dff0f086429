//! What the command line accepts (clap), and nothing else.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "edge-agent", version, about = "onshi-fleet site agent")]
pub(super) struct Cli {
    /// The agent's configuration file.
    #[arg(long, short, env = "EDGE_AGENT_CONFIG", global = true)]
    pub(super) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
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
pub(super) enum ServiceCommand {
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
pub(super) enum OutboxCommand {
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
