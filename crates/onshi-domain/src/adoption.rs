//! The adoption checklist of a site (導入準備) and the subsidy table, from the ministry's
//! preparation guides (domain doc sections 9 and 10).
//!
//! Deadlines are computed back from the site's planned start date in Japanese business days
//! ([`crate::calendar`]). Where the guides give a lead time ("about 4 months before", "at least
//! 5 business days before setup") it is used as written; where they leave a gap, the assumption
//! is written next to the rule (ASSUMED) so chain IT can see and override it.

use serde::{Deserialize, Serialize};
use time::{Date, Duration, Month};

use crate::calendar::{self, OutOfRange};

/// Who moves a step forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    Site,
    ChainIt,
    NetworkVendor,
    SystemVendor,
}

/// What the agent can observe to advance a step by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentEvidence {
    ReadersPresent,
    NationalLinkUp,
    TerminalCertificateValid,
    FirstProductionLookup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    PortalAccount,
    ReceptionNumber,
    CardReaderProcurement,
    NetworkLine,
    VendorOrder,
    UsageApplication,
    CertificateApplication,
    EquipmentSetup,
    OperationTest,
    StaffBriefing,
    StartDateEntry,
    SubsidyApplication,
}

/// One step of the checklist as the guides describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub kind: StepKind,
    pub label_ja: &'static str,
    pub label_en: &'static str,
    pub owner: Owner,
    /// Only sites that are not yet designated (new sites) go through it.
    pub new_sites_only: bool,
    pub evidence: Option<AgentEvidence>,
}

/// The steps in the order the guides give them.
pub const STEPS: &[Step] = &[
    Step {
        kind: StepKind::PortalAccount,
        label_ja: "ポータルサイトのアカウント登録",
        label_en: "Portal account registration",
        owner: Owner::ChainIt,
        new_sites_only: false,
        evidence: None,
    },
    Step {
        kind: StepKind::ReceptionNumber,
        label_ja: "受付番号の取得（新規開設）",
        label_en: "Reception number from the regional bureau (new sites)",
        owner: Owner::ChainIt,
        new_sites_only: true,
        evidence: None,
    },
    Step {
        kind: StepKind::CardReaderProcurement,
        label_ja: "顔認証付きカードリーダーの申込・調達",
        label_en: "Face-recognition card reader procurement",
        owner: Owner::ChainIt,
        new_sites_only: false,
        evidence: Some(AgentEvidence::ReadersPresent),
    },
    Step {
        kind: StepKind::NetworkLine,
        label_ja: "ネットワーク回線の準備",
        label_en: "Network line (IP-VPN or IPsec+IKE)",
        owner: Owner::NetworkVendor,
        new_sites_only: false,
        evidence: Some(AgentEvidence::NationalLinkUp),
    },
    Step {
        kind: StepKind::VendorOrder,
        label_ja: "システム事業者への見積依頼・発注",
        label_en: "Quote from and order to the system vendor",
        owner: Owner::ChainIt,
        new_sites_only: false,
        evidence: None,
    },
    Step {
        kind: StepKind::UsageApplication,
        label_ja: "利用申請",
        label_en: "Usage application on the portal",
        owner: Owner::ChainIt,
        new_sites_only: false,
        evidence: None,
    },
    Step {
        kind: StepKind::CertificateApplication,
        label_ja: "電子証明書の発行申請",
        label_en: "Electronic certificate application (per terminal)",
        owner: Owner::ChainIt,
        new_sites_only: false,
        evidence: Some(AgentEvidence::TerminalCertificateValid),
    },
    Step {
        kind: StepKind::EquipmentSetup,
        label_ja: "機器の設置・ネットワーク接続確認",
        label_en: "Equipment setup and connectivity test",
        owner: Owner::SystemVendor,
        new_sites_only: false,
        evidence: None,
    },
    Step {
        kind: StepKind::OperationTest,
        label_ja: "運用テスト",
        label_en: "Operation test",
        owner: Owner::SystemVendor,
        new_sites_only: false,
        evidence: None,
    },
    Step {
        kind: StepKind::StaffBriefing,
        label_ja: "受付業務の見直し・職員への周知・患者への掲示",
        label_en: "Reception workflow, staff briefing, patient notices",
        owner: Owner::Site,
        new_sites_only: false,
        evidence: None,
    },
    Step {
        kind: StepKind::StartDateEntry,
        label_ja: "運用開始日の登録",
        label_en: "Operation start date entered on the portal",
        owner: Owner::ChainIt,
        new_sites_only: false,
        evidence: Some(AgentEvidence::FirstProductionLookup),
    },
    Step {
        kind: StepKind::SubsidyApplication,
        label_ja: "補助金の交付申請",
        label_en: "Subsidy application",
        owner: Owner::ChainIt,
        new_sites_only: false,
        evidence: None,
    },
];

