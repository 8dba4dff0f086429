//! `onshi-sim`: serve the simulator, or list its population.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use onshi_sim::faults::{FaultSettings, Faults};
use onshi_sim::population::{InsuranceKind, Population};
use onshi_sim::{SimSettings, Simulator};

#[derive(Debug, Parser)]
#[command(
    name = "onshi-sim",
    version,
    about = "A stand-in for the national online eligibility system (オンライン資格確認)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve OQSsiquc01 over HTTPS with terminal client certificates. Prints one JSON line
    /// `{"https":"host:port"}` on stdout once listening; logs go to stderr.
    Serve(ServeArgs),
    /// Print the population as JSON lines: what a clerk types, the name, the expected answer.
    Population(PopulationArgs),
    /// Play the qualification terminal's software: answer request files in `<folder>/req`
    /// into `<folder>/res` (the file interface real sites use). Prints one JSON line with the
    /// folders on stdout once watching; logs go to stderr. SIGUSR1 silences the terminal,
    /// SIGUSR2 brings it back (as `terminal knobs --silent true|false`).
    Terminal(TerminalCommand),
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct TerminalCommand {
    #[command(subcommand)]
    action: Option<TerminalAction>,
    #[command(flatten)]
    run: TerminalArgs,
}

#[derive(Debug, Subcommand)]
enum TerminalAction {
    /// A patient uses a My Number card on the face-recognition reader: writes one
    /// `OQSsiquc01res_face_…` file into `<folder>/face` and keeps the consent for 24 hours.
    /// Prints `{"face":"<path>"}`.
    Present(PresentArgs),
    /// Change the knobs of a running terminal (its `<folder>/.sim/knobs.json`); prints them.
    Knobs(KnobArgs),
}

#[derive(Debug, clap::Args)]
struct TerminalArgs {
    /// The terminal's base folder (`req`, `res`, `face` are created under it).
    #[arg(long, env = "ONSHI_SIM_TERMINAL_FOLDER", required = true)]
    folder: Option<PathBuf>,
    /// The institution this terminal belongs to; requests naming another get SIM-E0102.
    #[arg(long, env = "ONSHI_SIM_INSTITUTION", default_value = onshi_sim::terminal::DEFAULT_INSTITUTION)]
    institution: String,
    /// Seed of the synthetic population.
    #[arg(long, env = "ONSHI_SIM_SEED", default_value_t = 42)]
    seed: u64,
    /// Number of people in the population.
    #[arg(long, env = "ONSHI_SIM_POPULATION", default_value_t = 1000)]
    population: usize,
    /// Time from a batch inquiry's acceptance to its results being ready, in milliseconds.
    #[arg(long, env = "ONSHI_SIM_BATCH_DELAY_MS", default_value_t = 200)]
    batch_delay_ms: u64,
    /// What happens to a request file once taken: removed, or moved to `req/done`.
    #[arg(long, value_enum, default_value_t = onshi_sim::terminal::AfterAnswer::Remove)]
    requests: onshi_sim::terminal::AfterAnswer,
    /// Periodic rescan of `req`, besides file-system notification, in milliseconds.
    #[arg(long, default_value_t = 250)]
    rescan_ms: u64,
    /// Quiet time before a file that does not read is answered as unreadable, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    incomplete_grace_ms: u64,
    /// Open a disaster window, as `serve --disaster-window`.
    #[arg(long = "disaster-window", value_parser = onshi_sim::disaster::parse_flag)]
    disaster_windows: Vec<onshi_sim::disaster::OpenWindow>,
    /// Also write every result into this folder (created if missing), byte for byte as written
    /// to `res`: what the terminal answered, for tests of clients that pass results on.
    #[arg(long)]
    copy_results: Option<PathBuf>,
    /// Write batch results (an OQSmuquc02res carrying them) as a zip archive holding the XML,
    /// under the same file name, as the national side may.
    #[arg(long)]
    zip_batch: bool,
    #[command(flatten)]
    knobs: KnobFlags,
}

/// The knobs as flags (all optional: unset ones keep their value).
#[derive(Debug, Clone, clap::Args)]
struct KnobFlags {
    /// Delay before every answer, in milliseconds.
    #[arg(long)]
    latency_ms: Option<u64>,
    /// Terminal down: no request is answered until this is switched off.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    silent: Option<bool>,
    /// Every n-th answer is a broken XML file (1: all).
    #[arg(long)]
    malformed_every: Option<u64>,
    /// Every n-th answer is held `--late-ms` (longer than the client's timeout).
    #[arg(long)]
    late_every: Option<u64>,
    #[arg(long)]
    late_ms: Option<u64>,
}

