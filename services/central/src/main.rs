//! `central`: the service, its migrations, the dev PKI and a few operator views. Wiring only:
//! the command line and each subcommand are in `cli`.

mod cli;

use clap::Parser;
use cli::{Cli, Command, run};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut env: std::collections::HashMap<String, String> = std::env::vars().collect();
    if !matches!(cli.command, Command::Serve(_)) {
        // One-shot commands (a probe every few seconds, an operator's query) export nothing:
        // no collector connection to open and flush on exit.
        env.retain(|key, _| !key.starts_with("OTEL_"));
    }
    let runtime = tokio::runtime::Runtime::new()?;
    // Inside the runtime: the OTLP exporter's gRPC channel lives on it. The guard flushes on
    // drop, before the runtime goes.
    let options = fleet_telemetry::Options {
        prometheus: matches!(&cli.command, Command::Serve(args) if args.metrics_listen.is_some()),
    };
    let telemetry = {
        let _entered = runtime.enter();
        fleet_telemetry::init_with("central", &env, options)?
    };
    let result = runtime.block_on(run(cli.command, telemetry.prometheus()));
    drop(telemetry);
    result
}