/// Business days between the vendor's setup and the start: operation test and staff briefing
/// (ASSUMED; the guides only order the steps).
pub const SETUP_BEFORE_START_BUSINESS_DAYS: u32 = 10;

fn months_before(day: Date, months: u8) -> Date {
    let mut year = day.year();
    let mut month = day.month();
    for _ in 0..months {
        month = month.previous();
        if month == Month::December {
            year -= 1;
        }
    }
    let last = time::util::days_in_month(month, year);
    Date::from_calendar_date(year, month, day.day().min(last)).expect("a valid date")
}

/// The latest date each step must be done by for a site starting on `start`.
pub fn deadlines(start: Date, new_site: bool) -> Result<Vec<(StepKind, Date)>, OutOfRange> {
    use StepKind::*;
    let bd_before = calendar::business_days_before;
    let setup = bd_before(start, SETUP_BEFORE_START_BUSINESS_DAYS)?;
    // The certificate notice comes by registered mail about 5 business days after the
    // application and must arrive before setup, with the guides' 5 business days to spare.
    let certificate = bd_before(setup, 10)?;
    // "at least 5 business days before equipment setup", and the certificate application comes
    // right after it: one business day earlier.
    let usage = bd_before(certificate, 1)?;
    let mut out = vec![
        // ASSUMED: the account is needed before the usage application; a week of slack.
        (PortalAccount, bd_before(usage, 5)?),
        // About 4 months before start (made to order), the line at the same time.
        (
            CardReaderProcurement,
            bd_before(months_before(start, 4), 0)?,
        ),
        (NetworkLine, bd_before(months_before(start, 4), 0)?),
        // At least about 1 month before start.
        (VendorOrder, bd_before(months_before(start, 1), 0)?),
        (UsageApplication, usage),
        (CertificateApplication, certificate),
        (EquipmentSetup, setup),
        // ASSUMED: the test within the week after setup.
        (OperationTest, calendar::business_days_after(setup, 5)?),
        (StaffBriefing, bd_before(start, 1)?),
        // ASSUMED: entered within a week of starting (it gates the fee add-on).
        (StartDateEntry, calendar::business_days_after(start, 5)?),
        // ASSUMED (UNCONFIRMED): within two months of completion.
        (
            SubsidyApplication,
            bd_before(start + Duration::days(61), 0)?,
        ),
    ];
    if new_site {
        // Submitted to the operating body by the 15th two months before designation (taken as
        // the start month).
        let two_months = months_before(start, 2);
        let fifteenth = Date::from_calendar_date(two_months.year(), two_months.month(), 15)
            .expect("the 15th exists");
        out.push((ReceptionNumber, bd_before(fifteenth, 0)?));
    }
    out.sort_by_key(|(kind, _)| *kind);
    Ok(out)
}

