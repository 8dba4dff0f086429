//! The My Number card route (マイナ保険証): a challenge, then a confirmation that carries the
//! card's user-authentication certificate and its signature over the challenge.
//!
//! The real transport between a face-recognition reader / qualification terminal and the
//! national system is not public (UNCONFIRMED); this is the **simulator's convention**, over the
//! same HTTPS with terminal client certificates as `OQSsiquc01`:
//!
//! - `POST /oqs/card/challenge` (empty body) → `200 {"challenge":"<64 hex>","expires_in_ms":N}`:
//!   32 random bytes, single use, valid [`CHALLENGE_LIFETIME`], bound to the institution of the
//!   terminal certificate that asked.
//! - `POST /oqs/card/confirm` with a JSON [`ConfirmRequest`] → an `OQSsiquc01res` file (UTF-8)
//!   with `ReferenceClassification` 1 (My Number card). Checks, in order: the challenge (known,
//!   unexpired, same institution: else `SIM-E0106`), the certificate chains to the test J-LIS CA
//!   (`--jlis-ca`, signature checked: else `SIM-E0104`), is within its validity dates (else
//!   `SIM-E0103`), the identity was verified: `pin` needs a PKCS#1 v1.5 SHA-256 signature of the
//!   challenge by the certificate's key (else `SIM-E0105`), `face` needs `face_verified` (the
//!   face-recognition reader matched the card's photo; a card cannot sign without its PIN, so
//!   the face route carries no signature); finally the holder (subject `serialNumber`
//!   `HOLDER-<n>`, the index in the population) must exist (else `SIM-E0107`). Failures are
//!   result files with `SegmentOfResult` 9.
//!
//! Like a real user-authentication certificate, the card's certificate names nobody and the
//! 12-digit My Number plays no part: the simulator maps the certificate to the person.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use fleet_tls::identity::{leaf, terminal_of};
use fleet_tls::listen::PeerCertificates;
use onshi_domain::codes::ReferenceClassification;
use onshi_domain::ids::MedicalInstitutionCode;
use onshi_domain::xml::{
    QualificationConfirmSearchInfo, QualificationConfirmationRequest, RequestHeader, XmlEncoding,
};
use ring::rand::SecureRandom;
use time::PrimitiveDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::errors::SimErrorCode;
use crate::http::now_jst;
use crate::service::{Answer, HeaderEcho, Service, refusal};

pub const CHALLENGE_PATH: &str = "/oqs/card/challenge";
pub const CONFIRM_PATH: &str = "/oqs/card/confirm";
/// How long a challenge may be answered.
pub const CHALLENGE_LIFETIME: Duration = Duration::from_secs(60);
/// Outstanding challenges kept at most (oldest dropped first).
const MAX_CHALLENGES: usize = 10_000;
/// The subject `serialNumber` prefix naming the holder's index in the population.
pub const HOLDER_PREFIX: &str = "HOLDER-";

pub use onshi_domain::direct::{ConfirmRequest, ConsentChoices};

#[derive(Debug)]
struct Outstanding {
    institution: MedicalInstitutionCode,
    expires: Instant,
}

/// The card route's state: the trusted J-LIS CA and the outstanding challenges.
#[derive(Debug)]
pub struct CardRoute {
    service: Arc<Service>,
    jlis_ca_der: Vec<u8>,
    challenges: Mutex<HashMap<[u8; 32], Outstanding>>,
    consents: Arc<crate::consent::Consents>,
}

impl CardRoute {
    /// Trusts the first certificate of the PEM file `jlis_ca`.
    pub fn load(service: Arc<Service>, jlis_ca: &Path) -> anyhow::Result<Self> {
        let certs = fleet_tls::config::load_certificates(jlis_ca)
            .with_context(|| format!("loading the J-LIS CA {}", jlis_ca.display()))?;
        let der = certs
            .first()
            .with_context(|| format!("{} holds no certificate", jlis_ca.display()))?
            .as_ref()
            .to_vec();
        X509Certificate::from_der(&der).context("parsing the J-LIS CA certificate")?;
        Ok(Self {
            service,
            jlis_ca_der: der,
            challenges: Mutex::new(HashMap::new()),
            consents: Arc::default(),
        })
    }

