//! Dashboard accounts, their browser sessions and API tokens, and the site directory's names.
//!
//! Secrets arrive here already hashed (argon2id for passwords, SHA-256 for tokens): this module
//! never sees a password or a token in clear.

use serde::Serialize;
use time::{Duration, OffsetDateTime};
use tokio_postgres::error::SqlState;

use super::{Store, StoreError, audit_admin};

/// How long a session lives at most, whatever its use.
pub const SESSION_LIFETIME: Duration = Duration::hours(12);
/// A session unused this long has ended (a counter PC left signed in).
pub(crate) const SESSION_IDLE: Duration = Duration::minutes(60);
/// `last_seen_at` is written at most this often, so reading pages is not a write per request.
const TOUCH_EVERY: Duration = Duration::minutes(1);

/// An account as the sign-in path needs it.
#[derive(Debug, Clone)]
pub struct AccountRow {
    pub login: String,
    pub display_name: String,
    pub role: String,
    pub scope_prefectures: Vec<String>,
    pub scope_sites: Vec<String>,
    pub password_hash: String,
    pub disabled: bool,
}

/// An account as lists show it (no hash).
#[derive(Debug, Clone, Serialize)]
pub struct AccountSummary {
    pub login: String,
    pub display_name: String,
    pub role: String,
    pub scope_prefectures: Vec<String>,
    pub scope_sites: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub disabled: bool,
}

#[derive(Debug, Clone)]
pub struct NewAccount<'a> {
    pub login: &'a str,
    pub display_name: &'a str,
    pub role: &'a str,
    pub scope_prefectures: &'a [String],
    pub scope_sites: &'a [String],
    pub password_hash: &'a str,
}

/// A live session: its account and the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub account: AccountRow,
    pub csrf_token: String,
}

/// An API token as its owner's list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ApiTokenSummary {
    pub id: i64,
    pub label: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked: bool,
}

const ACCOUNT_COLUMNS: &str = "a.login, a.display_name, a.role, a.scope_prefectures, a.scope_sites, \
                               a.password_hash, a.disabled_at IS NOT NULL";

fn account_row(row: &tokio_postgres::Row) -> AccountRow {
    AccountRow {
        login: row.get(0),
        display_name: row.get(1),
        role: row.get(2),
        scope_prefectures: row.get(3),
        scope_sites: row.get(4),
        password_hash: row.get(5),
        disabled: row.get(6),
    }
}

/// A constraint the database refused, said for the person who asked.
fn refused(error: StoreError, what: &str) -> StoreError {
    let StoreError::Db(db) = &error else {
        return error;
    };
    match db.code() {
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => {
            StoreError::BadQuery(format!("{what} already exists"))
        }
        Some(code) if *code == SqlState::CHECK_VIOLATION => StoreError::BadQuery(format!(
            "{what} is not valid: logins are 2-64 lowercase letters, digits, '.', '_' or '-'; an \
             area manager needs at least one prefecture or site"
        )),
        Some(code) if *code == SqlState::FOREIGN_KEY_VIOLATION => {
            StoreError::BadQuery(format!("{what} names an account that does not exist"))
        }
        _ => error,
    }
}

/// What [`Store::change_account`] changes; `None`: left as it is.
#[derive(Debug, Default)]
pub struct AccountChange<'a> {
    /// Role, prefectures and sites, checked by `auth::accounts`.
    pub role: Option<(&'a str, &'a [String], &'a [String])>,
    pub disabled: Option<bool>,
    pub password_hash: Option<&'a str>,
}