impl KnobFlags {
    fn apply(&self, knobs: &mut onshi_sim::terminal::knobs::Knobs) {
        if let Some(v) = self.latency_ms {
            knobs.latency_ms = v;
        }
        if let Some(v) = self.silent {
            knobs.silent = v;
        }
        if let Some(v) = self.malformed_every {
            knobs.malformed_every = v;
        }
        if let Some(v) = self.late_every {
            knobs.late_every = v;
        }
        if let Some(v) = self.late_ms {
            knobs.late_ms = v;
        }
    }
}

#[derive(Debug, clap::Args)]
struct PresentArgs {
    /// The terminal's base folder.
    #[arg(long, env = "ONSHI_SIM_TERMINAL_FOLDER")]
    folder: PathBuf,
    /// The person's index in the population (`onshi-sim population` lists them in order).
    #[arg(long)]
    holder: usize,
    /// Information the patient agrees to share on the reader: drug, checkup, diagnosis,
    /// surgery (comma-separated).
    #[arg(long, value_delimiter = ',')]
    consent: Vec<ConsentCategory>,
    /// The patient agrees to share the copay-limit certificate.
    #[arg(long)]
    limit_consent: bool,
    /// Write the face result's elements in schema order (by default they are not, as the
    /// real terminal writes them).
    #[arg(long)]
    schema_order: bool,
    /// Institution, seed and population size, when no terminal was started in the folder
    /// (default: those of `<folder>/.sim/terminal.json`).
    #[arg(long)]
    institution: Option<String>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    population: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ConsentCategory {
    Drug,
    Checkup,
    Diagnosis,
    Surgery,
}

#[derive(Debug, clap::Args)]
struct KnobArgs {
    /// The terminal's base folder.
    #[arg(long, env = "ONSHI_SIM_TERMINAL_FOLDER")]
    folder: PathBuf,
    #[command(flatten)]
    knobs: KnobFlags,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "ONSHI_SIM_LISTEN", default_value = "127.0.0.1:9443")]
    listen: SocketAddr,
    /// Server certificate chain (PEM).
    #[arg(long, env = "ONSHI_SIM_TLS_CERT")]
    tls_cert: PathBuf,
    /// Server private key (PEM).
    #[arg(long, env = "ONSHI_SIM_TLS_KEY")]
    tls_key: PathBuf,
    /// CA certificate(s) issuing the terminal certificates (PEM).
    #[arg(long, env = "ONSHI_SIM_CLIENT_CA")]
    client_ca: PathBuf,
    /// Seed of the synthetic population.
    #[arg(long, env = "ONSHI_SIM_SEED", default_value_t = 42)]
    seed: u64,
    /// Number of people in the population.
    #[arg(long, env = "ONSHI_SIM_POPULATION", default_value_t = 1000)]
    population: usize,
    /// Delay before every eligibility answer, in milliseconds.
    #[arg(long, env = "ONSHI_SIM_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Time from a batch inquiry's acceptance (OQSmuquc01) to its results being ready
    /// (OQSmuquc02 answers "in progress" until then), in milliseconds.
    #[arg(long, env = "ONSHI_SIM_BATCH_DELAY_MS", default_value_t = 200)]
    batch_delay_ms: u64,
    /// The (test) J-LIS CA certificate (PEM): serves the My Number card route
    /// (`/oqs/card/challenge`, `/oqs/card/confirm`) for cards it issued.
    #[arg(long, env = "ONSHI_SIM_JLIS_CA")]
    jlis_ca: Option<PathBuf>,
    /// Start in an outage: every request is held unanswered (SIGUSR2 or
    /// `POST /admin/faults {"outage":false}` ends it; SIGUSR1 starts one).
    #[arg(long, env = "ONSHI_SIM_OUTAGE")]
    outage: bool,
    /// Answer every eligibility request with this SIM- error code (or, with --error-rate,
    /// that share of them).
    #[arg(long, env = "ONSHI_SIM_ERROR_CODE")]
    error_code: Option<String>,
    /// Share of eligibility requests answered with an error (0.0–1.0, deterministic).
    #[arg(long, env = "ONSHI_SIM_ERROR_RATE", default_value_t = 0.0)]
    error_rate: f64,
    /// Open a disaster window (災害時医療情報閲覧): drug and checkup information is answered
    /// without a card consent to institutions in these prefectures during this period.
    /// `PREFECTURES@START/END`, e.g. `13,27@2026-01-01T00:00:00+09:00/2026-01-08T00:00:00+09:00`
    /// (RFC 3339); repeatable. `POST /admin/disaster-windows` opens more at run time.
    #[arg(long = "disaster-window", value_parser = onshi_sim::disaster::parse_flag)]
    disaster_windows: Vec<onshi_sim::disaster::OpenWindow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Valid,
    Invalid,
    /// Medical-aid recipients (医療扶助): found by the welfare office's number.
    MedicalAid,
    Any,
}

