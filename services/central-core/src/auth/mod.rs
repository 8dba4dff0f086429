//! Who is asking, and what they may do.
//!
//! Three ways in, one [`Principal`]: an operator's client certificate on the mTLS listener
//! (chain administrator: the automation chain IT runs), an API token, or a browser session
//! (both acting as the account that owns them). Roles decide what a principal may do
//! ([`Permission`]); an area manager's [`SiteScope`] decides which sites they see, applied in
//! the queries themselves.

pub mod accounts;
pub mod password;
pub mod rate_limit;
pub mod secret;
pub mod session;

use onshi_domain::site::SiteCode;
use serde::Serialize;

use crate::error::ServiceError;
pub use central_store::scope::SiteScope;

/// The roles of the dashboard and API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Chain IT: everything, for the whole chain.
    ChainAdmin,
    /// The sites of some prefectures or a list of sites: read, and act on those sites.
    AreaManager,
    /// The audit pages and exports only.
    Auditor,
    /// Reads the fleet pages; changes nothing.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::ChainAdmin,
        Role::AreaManager,
        Role::Auditor,
        Role::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ChainAdmin => "chain_admin",
            Role::AreaManager => "area_manager",
            Role::Auditor => "auditor",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or_else(|| {
                format!("unknown role {text:?}: one of chain_admin, area_manager, auditor, viewer")
            })
    }

    /// Japanese first, English second, as the dashboard shows it.
    pub fn label(self) -> &'static str {
        match self {
            Role::ChainAdmin => "チェーン管理者 / Chain administrator",
            Role::AreaManager => "エリアマネージャー / Area manager",
            Role::Auditor => "監査担当 / Auditor",
            Role::Viewer => "閲覧者 / Viewer",
        }
    }

    pub fn may(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::ChainAdmin => true,
            Role::AreaManager => matches!(
                permission,
                ViewFleet | ExportFleet | ActOnSite | ViewIdentifiers
            ),
            Role::Auditor => matches!(permission, ViewAudit | ExportAudit | ViewIdentifiers),
            Role::Viewer => matches!(permission, ViewFleet | ExportFleet),
        }
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// The fleet pages and their JSON: sites, agents, alerts, certificates, rollouts, adoption.
    ViewFleet,
    /// CSV of fleet data (certificates); audited like every export.
    ExportFleet,
    /// Change something about one site in scope: acknowledge its alerts, mark adoption steps,
    /// file grace notifications, set its opening hours.
    ActOnSite,
    /// The audit search, verification and report pages.
    ViewAudit,
    /// Audit CSV, printable reports and bundles.
    ExportAudit,
    /// Chain-wide changes: rollouts, disaster windows, rosters, revocations, accounts, the
    /// chain's opening hours, the site directory.
    Administer,
    /// Patient references (keyed hashes) and staff ids in event bodies; without it they are
    /// taken out of every event shown ([`without_identifiers`]). A viewer reads the fleet
    /// pages without them.
    ViewIdentifiers,
}

/// The fields of an event body that point at a person: the patient's keyed hash and the staff
/// member who acted.
pub(crate) const IDENTIFIER_FIELDS: [&str; 2] = ["patient_ref", "staff_id"];

/// `body` as `principal` may see it: without [`IDENTIFIER_FIELDS`] unless they may
/// [`Permission::ViewIdentifiers`].
pub fn without_identifiers(principal: &Principal, body: &mut serde_json::Value) {
    if principal.may(Permission::ViewIdentifiers) {
        return;
    }
    if let Some(fields) = body.as_object_mut() {
        for field in IDENTIFIER_FIELDS {
            fields.remove(field);
        }
    }
}

/// How the principal proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    Certificate,
    ApiToken,
    Session,
}

/// The one who makes a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// An account's login, or an operator certificate's name.
    pub name: String,
    pub display_name: String,
    pub role: Role,
    pub scope: SiteScope,
    pub credential: Credential,
    /// The session's CSRF token, for the forms a page renders (sessions only).
    pub csrf_token: Option<String>,
}

impl Principal {
    /// An operator certificate: chain IT's automation, the whole chain.
    pub fn operator(name: String) -> Principal {
        Principal {
            display_name: name.clone(),
            name,
            role: Role::ChainAdmin,
            scope: SiteScope::All,
            credential: Credential::Certificate,
            csrf_token: None,
        }
    }

    pub fn may(&self, permission: Permission) -> bool {
        self.role.may(permission)
    }

    pub fn require(&self, permission: Permission) -> Result<(), ServiceError> {
        if self.may(permission) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!(
                "the role {} may not do this ({permission:?})",
                self.role.as_str()
            )))
        }
    }

    /// Refuses a site outside the principal's scope, before any query about it runs.
    pub fn require_site(&self, site: &SiteCode) -> Result<(), ServiceError> {
        if self.scope.allows(site) {
            Ok(())
        } else {
            Err(ServiceError::OutOfScope(site.to_string()))
        }
    }

    /// How the audit trail names them.
    pub fn audit_name(&self) -> String {
        match self.credential {
            Credential::Certificate => format!("operator {}", self.name),
            Credential::ApiToken => format!("account {} (API token)", self.name),
            Credential::Session => format!("account {}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_unknown_roles_are_named() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        let error = Role::parse("admin").unwrap_err();
        assert!(error.contains("\"admin\""), "{error}");
    }

    #[test]
    fn an_auditor_sees_audit_only_and_a_viewer_changes_nothing() {
        assert!(Role::Auditor.may(Permission::ExportAudit));
        assert!(!Role::Auditor.may(Permission::ViewFleet));
        assert!(Role::Viewer.may(Permission::ViewFleet));
        for change in [Permission::ActOnSite, Permission::Administer] {
            assert!(!Role::Viewer.may(change));
        }
        assert!(!Role::Viewer.may(Permission::ViewAudit));
    }

    #[test]
    fn an_area_manager_acts_on_sites_but_not_on_the_chain() {
        assert!(Role::AreaManager.may(Permission::ActOnSite));
        assert!(!Role::AreaManager.may(Permission::Administer));
        assert!(!Role::AreaManager.may(Permission::ViewAudit));
        assert!(Role::ChainAdmin.may(Permission::Administer));
    }
}