impl Store {
    /// Makes an account; `by` is who did it, for the audit trail.
    pub async fn create_account(&self, new: &NewAccount<'_>, by: &str) -> Result<(), StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO accounts (login, display_name, role, scope_prefectures, scope_sites,
                                   password_hash)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &new.login,
                &new.display_name,
                &new.role,
                &new.scope_prefectures,
                &new.scope_sites,
                &new.password_hash,
            ],
        )
        .await
        .map_err(|e| refused(e, &format!("account {}", new.login)))?;
        audit_admin(
            &tx,
            None,
            &format!(
                "{by} created account {} with role {} (prefectures {:?}, sites {:?})",
                new.login, new.role, new.scope_prefectures, new.scope_sites
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Applies `change` to account `login` in one transaction, audited with `by`: a new role
    /// and scope (demoting or promoting), disabled or enabled (a disabled account's sessions
    /// and tokens stop working at once: every lookup joins `disabled_at`), or a new password
    /// (its sessions end and its API tokens are revoked: whoever knew the old password may
    /// have made some).
    pub async fn change_account(
        &self,
        login: &str,
        change: &AccountChange<'_>,
        by: &str,
    ) -> Result<(), StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM accounts WHERE login = $1 FOR UPDATE",
                &[&login],
            )
            .await?
            .is_some();
        if !exists {
            return Err(StoreError::BadQuery(format!(
                "アカウント {login} はありません / there is no account {login}"
            )));
        }
        let mut done = Vec::new();
        if let Some((role, prefectures, sites)) = change.role {
            tx.execute(
                "UPDATE accounts SET role = $2, scope_prefectures = $3, scope_sites = $4
                 WHERE login = $1",
                &[&login, &role, &prefectures, &sites],
            )
            .await
            .map_err(|e| refused(e, &format!("account {login}")))?;
            done.push(format!(
                "set the role of account {login} to {role} (prefectures {prefectures:?}, sites {sites:?})"
            ));
        }
        if let Some(disabled) = change.disabled {
            tx.execute(
                "UPDATE accounts SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now())
                                                        ELSE NULL END
                 WHERE login = $1",
                &[&login, &disabled],
            )
            .await?;
            if disabled {
                tx.execute("DELETE FROM web_sessions WHERE login = $1", &[&login])
                    .await?;
            }
            done.push(format!(
                "{} account {login}",
                if disabled { "disabled" } else { "enabled" }
            ));
        }
        if let Some(password_hash) = change.password_hash {
            tx.execute(
                "UPDATE accounts SET password_hash = $2 WHERE login = $1",
                &[&login, &password_hash],
            )
            .await?;
            tx.execute("DELETE FROM web_sessions WHERE login = $1", &[&login])
                .await?;
            let revoked = tx
                .execute(
                    "UPDATE api_tokens SET revoked_at = now()
                     WHERE login = $1 AND revoked_at IS NULL",
                    &[&login],
                )
                .await?;
            done.push(format!(
                "reset the password of account {login} (its sessions ended, {revoked} API tokens revoked)"
            ));
        }
        if done.is_empty() {
            return Err(StoreError::BadQuery(
                "変更がありません / nothing to change: give a role, disabled or a password".into(),
            ));
        }
        audit_admin(&tx, None, &format!("{by} {}", done.join("; "))).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn account(&self, login: &str) -> Result<Option<AccountRow>, StoreError> {
        let client = self.conn().await?;
        let row = client
            .query_opt(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.login = $1"),
                &[&login],
            )
            .await?;
        Ok(row.as_ref().map(account_row))
    }

    pub async fn accounts(&self) -> Result<Vec<AccountSummary>, StoreError> {
        let client = self.conn().await?;
        let rows = client
            .query(
                "SELECT login, display_name, role, scope_prefectures, scope_sites, created_at,
                        disabled_at IS NOT NULL
                 FROM accounts ORDER BY login",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AccountSummary {
                login: r.get(0),
                display_name: r.get(1),
                role: r.get(2),
                scope_prefectures: r.get(3),
                scope_sites: r.get(4),
                created_at: r.get(5),
                disabled: r.get(6),
            })
            .collect())
    }

    /// Starts a session (and forgets the account's expired ones).
    pub async fn create_session(
        &self,
        login: &str,
        token_hash: &[u8],
        csrf_token: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let client = self.conn().await?;
        client
            .execute(
                "DELETE FROM web_sessions WHERE login = $1 AND expires_at <= $2",
                &[&login, &now],
            )
            .await?;
        client
            .execute(
                "INSERT INTO web_sessions (token_hash, login, csrf_token, created_at, last_seen_at,
                                           expires_at)
                 VALUES ($1, $2, $3, $4, $4, $5)",
                &[
                    &token_hash,
                    &login,
                    &csrf_token,
                    &now,
                    &(now + SESSION_LIFETIME),
                ],
            )
            .await?;
        Ok(())
    }

    /// The live session with this token: not expired, not idle too long, its account enabled.
    pub async fn session(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
    ) -> Result<Option<SessionRow>, StoreError> {
        let client = self.conn().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {ACCOUNT_COLUMNS}, s.csrf_token, s.last_seen_at
                     FROM web_sessions s JOIN accounts a USING (login)
                     WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3
                       AND a.disabled_at IS NULL"
                ),
                &[&token_hash, &now, &(now - SESSION_IDLE)],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let last_seen: OffsetDateTime = row.get(8);
        if now - last_seen >= TOUCH_EVERY {
            client
                .execute(
                    "UPDATE web_sessions SET last_seen_at = $2 WHERE token_hash = $1",
                    &[&token_hash, &now],
                )
                .await?;
        }
        Ok(Some(SessionRow {
            account: account_row(&row),
            csrf_token: row.get(7),
        }))
    }

    pub async fn end_session(&self, token_hash: &[u8]) -> Result<(), StoreError> {
        let client = self.conn().await?;
        client
            .execute(
                "DELETE FROM web_sessions WHERE token_hash = $1",
                &[&token_hash],
            )
            .await?;
        Ok(())
    }

    /// Makes an API token acting as `login`; returns its id. Audited.
    pub async fn create_api_token(
        &self,
        login: &str,
        label: &str,
        token_hash: &[u8],
        expires_at: OffsetDateTime,
        by: &str,
    ) -> Result<i64, StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO api_tokens (token_hash, login, label, expires_at)
                 VALUES ($1, $2, $3, $4) RETURNING id",
                &[&token_hash, &login, &label, &expires_at],
            )
            .await
            .map_err(|e| refused(e, &format!("API token {label:?} for {login}")))?
            .get(0);
        audit_admin(
            &tx,
            None,
            &format!("{by} created API token {id} ({label:?}) for account {login}"),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The account a live API token acts as.
    pub async fn api_token(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
    ) -> Result<Option<AccountRow>, StoreError> {
        let client = self.conn().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {ACCOUNT_COLUMNS}, t.id, t.last_used_at
                     FROM api_tokens t JOIN accounts a USING (login)
                     WHERE t.token_hash = $1 AND t.expires_at > $2 AND t.revoked_at IS NULL
                       AND a.disabled_at IS NULL"
                ),
                &[&token_hash, &now],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let id: i64 = row.get(7);
        let last_used: Option<OffsetDateTime> = row.get(8);
        if last_used.is_none_or(|at| now - at >= TOUCH_EVERY) {
            client
                .execute(
                    "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1",
                    &[&id, &now],
                )
                .await?;
        }
        Ok(Some(account_row(&row)))
    }

    pub async fn api_tokens(&self, login: &str) -> Result<Vec<ApiTokenSummary>, StoreError> {
        let client = self.conn().await?;
        let rows = client
            .query(
                "SELECT id, label, created_at, expires_at, last_used_at, revoked_at IS NOT NULL
                 FROM api_tokens WHERE login = $1 ORDER BY id",
                &[&login],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ApiTokenSummary {
                id: r.get(0),
                label: r.get(1),
                created_at: r.get(2),
                expires_at: r.get(3),
                last_used_at: r.get(4),
                revoked: r.get(5),
            })
            .collect())
    }

    /// Revokes one of `login`'s tokens (an administrator may pass `None` for any owner).
    pub async fn revoke_api_token(
        &self,
        id: i64,
        owner: Option<&str>,
        by: &str,
    ) -> Result<(), StoreError> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE api_tokens SET revoked_at = now()
                 WHERE id = $1 AND revoked_at IS NULL AND ($2::text IS NULL OR login = $2)",
                &[&id, &owner],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::BadQuery(format!(
                "no live API token {id} of yours to revoke"
            )));
        }
        audit_admin(&tx, None, &format!("{by} revoked API token {id}")).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Names a site in the directory (or renames it). Audited.
    pub async fn put_site_name(
        &self,
        site: &onshi_domain::site::SiteCode,
        name: &str,
        by: &str,
    ) -> Result<(), StoreError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(StoreError::BadQuery(
                "a site name has 1 to 200 characters".into(),
            ));
        }
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO sites (site_code, name) VALUES ($1, $2)
             ON CONFLICT (site_code) DO UPDATE SET name = EXCLUDED.name, updated_at = now()",
            &[&site.as_str(), &name],
        )
        .await?;
        audit_admin(
            &tx,
            Some(site.as_str()),
            &format!("{by} named site {site} {name:?}"),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a sign-in, a failed one, or a sign-out in the audit trail.
    pub async fn audit_sign_in(&self, kind: SignInEvent, detail: &str) -> Result<(), StoreError> {
        self.record_security_event(kind.as_str(), None, None, detail)
            .await
    }

    /// Counts a sign-in attempt refused without a password check (`reason`: rate_limited or
    /// busy) under its `key` in the current `window` (migration 0019): one row per reason, key
    /// and window, however many attempts.
    pub async fn count_refused_sign_in(
        &self,
        reason: &str,
        key: &str,
        window: std::time::Duration,
    ) -> Result<(), StoreError> {
        let window_secs = window.as_secs_f64().max(1.0);
        self.conn().await?
            .execute(
                "INSERT INTO sign_in_refusals (window_start, reason, key, attempts)
                 VALUES (to_timestamp(floor(extract(epoch FROM now())::float8 / $1::float8) * $1::float8),
                         $2, $3, 1)
                 ON CONFLICT (window_start, reason, key) DO UPDATE
                     SET attempts = sign_in_refusals.attempts + 1, last_at = now()",
                &[&window_secs, &reason, &key],
            )
            .await?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInEvent {
    SignedIn,
    Failed,
    Refused,
    SignedOut,
}

impl SignInEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            SignInEvent::SignedIn => "sign_in",
            SignInEvent::Failed => "sign_in_failed",
            SignInEvent::Refused => "sign_in_rate_limited",
            SignInEvent::SignedOut => "sign_out",
        }
    }
}