#[derive(Debug, clap::Args)]
struct PopulationArgs {
    /// Seed of the synthetic population (the same as `serve --seed`).
    #[arg(long, env = "ONSHI_SIM_SEED", default_value_t = 42)]
    seed: u64,
    /// Number of people generated (the same as `serve --population`).
    #[arg(long, env = "ONSHI_SIM_POPULATION", default_value_t = 1000)]
    count: usize,
    /// Print at most this many people (default: all that match --kind).
    #[arg(long)]
    show: Option<usize>,
    /// Which people to print.
    #[arg(long, value_enum, default_value_t = Kind::Any)]
    kind: Kind,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Population(args) => population(args),
        Command::Terminal(command) => match command.action {
            None => terminal(command.run),
            Some(TerminalAction::Present(args)) => present(args),
            Some(TerminalAction::Knobs(args)) => knobs(args),
        },
    }
}

fn terminal(args: TerminalArgs) -> anyhow::Result<()> {
    use onshi_sim::terminal::{Terminal, TerminalSettings, knobs::Knobs};
    let folder = args.folder.context("--folder is required")?;
    let institution = onshi_domain::ids::MedicalInstitutionCode::parse(&args.institution)
        .map_err(|e| anyhow::anyhow!("--institution {}: {e}", args.institution))?;
    let mut knobs = Knobs::default();
    args.knobs.apply(&mut knobs);
    let settings = TerminalSettings {
        folder,
        institution,
        seed: args.seed,
        population: args.population,
        batch_delay: Duration::from_millis(args.batch_delay_ms),
        requests: args.requests,
        knobs,
        rescan: Duration::from_millis(args.rescan_ms.max(10)),
        incomplete_grace: Duration::from_millis(args.incomplete_grace_ms),
        copy_results: args.copy_results,
        zip_batch: args.zip_batch,
    };
    if let Some(dir) = &settings.copy_results {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let telemetry = {
        let _entered = runtime.enter();
        fleet_telemetry::init("onshi-sim", &env)?
    };
    let result = runtime.block_on(async {
        let terminal = Terminal::build(settings)?;
        for window in args.disaster_windows.clone() {
            terminal
                .national()
                .disaster_windows()
                .open(window)
                .map_err(|e| anyhow::anyhow!("--disaster-window: {e}"))?;
        }
        let folders = terminal.folders();
        let line = serde_json::json!({
            "terminal": folders.base,
            "req": folders.req,
            "res": folders.res,
            "face": folders.face,
            "knobs": folders.knobs(),
            "institution": terminal.national().institution().as_str(),
        });
        spawn_silence_signals(folders.clone());
        let stop = fleet_telemetry::stop::stop_signal().context("installing the stop signals")?;
        print_line(&line)?;
        terminal.run_until_stopped(stop).await
    });
    drop(telemetry);
    result
}

fn present(args: PresentArgs) -> anyhow::Result<()> {
    use onshi_sim::card::ConsentChoices;
    use onshi_sim::terminal::{Folders, Identity, face};
    let folders = Folders::under(&args.folder);
    let running = face::identity_of(&folders)?;
    let identity = Identity {
        institution: args
            .institution
            .or_else(|| running.as_ref().map(|i| i.institution.clone()))
            .unwrap_or_else(|| onshi_sim::terminal::DEFAULT_INSTITUTION.to_string()),
        seed: args.seed.or(running.as_ref().map(|i| i.seed)).unwrap_or(42),
        population: args
            .population
            .or(running.as_ref().map(|i| i.population))
            .unwrap_or(1000),
    };
    let has = |c: ConsentCategory| args.consent.contains(&c);
    let presentation = face::Presentation {
        holder: args.holder,
        consent: ConsentChoices {
            drug: has(ConsentCategory::Drug),
            checkup: has(ConsentCategory::Checkup),
            diagnosis: has(ConsentCategory::Diagnosis),
            surgery: has(ConsentCategory::Surgery),
        },
        limit_consent: args.limit_consent,
        schema_order: args.schema_order,
    };
    let path = face::present(&folders, &identity, &presentation)?;
    print_line(&serde_json::json!({ "face": path }))
}

fn knobs(args: KnobArgs) -> anyhow::Result<()> {
    use onshi_sim::terminal::{Folders, read_knobs, write_knobs};
    let folders = Folders::under(&args.folder);
    folders.create(false)?;
    let mut knobs = read_knobs(&folders)?;
    args.knobs.apply(&mut knobs);
    write_knobs(&folders, &knobs)?;
    print_line(&serde_json::to_value(&knobs).context("encoding the knobs")?)
}

/// One JSON line on stdout, flushed (scripts and tests wait for it).
fn print_line(line: &serde_json::Value) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").context("writing to stdout")?;
    stdout.flush().context("writing to stdout")
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = SimSettings {
        listen: args.listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        client_ca: args.client_ca,
        seed: args.seed,
        population: args.population,
        latency: Duration::from_millis(args.latency_ms),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Inside the runtime: the OTLP exporter's gRPC channel lives on it. The guard flushes on
    // drop, before the runtime goes.
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let telemetry = {
        let _entered = runtime.enter();
        fleet_telemetry::init("onshi-sim", &env)?
    };
    let result = runtime.block_on(async {
        let simulator = Simulator::build(&settings)?
            .with_batch_delay(Duration::from_millis(args.batch_delay_ms));
        let simulator = match &args.jlis_ca {
            Some(ca) => simulator.with_card_route(ca)?,
            None => simulator,
        };
        simulator
            .faults()
            .apply(&FaultSettings {
                outage: Some(args.outage),
                error_code: args.error_code.clone(),
                error_rate: Some(args.error_rate),
            })
            .context("the fault knobs")?;
        for window in args.disaster_windows.clone() {
            simulator
                .disaster_windows()
                .open(window)
                .map_err(|e| anyhow::anyhow!("--disaster-window: {e}"))?;
        }
        spawn_outage_signals(simulator.faults().clone());
        let stop = fleet_telemetry::stop::stop_signal().context("installing the stop signals")?;
        let line = serde_json::json!({ "https": simulator.addr().to_string() });
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}").context("writing the address to stdout")?;
        stdout.flush().context("writing the address to stdout")?;
        drop(stdout);
        simulator.run_until_stopped(stop).await
    });
    drop(telemetry);
    result
}

