//! The vsmartcard-vpcd socket protocol, card side.
//!
//! The card connects to vpcd (127.0.0.1:35963 for reader 0, :35964 for reader 1): connected
//! means "card on the reader", closed means "card removed". Every frame is a 2-byte big-endian
//! length and that many bytes. A 1-byte frame is a control: 0 power off, 1 power on, 2 reset,
//! 4 get ATR (answered with the ATR); any other frame is a command APDU, answered with the
//! response APDU.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::applet::Applet;

/// How a session on the reader ended.
#[derive(Debug)]
pub enum Ended {
    /// The socket was closed (by us on "remove", or by pcscd stopping).
    Closed,
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
    loop {
        let frame = match read_frame(stream) {
            Ok(frame) => frame,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ended::Closed,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::NotConnected
                ) =>
            {
                return Ended::Closed;
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
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Ended::Closed,
                _ => Ended::Failed(e),
            };
        }
    }
}
