//! Making accounts and API tokens (the CLI and the API share these): what an account may be,
//! said before anything is stored.

use onshi_domain::ids::Prefecture;
use onshi_domain::site::SiteCode;
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use super::{Role, password, secret};
use crate::error::ServiceError;
use central_store::Store;
use central_store::accounts::{AccountChange, NewAccount};

/// An account to make, as an administrator describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    pub login: String,
    pub display_name: String,
    pub role: String,
    /// Two-digit prefecture codes (area managers only).
    #[serde(default)]
    pub prefectures: Vec<String>,
    /// Site codes (area managers only).
    #[serde(default)]
    pub sites: Vec<String>,
    pub password: String,
}

/// API tokens live at most this long; automation renews them.
pub(crate) const MAX_TOKEN_DAYS: i64 = 366;

fn bad(message: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(message.into())
}

/// The spec's scope, checked: real prefecture codes and site codes, and only for an area
/// manager (a scope on another role would suggest a limit that is not applied).
fn scope(spec: &AccountSpec, role: Role) -> Result<(Vec<String>, Vec<String>), ServiceError> {
    let has_scope = !spec.prefectures.is_empty() || !spec.sites.is_empty();
    match (role, has_scope) {
        (Role::AreaManager, false) => {
            return Err(bad(
                "an area manager needs prefectures or sites: they would see nothing",
            ));
        }
        (Role::AreaManager, true) => {}
        (_, true) => {
            return Err(bad(format!(
                "only an area manager has a scope; a {} sees the whole chain",
                role.as_str()
            )));
        }
        (_, false) => {}
    }
    scope_lists(&spec.prefectures, &spec.sites)
}

/// Prefecture codes and site codes as given, checked (an account's scope, a notification
/// route's): a wrong one is named.
pub(crate) fn scope_lists(
    prefectures: &[String],
    sites: &[String],
) -> Result<(Vec<String>, Vec<String>), ServiceError> {
    let prefectures = prefectures
        .iter()
        .map(|p| {
            // Stored as the canonical two digits ("１３" typed full-width is "13"): the scope
            // is compared with site codes in SQL, where "１３" would match no site.
            Prefecture::parse(p)
                .map(|prefecture| prefecture.code_str())
                .map_err(|e| bad(format!("prefecture {p:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sites = sites
        .iter()
        .map(|s| {
            SiteCode::parse(s)
                .map(|c| c.to_string())
                .map_err(|e| bad(format!("site {s:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((prefectures, sites))
}

/// Makes the account (`by`: who, for the audit trail). The password is checked and hashed
/// here and goes no further.
pub async fn create_account(
    store: &Store,
    spec: &AccountSpec,
    by: &str,
) -> Result<(), ServiceError> {
    let role = Role::parse(&spec.role).map_err(bad)?;
    let (prefectures, sites) = scope(spec, role)?;
    password::check_new(&spec.password).map_err(bad)?;
    let plain = spec.password.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash(&plain))
        .await
        .map_err(|_| bad("hashing the password failed"))?;
    store
        .create_account(
            &NewAccount {
                login: &spec.login.trim().to_lowercase(),
                display_name: spec.display_name.trim(),
                role: role.as_str(),
                scope_prefectures: &prefectures,
                scope_sites: &sites,
                password_hash: &hash,
            },
            by,
        )
        .await?;
    Ok(())
}

/// A change to an existing account, as the API and `central account set` take it; what is
/// absent stays as it is.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountUpdate {
    /// A new role (with `prefectures` / `sites` for an area manager).
    pub role: Option<String>,
    #[serde(default)]
    pub prefectures: Vec<String>,
    #[serde(default)]
    pub sites: Vec<String>,
    /// true: the account can no longer sign in, and its sessions and tokens stop working.
    pub disabled: Option<bool>,
    /// A new password: the account's sessions end and its API tokens are revoked.
    pub password: Option<String>,
}

/// Changes account `login` (`by`: who, for the audit trail): the role and scope are checked as
/// when an account is made, the password checked and hashed here and going no further.
pub async fn change_account(
    store: &Store,
    login: &str,
    update: &AccountUpdate,
    by: &str,
) -> Result<(), ServiceError> {
    let login = login.trim().to_lowercase();
    let role = match &update.role {
        Some(role) => {
            let role = Role::parse(role).map_err(bad)?;
            let spec = AccountSpec {
                login: login.clone(),
                display_name: String::new(),
                role: role.as_str().to_string(),
                prefectures: update.prefectures.clone(),
                sites: update.sites.clone(),
                password: String::new(),
            };
            Some((role, scope(&spec, role)?))
        }
        None if !update.prefectures.is_empty() || !update.sites.is_empty() => {
            return Err(bad(
                "a scope is given with its role: {\"role\": \"area_manager\", \"prefectures\": [...]}",
            ));
        }
        None => None,
    };
    let hash = match &update.password {
        Some(password) => {
            password::check_new(password).map_err(bad)?;
            let plain = password.clone();
            Some(
                tokio::task::spawn_blocking(move || password::hash(&plain))
                    .await
                    .map_err(|_| bad("hashing the password failed"))?,
            )
        }
        None => None,
    };
    let change = AccountChange {
        role: role
            .as_ref()
            .map(|(role, (prefectures, sites))| (role.as_str(), &prefectures[..], &sites[..])),
        disabled: update.disabled,
        password_hash: hash.as_deref(),
    };
    store.change_account(&login, &change, by).await?;
    Ok(())
}

/// A new API token for `login`, valid `days`: its id and the token, shown this once.
pub async fn issue_token(
    store: &Store,
    login: &str,
    label: &str,
    days: i64,
    by: &str,
) -> Result<(i64, String), ServiceError> {
    if !(1..=MAX_TOKEN_DAYS).contains(&days) {
        return Err(bad(format!(
            "an API token lives 1 to {MAX_TOKEN_DAYS} days"
        )));
    }
    let label = label.trim();
    if label.is_empty() {
        return Err(bad("an API token needs a label saying what uses it"));
    }
    let token = secret::new_api_token();
    let expires_at = OffsetDateTime::now_utc() + Duration::days(days);
    let id = store
        .create_api_token(login, label, &secret::digest(&token), expires_at, by)
        .await?;
    Ok((id, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(role: &str, prefectures: &[&str]) -> AccountSpec {
        AccountSpec {
            login: "k.sato".into(),
            display_name: "佐藤 健".into(),
            role: role.into(),
            prefectures: prefectures.iter().map(|p| p.to_string()).collect(),
            sites: vec![],
            password: "a long enough password".into(),
        }
    }

    #[test]
    fn an_area_manager_needs_a_real_scope_and_no_other_role_has_one() {
        let manager = spec("area_manager", &["13"]);
        assert_eq!(
            scope(&manager, Role::AreaManager).unwrap().0,
            vec!["13".to_string()]
        );
        assert!(scope(&spec("area_manager", &[]), Role::AreaManager).is_err());
        let error = scope(&spec("area_manager", &["48"]), Role::AreaManager).unwrap_err();
        assert!(error.to_string().contains("\"48\""), "{error}");
        let error = scope(&spec("viewer", &["13"]), Role::Viewer).unwrap_err();
        assert!(
            error.to_string().contains("only an area manager"),
            "{error}"
        );
    }
}
