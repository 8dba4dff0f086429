//! `edge-agent service …` on Windows: install, configure, uninstall, and what the Service
//! Control Manager starts.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;

use super::args::ServiceCommand;

/// `service …`: outside the async runtime, since `service run` hands the thread to the Service
/// Control Manager, which starts the agent on a thread (and runtime) of its own.
pub(super) fn service_command(
    command: &ServiceCommand,
    config: Option<&std::path::Path>,
) -> ExitCode {
    use crate::service;
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
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