/// Where a site stands on its way to the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteAdoption {
    OnTrack,
    /// A step not done is due within [`AT_RISK_BUSINESS_DAYS`].
    AtRisk,
    /// A step not done is past its deadline.
    Overdue,
    /// Started: the first production lookup was made.
    Live,
}

/// How close an open step's deadline may come before the site is at risk.
pub const AT_RISK_BUSINESS_DAYS: u32 = 10;

/// One step of a site's checklist: its deadline and whether (and when) it was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepState {
    pub kind: StepKind,
    pub deadline: Date,
    pub done: Option<Date>,
}

/// The site's status on `today`, with the step that decides it (for the reason shown).
pub fn site_status(
    steps: &[StepState],
    today: Date,
) -> Result<(SiteAdoption, Option<StepKind>), OutOfRange> {
    // Live from the first production lookup on (the step it advances by itself).
    if steps.iter().any(|s| {
        s.done.is_some()
            && step(s.kind).and_then(|d| d.evidence) == Some(AgentEvidence::FirstProductionLookup)
    }) {
        return Ok((SiteAdoption::Live, None));
    }
    let mut open: Vec<&StepState> = steps.iter().filter(|s| s.done.is_none()).collect();
    open.sort_by_key(|s| s.deadline);
    let Some(first) = open.first() else {
        return Ok((SiteAdoption::OnTrack, None));
    };
    if first.deadline < today {
        return Ok((SiteAdoption::Overdue, Some(first.kind)));
    }
    if first.deadline <= calendar::business_days_after(today, AT_RISK_BUSINESS_DAYS)? {
        return Ok((SiteAdoption::AtRisk, Some(first.kind)));
    }
    Ok((SiteAdoption::OnTrack, None))
}

/// The guide's description of `kind`.
pub fn step(kind: StepKind) -> Option<&'static Step> {
    STEPS.iter().find(|s| s.kind == kind)
}

/// What the per-prefecture table counts of one site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteProgress {
    pub prefecture: crate::ids::Prefecture,
    pub reader_applied: bool,
    pub connected: bool,
    pub operating: bool,
}

/// One row of the adoption table as the association publishes it per prefecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrefectureRow {
    pub prefecture: crate::ids::Prefecture,
    pub institutions: u64,
    pub card_reader_applied: u64,
    pub production_connected: u64,
    pub operating: u64,
    /// Percent of `institutions`, rounded half up as the published table shows them.
    pub card_reader_rate: u64,
    pub connected_rate: u64,
    pub operating_rate: u64,
}

fn percent(part: u64, whole: u64) -> u64 {
    (part * 100 + whole / 2).checked_div(whole).unwrap_or(0)
}

/// The table for `sites`, a row per prefecture in code order.
pub fn prefecture_table(sites: &[SiteProgress]) -> Vec<PrefectureRow> {
    let mut rows: std::collections::BTreeMap<crate::ids::Prefecture, [u64; 4]> =
        std::collections::BTreeMap::new();
    for site in sites {
        let counts = rows.entry(site.prefecture).or_default();
        counts[0] += 1;
        counts[1] += u64::from(site.reader_applied);
        counts[2] += u64::from(site.connected);
        counts[3] += u64::from(site.operating);
    }
    rows.into_iter()
        .map(
            |(prefecture, [all, readers, connected, operating])| PrefectureRow {
                prefecture,
                institutions: all,
                card_reader_applied: readers,
                production_connected: connected,
                operating,
                card_reader_rate: percent(readers, all),
                connected_rate: percent(connected, all),
                operating_rate: percent(operating, all),
            },
        )
        .collect()
}

/// The kind of facility as the subsidy table distinguishes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubsidyClass {
    /// Hospitals, by number of readers (1–3).
    Hospital { readers: u8 },
    /// Pharmacies of a group receiving over 40,000 prescriptions a month.
    LargeChainPharmacy,
    /// Clinics and other pharmacies.
    ClinicOrPharmacy,
}

