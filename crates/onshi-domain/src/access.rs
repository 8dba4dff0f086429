//! Who may see what: the access policy for drug, checkup, diagnosis and surgery information.
//!
//! Two things must hold for a view: the policy table allows the staff member's role at this kind
//! of site to see the category, and there is a basis — a live consent for that category given on
//! the card reader (it lasts 24 hours), or an open disaster window (災害時医療情報閲覧) for the
//! site's prefecture. Every decision names the policy version that made it, so an auditor can
//! tell which rules applied.
//!
//! The table is versioned because the national rules changed: under the 2020 guide pharmacies
//! could not view checkup results; a November 2020 decision allowed it with consent; diagnosis and
//! surgery information came later. [`PolicyVersion::CURRENT`] is the default; a chain may pin the
//! stricter [`PolicyVersion::Jp2020Sep`].

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::events::InfoCategory;
use crate::ids::Prefecture;
use crate::site::SiteKind;

/// How long a consent given on the card reader lasts.
pub const CONSENT_LIFETIME: Duration = Duration::hours(24);

/// A role in a site's staff roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Doctor,
    Dentist,
    Pharmacist,
    Clerk,
    /// Manages the site's agent and roster; sees no medical information by that role.
    SiteAdmin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Doctor,
        Role::Dentist,
        Role::Pharmacist,
        Role::Clerk,
        Role::SiteAdmin,
    ];

    /// The role named `name` (as [`Role::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Doctor => "doctor",
            Role::Dentist => "dentist",
            Role::Pharmacist => "pharmacist",
            Role::Clerk => "clerk",
            Role::SiteAdmin => "site_admin",
        }
    }
}

/// A version of the policy table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PolicyVersion {
    /// The 2020 guide: drug information for physicians, dentists and pharmacists; checkups for
    /// physicians and dentists only (pharmacies cannot view checkups); no diagnosis or surgery
    /// information.
    #[serde(rename = "jp-2020-09")]
    Jp2020Sep,
    /// Since the November 2020 decision pharmacists may view checkups with consent; diagnosis
    /// and surgery information for physicians, dentists and pharmacists (the date of the latter
    /// categories is UNCONFIRMED; the version name records the checkup decision).
    #[serde(rename = "jp-2020-11")]
    Jp2020Nov,
}

impl PolicyVersion {
    pub const CURRENT: PolicyVersion = PolicyVersion::Jp2020Nov;

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyVersion::Jp2020Sep => "jp-2020-09",
            PolicyVersion::Jp2020Nov => "jp-2020-11",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jp-2020-09" => Some(PolicyVersion::Jp2020Sep),
            "jp-2020-11" => Some(PolicyVersion::Jp2020Nov),
            _ => None,
        }
    }

    /// The table: may `role` at a site of `kind` see `category` at all (consent aside)?
    pub fn role_may_view(self, kind: SiteKind, role: Role, category: InfoCategory) -> bool {
        use InfoCategory::*;
        use Role::*;
        // Only qualified staff see medical information, and each where they practise.
        let qualified = matches!(
            (kind, role),
            (
                SiteKind::Hospital | SiteKind::Clinic,
                Doctor | Dentist | Pharmacist
            ) | (SiteKind::DentalClinic, Dentist)
                | (SiteKind::Pharmacy, Pharmacist)
        );
        if !qualified {
            return false;
        }
        match (self, category) {
            (_, Drug) => true,
            (PolicyVersion::Jp2020Sep, Checkup) => role != Pharmacist,
            (PolicyVersion::Jp2020Sep, Diagnosis | Surgery) => false,
            (PolicyVersion::Jp2020Nov, Checkup | Diagnosis | Surgery) => true,
        }
    }
}

/// The consent a patient gave on the card reader, per category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    #[serde(with = "time::serde::rfc3339")]
    pub consented_at: OffsetDateTime,
    pub categories: Vec<InfoCategory>,
}

impl ConsentRecord {
    pub fn available_until(&self) -> OffsetDateTime {
        self.consented_at + CONSENT_LIFETIME
    }
}

/// A period and area in which the ministry allows viewing without the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisasterWindow {
    pub id: String,
    pub prefectures: Vec<Prefecture>,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
}

impl DisasterWindow {
    pub fn covers(&self, prefecture: Prefecture, at: OffsetDateTime) -> bool {
        self.prefectures.contains(&prefecture) && self.starts_at <= at && at < self.ends_at
    }
}

