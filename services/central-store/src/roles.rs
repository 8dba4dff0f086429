//! Who central is in PostgreSQL. The append-only trigger (migration 0006) lets the owner of an
//! audit table through, and a superuser passes every check, so central must not serve as
//! either: `app` refuses to start when [`SessionRole::owns_schema`] says so.

use super::{Store, StoreError};

/// The session's login role and what it can do beyond `onshi_app`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRole {
    /// `session_user`: the role of the URL (a later SET ROLE can always be reset).
    pub user: String,
    pub superuser: bool,
    /// A member of the owner of schema `public` (in PostgreSQL 15+ that is the database owner).
    pub owns_public_schema: bool,
    /// A member of the owner of `events` (false while there is no `events` yet).
    pub owns_events: bool,
}

impl SessionRole {
    /// Whether the audit trail's protections would not hold against this role.
    pub fn owns_schema(&self) -> bool {
        self.superuser || self.owns_public_schema || self.owns_events
    }

    /// What makes it the owner, for the message that refuses it.
    pub fn why(&self) -> &'static str {
        if self.superuser {
            "is a superuser"
        } else if self.owns_events {
            "owns the events table"
        } else {
            "owns the schema"
        }
    }
}

impl Store {
    pub async fn session_role(&self) -> Result<SessionRole, StoreError> {
        let client = self.conn().await?;
        let row = client
            .query_one(
                "SELECT session_user::text AS login, r.rolsuper AS superuser,
                        pg_has_role(session_user, n.nspowner, 'MEMBER') AS owns_public_schema,
                        coalesce((SELECT pg_has_role(session_user, c.relowner, 'MEMBER')
                                  FROM pg_class c WHERE c.oid = to_regclass('public.events')),
                                 false) AS owns_events
                 FROM pg_roles r, pg_namespace n
                 WHERE r.rolname = session_user AND n.nspname = 'public'",
                &[],
            )
            .await?;
        Ok(SessionRole {
            user: row.get("login"),
            superuser: row.get("superuser"),
            owns_public_schema: row.get("owns_public_schema"),
            owns_events: row.get("owns_events"),
        })
    }
}