/// SIGUSR1 starts an outage, SIGUSR2 ends it.
fn spawn_outage_signals(faults: std::sync::Arc<Faults>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        for (kind, on) in [
            (SignalKind::user_defined1(), true),
            (SignalKind::user_defined2(), false),
        ] {
            match signal(kind) {
                Ok(mut stream) => {
                    let faults = faults.clone();
                    tokio::spawn(async move {
                        while stream.recv().await.is_some() {
                            faults.set_outage(on);
                        }
                    });
                }
                Err(error) => tracing::error!(%error, "cannot listen for the outage signals"),
            }
        }
    }
}

/// For the terminal, as for `serve`: SIGUSR1 silences it (down), SIGUSR2 brings it back.
/// Through the control file, so `knobs.json` always says what holds.
fn spawn_silence_signals(folders: onshi_sim::terminal::Folders) {
    #[cfg(unix)]
    {
        use onshi_sim::terminal::{read_knobs, write_knobs};
        use tokio::signal::unix::{SignalKind, signal};
        for (kind, silent) in [
            (SignalKind::user_defined1(), true),
            (SignalKind::user_defined2(), false),
        ] {
            match signal(kind) {
                Ok(mut stream) => {
                    let folders = folders.clone();
                    tokio::spawn(async move {
                        while stream.recv().await.is_some() {
                            let changed = read_knobs(&folders).and_then(|mut knobs| {
                                knobs.silent = silent;
                                write_knobs(&folders, &knobs)
                            });
                            if let Err(error) = changed {
                                tracing::error!(
                                    error = format!("{error:#}"),
                                    "cannot change the silence knob"
                                );
                            }
                        }
                    });
                }
                Err(error) => tracing::error!(%error, "cannot listen for the silence signals"),
            }
        }
    }
}

fn population(args: PopulationArgs) -> anyhow::Result<()> {
    let population = Population::generate(args.seed, args.count);
    let wanted = population.people().iter().filter(|p| match args.kind {
        Kind::Any => true,
        Kind::Valid => p.validity().is_valid(),
        Kind::Invalid => !p.validity().is_valid(),
        Kind::MedicalAid => p.kind == InsuranceKind::MedicalAid,
    });
    let mut stdout = std::io::stdout().lock();
    for person in wanted.take(args.show.unwrap_or(usize::MAX)) {
        let line = serde_json::to_string(&person.card_view()).context("encoding a person")?;
        match writeln!(stdout, "{line}") {
            Ok(()) => {}
            // `onshi-sim population | head` closes the pipe early: not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).context("writing to stdout"),
        }
    }
    match stdout.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}
