//! The control channel's transport, one interface per platform: a Unix socket (mode `0600`) on
//! unix, a named pipe (`\\.\pipe\…`, a DACL for the agent's account, SYSTEM and
//! Administrators, remote clients refused) on Windows. [`super::Control::serve`] and
//! [`super::connect`] see only [`ControlListener`], [`connect`] and [`agent_is_running`].

use std::path::Path;

pub use imp::{ControlListener, agent_is_running, connect};

#[cfg(unix)]
mod imp {
    use super::Path;
    use anyhow::Context;
    use std::path::PathBuf;
    use tokio::net::{UnixListener, UnixStream};
    use tokio_stream::wrappers::UnixListenerStream;

    /// The bound control socket; the socket file is removed when serving ends.
    #[derive(Debug)]
    pub struct ControlListener {
        listener: UnixListener,
        path: PathBuf,
    }

    impl ControlListener {
        /// Binds the control socket owner-only. A stale socket file from a crashed agent is
        /// removed; a live one means another agent runs on the same data folder, refused.
        pub fn bind_private(socket: &Path) -> anyhow::Result<Self> {
            use std::os::unix::fs::PermissionsExt;
            if let Some(dir) = socket.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            if socket.exists() {
                if agent_is_running(socket) {
                    anyhow::bail!(
                        "another agent is already running on {} (stop it first)",
                        socket.display()
                    );
                }
                std::fs::remove_file(socket)
                    .with_context(|| format!("removing stale socket {}", socket.display()))?;
            }
            let listener = UnixListener::bind(socket)
                .with_context(|| format!("binding {}", socket.display()))?;
            std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
            Ok(Self {
                listener,
                path: socket.to_path_buf(),
            })
        }

        /// The accepted connections, and what to do once serving ended.
        pub fn incoming(self) -> (UnixListenerStream, impl FnOnce()) {
            let path = self.path;
            (UnixListenerStream::new(self.listener), move || {
                let _ = std::fs::remove_file(path);
            })
        }
    }

    /// Whether an agent answers on `socket` (a socket file alone may be left by a crash).
    pub fn agent_is_running(socket: &Path) -> bool {
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    }

    pub async fn connect(socket: &Path) -> anyhow::Result<UnixStream> {
        if !socket.exists() {
            anyhow::bail!(
                "the agent is not running: no control socket at {} (start it with `edge-agent run`)",
                socket.display()
            );
        }
        Ok(UnixStream::connect(socket).await?)
    }
}

