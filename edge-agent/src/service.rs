//! The agent as a Windows service: `edge-agent service install|uninstall|run`.
//!
//! `install` registers `onshi-fleet-agent` with the Service Control Manager: automatic start
//! (the agent works offline and queues, so no delayed start), the virtual account
//! `NT SERVICE\onshi-fleet-agent` (no password; its own SID for the key and data ACLs), a
//! dependency on the smart-card service (`SCardSvr`) so PC/SC is up first, and recovery
//! actions that restart it (2 s, 2 s, then 10 s; the count resets after a day), also after a
//! clean exit with an error (the systemd unit's `Restart=always`). The MSI registers the same
//! service and then runs `service configure` for what its tables cannot say (see
//! `deploy/windows/edge-agent.wxs`).
//!
//! `run` is what the SCM starts: it reports *Start pending*, builds the agent (the outbox is
//! opened and checked there), reports *Running* only then, and maps *Stop*, *Shutdown* and
//! *Preshutdown* to the same graceful shutdown as SIGTERM on Linux (flush, close the stream,
//! exit).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceDependency, ServiceErrorControl, ServiceExitCode, ServiceFailureActions,
    ServiceFailureResetPeriod, ServiceInfo, ServiceSidType, ServiceStartType, ServiceState,
    ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use crate::app::Agent;
use crate::config::AgentConfig;

pub use crate::SERVICE_NAME;
pub const DISPLAY_NAME: &str = "onshi-fleet edge agent";
pub const DESCRIPTION: &str =
    "オンライン資格確認の記録と中央への送信 / online eligibility verification agent (onshi-fleet)";
/// The service's virtual account: no password, a SID of its own for the ACLs.
pub const ACCOUNT: &str = r"NT SERVICE\onshi-fleet-agent";
/// The smart-card service (WinSCard), which the card readers need.
pub const SMART_CARD_SERVICE: &str = "SCardSvr";
/// How long the SCM waits for a pending start or stop before it gives up on the service.
const PENDING_WAIT: Duration = Duration::from_secs(30);

/// What `install` registers: the binary with `--config <config> service run`.
pub fn service_info(executable: &Path, config: &Path) -> ServiceInfo {
    ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: executable.to_path_buf(),
        launch_arguments: vec![
            "--config".into(),
            config.as_os_str().to_owned(),
            "service".into(),
            "run".into(),
        ],
        dependencies: vec![ServiceDependency::Service(SMART_CARD_SERVICE.into())],
        account_name: Some(ACCOUNT.into()),
        account_password: None,
    }
}

/// Restart after 2 s, 2 s, then 10 s; the failure count resets after a day without one.
pub fn recovery() -> ServiceFailureActions {
    let restart = |secs| ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(secs),
    };
    ServiceFailureActions {
        reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(24 * 3600)),
        reboot_msg: None,
        command: None,
        actions: Some(vec![restart(2), restart(2), restart(10)]),
    }
}

/// Registers the service (see the module documentation). `config` must be absolute: the SCM
/// starts the service in `System32`.
pub fn install(config: &Path) -> anyhow::Result<()> {
    if !config.is_absolute() {
        anyhow::bail!(
            "設定ファイルは絶対パスで指定してください / pass the configuration as an absolute path (the service starts in System32): {}",
            config.display()
        );
    }
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .context("opening the Service Control Manager (run as Administrator)")?;
    let executable = std::env::current_exe().context("finding edge-agent.exe")?;
    manager
        .create_service(
            &service_info(&executable, config),
            ServiceAccess::CHANGE_CONFIG | ServiceAccess::START,
        )
        .with_context(|| format!("creating the service {SERVICE_NAME}"))?;
    configure()
}

