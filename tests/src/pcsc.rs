//! The real PC/SC stack for the card tests: pcscd with the vsmartcard-vpcd driver, and the
//! virtual My Number card (`virtual-card`) as a process that puts a card on a vpcd reader.
//!
//! There is one pcscd per machine and the two vpcd readers are shared, so card tests run one at
//! a time: [`Pcsc::acquire`] takes an exclusive file lock (for plain `cargo test`, whose tests
//! are threads) and `.config/nextest.toml` puts the card tests in a test group of one thread.
//! If no pcscd runs, the harness starts `pcscd --foreground` (it needs the vpcd driver from the
//! `vsmartcard-vpcd` package, and root, or a user allowed to create /run/pcscd); a test that
//! cannot get one fails and says what is missing.
//!
//! The pcscd it starts reads the harness's own reader configuration, which puts vpcd on
//! [`HARNESS_VPCD_PORTS`] instead of Debian's 35963/35964. Those lie inside Linux's ephemeral
//! port range, so in a busy test run a server bound to port 0 or an outgoing connection can hold
//! one of them when pcscd starts, and vpcd then offers no reader at all (seen in CI: three card
//! tests waiting 30 s for readers that never came).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use card_reader::pcsc_readers::PcscReaders;
use card_reader::{CardPresence, CardReaders, ReaderSnapshot, WatchEvent};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::{Pki, Running, bin, patience, spawn_ready};

/// The two readers Debian's vpcd configuration offers.
pub const READERS: [&str; 2] = ["Virtual PCD 00 00", "Virtual PCD 00 01"];
const PCSCD_SOCKET: &str = "/run/pcscd/pcscd.comm";
const LOCK_FILE: &str = "onshi-fleet-pcsc.lock";
const DEBIAN_READER_CONF: &str = "/etc/reader.conf.d";

/// vpcd's ports (reader 0, reader 1) when the harness runs pcscd itself: below the ephemeral
/// range (32768–60999 by default), where only an explicit bind can take them.
pub const HARNESS_VPCD_PORTS: [u16; 2] = [29515, 29516];

/// The vpcd port of reader 0 for the pcscd in use: the harness's own, or Debian's for a pcscd
/// that was already running.
static VPCD_BASE_PORT: AtomicU16 = AtomicU16::new(virtual_card::VPCD_PORTS[0]);

/// The vpcd port a virtual card on reader `index` connects to.
pub fn vpcd_port(index: usize) -> u16 {
    VPCD_BASE_PORT.load(Ordering::SeqCst) + index as u16
}

/// Exclusive use of pcscd and the vpcd readers for one test.
#[derive(Debug)]
pub struct Pcsc {
    _lock: std::fs::File,
    /// The pcscd this harness started, if it had to.
    pcscd: Option<std::process::Child>,
    /// The reader configuration folder given to that pcscd.
    reader_conf: Option<tempfile::TempDir>,
}

fn pcscd_answers() -> bool {
    std::os::unix::net::UnixStream::connect(PCSCD_SOCKET).is_ok()
}

/// The vpcd driver library named by Debian's reader configuration (`vsmartcard-vpcd`).
fn vpcd_library() -> Option<String> {
    std::fs::read_dir(DEBIAN_READER_CONF)
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|line| line.trim().strip_prefix("LIBPATH"))
                .map(|path| path.trim().to_string())
                .collect::<Vec<_>>()
        })
        .find(|path| path.contains("libifdvpcd"))
}

/// A reader configuration folder for pcscd with one vpcd entry on [`HARNESS_VPCD_PORTS`]
/// (vpcd opens the DEVICENAME port for its first reader and the next port for its second).
fn harness_reader_conf(library: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("onshi-fleet-reader-conf")
        .tempdir()?;
    let port = HARNESS_VPCD_PORTS[0];
    std::fs::write(
        dir.path().join("vpcd"),
        format!(
            "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME   /dev/null:0x{port:04X}\n\
             LIBPATH      {library}\nCHANNELID    0x{port:04X}\n"
        ),
    )?;
    Ok(dir)
}

/// The ports of `ports` another process holds (a vpcd reader whose port is taken is not listed).
fn ports_in_use(ports: &[u16]) -> Vec<u16> {
    ports
        .iter()
        .copied()
        .filter(|port| std::net::TcpListener::bind(("0.0.0.0", *port)).is_err())
        .collect()
}

