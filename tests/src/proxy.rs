//! A TCP proxy the test controls, standing in for the network between an agent and central:
//! it can cut the link (drop every connection and refuse new ones), silence it (connections stay
//! open but nothing gets through, as when a router on the closed network dies), restore it, and
//! point at a new backend (a restarted central on another port). Loopback only.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Up(SocketAddr),
    Cut,
}

/// Dropping the proxy stops it and closes every connection through it.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    link: Arc<Mutex<Link>>,
    /// Bumped on every cut: live connections watch it and close.
    generation: watch::Sender<u64>,
    /// While true, live connections hold what they read instead of passing it on.
    silent: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(backend: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let link = Arc::new(Mutex::new(Link::Up(backend)));
        let (generation, _) = watch::channel(0u64);
        let (silent, _) = watch::channel(false);
        let task = {
            let link = link.clone();
            let generation = generation.clone();
            let silent = silent.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let current = *link.lock().expect("proxy state");
                    let Link::Up(backend) = current else {
                        drop(client); // refused while cut
                        continue;
                    };
                    let mut cut = generation.subscribe();
                    let (up, down) = (silent.subscribe(), silent.subscribe());
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(backend).await else {
                            return;
                        };
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        tokio::select! {
                            _ = pump(client_read, server_write, up) => {}
                            _ = pump(server_read, client_write, down) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            })
        };
        Ok(Self {
            addr,
            link,
            generation,
            silent,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        *self.link.lock().expect("proxy state") = Link::Cut;
        self.generation.send_modify(|g| *g += 1);
    }

    /// Forwards to `backend` again (the same one, or a restarted server elsewhere), and ends a
    /// silence: what was held is delivered.
    pub fn restore(&self, backend: SocketAddr) {
        *self.link.lock().expect("proxy state") = Link::Up(backend);
        self.silent.send_replace(false);
    }

    /// Connections stay open, but nothing passes either way until `restore`: no FIN, no RST,
    /// just silence.
    pub fn silence(&self) {
        self.silent.send_replace(true);
    }
}

/// Copies `from` to `to`, holding each chunk while the link is silent.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut silent: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buffer).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        if silent.wait_for(|s| !*s).await.is_err() {
            return Ok(()); // the proxy is gone
        }
        to.write_all(&buffer[..n]).await?;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.generation.send_modify(|g| *g += 1);
        self.task.abort();
    }
}