/// The SID of a service's virtual account (`NT SERVICE\<name>`): `S-1-5-80-` and the SHA-1 of
/// the upper-cased name in UTF-16LE as five little-endian 32-bit numbers, the same on every
/// machine (what `sc showsid <name>` prints), so ACLs can name it before the service exists.
pub fn service_sid(name: &str) -> String {
    let utf16: Vec<u8> = name
        .to_uppercase()
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &utf16);
    let parts: Vec<String> = digest
        .as_ref()
        .chunks(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]).to_string())
        .collect();
    format!("S-1-5-80-{}", parts.join("-"))
}

/// The agent's folders under `%ProgramData%\onshi-fleet\agent` and their DACLs (inheritance
/// off): the configuration readable by the service, writable by Administrators; keys and data
/// for SYSTEM and the service only (it renews its certificate and creates the outbox key, so
/// it may modify them; Administrators can take ownership, which is audited); logs readable by
/// Administrators.
pub fn folder_acls(root: &Path) -> Vec<(PathBuf, String)> {
    let service = service_sid(SERVICE_NAME);
    // Modify: read, write, execute, delete (no change of permissions or owner).
    const MODIFY: &str = "0x1301bf";
    vec![
        (
            root.to_path_buf(),
            format!("D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FRFX;;;{service})"),
        ),
        (
            root.join("keys"),
            format!("D:P(A;OICI;FA;;;SY)(A;OICI;{MODIFY};;;{service})"),
        ),
        (
            root.join("data"),
            format!("D:P(A;OICI;FA;;;SY)(A;OICI;{MODIFY};;;{service})"),
        ),
        (
            root.join("logs"),
            format!("D:P(A;OICI;FA;;;SY)(A;OICI;FR;;;BA)(A;OICI;{MODIFY};;;{service})"),
        ),
    ]
}

/// `%ProgramData%\onshi-fleet\agent`.
pub fn agent_root() -> anyhow::Result<PathBuf> {
    let program_data = std::env::var_os("ProgramData").context("%ProgramData% is not set")?;
    Ok(PathBuf::from(program_data)
        .join("onshi-fleet")
        .join("agent"))
}

/// What the MSI's tables cannot say: description, recovery actions, the service SID, and the
/// DACLs of the agent's folders (those that exist).
pub fn configure() -> anyhow::Result<()> {
    for (folder, sddl) in folder_acls(&agent_root()?) {
        if folder.is_dir() {
            crate::owner_only::windows::set_dacl(&folder, &sddl)
                .with_context(|| format!("setting the ACL of {}", folder.display()))?;
        }
    }
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .context("opening the Service Control Manager (run as Administrator)")?;
    let service = manager
        .open_service(SERVICE_NAME, ServiceAccess::CHANGE_CONFIG)
        .with_context(|| format!("opening the service {SERVICE_NAME}"))?;
    service.set_description(DESCRIPTION)?;
    service
        .update_failure_actions(recovery())
        .context("setting the recovery actions")?;
    service
        .set_failure_actions_on_non_crash_failures(true)
        .context("restarting after an exit with an error too")?;
    service
        .set_config_service_sid_info(ServiceSidType::Unrestricted)
        .context("giving the service its own SID")?;
    Ok(())
}

/// Stops the service if it runs, then removes it. The configuration, keys and outbox under
/// `%ProgramData%\onshi-fleet\agent` are kept.
pub fn uninstall() -> anyhow::Result<()> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .context("opening the Service Control Manager (run as Administrator)")?;
    let service = manager
        .open_service(
            SERVICE_NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .with_context(|| format!("opening the service {SERVICE_NAME}"))?;
    if service.query_status()?.current_state != ServiceState::Stopped {
        service.stop().context("stopping the service")?;
    }
    service.delete().context("deleting the service")?;
    Ok(())
}

static CONFIG: OnceLock<PathBuf> = OnceLock::new();

/// Hands this process to the Service Control Manager, which calls back on its own thread;
/// returns once the service stopped. Only the SCM can start it this way.
pub fn run(config: PathBuf) -> anyhow::Result<()> {
    let _ = CONFIG.set(config);
    service_dispatcher::start(SERVICE_NAME, ffi_service_main).context(
        "`service run` is started by the Service Control Manager; to run in a console use `edge-agent run`",
    )
}