    /// Records consents in `consents` (shared with [`crate::info`]).
    pub fn with_consents(mut self, consents: Arc<crate::consent::Consents>) -> Self {
        self.consents = consents;
        self
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(CHALLENGE_PATH, post(challenge))
            .route(CONFIRM_PATH, post(confirm))
            .with_state(self)
    }

    fn issue_challenge(&self, institution: MedicalInstitutionCode) -> [u8; 32] {
        let mut nonce = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random number generator is available");
        let now = Instant::now();
        let mut challenges = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        challenges.retain(|_, c| c.expires > now);
        if challenges.len() >= MAX_CHALLENGES
            && let Some(oldest) = challenges
                .iter()
                .min_by_key(|(_, c)| c.expires)
                .map(|(k, _)| *k)
        {
            challenges.remove(&oldest);
        }
        challenges.insert(
            nonce,
            Outstanding {
                institution,
                expires: now + CHALLENGE_LIFETIME,
            },
        );
        nonce
    }

    /// Takes the challenge (single use) if it is live and was issued to `institution`.
    fn take_challenge(&self, nonce: &[u8], institution: &MedicalInstitutionCode) -> bool {
        let Ok(nonce) = <[u8; 32]>::try_from(nonce) else {
            return false;
        };
        let mut challenges = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        match challenges.remove(&nonce) {
            Some(c) => c.expires > Instant::now() && &c.institution == institution,
            None => false,
        }
    }

    /// Judges a confirmation at `now` (JST wall clock; `now_utc` for certificate validity).
    pub fn confirm(
        &self,
        institution: &MedicalInstitutionCode,
        request: &ConfirmRequest,
        now: PrimitiveDateTime,
        now_utc: time::OffsetDateTime,
    ) -> Answer {
        let date = request
            .qualification_confirmation_date
            .as_deref()
            .and_then(parse_yyyymmdd)
            .unwrap_or(now.date());
        let echo = HeaderEcho {
            qualification_confirmation_date: Some(date),
            arbitrary_file_identifier: request.arbitrary_file_identifier.clone(),
        };
        let fail = |error: SimErrorCode, detail: &str| {
            let mut answer = refusal(
                institution,
                &echo,
                error,
                Some(detail),
                now,
                XmlEncoding::Utf8,
            );
            answer.result.header.reference_classification = ReferenceClassification::MyNumberCard;
            answer
        };
        let Some(nonce) = unhex(&request.challenge) else {
            return fail(SimErrorCode::CardChallengeInvalid, "challenge is not hex");
        };
        if !self.take_challenge(&nonce, institution) {
            return fail(
                SimErrorCode::CardChallengeInvalid,
                "unknown, used or expired challenge",
            );
        }
        let Some(der) = unhex(&request.certificate) else {
            return fail(
                SimErrorCode::CardCertificateUntrusted,
                "certificate is not hex",
            );
        };
        let Ok((_, cert)) = X509Certificate::from_der(&der) else {
            return fail(
                SimErrorCode::CardCertificateUntrusted,
                "certificate is not DER",
            );
        };
        let Ok((_, ca)) = X509Certificate::from_der(&self.jlis_ca_der) else {
            return fail(SimErrorCode::CardCertificateUntrusted, "no J-LIS CA");
        };
        if cert.issuer() != ca.subject() || cert.verify_signature(Some(ca.public_key())).is_err() {
            return fail(
                SimErrorCode::CardCertificateUntrusted,
                "not issued by the J-LIS CA",
            );
        }
        let at = x509_parser::time::ASN1Time::from_timestamp(now_utc.unix_timestamp());
        if !at.is_ok_and(|at| cert.validity().is_valid_at(at)) {
            return fail(
                SimErrorCode::CardCertificateExpired,
                &format!("valid until {}", cert.validity().not_after),
            );
        }
        match request.identity_verification.as_str() {
            "pin" => {
                let Some(signature) = request.signature.as_deref().and_then(unhex) else {
                    return fail(SimErrorCode::CardSignatureInvalid, "no signature");
                };
                let key = ring::signature::UnparsedPublicKey::new(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    cert.public_key().subject_public_key.data.as_ref(),
                );
                if key.verify(&nonce, &signature).is_err() {
                    return fail(
                        SimErrorCode::CardSignatureInvalid,
                        "the signature does not match the certificate",
                    );
                }
            }
            "face" if request.face_verified => {}
            "face" => return fail(SimErrorCode::CardSignatureInvalid, "face not verified"),
            _ => {
                return fail(
                    SimErrorCode::RequestUnreadable,
                    "identity_verification is pin or face",
                );
            }
        }
        let holder = cert
            .subject()
            .iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER)
            .next()
            .and_then(|a| a.as_str().ok())
            .and_then(|s| s.strip_prefix(HOLDER_PREFIX))
            .and_then(|n| n.parse::<usize>().ok());
        let population = self.service.population();
        let Some(person) = holder.and_then(|i| population.people().get(i)) else {
            return fail(
                SimErrorCode::CardHolderUnknown,
                "no insured person for this certificate",
            );
        };
        let answer = card_reading(
            &self.service,
            institution,
            person,
            &CardReading {
                date,
                arbitrary_file_identifier: request.arbitrary_file_identifier.clone(),
                limit_consent: request.limit_consent,
                consent: request.consent,
            },
            now,
        );
        if answer.error.is_none() {
            self.record_consent(person, request.consent, now);
        }
        answer
    }

    /// Records the patient's consent choices (at `now`, JST) for [`crate::info`].
    fn record_consent(
        &self,
        person: &crate::population::Person,
        choices: ConsentChoices,
        now: PrimitiveDateTime,
    ) {
        if let Some(record) = consent_record(choices, now) {
            self.consents
                .record(crate::consent::PersonKey::of(person), record);
        }
    }
}

