//! PostgreSQL clusters of a test's own (`scripts/pg.sh`), for tests that stop, kill, replicate
//! or promote a server without disturbing the shared throwaway cluster `make test` starts.

use std::path::{Path, PathBuf};

use tokio::process::Command;

/// One cluster in a temporary folder on a free loopback port. Stopped when dropped.
#[derive(Debug)]
pub struct OwnCluster {
    dir: tempfile::TempDir,
    pub port: u16,
    /// The superuser's URL (`postgres://postgres@127.0.0.1:<port>/postgres`).
    pub url: String,
}

impl OwnCluster {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let url = pg(dir.path(), "start", &[port]).await?;
        Ok(Self { dir, port, url })
    }

    /// A streaming standby of `primary` (a base backup with `-R`), started and replaying.
    pub async fn standby_of(primary: &OwnCluster) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let url = pg(dir.path(), "standby", &[port, primary.port]).await?;
        Ok(Self { dir, port, url })
    }

    /// A clean stop (`pg_ctl stop -m fast`).
    pub async fn stop(&self) -> anyhow::Result<()> {
        pg(self.dir.path(), "stop", &[]).await.map(|_| ())
    }

    /// Starts it again on the same port after [`OwnCluster::stop`].
    pub async fn restart(&self) -> anyhow::Result<()> {
        pg(self.dir.path(), "start", &[self.port]).await.map(|_| ())
    }

    /// SIGKILL of the postmaster: the machine died.
    pub async fn kill(&self) -> anyhow::Result<()> {
        pg(self.dir.path(), "kill", &[]).await.map(|_| ())
    }

    /// Promotes a standby to primary; returns once it accepts writes.
    pub async fn promote(&self) -> anyhow::Result<()> {
        pg(self.dir.path(), "promote", &[]).await.map(|_| ())
    }

    /// A superuser connection to `database` on this cluster.
    pub async fn client(&self, database: &str) -> anyhow::Result<tokio_postgres::Client> {
        let url = format!("postgres://postgres@127.0.0.1:{}/{database}", self.port);
        crate::connect(&url).await
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(script())
            .arg("stop")
            .arg(self.dir.path().join("pg"))
            .status();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg.sh")
}

async fn pg(dir: &Path, action: &str, ports: &[u16]) -> anyhow::Result<String> {
    let mut command = Command::new(script());
    command.arg(action).arg(dir.join("pg"));
    command.args(ports.iter().map(u16::to_string));
    let output = command.output().await?;
    anyhow::ensure!(
        output.status.success(),
        "scripts/pg.sh {action} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?.trim().to_string())
}

/// PgBouncer's pool modes (`pool_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per transaction: what lets many central replicas share few
    /// server connections, and what breaks session state.
    Transaction,
    /// A server connection per client connection.
    Session,
}

impl PoolMode {
    fn as_str(self) -> &'static str {
        match self {
            PoolMode::Transaction => "transaction",
            PoolMode::Session => "session",
        }
    }
}

/// PgBouncer in front of a PostgreSQL server on loopback (`scripts/pg.sh bouncer`), trusting
/// loopback as the throwaway clusters do. Killed when dropped.
///
/// [`Bouncer::strict`] also resets every server connection (`DISCARD ALL`) after every
/// transaction: whatever a client leaves on a server connection between transactions (a named
/// statement) is gone at once, so relying on it fails every time, not only when the pooler
/// happens to pick another server connection.
#[derive(Debug)]
pub struct Bouncer {
    _dir: tempfile::TempDir,
    pub port: u16,
    server_port: u16,
    _process: tokio::process::Child,
}

impl Bouncer {
    /// Starts PgBouncer in front of the server `server_url` names; returns once it answers.
    pub async fn in_front_of(server_url: &str, mode: PoolMode) -> anyhow::Result<Self> {
        Self::start(server_url, mode, false).await
    }

    /// [`Bouncer::in_front_of`], resetting server connections after every transaction.
    pub async fn strict(server_url: &str, mode: PoolMode) -> anyhow::Result<Self> {
        Self::start(server_url, mode, true).await
    }

    async fn start(server_url: &str, mode: PoolMode, reset_always: bool) -> anyhow::Result<Self> {
        let config: tokio_postgres::Config = server_url.parse()?;
        let server_port = *config
            .get_ports()
            .first()
            .ok_or_else(|| anyhow::anyhow!("{server_url} names no port"))?;
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let process = Command::new(script())
            .arg("bouncer")
            .arg(dir.path().join("bouncer"))
            .args([port.to_string(), server_port.to_string()])
            .arg(mode.as_str())
            .arg(if reset_always { "always" } else { "default" })
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let bouncer = Self {
            _dir: dir,
            port,
            server_port,
            _process: process,
        };
        let probe = bouncer.route(server_url);
        crate::eventually("PgBouncer to accept connections", || async {
            crate::connect(&probe).await.ok().map(drop)
        })
        .await;
        Ok(bouncer)
    }

    /// `url` (a URL of the server behind it: any user, any database) through PgBouncer.
    pub fn route(&self, url: &str) -> String {
        url.replacen(
            &format!("127.0.0.1:{}", self.server_port),
            &format!("127.0.0.1:{}", self.port),
            1,
        )
    }
}
