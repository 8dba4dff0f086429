//! A TCP proxy the test controls, standing in for the network between an agent and central:
//! it can cut the link (drop every connection and refuse new ones), restore it, and point at a
//! new backend (a restarted central on another port). Loopback only.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::copy_bidirectional;
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
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(backend: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let link = Arc::new(Mutex::new(Link::Up(backend)));
        let (generation, _) = watch::channel(0u64);
        let task = {
            let link = link.clone();
            let generation = generation.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let current = *link.lock().expect("proxy state");
                    let Link::Up(backend) = current else {
                        drop(client); // refused while cut
                        continue;
                    };
                    let mut cut = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(backend).await else {
                            return;
                        };
                        let mut client = client;
                        tokio::select! {
                            _ = copy_bidirectional(&mut client, &mut server) => {}
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

    /// Forwards to `backend` again (the same one, or a restarted server elsewhere).
    pub fn restore(&self, backend: SocketAddr) {
        *self.link.lock().expect("proxy state") = Link::Up(backend);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.generation.send_modify(|g| *g += 1);
        self.task.abort();
    }
}
