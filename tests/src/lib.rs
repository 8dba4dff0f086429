//! Harness for the end-to-end tests: real PostgreSQL, real binaries as child processes, a real
//! dev PKI in a temporary folder.
//!
//! Every test gets its own database (created from `DATABASE_URL`, which `make test` provides
//! with a throwaway cluster) and its own PKI, and binds port 0 everywhere: tests run in
//! parallel without seeing each other. Processes are killed when their handle drops.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use fleet_tls::devpki::{self, DevPki, DevPkiSpec};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub mod http;
pub mod openapi;
pub mod otlp;
pub mod pcsc;
pub mod pg;
pub mod proxy;
pub mod receipt;
pub mod uplink;

/// How long a cross-process condition may take before the test fails (`E2E_PATIENCE_SECS`).
pub fn patience() -> Duration {
    let secs = std::env::var("E2E_PATIENCE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// Waits until `check` returns `Some`, polling briefly, and fails after [`patience`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(what, patience(), check).await
}

/// [`eventually`] for work whose size sets its time (a burst of a thousand files): fails after
/// `patience`, or [`patience`] if that is longer.
pub async fn eventually_within<T, F, Fut>(what: &str, patience: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let patience = patience.max(self::patience());
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("gave up after {patience:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where [`bin`] finds the binaries when not in `target/debug` (see [`use_binaries_from`]).
static BIN_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes every helper here start the binaries in `dir` instead of `target/debug`: the
/// benchmarks run the release builds beside themselves. Set once, before anything starts.
pub fn use_binaries_from(dir: &Path) {
    let _ = BIN_DIR.set(dir.to_path_buf());
}

/// A binary built by `make build` (cargo build --workspace --bins), or in the folder given to
/// [`use_binaries_from`].
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = BIN_DIR.get() {
        let path = dir.join(name);
        assert!(
            path.exists(),
            "the {name} binary is missing at {}: build it in the same profile",
            path.display()
        );
        return path;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "the {name} binary is missing at {}: run `make build` first (`make test` does)",
        path.display()
    );
    path
}

/// A site code (10-digit institution code) with the check digit its prefecture's rule gives.
pub fn site_code(first_nine: &str) -> String {
    onshi_domain::ids::MedicalInstitutionCode::with_check_digit(first_nine)
        .expect("nine digits of a real prefecture and fee table")
        .to_string()
}

// ------------------------------------------------------------------------------- PostgreSQL

/// A database of its own for one test, dropped afterwards (with the login roles it made).
/// `url` is the schema owner's (the server's administrator); central serves as
/// [`TestDb::app_login`], as in production.
#[derive(Debug)]
pub struct TestDb {
    admin_url: String,
    pub name: String,
    pub url: String,
    roles: std::sync::Mutex<Vec<String>>,
}

impl TestDb {
    pub async fn create() -> anyhow::Result<Self> {
        let admin_url = std::env::var("DATABASE_URL").context(
            "DATABASE_URL is not set: these tests need PostgreSQL. Run `make test`, which starts \
             a throwaway cluster, or point DATABASE_URL at a server where this user may CREATE DATABASE",
        )?;
        Self::create_in(&admin_url).await
    }

    /// A database of its own on the server at `admin_url`.
    pub async fn create_in(admin_url: &str) -> anyhow::Result<Self> {
        let admin_url = admin_url.to_string();
        let name = format!("onshi_e2e_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&admin_url).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .context("creating the test database")?;
        let url = with_database(&admin_url, &name);
        Ok(Self {
            admin_url,
            name,
            url,
            roles: std::sync::Mutex::default(),
        })
    }

    pub async fn client(&self) -> anyhow::Result<tokio_postgres::Client> {
        connect(&self.url).await
    }

    /// The URL of a new login role that is a member of the application role `onshi_app` only
    /// (no ownership, no superuser): what central serves as. Works before the first migration
    /// (the role `onshi_app` is made here if this server has none yet; migration 0006 keeps it).
    pub async fn app_login(&self) -> anyhow::Result<String> {
        let login = format!("central_{}", uuid::Uuid::new_v4().simple());
        let admin = self.client().await?;
        admin
            .batch_execute(
                "DO $$ BEGIN CREATE ROLE onshi_app NOLOGIN;
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
            )
            .await
            .context("making the role onshi_app")?;
        admin
            .batch_execute(&format!("CREATE ROLE {login} LOGIN IN ROLE onshi_app"))
            .await
            .context("making central's login role")?;
        self.roles.lock().expect("roles lock").push(login.clone());
        Ok(with_user(&self.url, &login))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let roles = std::mem::take(&mut *self.roles.lock().unwrap_or_else(|e| e.into_inner()));
        // Drop runs outside async context; a short-lived runtime on its own thread cleans up.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let admin = connect(&admin_url).await.ok()?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()?;
                for role in roles {
                    let _ = admin
                        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
                        .await;
                }
                Some(())
            })
        })
        .join();
    }
}

pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(connection);
    Ok(client)
}

/// `url` with its user replaced by `user` (the throwaway cluster trusts loopback).
pub fn with_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let host_and_db = rest.split_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}@{host_and_db}")
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (prefix, _) = base.rsplit_once('/').expect("a postgres:// URL");
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

// ------------------------------------------------------------------------------- PKI

#[derive(Debug)]
pub struct Pki {
    _dir: tempfile::TempDir,
    pub paths: DevPki,
}

impl Pki {
    /// A fresh dev PKI with agent certificates for `sites`, one terminal "T01" per site, and an
    /// operator "e2e".
    pub fn new(sites: &[&str]) -> anyhow::Result<Self> {
        Self::with_operators(sites, &["e2e"])
    }

    /// [`Pki::new`] with these operators' certificates instead of "e2e" alone.
    pub fn with_operators(sites: &[&str], operators: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let spec = DevPkiSpec {
            sites: sites.iter().map(|s| s.to_string()).collect(),
            terminals: sites
                .iter()
                .map(|s| (s.to_string(), "T01".to_string()))
                .collect(),
            operators: operators.iter().map(|o| o.to_string()).collect(),
            extra_server_names: Vec::new(),
        };
        let paths = devpki::init(&dir.path().join("pki"), &spec)?;
        Ok(Self { _dir: dir, paths })
    }
}

/// Re-issues `site`'s agent certificate with two days left of twelve: inside central's renewal
/// window (a third of the lifetime left), so the agent renews and central signs.
pub fn issue_due_agent_certificate(pki: &Pki, site: &str) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc();
    fleet_tls::devpki::issue_agent_between(
        pki.paths.root(),
        site,
        now - time::Duration::days(10),
        now + time::Duration::days(2),
    )?;
    Ok(())
}

// ------------------------------------------------------------------------------- processes

/// A child process that is killed when dropped.
#[derive(Debug)]
pub struct Running {
    pub child: Child,
    /// The JSON line the process printed when ready.
    pub ready: serde_json::Value,
}

/// Spawns `command` and waits for its first stdout line, a JSON object announcing readiness.
pub async fn spawn_ready(mut command: Command) -> anyhow::Result<Running> {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command.spawn().context("spawning a process")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(patience(), lines.next_line())
        .await
        .context("the process did not announce readiness in time")??;
    let Some(line) = line else {
        let status = child.wait().await?;
        bail!("the process exited ({status}) before it was ready");
    };
    let ready = serde_json::from_str(&line)
        .with_context(|| format!("the readiness line is not JSON: {line}"))?;
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Running { child, ready })
}

impl Running {
    /// Kills the process (SIGKILL) and waits until it is gone, so that whatever it held (a port,
    /// a control socket) is free when this returns. Dropping only sends the signal.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    pub fn field(&self, name: &str) -> String {
        self.ready[name]
            .as_str()
            .unwrap_or_else(|| panic!("readiness line lacks {name}: {}", self.ready))
            .to_string()
    }
}

pub async fn start_central(pki: &Pki, db: &TestDb) -> anyhow::Result<Running> {
    start_central_with_env(pki, db, &[]).await
}

/// Central with extra environment variables (e.g. OTEL_* pointing at [`otlp::OtlpReceiver`]).
pub async fn start_central_with_env(
    pki: &Pki,
    db: &TestDb,
    env: &[(&str, &str)],
) -> anyhow::Result<Running> {
    start_central_with(pki, db, &[], env).await
}

