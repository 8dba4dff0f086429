//! Conversions between the uplink's protobuf types and `onshi_domain::events`.
//!
//! Decoding is where untrusted bytes become domain values: every identifier is parsed, every
//! enum must be known, and a failure names the field so central's refusal says what was wrong.

use onshi_domain::access::{AccessRules, DisasterWindow, Role, Staff};
use onshi_domain::chain::ChainHash;
use onshi_domain::events::{
    CardCheck, CardCheckResult, CertificateInfo, CertificateInventory, Consent, ConsentChoice,
    EventBody, EventId, FleetEvent, IdentityVerification, InfoCategory, InfoView, Inventory,
    LineType, LinkChange, LinkState, LinkTarget, Lookup, LookupOutcome, LookupRoute, LookupSource,
    Loss, OutboxPressure, PressureLevel, ReaderChange, ReaderState,
};
use onshi_domain::ids::Prefecture;
use onshi_domain::patient::PatientRef;
use onshi_domain::site::{SiteCode, TerminalId};
use time::OffsetDateTime;

use crate::fleet::v1 as pb;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event field `{field}`: {problem}")]
pub struct ConvertError {
    pub field: &'static str,
    pub problem: String,
}

fn bad(field: &'static str, problem: impl ToString) -> ConvertError {
    ConvertError {
        field,
        problem: problem.to_string(),
    }
}

pub fn timestamp(t: OffsetDateTime) -> prost_types::Timestamp {
    let nanos = t.unix_timestamp_nanos();
    prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000) as i64,
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

pub fn from_timestamp(
    field: &'static str,
    t: Option<prost_types::Timestamp>,
) -> Result<OffsetDateTime, ConvertError> {
    let t = t.ok_or_else(|| bad(field, "missing"))?;
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(bad(field, "nanoseconds out of range"));
    }
    OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos),
    )
    .map_err(|e| bad(field, e))
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn patient(field: &'static str, s: &str) -> Result<PatientRef, ConvertError> {
    PatientRef::parse(s).map_err(|e| bad(field, e))
}

fn opt_patient(field: &'static str, s: &str) -> Result<Option<PatientRef>, ConvertError> {
    if s.is_empty() {
        Ok(None)
    } else {
        patient(field, s).map(Some)
    }
}

impl TryFrom<pb::Event> for FleetEvent {
    type Error = ConvertError;

    fn try_from(e: pb::Event) -> Result<Self, ConvertError> {
        let body = match e.body {
            Some(body) => body_from_pb(body)?,
            None => return Err(bad("body", "missing")),
        };
        if e.sequence == 0 {
            return Err(bad("sequence", "sequences start at 1"));
        }
        Ok(FleetEvent {
            id: EventId::from_slice(&e.event_id).map_err(|err| bad("event_id", err))?,
            site: SiteCode::parse(&e.site_code).map_err(|err| bad("site_code", err))?,
            terminal: TerminalId::parse(&e.terminal_id).map_err(|err| bad("terminal_id", err))?,
            occurred_at: from_timestamp("occurred_at", e.occurred_at)?,
            sequence: e.sequence,
            chain_hash: if e.chain_hash.is_empty() {
                None
            } else {
                Some(ChainHash::from_slice(&e.chain_hash).map_err(|err| bad("chain_hash", err))?)
            },
            body,
        })
    }
}

impl From<&FleetEvent> for pb::Event {
    fn from(e: &FleetEvent) -> Self {
        pb::Event {
            event_id: e.id.as_uuid().as_bytes().to_vec(),
            site_code: e.site.as_str().to_string(),
            terminal_id: e.terminal.as_str().to_string(),
            occurred_at: Some(timestamp(e.occurred_at)),
            sequence: e.sequence,
            body: Some(body_to_pb(&e.body)),
            // Not part of the domain event: the agent's outbox sets it beside the event.
            traceparent: None,
            chain_hash: e
                .chain_hash
                .map(|h| h.as_bytes().to_vec())
                .unwrap_or_default(),
        }
    }
}