/// The consent a card reading at `now` (JST) gives, or `None` when the patient chose nothing
/// (an earlier consent then stays as it was).
pub fn consent_record(
    choices: ConsentChoices,
    now: PrimitiveDateTime,
) -> Option<onshi_domain::access::ConsentRecord> {
    let categories = choices.categories();
    (!categories.is_empty()).then(|| onshi_domain::access::ConsentRecord {
        consented_at: now.assume_offset(time::macros::offset!(+9)),
        categories,
    })
}

/// What a card reading asks besides the holder: shared by the card route and the terminal's
/// face reader ([`crate::terminal`]).
#[derive(Debug, Clone)]
pub struct CardReading {
    pub date: time::Date,
    pub arbitrary_file_identifier: Option<String>,
    pub limit_consent: bool,
    pub consent: ConsentChoices,
}

/// The result of a card reading for `person` (identity already proven): the eligibility
/// answer with `ReferenceClassification` 1 and the patient's choices in the consent groups
/// (`…AvailableTime` is `now` plus 24 hours). Recording the consent is the caller's.
pub fn card_reading(
    service: &Service,
    institution: &MedicalInstitutionCode,
    person: &crate::population::Person,
    reading: &CardReading,
    now: PrimitiveDateTime,
) -> Answer {
    use onshi_domain::access::CONSENT_LIFETIME;
    use onshi_domain::codes::ConsentStatus;
    use onshi_domain::xml::ConsentGroup;
    let lookup = QualificationConfirmationRequest {
        header: RequestHeader {
            qualification_confirmation_date: reading.date,
            medical_institution_code: institution.clone(),
            arbitrary_file_identifier: reading.arbitrary_file_identifier.clone(),
        },
        search: QualificationConfirmSearchInfo {
            insurer_number: person.insurer_number.clone(),
            insured_card_symbol: person.symbol.clone(),
            insured_identification_number: person.number.clone(),
            insured_branch_number: person.branch.clone(),
            birthdate: person.birthdate.clone(),
            limit_application_certificate_related_cons_flg: reading.limit_consent,
            arbitrary_identifier: None,
        },
    };
    let mut answer = service.confirm(institution, &lookup, now, XmlEncoding::Utf8);
    answer.result.header.reference_classification = ReferenceClassification::MyNumberCard;
    if answer.error.is_some() {
        return answer;
    }
    let group = |given: bool| {
        Some(if given {
            ConsentGroup {
                cons_flg: ConsentStatus::Given,
                cons_time: Some(now),
                available_time: Some(now + CONSENT_LIFETIME),
            }
        } else {
            ConsentGroup {
                cons_flg: ConsentStatus::NotGiven,
                cons_time: None,
                available_time: None,
            }
        })
    };
    let choices = reading.consent;
    for result in &mut answer.result.body.results {
        result.pharmacists_info = group(choices.drug);
        result.specific_health_checkups_info = group(choices.checkup);
        result.diagnosis_info = group(choices.diagnosis);
        result.operation_info = group(choices.surgery);
    }
    answer
}