/// Everything a decision looks at.
#[derive(Debug, Clone)]
pub struct ViewRequest<'a> {
    pub policy: PolicyVersion,
    pub site_kind: SiteKind,
    pub site_prefecture: Prefecture,
    pub role: Role,
    pub category: InfoCategory,
    pub consent: Option<&'a ConsentRecord>,
    pub disaster_windows: &'a [DisasterWindow],
    pub now: OffsetDateTime,
}

/// Why a view was allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "basis", rename_all = "snake_case")]
pub enum Basis {
    Consent {
        #[serde(with = "time::serde::rfc3339")]
        available_until: OffsetDateTime,
    },
    DisasterWindow {
        id: String,
    },
}

/// Why a view was refused, in words for the staff member and a stable code for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    #[error("a {role} at a {kind} may not view {category} information under policy {policy}")]
    RoleNotPermitted {
        role: &'static str,
        kind: &'static str,
        category: &'static str,
        policy: &'static str,
    },
    #[error("the patient has not consented to share {category} information")]
    NotConsented { category: &'static str },
    #[error("the patient's consent ended at {until}; the card must be used again")]
    ConsentExpired { until: String },
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::RoleNotPermitted { .. } => "role_not_permitted",
            Refusal::NotConsented { .. } => "not_consented",
            Refusal::ConsentExpired { .. } => "consent_expired",
        }
    }

    pub fn message_ja(&self) -> String {
        match self {
            Refusal::RoleNotPermitted { .. } => {
                "この職種では当該情報を閲覧できません（アクセス権限の規定による）".to_string()
            }
            Refusal::NotConsented { .. } => "患者の同意がないため閲覧できません".to_string(),
            Refusal::ConsentExpired { .. } => {
                "同意の有効期限（24時間）が切れています。再度カードで同意を取得してください"
                    .to_string()
            }
        }
    }
}

fn category_name(category: InfoCategory) -> &'static str {
    match category {
        InfoCategory::Drug => "drug",
        InfoCategory::Checkup => "checkup",
        InfoCategory::Diagnosis => "diagnosis",
        InfoCategory::Surgery => "surgery",
    }
}

/// Decides one view. The policy table comes first: a role that may not see a category is refused
/// even inside a disaster window.
pub fn decide(request: &ViewRequest<'_>) -> Result<Basis, Refusal> {
    let category = category_name(request.category);
    if !request
        .policy
        .role_may_view(request.site_kind, request.role, request.category)
    {
        return Err(Refusal::RoleNotPermitted {
            role: request.role.as_str(),
            kind: request.site_kind.as_str(),
            category,
            policy: request.policy.as_str(),
        });
    }
    if let Some(window) = request
        .disaster_windows
        .iter()
        .find(|w| w.covers(request.site_prefecture, request.now))
    {
        return Ok(Basis::DisasterWindow {
            id: window.id.clone(),
        });
    }
    let consent = request
        .consent
        .filter(|c| c.categories.contains(&request.category))
        .ok_or(Refusal::NotConsented { category })?;
    let until = consent.available_until();
    if request.now >= until {
        return Err(Refusal::ConsentExpired {
            until: until.to_string(),
        });
    }
    Ok(Basis::Consent {
        available_until: until,
    })
}

// ------------------------------------------------------------------------------- central's re-check

/// What central finds wrong with a view an agent allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("the view names no policy version, or one central does not know ({0:?})")]
    UnknownPolicy(Option<String>),
    #[error("the view names no staff role, or an unknown one ({0:?})")]
    UnknownRole(Option<String>),
    #[error("a site with fee table {0:?} shows no medical information")]
    SiteKind(crate::ids::FeeTable),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("central holds no live consent of the patient for {0} information at this site")]
    NoConsent(&'static str),
}

impl Violation {
    /// A stable code for the audit trail.
    pub fn code(&self) -> &'static str {
        match self {
            Violation::UnknownPolicy(_) => "unknown_policy",
            Violation::UnknownRole(_) => "unknown_role",
            Violation::SiteKind(_) => "site_kind",
            Violation::Refused(r) => r.code(),
            Violation::NoConsent(_) => "no_consent_at_central",
        }
    }
}