fn body_from_pb(body: pb::event::Body) -> Result<EventBody, ConvertError> {
    use pb::event::Body;
    Ok(match body {
        Body::Lookup(l) => EventBody::Lookup(Lookup {
            route: match pb::LookupRoute::try_from(l.route) {
                Ok(pb::LookupRoute::MyNumberCard) => LookupRoute::MyNumberCard,
                Ok(pb::LookupRoute::InsuranceCard) => LookupRoute::InsuranceCard,
                _ => return Err(bad("lookup.route", "unknown or unspecified")),
            },
            outcome: match pb::LookupOutcome::try_from(l.outcome) {
                Ok(pb::LookupOutcome::Valid) => LookupOutcome::Valid,
                Ok(pb::LookupOutcome::Invalid) => LookupOutcome::Invalid,
                Ok(pb::LookupOutcome::NotFound) => LookupOutcome::NotFound,
                Ok(pb::LookupOutcome::Error) => LookupOutcome::Error,
                Ok(pb::LookupOutcome::Unreachable) => LookupOutcome::Unreachable,
                _ => return Err(bad("lookup.outcome", "unknown or unspecified")),
            },
            patient_ref: opt_patient("lookup.patient_ref", &l.patient_ref)?,
            insurer_number: opt(l.insurer_number),
            qualification_validity: (l.qualification_validity != 0)
                .then(|| l.qualification_validity.to_string()),
            processing_result_code: opt(l.processing_result_code),
            error_code: opt(l.error_code),
            latency_ms: l.latency_ms,
            staff_id: opt(l.staff_id),
            source: lookup_source(l.source)
                .ok_or_else(|| bad("lookup.source", "unknown or unspecified"))?,
            batch_id: opt(l.batch_id),
            identity_verification: match pb::IdentityVerification::try_from(l.identity_verification)
            {
                Ok(pb::IdentityVerification::None) => IdentityVerification::None,
                Ok(pb::IdentityVerification::Pin) => IdentityVerification::Pin,
                Ok(pb::IdentityVerification::Face) => IdentityVerification::Face,
                _ => {
                    return Err(bad(
                        "lookup.identity_verification",
                        "unknown or unspecified",
                    ));
                }
            },
        }),
        Body::Consent(c) => EventBody::Consent(Consent {
            patient_ref: patient("consent.patient_ref", &c.patient_ref)?,
            consented_at: from_timestamp("consent.consented_at", c.consented_at)?,
            available_until: from_timestamp("consent.available_until", c.available_until)?,
            limit_info: consent_choice("consent.limit_info", c.limit_info)?,
            drug: consent_choice("consent.drug", c.drug)?,
            checkup: consent_choice("consent.checkup", c.checkup)?,
            diagnosis: consent_choice("consent.diagnosis", c.diagnosis)?,
            surgery: consent_choice("consent.surgery", c.surgery)?,
        }),
        Body::InfoView(v) => EventBody::InfoView(InfoView {
            patient_ref: patient("info_view.patient_ref", &v.patient_ref)?,
            category: match pb::InfoCategory::try_from(v.category) {
                Ok(pb::InfoCategory::Drug) => InfoCategory::Drug,
                Ok(pb::InfoCategory::Checkup) => InfoCategory::Checkup,
                Ok(pb::InfoCategory::Diagnosis) => InfoCategory::Diagnosis,
                Ok(pb::InfoCategory::Surgery) => InfoCategory::Surgery,
                _ => return Err(bad("info_view.category", "unknown or unspecified")),
            },
            allowed: v.allowed,
            refusal_reason: opt(v.refusal_reason),
            staff_id: opt(v.staff_id),
            staff_role: opt(v.staff_role),
            policy_version: opt(v.policy_version),
            disaster_window_id: opt(v.disaster_window_id),
            source: match v.source {
                0 => None,
                other => {
                    Some(lookup_source(other).ok_or_else(|| bad("info_view.source", "unknown"))?)
                }
            },
        }),
        Body::ReaderChange(r) => EventBody::ReaderChange(reader_from_pb(r)?),
        Body::LinkChange(l) => EventBody::LinkChange(LinkChange {
            target: match pb::LinkTarget::try_from(l.target) {
                Ok(pb::LinkTarget::Onshi) => LinkTarget::Onshi,
                Ok(pb::LinkTarget::Central) => LinkTarget::Central,
                Ok(pb::LinkTarget::Terminal) => LinkTarget::Terminal,
                _ => return Err(bad("link_change.target", "unknown or unspecified")),
            },
            state: match pb::LinkState::try_from(l.state) {
                Ok(pb::LinkState::Up) => LinkState::Up,
                Ok(pb::LinkState::Degraded) => LinkState::Degraded,
                Ok(pb::LinkState::Down) => LinkState::Down,
                _ => return Err(bad("link_change.state", "unknown or unspecified")),
            },
            detail: opt(l.detail),
            rtt_ms: (l.rtt_ms != 0).then_some(l.rtt_ms),
            line_type: match pb::LineType::try_from(l.line_type) {
                Ok(pb::LineType::IpVpn) => Some(LineType::IpVpn),
                Ok(pb::LineType::IpsecIke) => Some(LineType::IpsecIke),
                Ok(pb::LineType::Unspecified) => None,
                Err(_) => return Err(bad("link_change.line_type", "unknown")),
            },
        }),
        Body::CertificateInventory(inv) => EventBody::CertificateInventory(CertificateInventory {
            certificates: inv
                .certificates
                .into_iter()
                .map(certificate_from_pb)
                .collect::<Result<_, _>>()?,
            full_snapshot: inv.full_snapshot,
        }),
        Body::CardCheck(c) => EventBody::CardCheck(CardCheck {
            reader_name: c.reader_name,
            result: match pb::CardCheckResult::try_from(c.result) {
                Ok(pb::CardCheckResult::Ok) => CardCheckResult::Ok,
                Ok(pb::CardCheckResult::WrongPin) => CardCheckResult::WrongPin,
                Ok(pb::CardCheckResult::PinLocked) => CardCheckResult::PinLocked,
                Ok(pb::CardCheckResult::CardRemoved) => CardCheckResult::CardRemoved,
                Ok(pb::CardCheckResult::UnsupportedCard) => CardCheckResult::UnsupportedCard,
                Ok(pb::CardCheckResult::CertificateExpired) => CardCheckResult::CertificateExpired,
                Ok(pb::CardCheckResult::ReaderError) => CardCheckResult::ReaderError,
                _ => return Err(bad("card_check.result", "unknown or unspecified")),
            },
            pin_tries_left: c.pin_tries_left,
            detail: opt(c.detail),
        }),
        Body::Loss(l) => {
            if l.first_sequence == 0 || l.last_sequence < l.first_sequence {
                return Err(bad("loss", "the lost sequence range is empty or reversed"));
            }
            EventBody::Loss(Loss {
                first_sequence: l.first_sequence,
                last_sequence: l.last_sequence,
                reason: l.reason,
            })
        }
        Body::OutboxPressure(p) => EventBody::OutboxPressure(OutboxPressure {
            level: match pb::PressureLevel::try_from(p.level) {
                Ok(pb::PressureLevel::Warning) => PressureLevel::Warning,
                Ok(pb::PressureLevel::Full) => PressureLevel::Full,
                Ok(pb::PressureLevel::Recovered) => PressureLevel::Recovered,
                _ => return Err(bad("outbox_pressure.level", "unknown or unspecified")),
            },
            used_bytes: p.used_bytes,
            budget_bytes: p.budget_bytes,
        }),
    })
}