fn parse_yyyymmdd(s: &str) -> Option<time::Date> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let month = time::Month::try_from(s[4..6].parse::<u8>().ok()?).ok()?;
    time::Date::from_calendar_date(s[0..4].parse().ok()?, month, s[6..8].parse().ok()?).ok()
}

/// Hex (either case) to bytes.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn institution_of(peer: Option<&PeerCertificates>) -> Result<MedicalInstitutionCode, String> {
    let der = leaf(peer.map(|p| p.0.as_slice())).map_err(|e| e.to_string())?;
    let (code, _terminal) = terminal_of(der).map_err(|e| e.to_string())?;
    MedicalInstitutionCode::parse(&code).map_err(|e| e.to_string())
}

fn forbidden(detail: String) -> Response {
    let error = SimErrorCode::CertificateNamesNoTerminal;
    let text = format!("{} {} ({detail})\n", error.code(), error.message_en());
    (StatusCode::FORBIDDEN, text).into_response()
}

async fn challenge(
    State(route): State<Arc<CardRoute>>,
    peer: Option<Extension<PeerCertificates>>,
) -> Response {
    let institution = match institution_of(peer.as_ref().map(|Extension(p)| p)) {
        Ok(i) => i,
        Err(detail) => return forbidden(detail),
    };
    let nonce = route.issue_challenge(institution);
    axum::Json(serde_json::json!({
        "challenge": fleet_tls::identity::hex(&nonce),
        "expires_in_ms": CHALLENGE_LIFETIME.as_millis() as u64,
    }))
    .into_response()
}

