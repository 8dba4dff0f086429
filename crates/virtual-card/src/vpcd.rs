//! The vsmartcard-vpcd socket protocol, card side.
//!
//! The card connects to vpcd (127.0.0.1:35963 for reader 0, :35964 for reader 1): connected
//! means "card on the reader", closed means "card removed". Every frame is a 2-byte big-endian
//! length and that many bytes. A 1-byte frame is a control: 0 power off, 1 power on, 2 reset,
//! 4 get ATR (answered with the ATR); any other frame is a command APDU, answered with the
//! response APDU.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::applet::Applet;

/// How a session on the reader ended.
#[derive(Debug)]
pub enum Ended {
    /// The socket was closed (by us on "remove", or by pcscd stopping). `spoke`: vpcd sent at
    /// least one frame first.
    Closed {
        spoke: bool,
    },
    /// The card left while answering its `n`-th command ([`serve`]'s `pull_after`).
    Pulled(usize),
    Failed(io::Error),
}

/// Connects to vpcd, retrying while nothing listens yet (pcscd starting) for up to `patience`.
pub fn connect(addr: SocketAddr, patience: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + patience;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) if Instant::now() < deadline => {
                if e.kind() != io::ErrorKind::ConnectionRefused {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

fn read_frame(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    // vpcd sends the length and the body in two writes: acknowledge at once, or Nagle on its
    // side waits for our delayed ACK (40 ms) before sending the body. Linux clears the flag
    // after use, so it is set before every read.
    let _ = socket2::SockRef::from(&*stream).set_tcp_quickack(true);
    let mut length = [0u8; 2];
    stream.read_exact(&mut length)?;
    let mut frame = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut frame)?;
    Ok(frame)
}

fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    let length = u16::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too long"))?;
    let mut frame = Vec::with_capacity(bytes.len() + 2);
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(bytes);
    stream.write_all(&frame)
}

/// Answers vpcd until the socket closes. With `pull_after = Some(n)`, the card leaves (the
/// socket is closed without an answer) when the `n`-th command APDU arrives.
pub fn serve(stream: &mut TcpStream, applet: &mut Applet, pull_after: Option<usize>) -> Ended {
    applet.reset();
    let mut commands = 0usize;
    let mut spoke = false;
    loop {
        let frame = match read_frame(stream) {
            Ok(frame) => {
                spoke = true;
                frame
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ended::Closed { spoke },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::NotConnected
                ) =>
            {
                return Ended::Closed { spoke };
            }
            Err(e) => return Ended::Failed(e),
        };
        let reply = match frame.as_slice() {
            [0] | [1] | [2] => {
                applet.reset();
                None
            }
            [4] => Some(applet.atr()),
            [_] => None,
            apdu => {
                commands += 1;
                if pull_after.is_some_and(|n| commands >= n) {
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    return Ended::Pulled(commands);
                }
                Some(applet.process(apdu))
            }
        };
        if let Some(reply) = reply
            && let Err(e) = write_frame(stream, &reply)
        {
            return match e.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                    Ended::Closed { spoke }
                }
                _ => Ended::Failed(e),
            };
        }
    }
}

/// A card on a vpcd reader, served by a thread of its own.
///
/// vpcd may drop a connection made while it is still handling the previous card's removal
/// (closed before it said anything): the card then connects again, as a patient would put the
/// card down again, until it is served or [`OnReader::remove`] is called.
#[derive(Debug)]
pub struct OnReader {
    control: Arc<Mutex<Option<TcpStream>>>,
    removed: Arc<AtomicBool>,
    thread: JoinHandle<Ended>,
}

impl OnReader {
    /// Connects (waiting up to `patience` for vpcd) and serves `applet` until removed, pulled or
    /// closed; `on_end` is told how it ended unless it was [`OnReader::remove`]d.
    pub fn insert(
        addr: SocketAddr,
        applet: Arc<Mutex<crate::applet::Applet>>,
        pull_after: Option<usize>,
        patience: Duration,
        on_end: impl FnOnce(&Ended) + Send + 'static,
    ) -> io::Result<Self> {
        let stream = connect(addr, patience)?;
        let control = Arc::new(Mutex::new(Some(stream.try_clone()?)));
        let removed = Arc::new(AtomicBool::new(false));
        let thread = {
            let control = control.clone();
            let removed = removed.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut retries = 0;
                loop {
                    let ended = {
                        let mut applet = applet.lock().unwrap_or_else(|p| p.into_inner());
                        serve(&mut stream, &mut applet, pull_after)
                    };
                    let unheard = matches!(ended, Ended::Closed { spoke: false });
                    if unheard && !removed.load(Ordering::SeqCst) && retries < 100 {
                        retries += 1;
                        std::thread::sleep(Duration::from_millis(20));
                        let Ok(next) = connect(addr, patience) else {
                            return ended;
                        };
                        let Ok(clone) = next.try_clone() else {
                            return ended;
                        };
                        *control.lock().unwrap_or_else(|p| p.into_inner()) = Some(clone);
                        if removed.load(Ordering::SeqCst) {
                            let _ = next.shutdown(std::net::Shutdown::Both);
                            return ended;
                        }
                        stream = next;
                        continue;
                    }
                    if !removed.load(Ordering::SeqCst) {
                        on_end(&ended);
                    }
                    return ended;
                }
            })
        };
        Ok(Self {
            control,
            removed,
            thread,
        })
    }

    /// Whether the card already left (pulled, or vpcd closed).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Takes the card off the reader (closes the socket) and waits for the thread.
    pub fn remove(self) -> Option<Ended> {
        self.removed.store(true, Ordering::SeqCst);
        if let Some(socket) = self
            .control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
        self.thread.join().ok()
    }
}