fn body_to_pb(body: &EventBody) -> pb::event::Body {
    use pb::event::Body;
    match body {
        EventBody::Lookup(l) => Body::Lookup(pb::Lookup {
            route: match l.route {
                LookupRoute::MyNumberCard => pb::LookupRoute::MyNumberCard,
                LookupRoute::InsuranceCard => pb::LookupRoute::InsuranceCard,
            } as i32,
            outcome: match l.outcome {
                LookupOutcome::Valid => pb::LookupOutcome::Valid,
                LookupOutcome::Invalid => pb::LookupOutcome::Invalid,
                LookupOutcome::NotFound => pb::LookupOutcome::NotFound,
                LookupOutcome::Error => pb::LookupOutcome::Error,
                LookupOutcome::Unreachable => pb::LookupOutcome::Unreachable,
            } as i32,
            patient_ref: l
                .patient_ref
                .as_ref()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            insurer_number: l.insurer_number.clone().unwrap_or_default(),
            qualification_validity: l
                .qualification_validity
                .as_deref()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            processing_result_code: l.processing_result_code.clone().unwrap_or_default(),
            error_code: l.error_code.clone().unwrap_or_default(),
            latency_ms: l.latency_ms,
            staff_id: l.staff_id.clone().unwrap_or_default(),
            source: lookup_source_pb(l.source),
            batch_id: l.batch_id.clone().unwrap_or_default(),
            identity_verification: match l.identity_verification {
                IdentityVerification::None => pb::IdentityVerification::None,
                IdentityVerification::Pin => pb::IdentityVerification::Pin,
                IdentityVerification::Face => pb::IdentityVerification::Face,
            } as i32,
        }),
        EventBody::Consent(c) => Body::Consent(pb::Consent {
            patient_ref: c.patient_ref.as_str().to_string(),
            consented_at: Some(timestamp(c.consented_at)),
            available_until: Some(timestamp(c.available_until)),
            limit_info: consent_choice_pb(c.limit_info),
            drug: consent_choice_pb(c.drug),
            checkup: consent_choice_pb(c.checkup),
            diagnosis: consent_choice_pb(c.diagnosis),
            surgery: consent_choice_pb(c.surgery),
        }),
        EventBody::InfoView(v) => Body::InfoView(pb::InfoView {
            patient_ref: v.patient_ref.as_str().to_string(),
            category: match v.category {
                InfoCategory::Drug => pb::InfoCategory::Drug,
                InfoCategory::Checkup => pb::InfoCategory::Checkup,
                InfoCategory::Diagnosis => pb::InfoCategory::Diagnosis,
                InfoCategory::Surgery => pb::InfoCategory::Surgery,
            } as i32,
            allowed: v.allowed,
            refusal_reason: v.refusal_reason.clone().unwrap_or_default(),
            staff_id: v.staff_id.clone().unwrap_or_default(),
            staff_role: v.staff_role.clone().unwrap_or_default(),
            policy_version: v.policy_version.clone().unwrap_or_default(),
            disaster_window_id: v.disaster_window_id.clone().unwrap_or_default(),
            source: v.source.map_or(0, lookup_source_pb),
        }),
        EventBody::ReaderChange(r) => Body::ReaderChange(reader_to_pb(r)),
        EventBody::LinkChange(l) => Body::LinkChange(pb::LinkChange {
            target: match l.target {
                LinkTarget::Onshi => pb::LinkTarget::Onshi,
                LinkTarget::Central => pb::LinkTarget::Central,
                LinkTarget::Terminal => pb::LinkTarget::Terminal,
            } as i32,
            state: match l.state {
                LinkState::Up => pb::LinkState::Up,
                LinkState::Degraded => pb::LinkState::Degraded,
                LinkState::Down => pb::LinkState::Down,
            } as i32,
            detail: l.detail.clone().unwrap_or_default(),
            rtt_ms: l.rtt_ms.unwrap_or(0),
            line_type: match l.line_type {
                Some(LineType::IpVpn) => pb::LineType::IpVpn,
                Some(LineType::IpsecIke) => pb::LineType::IpsecIke,
                None => pb::LineType::Unspecified,
            } as i32,
        }),
        EventBody::CertificateInventory(inv) => {
            Body::CertificateInventory(pb::CertificateInventory {
                certificates: inv.certificates.iter().map(certificate_to_pb).collect(),
                full_snapshot: inv.full_snapshot,
            })
        }
        EventBody::CardCheck(c) => Body::CardCheck(pb::CardCheck {
            reader_name: c.reader_name.clone(),
            result: match c.result {
                CardCheckResult::Ok => pb::CardCheckResult::Ok,
                CardCheckResult::WrongPin => pb::CardCheckResult::WrongPin,
                CardCheckResult::PinLocked => pb::CardCheckResult::PinLocked,
                CardCheckResult::CardRemoved => pb::CardCheckResult::CardRemoved,
                CardCheckResult::UnsupportedCard => pb::CardCheckResult::UnsupportedCard,
                CardCheckResult::CertificateExpired => pb::CardCheckResult::CertificateExpired,
                CardCheckResult::ReaderError => pb::CardCheckResult::ReaderError,
            } as i32,
            pin_tries_left: c.pin_tries_left,
            detail: c.detail.clone().unwrap_or_default(),
        }),
        EventBody::Loss(l) => Body::Loss(pb::Loss {
            first_sequence: l.first_sequence,
            last_sequence: l.last_sequence,
            reason: l.reason.clone(),
        }),
        EventBody::OutboxPressure(p) => Body::OutboxPressure(pb::OutboxPressure {
            level: match p.level {
                PressureLevel::Warning => pb::PressureLevel::Warning,
                PressureLevel::Full => pb::PressureLevel::Full,
                PressureLevel::Recovered => pb::PressureLevel::Recovered,
            } as i32,
            used_bytes: p.used_bytes,
            budget_bytes: p.budget_bytes,
        }),
    }
}