#[tracing::instrument(
    name = "card_confirm",
    skip_all,
    fields(institution, segment, validity, error)
)]
async fn confirm(
    State(route): State<Arc<CardRoute>>,
    peer: Option<Extension<PeerCertificates>>,
    body: Bytes,
) -> Response {
    let span = tracing::Span::current();
    let institution = match institution_of(peer.as_ref().map(|Extension(p)| p)) {
        Ok(i) => i,
        Err(detail) => return forbidden(detail),
    };
    span.record("institution", institution.as_str());
    let now = now_jst();
    let answer = match serde_json::from_slice::<ConfirmRequest>(&body) {
        Ok(request) => route.confirm(&institution, &request, now, time::OffsetDateTime::now_utc()),
        Err(e) => {
            let mut answer = refusal(
                &institution,
                &HeaderEcho::default(),
                SimErrorCode::RequestUnreadable,
                Some(&e.to_string()),
                now,
                XmlEncoding::Utf8,
            );
            answer.result.header.reference_classification = ReferenceClassification::MyNumberCard;
            answer
        }
    };
    span.record("segment", answer.result.header.segment_of_result.code());
    if let Some(v) = answer.result.body.qualification_validity {
        span.record("validity", v.code());
    }
    if let Some(error) = answer.error {
        span.record("error", error.code());
    }
    tracing::info!("card route answered");
    let status =
        StatusCode::from_u16(answer.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/xml; charset=UTF-8")],
        answer.result.to_xml(XmlEncoding::Utf8),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::population::Population;
    use onshi_domain::codes::{QualificationValidity, SegmentOfResult};
    use virtual_card::applet::{Applet, Kind};
    use virtual_card::issue::{IssueSpec, cached_key, issue};

    struct Fixture {
        _dir: tempfile::TempDir,
        route: CardRoute,
        institution: MedicalInstitutionCode,
        card: Applet,
        certificate: Vec<u8>,
        expired_certificate: Vec<u8>,
        foreign_certificate: Vec<u8>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let key = cached_key(&std::env::temp_dir().join("onshi-fleet-test-card-key.pem")).unwrap();
        let pki = fleet_tls::devpki::init(&dir.path().join("pki"), &Default::default()).unwrap();
        let other =
            fleet_tls::devpki::init(&dir.path().join("other"), &Default::default()).unwrap();
        let spec = |pki: &fleet_tls::devpki::DevPki, expired| IssueSpec {
            pki: pki.root().to_path_buf(),
            holder: 3,
            pin: "1234".into(),
            expired,
        };
        let card = issue(&dir.path().join("card"), &spec(&pki, false), &key).unwrap();
        let expired = issue(&dir.path().join("expired"), &spec(&pki, true), &key).unwrap();
        let foreign = issue(&dir.path().join("foreign"), &spec(&other, false), &key).unwrap();
        let secrets = card.secrets().unwrap();
        let service = Arc::new(Service::new(Arc::new(Population::generate(42, 50))));
        Fixture {
            route: CardRoute::load(service, &pki.jlis_ca()).unwrap(),
            institution: MedicalInstitutionCode::parse("3410712362").unwrap(),
            certificate: secrets.certificate_der.clone(),
            card: Applet::new(Kind::MyNumber(Box::new(secrets)), None),
            expired_certificate: expired.secrets().unwrap().certificate_der,
            foreign_certificate: foreign.secrets().unwrap().certificate_der,
            _dir: dir,
        }
    }

    /// The card signs like the agent asks it to: VERIFY, then COMPUTE DIGITAL SIGNATURE over
    /// the DigestInfo of SHA-256(challenge).
    fn sign(card: &mut Applet, challenge: &[u8]) -> Vec<u8> {
        let jpki = [0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01];
        let mut select = vec![0x00, 0xA4, 0x04, 0x0C, 0x0A];
        select.extend_from_slice(&jpki);
        assert_eq!(card.process(&select), [0x90, 0x00]);
        card.process(&[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x18]);
        assert_eq!(
            card.process(&[0x00, 0x20, 0x00, 0x80, 0x04, b'1', b'2', b'3', b'4']),
            [0x90, 0x00]
        );
        card.process(&[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x17]);
        let digest = ring::digest::digest(&ring::digest::SHA256, challenge);
        let mut info = vec![
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ];
        info.extend_from_slice(digest.as_ref());
        let mut apdu = vec![0x80, 0x2A, 0x00, 0x80, info.len() as u8];
        apdu.extend_from_slice(&info);
        apdu.push(0);
        let mut response = card.process(&apdu);
        assert_eq!(response.split_off(response.len() - 2), [0x90, 0x00]);
        response
    }

    fn request(f: &mut Fixture, certificate: &[u8], signed: bool) -> ConfirmRequest {
        let challenge = f.route.issue_challenge(f.institution.clone());
        let signature = signed.then(|| fleet_tls::identity::hex(&sign(&mut f.card, &challenge)));
        ConfirmRequest {
            challenge: fleet_tls::identity::hex(&challenge),
            certificate: fleet_tls::identity::hex(certificate),
            identity_verification: "pin".into(),
            signature,
            face_verified: false,
            qualification_confirmation_date: None,
            arbitrary_file_identifier: Some("card-1".into()),
            limit_consent: false,
            consent: ConsentChoices::default(),
        }
    }

    fn confirm(f: &Fixture, r: &ConfirmRequest) -> Answer {
        f.route.confirm(
            &f.institution,
            r,
            now_jst(),
            time::OffsetDateTime::now_utc(),
        )
    }

    #[test]
    fn a_signed_challenge_answers_for_the_holder_as_a_card_lookup() {
        let mut f = fixture();
        let cert = f.certificate.clone();
        let r = request(&mut f, &cert, true);
        let answer = confirm(&f, &r);
        assert_eq!(answer.error, None, "{answer:?}");
        let header = &answer.result.header;
        assert_eq!(
            header.reference_classification,
            ReferenceClassification::MyNumberCard
        );
        assert_eq!(header.segment_of_result, SegmentOfResult::Normal);
        let person = &f.route.service.population().people()[3];
        let body = &answer.result.body;
        assert_eq!(body.qualification_validity, Some(person.validity()));
        assert_ne!(
            body.qualification_validity,
            Some(QualificationValidity::NoMatch)
        );
        assert_eq!(body.results[0].name.as_deref(), Some(person.name.as_str()));
        // A challenge answers once.
        assert_eq!(
            confirm(&f, &r).error,
            Some(SimErrorCode::CardChallengeInvalid)
        );
    }

    #[test]
    fn expired_foreign_and_unsigned_cards_end_abnormally() {
        let mut f = fixture();
        for (cert, signed, error) in [
            (
                f.expired_certificate.clone(),
                true,
                SimErrorCode::CardCertificateExpired,
            ),
            (
                f.foreign_certificate.clone(),
                true,
                SimErrorCode::CardCertificateUntrusted,
            ),
            (
                f.certificate.clone(),
                false,
                SimErrorCode::CardSignatureInvalid,
            ),
        ] {
            let r = request(&mut f, &cert, signed);
            let answer = confirm(&f, &r);
            assert_eq!(answer.error, Some(error));
            assert_eq!(
                answer.result.header.segment_of_result,
                SegmentOfResult::AbnormalEnd
            );
            assert_eq!(
                answer.result.header.error_code.as_deref(),
                Some(error.code())
            );
        }
        // Another institution cannot use this institution's challenge.
        let cert = f.certificate.clone();
        let r = request(&mut f, &cert, true);
        let other = MedicalInstitutionCode::parse("1340123455").unwrap();
        let answer = f
            .route
            .confirm(&other, &r, now_jst(), time::OffsetDateTime::now_utc());
        assert_eq!(answer.error, Some(SimErrorCode::CardChallengeInvalid));
    }

    #[test]
    fn consent_choices_are_recorded_and_answered_in_the_consent_groups() {
        use onshi_domain::codes::ConsentStatus;
        use onshi_domain::events::InfoCategory;
        let mut f = fixture();
        let consents = Arc::new(crate::consent::Consents::default());
        f.route.consents = consents.clone();
        let cert = f.certificate.clone();
        let mut r = request(&mut f, &cert, true);
        r.consent = ConsentChoices {
            drug: true,
            ..ConsentChoices::default()
        };
        r.limit_consent = true;
        let now = now_jst();
        let answer = f
            .route
            .confirm(&f.institution, &r, now, time::OffsetDateTime::now_utc());
        assert_eq!(answer.error, None, "{answer:?}");
        let result = &answer.result.body.results[0];
        let drug = result.pharmacists_info.unwrap();
        assert_eq!(drug.cons_flg, ConsentStatus::Given);
        assert_eq!(drug.cons_time, Some(now));
        assert_eq!(
            drug.available_time,
            Some(now + onshi_domain::access::CONSENT_LIFETIME)
        );
        assert_eq!(
            result.specific_health_checkups_info.unwrap().cons_flg,
            ConsentStatus::NotGiven
        );
        assert_eq!(
            result.limit_application_certificate_related_cons_flg,
            Some(true)
        );
        let person = crate::consent::PersonKey::of(&f.route.service.population().people()[3]);
        let at = now.assume_offset(time::macros::offset!(+9));
        assert!(consents.live(&person, InfoCategory::Drug, at));
        assert!(!consents.live(&person, InfoCategory::Checkup, at));
        // The JSON field is optional and strict.
        let json = serde_json::json!({"challenge":"00","certificate":"00","identity_verification":"pin","consent":{"drug":true}});
        assert!(serde_json::from_value::<ConfirmRequest>(json).is_ok());
        let json = serde_json::json!({"challenge":"00","certificate":"00","identity_verification":"pin","consent":{"dental":true}});
        assert!(serde_json::from_value::<ConfirmRequest>(json).is_err());
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(unhex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
