//! `central pki`: the development PKI.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use onshi_domain::site::SiteCode;

#[derive(Debug, Subcommand)]
pub(crate) enum PkiCommand {
    /// Create a new dev PKI: chain CA, central, agents, operators, test common CA, terminals,
    /// test J-LIS CA. Refuses to overwrite an existing one.
    Init {
        #[arg(long)]
        out: PathBuf,
        /// A site code to issue an agent certificate for (repeatable).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// A qualification terminal as INSTITUTION_CODE:TERMINAL_ID (repeatable).
        #[arg(long = "terminal")]
        terminals: Vec<String>,
        /// An operator name for the JSON API (repeatable).
        #[arg(long = "operator")]
        operators: Vec<String>,
    },
    /// Issue an agent certificate for one more site with an existing dev chain CA.
    IssueAgent {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        site: String,
    },
}

pub(crate) fn run(command: PkiCommand) -> anyhow::Result<()> {
    use fleet_tls::devpki;
    match command {
        PkiCommand::Init {
            out,
            sites,
            terminals,
            operators,
        } => {
            for site in &sites {
                SiteCode::parse(site).with_context(|| format!("--site {site}"))?;
            }
            let terminals = terminals
                .iter()
                .map(|t| {
                    t.split_once(':')
                        .map(|(c, id)| (c.to_string(), id.to_string()))
                        .with_context(|| {
                            format!("--terminal {t}: expected INSTITUTION_CODE:TERMINAL_ID")
                        })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let spec = devpki::DevPkiSpec {
                sites,
                operators,
                terminals,
                extra_server_names: Vec::new(),
            };
            devpki::init(&out, &spec)?;
            eprintln!("dev PKI written to {} (keys are owner-only)", out.display());
            Ok(())
        }
        PkiCommand::IssueAgent { dir, site } => {
            SiteCode::parse(&site).with_context(|| format!("--site {site}"))?;
            let (cert, _) = devpki::issue_agent(&dir, &site)?;
            eprintln!("agent certificate written to {}", cert.display());
            Ok(())
        }
    }
}