fn consent_choice(field: &'static str, v: i32) -> Result<ConsentChoice, ConvertError> {
    match pb::ConsentChoice::try_from(v) {
        Ok(pb::ConsentChoice::None) => Ok(ConsentChoice::None),
        Ok(pb::ConsentChoice::Given) => Ok(ConsentChoice::Given),
        Ok(pb::ConsentChoice::Expired) => Ok(ConsentChoice::Expired),
        Ok(pb::ConsentChoice::HardToObtain) => Ok(ConsentChoice::HardToObtain),
        _ => Err(bad(field, "unknown or unspecified")),
    }
}

/// `None` for unspecified and values this build does not know.
fn lookup_source(v: i32) -> Option<LookupSource> {
    match pb::LookupSource::try_from(v) {
        Ok(pb::LookupSource::Counter) => Some(LookupSource::Counter),
        Ok(pb::LookupSource::FileExchange) => Some(LookupSource::FileExchange),
        Ok(pb::LookupSource::Batch) => Some(LookupSource::Batch),
        Ok(pb::LookupSource::FaceReader) => Some(LookupSource::FaceReader),
        Ok(pb::LookupSource::TerminalTap) => Some(LookupSource::TerminalTap),
        _ => None,
    }
}

fn lookup_source_pb(s: LookupSource) -> i32 {
    (match s {
        LookupSource::Counter => pb::LookupSource::Counter,
        LookupSource::FileExchange => pb::LookupSource::FileExchange,
        LookupSource::Batch => pb::LookupSource::Batch,
        LookupSource::FaceReader => pb::LookupSource::FaceReader,
        LookupSource::TerminalTap => pb::LookupSource::TerminalTap,
    }) as i32
}

