//! `central account`: dashboard accounts and API tokens, through the same functions as the
//! JSON API (`central_core::auth::accounts`).

use anyhow::Context;
use clap::Subcommand;

use super::{DbArgs, open_store, print_json};

#[derive(Debug, Subcommand)]
pub(crate) enum AccountCommand {
    /// Make an account. The password is read from standard input (its first line), never from
    /// the command line, where other users and the shell history would see it.
    Add {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        login: String,
        /// The name the dashboard shows.
        #[arg(long)]
        name: String,
        /// chain_admin, area_manager, auditor or viewer.
        #[arg(long)]
        role: String,
        /// An area manager's prefecture (two digits; repeat for several).
        #[arg(long = "prefecture")]
        prefectures: Vec<String>,
        /// An area manager's site (repeat for several).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// Who makes it (recorded in the audit trail); default: the OS user.
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Change an account: its role and scope (demote, promote), disable or enable it, or reset
    /// its password (read from standard input; its sessions end and its API tokens are
    /// revoked). Audited.
    Set {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        login: String,
        /// A new role: chain_admin, area_manager, auditor or viewer.
        #[arg(long)]
        role: Option<String>,
        /// An area manager's prefecture (with --role; repeat for several).
        #[arg(long = "prefecture")]
        prefectures: Vec<String>,
        /// An area manager's site (with --role; repeat for several).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// The account can no longer sign in; its sessions and tokens stop working.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
        /// Read a new password from standard input (its first line).
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Print the accounts (JSON; no password hashes).
    List(DbArgs),
    /// Issue an API token acting as an account; the token is printed once, on standard output.
    Token {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        login: String,
        /// What uses the token (shown in the account's token list).
        #[arg(long)]
        label: String,
        #[arg(long, default_value_t = 90)]
        days: i64,
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
}

pub(crate) async fn run(command: AccountCommand) -> anyhow::Result<()> {
    use central_core::auth::accounts::{AccountSpec, create_account, issue_token};
    match command {
        AccountCommand::Add {
            db,
            login,
            name,
            role,
            prefectures,
            sites,
            by,
        } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            let spec = AccountSpec {
                login,
                display_name: name,
                role,
                prefectures,
                sites,
                password: password.trim_end_matches(['\r', '\n']).to_string(),
            };
            create_account(
                &open_store(&db)?,
                &spec,
                &format!("{by} (central account add)"),
            )
            .await?;
            eprintln!("account {} created", spec.login);
            Ok(())
        }
        AccountCommand::Set {
            db,
            login,
            role,
            prefectures,
            sites,
            disable,
            enable,
            password_stdin,
            by,
        } => {
            let password = if password_stdin {
                let mut password = String::new();
                std::io::stdin()
                    .read_line(&mut password)
                    .context("reading the password from standard input")?;
                Some(password.trim_end_matches(['\r', '\n']).to_string())
            } else {
                None
            };
            let update = central_core::auth::accounts::AccountUpdate {
                role,
                prefectures,
                sites,
                disabled: (disable || enable).then_some(disable),
                password,
            };
            central_core::auth::accounts::change_account(
                &open_store(&db)?,
                &login,
                &update,
                &format!("{by} (central account set)"),
            )
            .await?;
            eprintln!("account {login} changed");
            Ok(())
        }
        AccountCommand::List(db) => print_json(&open_store(&db)?.accounts().await?),
        AccountCommand::Token {
            db,
            login,
            label,
            days,
            by,
        } => {
            let (id, token) = issue_token(
                &open_store(&db)?,
                &login,
                &label,
                days,
                &format!("{by} (central account token)"),
            )
            .await?;
            eprintln!("API token {id} for {login}, valid {days} days; it is shown only now:");
            println!("{token}");
            Ok(())
        }
    }
}
