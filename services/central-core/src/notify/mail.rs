//! Mail delivery: SMTP with STARTTLS required (lettre over rustls with ring), the subject and
//! body in Japanese first, English second. The server, port, sender, credentials and CA are
//! central's options (`--smtp-*`); the password is read from a file and never printed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{Message, event_label, kind_label};

/// How central reaches its mail server.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    /// The sender address (`From`).
    pub from: String,
    pub username: Option<String>,
    /// A file holding the password (its first line); never printed.
    pub password_file: Option<PathBuf>,
    /// The CAs the server's certificate is verified with (PEM); `None`: the system's.
    pub ca: Option<PathBuf>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The mail transport, built once.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
    total: Duration,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

impl Mailer {
    pub fn new(settings: &SmtpSettings, total: Duration) -> anyhow::Result<Self> {
        let mut tls = TlsParameters::builder(settings.host.clone());
        if let Some(ca) = &settings.ca {
            let roots = fleet_tls::config::load_certificates(ca)
                .with_context(|| format!("--smtp-ca {}", ca.display()))?;
            tls = tls.certificate_store(CertificateStore::None);
            for root in roots {
                tls = tls.add_root_certificate(
                    Certificate::from_der(root.to_vec()).context("an --smtp-ca certificate")?,
                );
            }
        }
        let tls = tls.build_rustls().context("TLS for the mail server")?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .tls(Tls::Required(tls))
            .timeout(Some(total));
        if let Some(user) = &settings.username {
            let path = settings
                .password_file
                .as_ref()
                .context("--smtp-username needs --smtp-password-file")?;
            let password = std::fs::read_to_string(path)
                .with_context(|| format!("reading the SMTP password file {}", path.display()))?;
            let password = password.lines().next().unwrap_or_default().to_string();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let from = settings
            .from
            .parse()
            .with_context(|| format!("--smtp-from {:?} is not a mail address", settings.from))?;
        Ok(Self {
            transport: builder.build(),
            from,
            total,
        })
    }

    /// Sends `message` to `to`; `Err` says why not (never the password).
    pub async fn send(&self, to: &str, message: &Message) -> Result<(), String> {
        let (subject, body) = text(message);
        let to: lettre::message::Mailbox = to
            .parse()
            .map_err(|e| format!("{to:?} is not a mail address: {e}"))?;
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| format!("the mail cannot be made: {e}"))?;
        match tokio::time::timeout(self.total, self.transport.send(email)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(format!("the mail server refused or failed: {error}")),
            Err(_) => Err(format!(
                "no answer from the mail server within {:?}",
                self.total
            )),
        }
    }
}

/// Subject and body: Japanese first, English second.
pub fn text(message: &Message) -> (String, String) {
    let (kind_ja, kind_en) = kind_label(&message.kind);
    let (event_ja, event_en) = event_label(&message.event);
    let subject = format!(
        "[onshi-fleet] {event_ja}: {kind_ja} {site} / {event_en}: {kind_en} {site}",
        site = message.site_code
    );
    let time = central_store::jst::stamp(message.occurred_at);
    let link = message.dashboard_url.clone().unwrap_or_default();
    let body = format!(
        "{event_ja}: {kind_ja}\n施設: {site}（都道府県 {pref}）\n日時: {time}\n内容: {detail}\n{link}\n\n\
         ----\n{event_en}: {kind_en}\nSite: {site} (prefecture {pref})\nAt: {time}\nDetail: {detail}\n{link}\n\n\
         notification {id}, schema v{schema}\n",
        site = message.site_code,
        pref = message.prefecture,
        detail = message.detail,
        id = message.notification_id,
        schema = message.schema_version,
    );
    (subject, body)
}