fn consent_choice_pb(c: ConsentChoice) -> i32 {
    (match c {
        ConsentChoice::None => pb::ConsentChoice::None,
        ConsentChoice::Given => pb::ConsentChoice::Given,
        ConsentChoice::Expired => pb::ConsentChoice::Expired,
        ConsentChoice::HardToObtain => pb::ConsentChoice::HardToObtain,
    }) as i32
}

pub fn reader_from_pb(r: pb::ReaderChange) -> Result<ReaderChange, ConvertError> {
    Ok(ReaderChange {
        reader_name: r.reader_name,
        state: match pb::ReaderState::try_from(r.state) {
            Ok(pb::ReaderState::PresentEmpty) => ReaderState::PresentEmpty,
            Ok(pb::ReaderState::CardPresent) => ReaderState::CardPresent,
            Ok(pb::ReaderState::Removed) => ReaderState::Removed,
            Ok(pb::ReaderState::Error) => ReaderState::Error,
            _ => return Err(bad("reader_change.state", "unknown or unspecified")),
        },
        detail: opt(r.detail),
        cards_read: r.cards_read,
        errors: r.errors,
        last_error: opt(r.last_error),
    })
}

pub fn reader_to_pb(r: &ReaderChange) -> pb::ReaderChange {
    pb::ReaderChange {
        reader_name: r.reader_name.clone(),
        state: match r.state {
            ReaderState::PresentEmpty => pb::ReaderState::PresentEmpty,
            ReaderState::CardPresent => pb::ReaderState::CardPresent,
            ReaderState::Removed => pb::ReaderState::Removed,
            ReaderState::Error => pb::ReaderState::Error,
        } as i32,
        detail: r.detail.clone().unwrap_or_default(),
        cards_read: r.cards_read,
        errors: r.errors,
        last_error: r.last_error.clone().unwrap_or_default(),
    }
}

pub fn certificate_from_pb(c: pb::CertificateInfo) -> Result<CertificateInfo, ConvertError> {
    Ok(CertificateInfo {
        role: c.role,
        subject: c.subject,
        issuer: c.issuer,
        serial_hex: c.serial_hex,
        sha256_fingerprint: c.sha256_fingerprint,
        not_before: from_timestamp("certificate.not_before", c.not_before)?,
        not_after: from_timestamp("certificate.not_after", c.not_after)?,
        key_type: c.key_type,
        key_bits: c.key_bits,
        source: c.source,
    })
}

