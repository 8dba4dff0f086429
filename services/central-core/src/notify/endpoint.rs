//! Endpoints as chain IT asks for them, checked, and the capabilities the JSON API and the
//! dashboard share: make one (a webhook's secret generated here, sealed, shown once), change
//! one, enable or disable one, queue a test delivery. Every one is audited by the store.

use serde::Deserialize;

use super::KINDS;
use super::key::{NotificationKey, new_secret};
use crate::auth::Principal;
use crate::error::ServiceError;
use central_store::Store;
use central_store::notifications::{Endpoint, EndpointSpec};

/// The JSON of an endpoint (`POST` and `PUT /api/v1/notifications/endpoints`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointRequest {
    pub name: String,
    /// webhook or mail.
    pub channel: String,
    /// An http(s) URL, or a mail address.
    pub target: String,
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub prefectures: Vec<String>,
    #[serde(default)]
    pub sites: Vec<String>,
    #[serde(default = "yes")]
    pub quiet_hours: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// The shape, for a 400 that shows what is expected.
pub const SHAPE: &str = "an endpoint is {\"name\", \"channel\": \"webhook\" or \"mail\", \"target\": an http(s) URL or a mail address, \"kinds\": [...], \"prefectures\": [\"13\"], \"sites\": [...], \"quiet_hours\": true, \"enabled\": true}";

fn bad(message: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(message.into())
}

impl EndpointRequest {
    /// Checked: a real channel, a URL or address it can use, known kinds, real prefectures and
    /// sites. Each mistake is named, Japanese then English.
    pub fn check(&self) -> Result<EndpointSpec, ServiceError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(bad(
                "名前は1〜200文字です / the name is 1 to 200 characters",
            ));
        }
        let target = self.target.trim();
        match self.channel.as_str() {
            "webhook" => check_url(target)?,
            "mail" => {
                target.parse::<lettre::Address>().map_err(|e| {
                    bad(format!(
                        "メールアドレスが正しくありません / {target:?} is not a mail address: {e}"
                    ))
                })?;
            }
            other => {
                return Err(bad(format!(
                    "通知の種類は webhook か mail です / channel is webhook or mail, not {other:?}"
                )));
            }
        }
        let mut kinds = Vec::new();
        for kind in &self.kinds {
            if !KINDS.contains(&kind.as_str()) {
                return Err(bad(format!(
                    "不明なアラートの種類です / unknown alert kind {kind:?}: one of {}",
                    KINDS.join(", ")
                )));
            }
            if !kinds.contains(kind) {
                kinds.push(kind.clone());
            }
        }
        let (prefectures, sites) =
            crate::auth::accounts::scope_lists(&self.prefectures, &self.sites)?;
        Ok(EndpointSpec {
            name: name.to_string(),
            channel: self.channel.clone(),
            target: target.to_string(),
            kinds,
            prefectures,
            sites,
            quiet_hours: self.quiet_hours,
            enabled: self.enabled,
        })
    }
}

fn check_url(target: &str) -> Result<(), ServiceError> {
    let refused = |why: &str| {
        bad(format!(
            "Webhook の URL が正しくありません / {target:?} is not a webhook URL: {why}"
        ))
    };
    let uri: hyper::Uri = target.parse().map_err(|_| refused("not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(refused("it must start with https:// (or http://)"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(refused("it names no host"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(refused(
            "credentials in the URL would be shown to everyone who reads the endpoint",
        ));
    }
    Ok(())
}

/// Makes an endpoint; a webhook's new secret is returned, to be shown this once.
pub async fn create(
    store: &Store,
    key: Option<&NotificationKey>,
    request: &EndpointRequest,
    principal: &Principal,
) -> Result<(Endpoint, Option<String>), ServiceError> {
    let spec = request.check()?;
    let secret = match spec.channel.as_str() {
        "webhook" => {
            let key = key.ok_or_else(|| {
                ServiceError::BadRequest(
                    "central に通知鍵がないため Webhook を作れません / central has no notification \
                     key (--notification-key-file), so it cannot keep a webhook secret"
                        .into(),
                )
            })?;
            let secret = new_secret();
            Some((key.seal(&secret), secret))
        }
        _ => None,
    };
    let made = store
        .create_notification_endpoint(
            &spec,
            secret.as_ref().map(|(sealed, _)| sealed.as_slice()),
            &principal.audit_name(),
        )
        .await?;
    Ok((made, secret.map(|(_, secret)| secret)))
}

fn not_found(id: i64) -> ServiceError {
    ServiceError::NotFound(format!(
        "通知先 {id} はありません / no notification endpoint {id}"
    ))
}

pub async fn update(
    store: &Store,
    id: i64,
    request: &EndpointRequest,
    principal: &Principal,
) -> Result<Endpoint, ServiceError> {
    let spec = request.check()?;
    store
        .update_notification_endpoint(id, &spec, &principal.audit_name())
        .await?
        .ok_or_else(|| not_found(id))
}

/// Enables or disables an endpoint, keeping the rest as it is.
pub async fn set_enabled(
    store: &Store,
    id: i64,
    enabled: bool,
    principal: &Principal,
) -> Result<Endpoint, ServiceError> {
    let current = store
        .notification_endpoint(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let spec = EndpointSpec {
        name: current.name,
        channel: current.channel,
        target: current.target,
        kinds: current.kinds,
        prefectures: current.prefectures,
        sites: current.sites,
        quiet_hours: current.quiet_hours,
        enabled,
    };
    store
        .update_notification_endpoint(id, &spec, &principal.audit_name())
        .await?
        .ok_or_else(|| not_found(id))
}

/// Queues a test delivery; its id (the delivery log shows how it went).
pub async fn test(store: &Store, id: i64, principal: &Principal) -> Result<i64, ServiceError> {
    store
        .enqueue_test_notification(id, &principal.audit_name())
        .await?
        .ok_or_else(|| not_found(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(channel: &str, target: &str) -> EndpointRequest {
        EndpointRequest {
            name: "IT".into(),
            channel: channel.into(),
            target: target.into(),
            kinds: vec!["chain_break".into()],
            prefectures: vec!["13".into()],
            sites: Vec::new(),
            quiet_hours: true,
            enabled: true,
        }
    }

    #[test]
    fn mistakes_are_named() {
        assert!(
            request("webhook", "https://hooks.example/x")
                .check()
                .is_ok()
        );
        assert!(request("mail", "it@example.jp").check().is_ok());
        for (channel, target, needle) in [
            ("webhook", "ftp://x", "https://"),
            ("webhook", "https://user:pw@x/", "credentials"),
            ("mail", "not an address", "mail address"),
            ("sms", "x", "webhook or mail"),
        ] {
            let error = request(channel, target).check().unwrap_err().to_string();
            assert!(error.contains(needle), "{error}");
        }
        let mut wrong = request("mail", "it@example.jp");
        wrong.kinds = vec!["fire".into()];
        assert!(wrong.check().unwrap_err().to_string().contains("fire"));
        wrong.kinds.clear();
        wrong.prefectures = vec!["48".into()];
        assert!(wrong.check().unwrap_err().to_string().contains("48"));
    }
}