#[cfg(windows)]
#[allow(unsafe_code)] // creating a pipe with a security descriptor is an unsafe tokio call.
mod imp {
    use super::Path;
    use crate::owner_only::windows::{SecurityDescriptor, current_user_sid};
    use anyhow::Context;
    use std::ffi::OsString;
    use std::io;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context as TaskContext, Poll};
    use std::time::Duration;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::windows::named_pipe::{
        ClientOptions, NamedPipeClient, NamedPipeServer, ServerOptions,
    };
    use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;

    /// The prefix every control channel name must have on Windows.
    pub const PIPE_PREFIX: &str = r"\\.\pipe\";
    /// `ERROR_PIPE_BUSY`: every instance is connected; wait for the next one.
    const ERROR_PIPE_BUSY: i32 = 231;

    /// The first instance of the control pipe, created with `first_pipe_instance` so that no
    /// other process can have squatted the name.
    #[derive(Debug)]
    pub struct ControlListener {
        name: OsString,
        first: NamedPipeServer,
        security: Arc<SecurityDescriptor>,
    }

    /// The agent's account, SYSTEM and Administrators; nobody else, nothing inherited.
    fn pipe_security() -> io::Result<SecurityDescriptor> {
        SecurityDescriptor::from_sddl(&format!(
            "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;{})",
            current_user_sid()?
        ))
    }

    fn create(
        name: &OsString,
        security: &SecurityDescriptor,
        first: bool,
    ) -> io::Result<NamedPipeServer> {
        let mut attributes = SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: security.as_ptr(),
            bInheritHandle: 0,
        };
        // SAFETY: `attributes` is a valid SECURITY_ATTRIBUTES whose descriptor outlives the
        // call (the pipe keeps its own copy).
        unsafe {
            ServerOptions::new()
                .first_pipe_instance(first)
                .reject_remote_clients(true)
                .create_with_security_attributes_raw(
                    name,
                    (&raw mut attributes).cast::<core::ffi::c_void>(),
                )
        }
    }

    impl ControlListener {
        /// Creates the pipe's first instance. Another agent serving the same name makes this
        /// fail (access denied), which is the refusal the Unix socket's liveness check gives.
        pub fn bind_private(name: &Path) -> anyhow::Result<Self> {
            let text = name.as_os_str().to_string_lossy();
            if !text.starts_with(PIPE_PREFIX) {
                anyhow::bail!(
                    "制御チャネルは名前付きパイプです / on Windows control_socket must be a named pipe name like \\\\.\\pipe\\onshi-fleet-agent, got {text}"
                );
            }
            let security = Arc::new(pipe_security().context("the control pipe's ACL")?);
            let name = name.as_os_str().to_owned();
            let first = create(&name, &security, true).map_err(|e| {
                if e.kind() == io::ErrorKind::PermissionDenied {
                    anyhow::anyhow!("another agent is already running on {text} (stop it first)")
                } else {
                    anyhow::Error::new(e).context(format!("creating the control pipe {text}"))
                }
            })?;
            Ok(Self {
                name,
                first,
                security,
            })
        }

        /// The accepted connections: each connected instance is handed over and the next one
        /// created before it, so a client never finds the name missing.
        pub fn incoming(
            self,
        ) -> (
            impl futures_util::Stream<Item = io::Result<PipeConnection>>,
            impl FnOnce(),
        ) {
            let state = (Some(self.first), self.name, self.security);
            let stream =
                futures_util::stream::unfold(state, |(server, name, security)| async move {
                    let server = match server {
                        Some(server) => server,
                        None => match create(&name, &security, false) {
                            Ok(server) => server,
                            Err(e) => {
                                // Out of resources: try again shortly rather than stop serving.
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                return Some((Err(e), (None, name, security)));
                            }
                        },
                    };
                    if let Err(e) = server.connect().await {
                        return Some((Err(e), (None, name, security)));
                    }
                    let next = create(&name, &security, false).ok();
                    Some((Ok(PipeConnection(server)), (next, name, security)))
                });
            (stream, || {})
        }
    }

    /// A connected pipe instance, as tonic's server wants it.
    #[derive(Debug)]
    pub struct PipeConnection(NamedPipeServer);

    impl tonic::transport::server::Connected for PipeConnection {
        type ConnectInfo = ();
        fn connect_info(&self) -> Self::ConnectInfo {}
    }

    impl AsyncRead for PipeConnection {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut TaskContext<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for PipeConnection {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut TaskContext<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut TaskContext<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    /// Whether an agent serves the pipe `name` (opening it connects one instance, which the
    /// agent sees as a client that left at once).
    pub fn agent_is_running(name: &Path) -> bool {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name)
            .is_ok()
    }

    pub async fn connect(name: &Path) -> anyhow::Result<NamedPipeClient> {
        // Bounded: every instance busy for 5 s means the agent is stuck.
        for _ in 0..100 {
            match ClientOptions::new().open(name) {
                Ok(client) => return Ok(client),
                Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) => {
                    // The agent creates the next instance as soon as one connects.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => anyhow::bail!(
                    "the agent is not running: no control pipe {} (start it with `edge-agent run` or the service)",
                    name.display()
                ),
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("opening the control pipe {}", name.display())));
                }
            }
        }
        anyhow::bail!(
            "the agent's control pipe {} stays busy; try again",
            name.display()
        )
    }
}