pub fn certificate_to_pb(c: &CertificateInfo) -> pb::CertificateInfo {
    pb::CertificateInfo {
        role: c.role.clone(),
        subject: c.subject.clone(),
        issuer: c.issuer.clone(),
        serial_hex: c.serial_hex.clone(),
        sha256_fingerprint: c.sha256_fingerprint.clone(),
        not_before: Some(timestamp(c.not_before)),
        not_after: Some(timestamp(c.not_after)),
        key_type: c.key_type.clone(),
        key_bits: c.key_bits,
        source: c.source.clone(),
    }
}

impl From<&Inventory> for pb::InventorySnapshot {
    fn from(i: &Inventory) -> Self {
        pb::InventorySnapshot {
            taken_at: Some(timestamp(i.taken_at)),
            readers: i.readers.iter().map(reader_to_pb).collect(),
            certificates: i.certificates.iter().map(certificate_to_pb).collect(),
            terminal_ids: i
                .terminal_ids
                .iter()
                .map(|t| t.as_str().to_string())
                .collect(),
        }
    }
}

impl TryFrom<pb::InventorySnapshot> for Inventory {
    type Error = ConvertError;

    fn try_from(i: pb::InventorySnapshot) -> Result<Self, ConvertError> {
        Ok(Inventory {
            taken_at: from_timestamp("taken_at", i.taken_at)?,
            readers: i
                .readers
                .into_iter()
                .map(reader_from_pb)
                .collect::<Result<_, _>>()?,
            certificates: i
                .certificates
                .into_iter()
                .map(certificate_from_pb)
                .collect::<Result<_, _>>()?,
            terminal_ids: i
                .terminal_ids
                .iter()
                .map(|t| TerminalId::parse(t).map_err(|e| bad("terminal_ids", e)))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl From<&AccessRules> for pb::AccessRules {
    fn from(r: &AccessRules) -> Self {
        pb::AccessRules {
            version: r.version.clone(),
            staff: r
                .staff
                .iter()
                .map(|s| pb::StaffMember {
                    id: s.id.clone(),
                    role: s.role.as_str().to_string(),
                })
                .collect(),
            disaster_windows: r
                .disaster_windows
                .iter()
                .map(|w| pb::DisasterWindow {
                    id: w.id.clone(),
                    prefectures: w
                        .prefectures
                        .iter()
                        .map(|p| p.as_str().to_string())
                        .collect(),
                    starts_at: Some(timestamp(w.starts_at)),
                    ends_at: Some(timestamp(w.ends_at)),
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::AccessRules> for AccessRules {
    type Error = ConvertError;

    fn try_from(r: pb::AccessRules) -> Result<Self, ConvertError> {
        Ok(AccessRules {
            version: r.version,
            staff: r
                .staff
                .into_iter()
                .map(|s| {
                    let role = Role::parse(&s.role)
                        .ok_or_else(|| bad("staff.role", format!("unknown role {:?}", s.role)))?;
                    Ok(Staff { id: s.id, role })
                })
                .collect::<Result<_, ConvertError>>()?,
            disaster_windows: r
                .disaster_windows
                .into_iter()
                .map(|w| {
                    Ok(DisasterWindow {
                        id: w.id,
                        prefectures: w
                            .prefectures
                            .iter()
                            .map(|p| {
                                Prefecture::parse(p)
                                    .map_err(|e| bad("disaster_windows.prefectures", e))
                            })
                            .collect::<Result<_, _>>()?,
                        starts_at: from_timestamp("disaster_windows.starts_at", w.starts_at)?,
                        ends_at: from_timestamp("disaster_windows.ends_at", w.ends_at)?,
                    })
                })
                .collect::<Result<_, ConvertError>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn lookup_event() -> FleetEvent {
        FleetEvent {
            id: EventId::from_uuid(Uuid::now_v7()).unwrap(),
            site: SiteCode::parse("3410712362").unwrap(),
            terminal: TerminalId::parse("T01").unwrap(),
            occurred_at: OffsetDateTime::from_unix_timestamp_nanos(1_763_700_000_123_456_789)
                .unwrap(),
            sequence: 7,
            chain_hash: None,
            body: EventBody::Lookup(Lookup {
                route: LookupRoute::InsuranceCard,
                outcome: LookupOutcome::Valid,
                patient_ref: Some(PatientRef::parse(&"ab".repeat(32)).unwrap()),
                insurer_number: Some("06139156".into()),
                qualification_validity: Some("1".into()),
                processing_result_code: None,
                error_code: None,
                latency_ms: 12,
                staff_id: None,
                source: LookupSource::Counter,
                batch_id: None,
                identity_verification: IdentityVerification::None,
            }),
        }
    }

    #[test]
    fn events_survive_the_wire() {
        let mut event = lookup_event();
        let wire = pb::Event::from(&event);
        assert_eq!(FleetEvent::try_from(wire).unwrap(), event);
        event.chain_hash = Some(crate::chain::link(&ChainHash::GENESIS, &event));
        let wire = pb::Event::from(&event);
        assert_eq!(FleetEvent::try_from(wire).unwrap(), event);
    }

    #[test]
    fn every_lookup_source_and_a_view_s_source_survive_the_wire() {
        for source in [
            LookupSource::Counter,
            LookupSource::FileExchange,
            LookupSource::Batch,
            LookupSource::TerminalTap,
        ] {
            let mut event = lookup_event();
            if let EventBody::Lookup(l) = &mut event.body {
                l.source = source;
            }
            let wire = pb::Event::from(&event);
            assert_eq!(FleetEvent::try_from(wire).unwrap(), event);
        }
        for source in [None, Some(LookupSource::TerminalTap)] {
            let event = FleetEvent {
                body: EventBody::InfoView(InfoView {
                    patient_ref: PatientRef::parse(&"ab".repeat(32)).unwrap(),
                    category: InfoCategory::Drug,
                    allowed: true,
                    refusal_reason: None,
                    staff_id: None,
                    staff_role: None,
                    policy_version: None,
                    disaster_window_id: None,
                    source,
                }),
                ..lookup_event()
            };
            let wire = pb::Event::from(&event);
            assert_eq!(FleetEvent::try_from(wire).unwrap(), event);
        }
    }

    #[test]
    fn every_link_target_survives_the_wire() {
        for target in [LinkTarget::Onshi, LinkTarget::Central, LinkTarget::Terminal] {
            let event = FleetEvent {
                body: EventBody::LinkChange(LinkChange {
                    target,
                    state: LinkState::Down,
                    detail: Some("qualification terminal silent".into()),
                    rtt_ms: None,
                    line_type: None,
                }),
                ..lookup_event()
            };
            let wire = pb::Event::from(&event);
            assert_eq!(FleetEvent::try_from(wire).unwrap(), event);
        }
    }

    #[test]
    fn an_inventory_survives_the_wire() {
        let inventory = Inventory {
            taken_at: OffsetDateTime::from_unix_timestamp(1_763_700_000).unwrap(),
            readers: vec![ReaderChange {
                reader_name: "Reader A".into(),
                state: ReaderState::CardPresent,
                detail: None,
                cards_read: 3,
                errors: 1,
                last_error: Some("mute card".into()),
            }],
            certificates: Vec::new(),
            terminal_ids: vec![TerminalId::parse("T01").unwrap()],
        };
        let wire = pb::InventorySnapshot::from(&inventory);
        assert_eq!(Inventory::try_from(wire).unwrap(), inventory);
    }

    #[test]
    fn a_bad_field_is_named() {
        let mut wire = pb::Event::from(&lookup_event());
        wire.site_code = "3410712363".into();
        assert_eq!(FleetEvent::try_from(wire).unwrap_err().field, "site_code");
        let mut wire = pb::Event::from(&lookup_event());
        wire.event_id = Uuid::new_v4().as_bytes().to_vec();
        assert_eq!(FleetEvent::try_from(wire).unwrap_err().field, "event_id");
        let mut wire = pb::Event::from(&lookup_event());
        wire.sequence = 0;
        assert_eq!(FleetEvent::try_from(wire).unwrap_err().field, "sequence");
        let mut wire = pb::Event::from(&lookup_event());
        wire.chain_hash = vec![1; 31];
        assert_eq!(FleetEvent::try_from(wire).unwrap_err().field, "chain_hash");
    }
}