/// What the subsidy table gives (tax included, yen), from the domain doc's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Subsidy {
    /// Card readers provided free.
    pub free_readers: u8,
    /// The cap of the eligible project cost.
    pub cost_cap: u64,
    /// The subsidy for `actual_cost`.
    pub amount: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the subsidy table covers hospitals with 1 to 3 readers, not {0}")]
pub struct UnknownReaderCount(pub u8);

/// The subsidy for a facility: the fraction of the actual cost up to the cap, or the actual cost
/// up to the cap under the accelerated plan (reader applied for by end of March 2021).
pub fn subsidy(
    class: SubsidyClass,
    actual_cost: u64,
    accelerated: bool,
) -> Result<Subsidy, UnknownReaderCount> {
    let (free_readers, cost_cap, numerator, denominator) = match class {
        SubsidyClass::Hospital { readers } => {
            let cap = match readers {
                1 => 2_101_000,
                2 => 2_002_000,
                3 => 1_903_000,
                other => return Err(UnknownReaderCount(other)),
            };
            (3, cap, 1, 2)
        }
        SubsidyClass::LargeChainPharmacy => (1, 429_000, 1, 2),
        SubsidyClass::ClinicOrPharmacy => (1, 429_000, 3, 4),
    };
    let eligible = actual_cost.min(cost_cap);
    let amount = if accelerated {
        eligible
    } else {
        // The guides' maxima (¥1,050,000 for 1/2 of ¥2,101,000, ¥321,000 for 3/4 of ¥429,000)
        // show amounts cut to whole thousands of yen (千円未満切り捨て).
        eligible * numerator / denominator / 1_000 * 1_000
    };
    Ok(Subsidy {
        free_readers,
        cost_cap,
        amount,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn every_step_has_a_deadline_in_the_guides_order() {
        let start = date!(2026 - 07 - 01);
        let existing = deadlines(start, false).unwrap();
        assert_eq!(
            existing.len(),
            STEPS.len() - 1,
            "no reception number for designated sites"
        );
        let new = deadlines(start, true).unwrap();
        assert_eq!(new.len(), STEPS.len());
        let due = |kind| new.iter().find(|(k, _)| *k == kind).unwrap().1;
        use StepKind::*;
        // 1 March 2026 is a Sunday: the deadline is the Friday before.
        assert_eq!(due(CardReaderProcurement), date!(2026 - 02 - 27));
        assert_eq!(due(VendorOrder), date!(2026 - 06 - 01));
        assert_eq!(due(ReceptionNumber), date!(2026 - 05 - 15));
        assert!(due(UsageApplication) < due(CertificateApplication));
        assert!(due(CertificateApplication) < due(EquipmentSetup));
        assert!(due(EquipmentSetup) < start);
        for (_, day) in &new {
            assert!(
                calendar::is_business_day(*day).unwrap(),
                "{day} is a business day"
            );
        }
    }

    #[test]
    fn setup_deadlines_count_business_days_across_golden_week() {
        // Start on Monday 18 May 2026: ten business days back skips 3–6 May.
        let setup = deadlines(date!(2026 - 05 - 18), false)
            .unwrap()
            .into_iter()
            .find(|(k, _)| *k == StepKind::EquipmentSetup)
            .unwrap()
            .1;
        assert_eq!(setup, date!(2026 - 04 - 28)); // 29 April (昭和の日) skipped too
    }

    #[test]
    fn the_subsidy_table_matches_the_guides() {
        let hospital = |readers| subsidy(SubsidyClass::Hospital { readers }, 10_000_000, false);
        assert_eq!(hospital(1).unwrap().amount, 1_050_000);
        assert_eq!(hospital(2).unwrap().amount, 1_001_000);
        assert_eq!(hospital(3).unwrap().amount, 951_000);
        assert_eq!(hospital(1).unwrap().free_readers, 3);
        assert!(hospital(4).is_err());
        let chain = subsidy(SubsidyClass::LargeChainPharmacy, 1_000_000, false).unwrap();
        assert_eq!(
            (chain.cost_cap, chain.amount, chain.free_readers),
            (429_000, 214_000, 1)
        );
        let clinic = subsidy(SubsidyClass::ClinicOrPharmacy, 1_000_000, false).unwrap();
        assert_eq!(clinic.amount, 321_000);
        // Below the cap, the fraction of what was spent; accelerated: all of it.
        assert_eq!(
            subsidy(SubsidyClass::ClinicOrPharmacy, 400_000, false)
                .unwrap()
                .amount,
            300_000
        );
        assert_eq!(
            subsidy(SubsidyClass::ClinicOrPharmacy, 400_000, true)
                .unwrap()
                .amount,
            400_000
        );
    }

    mod status {
        use super::super::*;
        use time::macros::date;

        fn states(start: Date, done: &[StepKind]) -> Vec<StepState> {
            deadlines(start, false)
                .unwrap()
                .into_iter()
                .map(|(kind, deadline)| StepState {
                    kind,
                    deadline,
                    done: done.contains(&kind).then_some(deadline),
                })
                .collect()
        }

        #[test]
        fn a_site_months_ahead_is_on_track_and_one_past_a_deadline_is_overdue() {
            let start = date!(2027 - 06 - 01);
            let steps = states(start, &[]);
            assert_eq!(
                site_status(&steps, date!(2026 - 12 - 01)).unwrap(),
                (SiteAdoption::OnTrack, None)
            );
            // Card readers and the line are due about four months before the start.
            let (status, step) = site_status(&steps, date!(2027 - 03 - 01)).unwrap();
            assert_eq!(status, SiteAdoption::Overdue);
            assert_eq!(step, Some(StepKind::CardReaderProcurement));
        }

        #[test]
        fn a_deadline_within_ten_business_days_is_at_risk_and_the_first_lookup_is_live() {
            let start = date!(2027 - 06 - 01);
            let steps = states(start, &[]);
            let due = steps.iter().map(|s| s.deadline).min().unwrap();
            let before = calendar::business_days_before(due, 3).unwrap();
            assert_eq!(site_status(&steps, before).unwrap().0, SiteAdoption::AtRisk);
            let live = states(start, &[StepKind::StartDateEntry]);
            assert_eq!(
                site_status(&live, date!(2027 - 06 - 02)).unwrap(),
                (SiteAdoption::Live, None)
            );
        }
    }

    mod table {
        use super::super::*;
        use crate::ids::Prefecture;

        /// `all` sites of one prefecture of which the first `readers`, `connected`, `operating`
        /// have got so far.
        fn sites(
            all: usize,
            readers: usize,
            connected: usize,
            operating: usize,
        ) -> Vec<SiteProgress> {
            (0..all)
                .map(|i| SiteProgress {
                    prefecture: Prefecture::parse("13").unwrap(),
                    reader_applied: i < readers,
                    connected: i < connected,
                    operating: i < operating,
                })
                .collect()
        }

        #[test]
        fn the_rates_match_the_published_national_figures() {
            // Hospitals nationally on 2023-02-19: 8,192 / 8,083 (99 %) / 5,881 (72 %) / 4,924 (60 %).
            let row = &prefecture_table(&sites(8_192, 8_083, 5_881, 4_924))[0];
            assert_eq!(
                (row.card_reader_rate, row.connected_rate, row.operating_rate),
                (99, 72, 60)
            );
            // All facilities: 229,717 / 210,947 (92 %) / 136,113 (59 %) / 113,835 (50 %).
            let row = &prefecture_table(&sites(229_717, 210_947, 136_113, 113_835))[0];
            assert_eq!(
                (
                    row.institutions,
                    row.card_reader_rate,
                    row.connected_rate,
                    row.operating_rate
                ),
                (229_717, 92, 59, 50)
            );
        }
    }
}