/// Central's second look at a view the agent of `site` allowed at `at`: the recorded policy
/// version must allow the recorded role, at a site of the kind its institution code says, to
/// see the category; and unless the view names a disaster window, one of `consents` (the
/// consent events central holds for the same patient at the site) must have given the
/// category and still be live at `at`. Windows are taken as recorded: the agent and onshi-sim
/// both check them, and central does not hold the national announcements yet.
///
/// A view the receipt computer asked for (relayed or observed at the terminal,
/// [`crate::events::LookupSource::is_receipt_computer`]) names no staff member or policy: the
/// agent decided nothing, the national side answered. Its site kind and the consent are
/// checked; the role cannot be.
pub fn recheck(
    site: &crate::site::SiteCode,
    view: &crate::events::InfoView,
    at: OffsetDateTime,
    consents: &[crate::events::Consent],
) -> Result<(), Violation> {
    use crate::events::ConsentChoice;
    use crate::ids::FeeTable;
    let table = site.institution_code().fee_table();
    let kind = match table {
        // Hospitals and clinics share one row of the table.
        FeeTable::Medical => SiteKind::Clinic,
        FeeTable::Dental => SiteKind::DentalClinic,
        FeeTable::Pharmacy => SiteKind::Pharmacy,
        FeeTable::HomeNursing => return Err(Violation::SiteKind(table)),
    };
    let category = category_name(view.category);
    let decided_by_agent = !view.source.is_some_and(|s| s.is_receipt_computer());
    if decided_by_agent {
        let policy = view
            .policy_version
            .as_deref()
            .and_then(PolicyVersion::parse)
            .ok_or_else(|| Violation::UnknownPolicy(view.policy_version.clone()))?;
        let role = view
            .staff_role
            .as_deref()
            .and_then(Role::parse)
            .ok_or_else(|| Violation::UnknownRole(view.staff_role.clone()))?;
        if !policy.role_may_view(kind, role, view.category) {
            return Err(Refusal::RoleNotPermitted {
                role: role.as_str(),
                kind: kind.as_str(),
                category,
                policy: policy.as_str(),
            }
            .into());
        }
    }
    if view.disaster_window_id.is_some() {
        return Ok(());
    }
    let given = |c: &crate::events::Consent| {
        let choice = match view.category {
            InfoCategory::Drug => c.drug,
            InfoCategory::Checkup => c.checkup,
            InfoCategory::Diagnosis => c.diagnosis,
            InfoCategory::Surgery => c.surgery,
        };
        choice == ConsentChoice::Given
            && c.patient_ref == view.patient_ref
            && c.consented_at <= at
            && at < c.consented_at + CONSENT_LIFETIME
    };
    if consents.iter().any(given) {
        Ok(())
    } else {
        Err(Violation::NoConsent(category))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-21 10:00 +09:00);

    fn tokyo() -> Prefecture {
        Prefecture::parse("13").unwrap()
    }

    fn consent(hours_ago: i64, categories: &[InfoCategory]) -> ConsentRecord {
        ConsentRecord {
            consented_at: NOW - Duration::hours(hours_ago),
            categories: categories.to_vec(),
        }
    }

    fn request<'a>(
        policy: PolicyVersion,
        kind: SiteKind,
        role: Role,
        category: InfoCategory,
        consent: Option<&'a ConsentRecord>,
        windows: &'a [DisasterWindow],
    ) -> ViewRequest<'a> {
        ViewRequest {
            policy,
            site_kind: kind,
            site_prefecture: tokyo(),
            role,
            category,
            consent,
            disaster_windows: windows,
            now: NOW,
        }
    }

    #[test]
    fn a_pharmacist_sees_drugs_at_a_pharmacy_with_consent() {
        let c = consent(1, &[InfoCategory::Drug]);
        let r = request(
            PolicyVersion::CURRENT,
            SiteKind::Pharmacy,
            Role::Pharmacist,
            InfoCategory::Drug,
            Some(&c),
            &[],
        );
        assert_eq!(
            decide(&r),
            Ok(Basis::Consent {
                available_until: c.available_until()
            })
        );
    }

    #[test]
    fn a_clerk_never_sees_medical_information() {
        let c = consent(1, &[InfoCategory::Drug, InfoCategory::Checkup]);
        for kind in [SiteKind::Pharmacy, SiteKind::Clinic, SiteKind::Hospital] {
            for category in [InfoCategory::Drug, InfoCategory::Checkup] {
                let r = request(
                    PolicyVersion::CURRENT,
                    kind,
                    Role::Clerk,
                    category,
                    Some(&c),
                    &[],
                );
                assert_eq!(decide(&r).unwrap_err().code(), "role_not_permitted");
            }
        }
    }

    #[test]
    fn pharmacies_see_checkups_under_the_current_rule_but_not_the_2020_one() {
        let c = consent(1, &[InfoCategory::Checkup]);
        let current = request(
            PolicyVersion::Jp2020Nov,
            SiteKind::Pharmacy,
            Role::Pharmacist,
            InfoCategory::Checkup,
            Some(&c),
            &[],
        );
        assert!(decide(&current).is_ok());
        let strict = ViewRequest {
            policy: PolicyVersion::Jp2020Sep,
            ..current
        };
        let refusal = decide(&strict).unwrap_err();
        assert_eq!(refusal.code(), "role_not_permitted");
        assert!(refusal.to_string().contains("jp-2020-09"), "{refusal}");
        // A doctor at a clinic sees checkups under both.
        let doctor = ViewRequest {
            site_kind: SiteKind::Clinic,
            role: Role::Doctor,
            ..strict
        };
        assert!(decide(&doctor).is_ok());
    }

    #[test]
    fn a_doctor_at_a_pharmacy_or_a_pharmacist_at_a_dental_clinic_is_refused() {
        let c = consent(1, &[InfoCategory::Drug]);
        for (kind, role) in [
            (SiteKind::Pharmacy, Role::Doctor),
            (SiteKind::DentalClinic, Role::Pharmacist),
            (SiteKind::DentalClinic, Role::Doctor),
        ] {
            let r = request(
                PolicyVersion::CURRENT,
                kind,
                role,
                InfoCategory::Drug,
                Some(&c),
                &[],
            );
            assert_eq!(
                decide(&r).unwrap_err().code(),
                "role_not_permitted",
                "{kind:?} {role:?}"
            );
        }
    }

    #[test]
    fn consent_lasts_24_hours_and_covers_only_its_categories() {
        let fresh = consent(23, &[InfoCategory::Drug]);
        let stale = consent(24, &[InfoCategory::Drug]);
        let base = request(
            PolicyVersion::CURRENT,
            SiteKind::Clinic,
            Role::Doctor,
            InfoCategory::Drug,
            Some(&fresh),
            &[],
        );
        assert!(decide(&base).is_ok());
        let expired = ViewRequest {
            consent: Some(&stale),
            ..base.clone()
        };
        assert_eq!(decide(&expired).unwrap_err().code(), "consent_expired");
        let other_category = ViewRequest {
            category: InfoCategory::Checkup,
            ..base.clone()
        };
        assert_eq!(decide(&other_category).unwrap_err().code(), "not_consented");
        let none = ViewRequest {
            consent: None,
            ..base
        };
        assert_eq!(decide(&none).unwrap_err().code(), "not_consented");
    }

    #[test]
    fn a_disaster_window_replaces_consent_only_inside_its_area_and_time() {
        let window = DisasterWindow {
            id: "2026-noto-1".into(),
            prefectures: vec![tokyo()],
            starts_at: NOW - Duration::days(2),
            ends_at: NOW + Duration::days(5),
        };
        let windows = [window.clone()];
        let inside = request(
            PolicyVersion::CURRENT,
            SiteKind::Clinic,
            Role::Doctor,
            InfoCategory::Drug,
            None,
            &windows,
        );
        assert_eq!(
            decide(&inside),
            Ok(Basis::DisasterWindow {
                id: "2026-noto-1".into()
            })
        );
        let after = ViewRequest {
            now: NOW + Duration::days(6),
            ..inside.clone()
        };
        assert_eq!(decide(&after).unwrap_err().code(), "not_consented");
        let elsewhere = ViewRequest {
            site_prefecture: Prefecture::parse("27").unwrap(),
            ..inside.clone()
        };
        assert_eq!(decide(&elsewhere).unwrap_err().code(), "not_consented");
        // The role rule still applies inside a window.
        let clerk = ViewRequest {
            role: Role::Clerk,
            ..inside
        };
        assert_eq!(decide(&clerk).unwrap_err().code(), "role_not_permitted");
    }

    #[test]
    fn policy_versions_round_trip_by_name() {
        for v in [PolicyVersion::Jp2020Sep, PolicyVersion::Jp2020Nov] {
            assert_eq!(PolicyVersion::parse(v.as_str()), Some(v));
        }
        assert_eq!(PolicyVersion::CURRENT, PolicyVersion::Jp2020Nov);
    }

    mod recheck {
        use super::super::*;
        use crate::events::{Consent, ConsentChoice, InfoView};
        use crate::patient::PatientRef;
        use crate::site::SiteCode;
        use time::macros::datetime;

        const AT: OffsetDateTime = datetime!(2026-11-21 10:00 +09:00);

        fn patient() -> PatientRef {
            PatientRef::parse(&"ab".repeat(32)).unwrap()
        }

        fn view(role: &str, category: InfoCategory, window: Option<&str>) -> InfoView {
            InfoView {
                patient_ref: patient(),
                category,
                allowed: true,
                refusal_reason: None,
                staff_id: Some("S1".into()),
                staff_role: Some(role.into()),
                policy_version: Some("jp-2020-11".into()),
                disaster_window_id: window.map(str::to_string),
                source: None,
            }
        }

        /// The receipt computer's view, relayed or observed: no role or policy to check, the
        /// consent still.
        #[test]
        fn a_receipt_computer_view_is_checked_for_its_consent_only() {
            for source in [
                crate::events::LookupSource::FileExchange,
                crate::events::LookupSource::TerminalTap,
            ] {
                let v = InfoView {
                    staff_id: None,
                    staff_role: None,
                    policy_version: None,
                    source: Some(source),
                    ..view("clerk", InfoCategory::Drug, None)
                };
                let given = [consent(AT - Duration::hours(3), ConsentChoice::Given)];
                assert_eq!(recheck(&clinic(), &v, AT, &given), Ok(()));
                assert_eq!(
                    recheck(&clinic(), &v, AT, &[]).unwrap_err().code(),
                    "no_consent_at_central"
                );
            }
            // The agent's own view without a policy is still a violation.
            let mut own = view("doctor", InfoCategory::Drug, None);
            own.policy_version = None;
            let given = [consent(AT - Duration::hours(3), ConsentChoice::Given)];
            assert_eq!(
                recheck(&clinic(), &own, AT, &given).unwrap_err().code(),
                "unknown_policy"
            );
        }

        fn consent(at: OffsetDateTime, drug: ConsentChoice) -> Consent {
            Consent {
                patient_ref: patient(),
                consented_at: at,
                available_until: at + CONSENT_LIFETIME,
                limit_info: ConsentChoice::None,
                drug,
                checkup: ConsentChoice::None,
                diagnosis: ConsentChoice::None,
                surgery: ConsentChoice::None,
            }
        }

        // 13 Tokyo, fee table 1 (medical) / 4 (pharmacy): codes from the domain doc's rules.
        fn site(body: &str) -> SiteCode {
            let code = crate::ids::MedicalInstitutionCode::with_check_digit(body).unwrap();
            SiteCode::parse(code.as_str()).unwrap()
        }
        fn clinic() -> SiteCode {
            site("131000001")
        }
        fn pharmacy() -> SiteCode {
            site("134000001")
        }

        #[test]
        fn a_consented_view_by_a_doctor_passes_and_expires_after_24_hours() {
            let v = view("doctor", InfoCategory::Drug, None);
            let given = [consent(AT - Duration::hours(3), ConsentChoice::Given)];
            assert_eq!(recheck(&clinic(), &v, AT, &given), Ok(()));
            let old = [consent(AT - Duration::hours(25), ConsentChoice::Given)];
            assert_eq!(
                recheck(&clinic(), &v, AT, &old).unwrap_err().code(),
                "no_consent_at_central"
            );
            let refused = [consent(AT - Duration::hours(1), ConsentChoice::None)];
            assert!(recheck(&clinic(), &v, AT, &refused).is_err());
        }

        #[test]
        fn a_clerk_or_a_pharmacist_at_a_clinic_fails_whatever_the_consent() {
            let given = [consent(AT - Duration::hours(1), ConsentChoice::Given)];
            let err = recheck(
                &clinic(),
                &view("clerk", InfoCategory::Drug, None),
                AT,
                &given,
            );
            assert_eq!(err.unwrap_err().code(), "role_not_permitted");
            let err = recheck(
                &pharmacy(),
                &view("doctor", InfoCategory::Drug, Some("w")),
                AT,
                &[],
            );
            assert_eq!(
                err.unwrap_err().code(),
                "role_not_permitted",
                "a doctor at a pharmacy"
            );
        }

        #[test]
        fn a_disaster_window_stands_in_for_consent_and_the_2020_rule_is_applied() {
            let v = view("pharmacist", InfoCategory::Checkup, Some("w-tokyo"));
            assert_eq!(recheck(&pharmacy(), &v, AT, &[]), Ok(()));
            let mut strict = v.clone();
            strict.policy_version = Some("jp-2020-09".into());
            assert_eq!(
                recheck(&pharmacy(), &strict, AT, &[]).unwrap_err().code(),
                "role_not_permitted"
            );
            let mut unknown = v;
            unknown.policy_version = Some("jp-2099-01".into());
            assert_eq!(
                recheck(&pharmacy(), &unknown, AT, &[]).unwrap_err().code(),
                "unknown_policy"
            );
        }
    }
}

/// A site's access rules as chain IT sets them centrally: its staff roster and the disaster
/// windows covering its prefecture. `version` names the content (central computes it), so an
/// agent that already holds a version changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRules {
    pub version: String,
    pub staff: Vec<Staff>,
    pub disaster_windows: Vec<DisasterWindow>,
}

/// One member of a site's roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Staff {
    /// The site's own staff id (never a national identifier).
    pub id: String,
    pub role: Role,
}