/// Central with extra `serve` arguments (e.g. `--web-listen 127.0.0.1:0`) and environment.
/// As in production, it serves as a login role in `onshi_app` ([`TestDb::app_login`]) and
/// migrates at start with the owner's URL (`CENTRAL_MIGRATE_DATABASE_URL`).
pub async fn start_central_with(
    pki: &Pki,
    db: &TestDb,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<Running> {
    let app_url = db.app_login().await?;
    let mut command = central_serve(pki, args);
    command
        .env("DATABASE_URL", &app_url)
        .env("CENTRAL_MIGRATE_DATABASE_URL", &db.url)
        .envs(env.iter().copied());
    spawn_ready(command).await
}

/// `central serve` on port 0 with the PKI's certificates and extra `args`, logging at info;
/// the database comes from the caller (DATABASE_URL).
pub fn central_serve(pki: &Pki, args: &[&str]) -> Command {
    let (cert, key) = pki.paths.central();
    let mut command = Command::new(bin("central"));
    command
        .arg("serve")
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .arg("--client-ca")
        .arg(pki.paths.chain_ca())
        .arg("--agent-ca")
        .arg(pki.paths.agent_ca().0)
        .args(args)
        .env_remove("CENTRAL_MIGRATE_DATABASE_URL")
        .env_remove("CENTRAL_ALLOW_SCHEMA_OWNER")
        // The tests' central connects to PostgreSQL itself (tests/pooler.rs says otherwise),
        // so ingest keeps its statements prepared, as a direct deployment does.
        .env("CENTRAL_DATABASE_POOLER", "none")
        .env("RUST_LOG", "info");
    command
}

/// `central verify --site <site> --json`: whether the site's stored events follow its hash
/// chain, and the verdict.
pub async fn central_verify(db: &TestDb, site: &str) -> anyhow::Result<(bool, serde_json::Value)> {
    central_verify_at(&db.url, site).await
}

/// [`central_verify`] against the database at `url` (e.g. a promoted standby's).
pub async fn central_verify_at(url: &str, site: &str) -> anyhow::Result<(bool, serde_json::Value)> {
    let output = Command::new(bin("central"))
        .args(["verify", "--json", "--site", site])
        .env("DATABASE_URL", url)
        .output()
        .await?;
    let verdict: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "central verify printed no verdict: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let intact = verdict["intact"] == true;
    anyhow::ensure!(
        output.status.code() == Some(if intact { 0 } else { 1 }),
        "central verify exits 0 when intact, 1 when broken: {:?} for {verdict}",
        output.status
    );
    Ok((intact, verdict))
}

pub const SIM_SEED: &str = "42";
pub const SIM_POPULATION: &str = "500";

/// onshi-sim with extra `serve` arguments (e.g. `--outage`, `--error-code SIM-E0301`).
pub async fn start_sim_with(pki: &Pki, extra: &[&str]) -> anyhow::Result<Running> {
    let (cert, key) = pki.paths.onshi_sim();
    let mut command = Command::new(bin("onshi-sim"));
    command
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .arg("--client-ca")
        .arg(pki.paths.common_ca())
        .args(["--seed", SIM_SEED, "--population", SIM_POPULATION])
        .args(extra);
    spawn_ready(command).await
}

/// onshi-sim with extra environment variables (e.g. OTEL_* pointing at [`otlp::OtlpReceiver`]).
pub async fn start_sim_with_env(pki: &Pki, env: &[(&str, &str)]) -> anyhow::Result<Running> {
    let (cert, key) = pki.paths.onshi_sim();
    let mut command = Command::new(bin("onshi-sim"));
    command
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .arg("--client-ca")
        .arg(pki.paths.common_ca())
        .args(["--seed", SIM_SEED, "--population", SIM_POPULATION])
        .envs(env.iter().copied());
    spawn_ready(command).await
}

/// Sends `signal` (e.g. "USR1") to a running process.
pub async fn signal(running: &Running, signal: &str) -> anyhow::Result<()> {
    let pid = running.child.id().context("the process has exited")?;
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

pub async fn start_sim(pki: &Pki) -> anyhow::Result<Running> {
    let (cert, key) = pki.paths.onshi_sim();
    let mut command = Command::new(bin("onshi-sim"));
    command
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .arg("--client-ca")
        .arg(pki.paths.common_ca())
        .args(["--seed", SIM_SEED, "--population", SIM_POPULATION]);
    spawn_ready(command).await
}

/// Starts `onshi-sim terminal` playing the qualification terminal on `folder` (it creates
/// `req`, `res`, `face`), with the same population as [`start_sim`]; `extra` are its flags
/// (knobs such as `--latency-ms`).
pub async fn start_sim_terminal(folder: &Path, extra: &[&str]) -> anyhow::Result<Running> {
    let mut command = Command::new(bin("onshi-sim"));
    command
        .arg("terminal")
        .arg("--folder")
        .arg(folder)
        .args(["--seed", SIM_SEED, "--population", SIM_POPULATION])
        .args(["--rescan-ms", "100"])
        .args(extra);
    spawn_ready(command).await
}

/// Runs `onshi-sim terminal <args…> --folder <folder>` (`present`, `knobs`) to completion.
pub async fn sim_terminal_command(folder: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(bin("onshi-sim"))
        .arg("terminal")
        .args(args)
        .arg("--folder")
        .arg(folder)
        .output()
        .await?;
    if !output.status.success() {
        bail!(
            "onshi-sim terminal {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// Someone in onshi-sim's population, as the simulator's own CLI lists them.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SimPerson {
    pub insurer_number: String,
    #[serde(default)]
    pub symbol: String,
    pub number: String,
    #[serde(default)]
    pub branch: String,
    pub birthdate: String,
    #[serde(default)]
    pub name: String,
}

pub async fn sim_people(kind: &str, show: usize) -> anyhow::Result<Vec<SimPerson>> {
    let output = Command::new(bin("onshi-sim"))
        .args(["population", "--seed", SIM_SEED, "--count", SIM_POPULATION])
        .args(["--show", &show.to_string(), "--kind", kind])
        .output()
        .await?;
    if !output.status.success() {
        bail!(
            "onshi-sim population failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("person line: {l}")))
        .collect()
}

/// A site agent's files: its configuration and data folder.
#[derive(Debug)]
pub struct AgentSite {
    pub site: String,
    pub config: PathBuf,
    /// The Windows build run under Wine instead of the native binary ([`AgentSettings::wine`]).
    wine: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

/// A Linux path as the Windows agent under Wine names it: Wine's `Z:` drive is `/`.
pub fn wine_path(path: &Path) -> String {
    format!("Z:{}", path.display().to_string().replace('/', "\\"))
}

/// A TOML string naming a file for the agent: for the Windows agent under Wine an absolute path
/// is its Wine path, in a literal string (no escapes).
fn toml_path(wine: bool, path: &Path) -> String {
    match wine {
        false => format!("\"{}\"", path.display()),
        true if path.is_relative() => format!("'{}'", path.display()),
        true => format!("'{}'", wine_path(path)),
    }
}

/// Knobs of an agent's configuration that tests turn.
#[derive(Debug, Clone, Default)]
pub struct AgentSettings {
    /// Cap of the reconnect backoff (default: the agent's own).
    pub reconnect_max_ms: Option<u64>,
    /// Where the outbox lives (default: a folder beside the configuration).
    pub data_dir: Option<PathBuf>,
    pub outbox_budget_bytes: Option<u64>,
    /// Run this `edge-agent.exe` (the Windows build) under Wine: the configuration names its
    /// files as Windows paths on Wine's `Z:` drive and its control channel as a named pipe of
    /// its own. Wine's own settings (`WINEPREFIX`, `WINEDEBUG`) come from the environment.
    pub wine: Option<PathBuf>,
}

impl AgentSite {
    pub fn new(
        pki: &Pki,
        site: &str,
        central_endpoint: &str,
        onshi_endpoint: &str,
    ) -> anyhow::Result<Self> {
        Self::with_settings(
            pki,
            site,
            central_endpoint,
            onshi_endpoint,
            AgentSettings::default(),
        )
    }

    pub fn with_settings(
        pki: &Pki,
        site: &str,
        central_endpoint: &str,
        onshi_endpoint: &str,
        settings: AgentSettings,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let code = onshi_domain::site::SiteCode::parse(site)?;
        let kind = match code.institution_code().fee_table() {
            onshi_domain::ids::FeeTable::Pharmacy => "pharmacy",
            onshi_domain::ids::FeeTable::Dental => "dental_clinic",
            _ => "clinic",
        };
        let (agent_cert, agent_key) = pki.paths.agent(site);
        let (terminal_cert, terminal_key) = pki.paths.terminal(site, "T01");
        let wine = settings.wine.is_some();
        let file = |path: &Path| toml_path(wine, path);
        let control = match settings.wine {
            None => String::new(),
            Some(_) => format!(
                "control_socket = '\\\\.\\pipe\\onshi-fleet-e2e-{}'",
                uuid::Uuid::new_v4().simple()
            ),
        };
        let text = format!(
            r#"version = 1
site_code = "{site}"
site_kind = "{kind}"
prefecture = "{prefecture}"
terminal_id = "T01"
data_dir = {data_dir}
patient_hash_key_file = {patient_key}
{control}
{budget}
[central]
endpoint = "{central_endpoint}"
ca = {chain_ca}
cert = {agent_cert}
key = {agent_key}
{reconnect}

[onshi]
endpoint = "{onshi_endpoint}"
ca = {common_ca}
cert = {terminal_cert}
key = {terminal_key}
timeout_ms = 5000
"#,
            prefecture = &site[..2],
            data_dir = file(settings.data_dir.as_deref().unwrap_or(Path::new("data"))),
            budget = settings
                .outbox_budget_bytes
                .map_or(String::new(), |b| format!("outbox_budget_bytes = {b}")),
            reconnect = settings
                .reconnect_max_ms
                .map_or(String::new(), |ms| format!("reconnect_max_ms = {ms}")),
            patient_key = file(&pki.paths.patient_hash_key()),
            chain_ca = file(&pki.paths.chain_ca()),
            agent_cert = file(&agent_cert),
            agent_key = file(&agent_key),
            common_ca = file(&pki.paths.common_ca()),
            terminal_cert = file(&terminal_cert),
            terminal_key = file(&terminal_key),
        );
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, text)?;
        Ok(Self {
            site: site.to_string(),
            config,
            wine: settings.wine,
            _dir: dir,
        })
    }

    /// `edge-agent --config <config>`: the native binary, or the Windows one under Wine.
    pub fn command(&self) -> Command {
        match &self.wine {
            None => {
                let mut command = Command::new(bin("edge-agent"));
                command.arg("--config").arg(&self.config);
                command
            }
            Some(exe) => {
                let mut command = Command::new("wine");
                command
                    .arg(exe)
                    .arg("--config")
                    .arg(wine_path(&self.config));
                command
            }
        }
    }

    pub async fn start(&self) -> anyhow::Result<Running> {
        let mut command = self.command();
        command.arg("run");
        spawn_ready(command).await
    }

    /// Starts the agent with extra environment variables (e.g. the fault-injection hook).
    pub async fn start_with_env(&self, env: &[(&str, &str)]) -> anyhow::Result<Running> {
        let mut command = self.command();
        command.arg("run");
        command.envs(env.iter().copied());
        spawn_ready(command).await
    }

    /// The site's own temporary folder (the configuration file is in it).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Appends TOML to the configuration, e.g. a `[file_exchange]` or `[link]` section.
    pub fn append_config(&self, text: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.config)?;
        writeln!(file, "\n{text}")?;
        Ok(())
    }

    /// Replaces a line of the configuration, e.g. to point at another endpoint or timeout.
    pub fn edit_config(&self, from: &str, to: &str) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.config)?;
        anyhow::ensure!(text.contains(from), "the configuration has no {from:?}");
        std::fs::write(&self.config, text.replacen(from, to, 1))?;
        Ok(())
    }

    /// Switches the agent to the terminal transport on `folder` (the qualification terminal's
    /// base folder), with `timeout_ms` for a request's answer.
    pub fn use_terminal(&self, folder: &Path, timeout_ms: u64) -> anyhow::Result<()> {
        self.edit_config(
            "timeout_ms = 5000",
            &format!(
                "timeout_ms = {timeout_ms}\ntransport = \"terminal\"\nfolder = {}\nrescan_ms = 200\nsettle_ms = 50",
                toml_path(self.wine.is_some(), folder)
            ),
        )
    }

    /// Runs the counter CLI `edge-agent lookup`.
    pub async fn lookup(&self, person: &SimPerson) -> anyhow::Result<std::process::Output> {
        Ok(self
            .command()
            .args(["lookup", "--json"])
            .args(["--insurer", &person.insurer_number])
            .args(["--symbol", &person.symbol])
            .args(["--number", &person.number])
            .args(["--branch", &person.branch])
            .args(["--birthdate", &person.birthdate])
            .output()
            .await?)
    }

    pub async fn status(&self) -> anyhow::Result<serde_json::Value> {
        let output = self.command().args(["status", "--json"]).output().await?;
        if !output.status.success() {
            bail!(
                "edge-agent status failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }
}

/// The bodies (JSON) of the lookup events central stored, in sequence order.
pub async fn stored_lookups(db: &TestDb) -> anyhow::Result<Vec<serde_json::Value>> {
    let client = db.client().await?;
    let rows = client
        .query(
            "SELECT body::text FROM events WHERE kind = 'lookup' ORDER BY sequence",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| Ok(serde_json::from_str(&r.get::<_, String>(0))?))
        .collect()
}

pub fn https_endpoint(running: &Running, field: &str) -> String {
    format!("https://{}", running.field(field))
}

// ------------------------------------------------------------------------------- information views

/// Who an information view is about: a card lookup's view handle, or insurance numbers.
#[derive(Debug, Clone, Copy)]
pub enum ViewPatient<'a> {
    Handle(&'a str),
    Card(&'a SimPerson),
}

impl AgentSite {
    /// Runs `edge-agent view --json`: (exit code, the JSON answer or Null, stderr).
    pub async fn view(
        &self,
        category: &str,
        staff: &str,
        patient: ViewPatient<'_>,
    ) -> anyhow::Result<(Option<i32>, serde_json::Value, String)> {
        let mut command = self.command();
        command.args(["view", "--json", "--category", category, "--staff", staff]);
        match patient {
            ViewPatient::Handle(handle) => {
                command.args(["--handle", handle]);
            }
            ViewPatient::Card(p) => {
                command
                    .args(["--insurer", &p.insurer_number])
                    .args(["--symbol", &p.symbol])
                    .args(["--number", &p.number])
                    .args(["--branch", &p.branch]);
            }
        }
        let output = tokio::time::timeout(patience(), command.output())
            .await
            .context("edge-agent view did not finish in time")??;
        let value = if output.stdout.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&output.stdout)?
        };
        Ok((
            output.status.code(),
            value,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }
}

/// The bodies (JSON) of the events of `kind` central stored for `site`, in sequence order.
pub async fn stored_events(
    db: &TestDb,
    site: &str,
    kind: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let client = db.client().await?;
    let rows = client
        .query(
            "SELECT body::text FROM events WHERE site_code = $1 AND kind = $2 ORDER BY sequence",
            &[&site, &kind],
        )
        .await?;
    rows.iter()
        .map(|r| Ok(serde_json::from_str(&r.get::<_, String>(0))?))
        .collect()
}

/// Waits until central holds `count` events of `kind` for `site`, and returns them.
pub async fn await_events(
    db: &TestDb,
    site: &str,
    kind: &str,
    count: usize,
) -> Vec<serde_json::Value> {
    eventually(
        &format!("{count} {kind} events of {site} at central"),
        || async {
            stored_events(db, site, kind)
                .await
                .ok()
                .filter(|events| events.len() >= count)
        },
    )
    .await
}

/// RFC 3339 for `now + offset_hours`, for disaster windows in configurations and flags.
pub fn rfc3339_in_hours(offset_hours: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::hours(offset_hours))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a time formats as RFC 3339")
}