impl Pcsc {
    /// Takes the lock, makes sure pcscd runs and both vpcd readers are listed.
    pub async fn acquire() -> anyhow::Result<Self> {
        let lock_path = std::env::temp_dir().join(LOCK_FILE);
        let lock = tokio::task::spawn_blocking(move || -> anyhow::Result<std::fs::File> {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .with_context(|| format!("opening {}", lock_path.display()))?;
            file.lock().context("locking the PC/SC test lock")?;
            Ok(file)
        })
        .await??;
        let mut pcsc = Self {
            _lock: lock,
            pcscd: None,
            reader_conf: None,
        };
        if !pcscd_answers() {
            pcsc.start_pcscd().await?;
        }
        pcsc.wait_for_readers().await?;
        Ok(pcsc)
    }

    /// Whether this harness runs pcscd (and may stop it).
    pub fn owns_pcscd(&self) -> bool {
        self.pcscd.is_some()
    }

    async fn start_pcscd(&mut self) -> anyhow::Result<()> {
        let pcscd = ["/usr/sbin/pcscd", "/usr/bin/pcscd"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .context(
                "pcscd is not running and not installed: install the pcscd and vsmartcard-vpcd \
                 packages (`make deps`)",
            )?;
        let library = vpcd_library().with_context(|| {
            format!(
                "no vpcd driver configured ({DEBIAN_READER_CONF}/ names no libifdvpcd): install \
                 the vsmartcard-vpcd package (`make deps`)"
            )
        })?;
        let busy = ports_in_use(&HARNESS_VPCD_PORTS);
        if !busy.is_empty() {
            bail!(
                "the card tests' vpcd ports {busy:?} are held by another process: stop it \
                 (`ss -ltnp 'sport = :{}'`)",
                busy[0]
            );
        }
        let conf = match self.reader_conf.take() {
            Some(conf) => conf,
            None => harness_reader_conf(&library)?,
        };
        let child = std::process::Command::new(pcscd)
            .arg("--foreground")
            .arg("--config")
            .arg(conf.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", pcscd.display()))?;
        self.pcscd = Some(child);
        self.reader_conf = Some(conf);
        VPCD_BASE_PORT.store(HARNESS_VPCD_PORTS[0], Ordering::SeqCst);
        let deadline = Instant::now() + patience();
        while !pcscd_answers() {
            if let Some(child) = self.pcscd.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.pcscd = None;
                bail!(
                    "pcscd --foreground exited ({status}): it needs root (or write access to \
                     /run/pcscd) and no other pcscd running"
                );
            }
            if Instant::now() > deadline {
                bail!("pcscd did not open {PCSCD_SOCKET} within {:?}", patience());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn wait_for_readers(&self) -> anyhow::Result<Vec<ReaderSnapshot>> {
        let listed = wait_readers("both vpcd readers to be listed", |readers| {
            READERS
                .iter()
                .all(|name| readers.iter().any(|r| r.name == *name))
        })
        .await;
        listed.map_err(|e| {
            let ports = [vpcd_port(0), vpcd_port(1)];
            match self.pcscd {
                // The harness checked its ports were free just before starting pcscd; vpcd lists
                // no reader at all when one was taken in between.
                Some(_) => e.context(format!(
                    "the pcscd the harness started lists no vpcd readers (vpcd ports {ports:?})"
                )),
                None => e.context(format!(
                    "a pcscd the harness did not start is running without both vpcd readers: \
                     is vsmartcard-vpcd installed, and are ports {ports:?} free of other \
                     processes? (or stop that pcscd and the harness starts its own)"
                )),
            }
        })
    }

    /// Stops pcscd (every reader disappears for its clients) — only a pcscd this harness
    /// started; with vpcd this is how a reader is "unplugged" (its readers are static while
    /// pcscd runs).
    pub fn stop_pcscd(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.pcscd.take() else {
            bail!(
                "this test stops and restarts pcscd, but a pcscd it did not start is running: \
                 stop that one (the harness then starts its own)"
            );
        };
        terminate(&mut child)?;
        let deadline = Instant::now() + patience();
        while pcscd_answers() {
            if Instant::now() > deadline {
                bail!("pcscd still answers after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Starts pcscd again and waits for the vpcd readers.
    pub async fn restart_pcscd(&mut self) -> anyhow::Result<()> {
        self.start_pcscd().await?;
        self.wait_for_readers().await?;
        Ok(())
    }
}

fn terminate(child: &mut std::process::Child) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .context("running kill")?;
    if !status.success() {
        child.kill().ok();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait()?;
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Pcsc {
    fn drop(&mut self) {
        if let Some(mut child) = self.pcscd.take() {
            let _ = terminate(&mut child);
        }
    }
}

/// Waits, through a PC/SC watch (no polling), until the readers satisfy `done`.
pub async fn wait_readers(
    what: &str,
    done: impl Fn(&[ReaderSnapshot]) -> bool + Send + 'static,
) -> anyhow::Result<Vec<ReaderSnapshot>> {
    let what = what.to_string();
    let limit = patience();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + limit;
        let readers = PcscReaders::new();
        let mut watch = readers.watch().context("watching the readers")?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("gave up after {limit:?} waiting for {what}");
            }
            match watch.next_change(Some(left)) {
                Ok(WatchEvent::Changed(now)) if done(&now) => return Ok(now),
                Ok(WatchEvent::Changed(_)) => {}
                Ok(WatchEvent::TimedOut) => bail!("gave up after {limit:?} waiting for {what}"),
                Ok(WatchEvent::Cancelled) => bail!("cancelled waiting for {what}"),
                Err(e) => bail!("the PC/SC watch failed waiting for {what}: {e}"),
            }
        }
    })
    .await?
}

/// The card state of reader `name` in `readers`.
pub fn card_on(readers: &[ReaderSnapshot], name: &str) -> Option<CardPresence> {
    readers
        .iter()
        .find(|r| r.name == name)
        .map(|r| r.card.clone())
}

/// Waits until a card is on reader `index`.
pub async fn wait_card_present(index: usize) -> anyhow::Result<()> {
    let name = READERS[index];
    wait_readers(&format!("a card on {name}"), move |r| {
        matches!(card_on(r, name), Some(CardPresence::Present { .. }))
    })
    .await
    .map(|_| ())
}

/// Waits until reader `index` is empty.
pub async fn wait_card_absent(index: usize) -> anyhow::Result<()> {
    let name = READERS[index];
    wait_readers(&format!("{name} to be empty"), move |r| {
        card_on(r, name) == Some(CardPresence::Empty)
    })
    .await
    .map(|_| ())
}

// ------------------------------------------------------------------------------- cards

/// A virtual card's folder, issued by the test's PKI.
#[derive(Debug)]
pub struct IssuedCard {
    pub dir: PathBuf,
    pub holder: usize,
    pub pin: String,
}

/// The RSA key the test cards reuse (generating RSA-2048 keys is slow in debug builds; each
/// test's certificate is still new, from its own J-LIS CA).
pub fn card_key_cache() -> PathBuf {
    std::env::temp_dir().join("onshi-fleet-e2e-card-key.pem")
}

/// Issues a card for the person at `holder` in onshi-sim's population.
pub async fn issue_card(
    pki: &Pki,
    dir: &Path,
    holder: usize,
    pin: &str,
    expired: bool,
) -> anyhow::Result<IssuedCard> {
    let mut command = Command::new(bin("virtual-card"));
    command
        .arg("issue")
        .arg("--pki")
        .arg(pki.paths.root())
        .args(["--holder", &holder.to_string(), "--pin", pin])
        .arg("--key-cache")
        .arg(card_key_cache())
        .arg("--out")
        .arg(dir);
    if expired {
        command.arg("--expired");
    }
    let output = command.output().await?;
    if !output.status.success() {
        bail!(
            "virtual-card issue failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(IssuedCard {
        dir: dir.to_path_buf(),
        holder,
        pin: pin.to_string(),
    })
}

/// What to run on a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardMode {
    MyNumber,
    Unknown,
}

/// A `virtual-card run` process: `insert` and `remove` it on its reader.
#[derive(Debug)]
pub struct VirtualCard {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    pub reader: usize,
}

impl VirtualCard {
    pub async fn start(
        card: Option<&IssuedCard>,
        mode: CardMode,
        reader: usize,
        pull_after: Option<usize>,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(bin("virtual-card"));
        command
            .arg("run")
            .args(["--port", &vpcd_port(reader).to_string()]);
        match mode {
            CardMode::MyNumber => {
                let card = card.context("a My Number card needs its folder")?;
                command.arg("--card").arg(&card.dir);
            }
            CardMode::Unknown => {
                command.args(["--mode", "unknown"]);
            }
        }
        if let Some(n) = pull_after {
            command.args(["--pull-after", &n.to_string()]);
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().context("starting virtual-card")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut card = Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            reader,
        };
        card.expect("ready").await?;
        Ok(card)
    }

    /// The next JSON line that has `key`; errors on an `error` line.
    pub async fn expect(&mut self, key: &str) -> anyhow::Result<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + patience();
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .with_context(|| format!("virtual-card did not say {key:?} in time"))??
                .with_context(|| format!("virtual-card exited before saying {key:?}"))?;
            let value: serde_json::Value = serde_json::from_str(&line)
                .with_context(|| format!("virtual-card said: {line}"))?;
            if value.get(key).is_some() {
                return Ok(value);
            }
            if let Some(error) = value.get("error") {
                bail!("virtual-card: {error}");
            }
        }
    }

    async fn command(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Puts the card on the reader and waits until pcscd sees it.
    pub async fn insert(&mut self) -> anyhow::Result<()> {
        self.insert_only().await?;
        wait_card_present(self.reader).await
    }

    /// Puts the card on the reader (connects to vpcd) without waiting for pcscd.
    pub async fn insert_only(&mut self) -> anyhow::Result<()> {
        self.command("insert").await?;
        self.expect("inserted").await.map(|_| ())
    }

    /// Takes the card off and waits until pcscd sees the reader empty.
    pub async fn remove(&mut self) -> anyhow::Result<()> {
        self.command("remove").await?;
        self.expect("removed").await?;
        wait_card_absent(self.reader).await
    }

    /// Takes the card off and returns the first removal it reports: `"reason": "command"` if
    /// it was still on the reader, `"pulled"` if a client's APDU already pulled it
    /// (`pull_after`).
    pub async fn remove_reporting(&mut self) -> anyhow::Result<serde_json::Value> {
        self.command("remove").await?;
        let removed = self.expect("removed").await?;
        wait_card_absent(self.reader).await?;
        Ok(removed)
    }

    pub async fn quit(mut self) -> anyhow::Result<()> {
        self.command("quit").await?;
        tokio::time::timeout(patience(), self.child.wait()).await??;
        Ok(())
    }
}

// ------------------------------------------------------------------------------- stack

/// onshi-sim with the card route (trusting the test PKI's J-LIS CA).
pub async fn start_sim_with_cards(pki: &Pki) -> anyhow::Result<Running> {
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
        .arg("--jlis-ca")
        .arg(pki.paths.jlis_ca())
        .args([
            "--seed",
            crate::SIM_SEED,
            "--population",
            crate::SIM_POPULATION,
        ]);
    spawn_ready(command).await
}

/// Appends a `[cards]` section to an agent's configuration; `face_readers` are configured as
/// face-recognition readers.
pub fn enable_cards(config: &Path, face_readers: &[&str]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut text = String::from("\n[cards]\n");
    for name in face_readers {
        text.push_str(&format!(
            "[[cards.readers]]\nname = \"{name}\"\nface_recognition = true\n"
        ));
    }
    let mut file = std::fs::OpenOptions::new().append(true).open(config)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Runs `edge-agent card-lookup --json` with the PIN on stdin (or the face flag).
pub async fn card_lookup(
    config: &Path,
    reader: &str,
    pin: Option<&str>,
) -> anyhow::Result<(std::process::ExitStatus, serde_json::Value, String)> {
    let mut command = Command::new(bin("edge-agent"));
    command
        .arg("--config")
        .arg(config)
        .args(["card-lookup", "--json", "--reader", reader])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match pin {
        Some(_) => {
            command.arg("--pin-stdin");
        }
        None => {
            command.arg("--face-verified");
        }
    }
    let mut child = command.spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    if let Some(pin) = pin {
        stdin.write_all(format!("{pin}\n").as_bytes()).await?;
    }
    drop(stdin);
    let output = tokio::time::timeout(patience(), child.wait_with_output())
        .await
        .context("edge-agent card-lookup did not finish in time")??;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let value = if output.stdout.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "card-lookup printed: {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })?
    };
    Ok((output.status, value, stderr))
}

/// `edge-agent readers --json`.
pub async fn readers_of(config: &Path) -> anyhow::Result<serde_json::Value> {
    let output = Command::new(bin("edge-agent"))
        .arg("--config")
        .arg(config)
        .args(["readers", "--json"])
        .output()
        .await?;
    if !output.status.success() {
        bail!(
            "edge-agent readers failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}