define_windows_service!(ffi_service_main, service_main);

fn service_main(_arguments: Vec<OsString>) {
    if let Err(error) = serve() {
        tracing::error!(
            error = format!("{error:#}"),
            "the service stopped with an error"
        );
    }
}

fn status(state: ServiceState, exit_code: ServiceExitCode, checkpoint: u32) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code,
        checkpoint,
        wait_hint: PENDING_WAIT,
        process_id: None,
    }
}

fn serve() -> anyhow::Result<()> {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
            let _ = stop_tx.send(true);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let handle = service_control_handler::register(SERVICE_NAME, handler)?;
    handle.set_service_status(status(
        ServiceState::StartPending,
        ServiceExitCode::NO_ERROR,
        1,
    ))?;
    let config = CONFIG.get().cloned().context("no configuration")?;
    let result = (|| {
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            let env = std::env::vars().collect();
            let config = AgentConfig::load(&config, &env)?;
            // Running only once the agent is built: its outbox is open and checked.
            let agent = Agent::build_with_env(&config, &env).await?;
            handle.set_service_status(status(
                ServiceState::Running,
                ServiceExitCode::NO_ERROR,
                0,
            ))?;
            tracing::info!(site = %config.site_code, "edge agent running as a service");
            agent
                .run_until_stopped(async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                })
                .await
        })
    })();
    handle.set_service_status(status(
        ServiceState::StopPending,
        ServiceExitCode::NO_ERROR,
        1,
    ))?;
    let exit = match &result {
        Ok(()) => ServiceExitCode::NO_ERROR,
        // Any failure: the SCM's recovery actions restart the service.
        Err(_) => ServiceExitCode::ServiceSpecific(1),
    };
    handle.set_service_status(status(ServiceState::Stopped, exit, 0))?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_runs_the_agent_as_its_virtual_account_after_the_smart_card_service() {
        let info = service_info(
            Path::new(r"C:\Program Files\onshi-fleet\edge-agent.exe"),
            Path::new(r"C:\ProgramData\onshi-fleet\agent\agent.toml"),
        );
        assert_eq!(info.name, SERVICE_NAME);
        assert_eq!(info.start_type, ServiceStartType::AutoStart);
        assert_eq!(info.account_name.as_deref(), Some(ACCOUNT.as_ref()));
        assert_eq!(
            info.dependencies,
            vec![ServiceDependency::Service("SCardSvr".into())]
        );
        assert_eq!(
            info.launch_arguments,
            [
                "--config",
                r"C:\ProgramData\onshi-fleet\agent\agent.toml",
                "service",
                "run"
            ]
            .map(OsString::from)
        );
        let actions = recovery().actions.unwrap();
        assert_eq!(
            actions
                .iter()
                .map(|a| a.delay.as_secs())
                .collect::<Vec<_>>(),
            [2, 2, 10]
        );
        assert!(
            actions
                .iter()
                .all(|a| a.action_type == ServiceActionType::Restart)
        );
    }

    #[test]
    fn a_service_sid_is_the_one_windows_derives_from_the_name() {
        // TrustedInstaller's service SID, the same on every Windows machine.
        assert_eq!(
            service_sid("TrustedInstaller"),
            "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
        );
        let acls = folder_acls(Path::new(r"C:\ProgramData\onshi-fleet\agent"));
        let keys = &acls[1];
        assert!(keys.0.ends_with("keys"));
        assert!(keys.1.starts_with("D:P(") && !keys.1.contains(";BA)") && !keys.1.contains(";WD)"));
        // Each descriptor is one Windows accepts.
        for (_, sddl) in &acls {
            crate::owner_only::windows::SecurityDescriptor::from_sddl(sddl).unwrap();
        }
    }

    #[test]
    fn install_refuses_a_relative_configuration_path() {
        let error = install(Path::new(r"agent.toml")).unwrap_err();
        assert!(error.to_string().contains("absolute"), "{error:#}");
    }
}
