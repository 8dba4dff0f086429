//! The single eligibility request (`OQSsiquc01req_*.xml`) and its result
//! (`OQSsiquc01res_*.xml`, also written for face-reader confirmations).
//!
//! Element names are the real ones (see `shared/domain/onshi.md` §3). Both messages have the
//! root `XmlMsg` with `MessageHeader` and `MessageBody`.
//!
//! Reading is order-independent (face-reader results have no schema order) and tolerant as
//! `super::read` describes: elements we do not model are ignored with a warning, lists
//! (`ResultList`, `SpecificDiseasesCertificateList`, `PublicExpenseResultList`) are read nested
//! or flat. Writing follows the corpus's order (`shared/onshi-corpus`); the medical-aid block,
//! `LimitApplicationCertificateChanged` and `ArbitraryIdentifier` go last in a result (their
//! place in the national schema is not public). Insurer numbers are written in the 8-character
//! file form (6-digit national health insurance numbers padded with spaces); spaces or zeros
//! are accepted on input.
//!
//! Rules enforced when a clerk types a query (late-stage elderly: no branch, 8-digit number;
//! birth date not in the future) are *not* re-applied when reading files: a result states what
//! the national system holds, and the simulator must be able to read a bad request in order to
//! answer it with an error code.

use time::{Date, PrimitiveDateTime};

use super::read::{Doc, Node, Warned, WarningKind};
use super::write::Out;
use super::{XmlEncoding, XmlError, XmlLimits};
use crate::codes::{
    CharacterCodeIdentifier, ConsentStatus, InsuredCardClassification,
    PersonalFamilyClassification, PrescriptionIssueSelect, ProcessingResultStatus,
    QualificationValidity, ReasonOfLoss, ReferenceClassification, SegmentOfResult, Sex,
};
use crate::ids::{
    BirthDate, InsuranceCardQuery, InsuredBranchNumber, InsuredCardSymbol,
    InsuredIdentificationNumber, InsurerNumber, MedicalInstitutionCode,
};

pub(crate) const ROOT: &str = "XmlMsg";
pub(crate) const HEADER: &str = "MessageHeader";
pub(crate) const BODY: &str = "MessageBody";
pub(crate) const SEARCH_INFO: &str = "QualificationConfirmSearchInfo";
pub(crate) const RESULT_LIST: &str = "ResultList";
pub(crate) const RESULT: &str = "ResultOfQualificationConfirmation";

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// 資格確認照会要求 (`OQSsiquc01req`): one person, by insurance card numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualificationConfirmationRequest {
    pub header: RequestHeader,
    pub search: QualificationConfirmSearchInfo,
}

/// `MessageHeader` of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// `QualificationConfirmationDate`: the date eligibility is asked for (yyyyMMdd).
    pub qualification_confirmation_date: Date,
    /// `MedicalInstitutionCode`.
    pub medical_institution_code: MedicalInstitutionCode,
    /// `ArbitraryFileIdentifier`: echoed in the result; used to correlate request and result.
    pub arbitrary_file_identifier: Option<String>,
}

/// `QualificationConfirmSearchInfo`: the card numbers searched for (in requests, and echoed in
/// results).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualificationConfirmSearchInfo {
    pub insurer_number: InsurerNumber,
    pub insured_card_symbol: Option<InsuredCardSymbol>,
    pub insured_identification_number: InsuredIdentificationNumber,
    pub insured_branch_number: Option<InsuredBranchNumber>,
    pub birthdate: BirthDate,
    /// `LimitApplicationCertificateRelatedConsFlg` (001): the patient agreed to share copay
    /// limit information. Read as `false` when absent, the reading that discloses less.
    pub limit_application_certificate_related_cons_flg: bool,
    /// `ArbitraryIdentifier`: free use by the receipt computer, echoed back.
    pub arbitrary_identifier: Option<String>,
}

impl QualificationConfirmSearchInfo {
    /// The search for what a clerk typed; `limit_consent` is the patient's consent to share
    /// copay limit information.
    pub fn from_query(query: &InsuranceCardQuery, limit_consent: bool) -> Self {
        QualificationConfirmSearchInfo {
            insurer_number: query.insurer_number.clone(),
            insured_card_symbol: query.symbol.clone(),
            insured_identification_number: query.number.clone(),
            insured_branch_number: query.branch.clone(),
            birthdate: query.birthdate.clone(),
            limit_application_certificate_related_cons_flg: limit_consent,
            arbitrary_identifier: None,
        }
    }

    pub(crate) fn read(node: &Node<'_>) -> Result<Self, XmlError> {
        Ok(QualificationConfirmSearchInfo {
            insurer_number: node.req_text("InsurerNumber")?.id(InsurerNumber::parse)?,
            insured_card_symbol: node.opt_id("InsuredCardSymbol", InsuredCardSymbol::parse)?,
            insured_identification_number: node
                .req_text("InsuredIdentificationNumber")?
                .id(InsuredIdentificationNumber::parse)?,
            insured_branch_number: node
                .opt_id("InsuredBranchNumber", InsuredBranchNumber::parse)?,
            birthdate: node.req_text("Birthdate")?.id(BirthDate::parse)?,
            limit_application_certificate_related_cons_flg: node
                .opt_flag("LimitApplicationCertificateRelatedConsFlg")?
                .unwrap_or(false),
            arbitrary_identifier: node.opt_string("ArbitraryIdentifier")?,
        })
    }

    pub(crate) fn write(&self, out: &mut Out) {
        out.open(SEARCH_INFO);
        out.leaf("InsurerNumber", &self.insurer_number.to_file_field());
        out.opt(
            "InsuredCardSymbol",
            self.insured_card_symbol
                .as_ref()
                .map(InsuredCardSymbol::as_str),
        );
        out.leaf(
            "InsuredIdentificationNumber",
            self.insured_identification_number.as_str(),
        );
        out.opt(
            "InsuredBranchNumber",
            self.insured_branch_number
                .as_ref()
                .map(InsuredBranchNumber::as_str),
        );
        out.leaf("Birthdate", self.birthdate.as_str());
        out.flag(
            "LimitApplicationCertificateRelatedConsFlg",
            self.limit_application_certificate_related_cons_flg,
        );
        out.opt("ArbitraryIdentifier", self.arbitrary_identifier.as_deref());
        out.close(SEARCH_INFO);
    }
}

impl QualificationConfirmationRequest {
    /// The request file's bytes, with an XML declaration naming `enc`.
    pub fn to_xml(&self, enc: XmlEncoding) -> Vec<u8> {
        let mut out = Out::new(enc);
        out.open(ROOT);
        out.open(HEADER);
        out.date(
            "QualificationConfirmationDate",
            self.header.qualification_confirmation_date,
        );
        out.leaf(
            "MedicalInstitutionCode",
            self.header.medical_institution_code.as_str(),
        );
        out.opt(
            "ArbitraryFileIdentifier",
            self.header.arbitrary_file_identifier.as_deref(),
        );
        out.close(HEADER);
        out.open(BODY);
        self.search.write(&mut out);
        out.close(BODY);
        out.close(ROOT);
        out.finish()
    }

    reading_shorthands!(XmlLimits::DEFAULT);

    pub fn read_xml_with_limits(
        bytes: &[u8],
        limits: &XmlLimits,
    ) -> Result<Warned<Self>, XmlError> {
        let doc = Doc::read(bytes, limits)?;
        let root = doc.root();
        let header = root.envelope(HEADER)?;
        let body = root.envelope(BODY)?;
        let value = QualificationConfirmationRequest {
            header: RequestHeader::read(&header)?,
            search: QualificationConfirmSearchInfo::read(&body.req_child(SEARCH_INFO)?)?,
        };
        Ok(doc.finish(value))
    }
}

impl RequestHeader {
    /// The header fields of a request; every one is strict (they are the envelope).
    pub(crate) fn read(h: &Node<'_>) -> Result<Self, XmlError> {
        Ok(RequestHeader {
            qualification_confirmation_date: h.req_text("QualificationConfirmationDate")?.date()?,
            medical_institution_code: h
                .req_text("MedicalInstitutionCode")?
                .id(MedicalInstitutionCode::parse)?,
            arbitrary_file_identifier: h.opt_string("ArbitraryFileIdentifier")?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Result
// ---------------------------------------------------------------------------------------------

/// 資格確認結果 (`OQSsiquc01res`): the answer to a request, or a face-reader confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualificationConfirmationResult {
    pub header: ResultHeader,
    pub body: ResultBody,
}

/// `MessageHeader` of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultHeader {
    /// `ProcessExecutionTime` (JST wall clock).
    pub process_execution_time: PrimitiveDateTime,
    pub qualification_confirmation_date: Date,
    pub medical_institution_code: MedicalInstitutionCode,
    /// Echo of the request's `ArbitraryFileIdentifier`.
    pub arbitrary_file_identifier: Option<String>,
    pub reference_classification: ReferenceClassification,
    /// Outcome of the whole file.
    pub segment_of_result: SegmentOfResult,
    /// Only when `segment_of_result` is not normal. The values are not public; never branch
    /// on their text.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// As written in the file. When a file omits it, the encoding the file was actually
    /// decoded with is used. The decoder never relies on it (see [`CharacterCodeIdentifier`]).
    pub character_code_identifier: CharacterCodeIdentifier,
}

/// `MessageBody` of a result. Every field is optional because a file whose
/// `SegmentOfResult` is 9 (abnormal end) may carry no body at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultBody {
    pub processing_result_status: Option<ProcessingResultStatus>,
    /// Not public; never branch on its text.
    pub processing_result_code: Option<String>,
    pub processing_result_message: Option<String>,
    pub qualification_validity: Option<QualificationValidity>,
    /// Echo of the request's search (absent for My Number card confirmations).
    pub search_info: Option<QualificationConfirmSearchInfo>,
    /// `PrescriptionIssueSelect` at body level, after the search echo, as the corpus's
    /// insurance-card result has it (a result may also carry its own, see
    /// [`ResultOfQualificationConfirmation::prescription_issue_select`]; the patient's choice
    /// is the result's when present, else this one).
    pub prescription_issue_select: Option<PrescriptionIssueSelect>,
    pub results: Vec<ResultOfQualificationConfirmation>,
}

/// `ElderlyRecipientCertificateInfo` (高齢受給者証情報).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ElderlyRecipientCertificateInfo {
    /// `ElderlyRecipientCertificateDate`: issue date.
    pub certificate_date: Option<Date>,
    /// `ElderlyRecipientValidStartDate`.
    pub valid_start_date: Option<Date>,
    /// `ElderlyRecipientValidEndDate`.
    pub valid_end_date: Option<Date>,
    /// `ElderlyRecipientContributionRatio`, as written (3-digit percent, e.g. "020").
    pub contribution_ratio: Option<String>,
}

/// `LimitApplicationCertificateRelatedInfo` (限度額適用認定証関連情報).
///
/// The two codes stay strings so an unknown future code cannot make the whole result
/// unreadable; interpret them with [`crate::codes::LimitCertificateKind`] and
/// [`crate::codes::LimitBracket`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LimitApplicationCertificateRelatedInfo {
    /// `LimitApplicationCertificateClassification` (011).
    pub classification: Option<String>,
    /// `LimitApplicationCertificateClassificationFlag` (012), e.g. "A03".
    pub classification_flag: Option<String>,
    /// `LimitApplicationCertificateDate`: issue date.
    pub date: Option<Date>,
    /// `LimitApplicationCertificateValidStartDate`.
    pub valid_start_date: Option<Date>,
    /// `LimitApplicationCertificateValidEndDate`.
    pub valid_end_date: Option<Date>,
    /// `LimitApplicationCertificateLongTermDate`: date long-term hospitalization applies.
    pub long_term_date: Option<Date>,
}

/// `SpecificDiseasesCertificateInfo` (特定疾病療養受療証情報), one entry of
/// `SpecificDiseasesCertificateList`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpecificDiseasesCertificateInfo {
    /// `SpecificDiseasesDiseaseCategory` (013), kept as written; see
    /// [`crate::codes::SpecificDiseaseCategory`].
    pub disease_category: Option<String>,
    /// `SpecificDiseasesCertificateDate`.
    pub certificate_date: Option<Date>,
    /// `SpecificDiseasesValidStartDate`.
    pub valid_start_date: Option<Date>,
    /// `SpecificDiseasesValidEndDate`.
    pub valid_end_date: Option<Date>,
    /// `SpecificDiseasesSelfPay`: the monthly self-pay limit, as written.
    pub self_pay: Option<String>,
}

/// One consent category given on the card reader: `<Prefix>ConsFlg`, `<Prefix>ConsTime`,
/// `<Prefix>AvailableTime` (consent time plus 24 h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentGroup {
    pub cons_flg: ConsentStatus,
    pub cons_time: Option<PrimitiveDateTime>,
    pub available_time: Option<PrimitiveDateTime>,
}

/// `ResultOfQualificationConfirmation`: one qualification of the person.
///
/// Everything is optional: which elements appear depends on the insurer, the kind of
/// qualification and the patient's consents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultOfQualificationConfirmation {
    pub insured_card_classification: Option<InsuredCardClassification>,
    pub insurer_number: Option<InsurerNumber>,
    pub insured_card_symbol: Option<InsuredCardSymbol>,
    pub insured_identification_number: Option<InsuredIdentificationNumber>,
    pub insured_branch_number: Option<InsuredBranchNumber>,
    pub personal_family_classification: Option<PersonalFamilyClassification>,
    /// `InsuredName`: the insured person (head of household) when the patient is family.
    pub insured_name: Option<String>,
    pub name: Option<String>,
    pub name_of_other: Option<String>,
    /// `NameKana`: half-width katakana.
    pub name_kana: Option<String>,
    pub name_of_other_kana: Option<String>,
    pub sex1: Option<Sex>,
    pub sex2: Option<Sex>,
    pub birthdate: Option<BirthDate>,
    pub address: Option<String>,
    pub post_number: Option<String>,
    pub qualification_date: Option<Date>,
    pub disqualification_date: Option<Date>,
    pub insured_certificate_issuance_date: Option<Date>,
    pub insured_card_valid_date: Option<Date>,
    pub insured_card_expiration_date: Option<Date>,
    /// `InsuredPartialContributionRatio`: 3-digit percent, "030" = 30 %. Checked to be 3
    /// digits.
    pub insured_partial_contribution_ratio: Option<String>,
    /// `PreschoolClassification`, as written.
    pub preschool_classification: Option<String>,
    pub reason_of_loss: Option<ReasonOfLoss>,
    pub insurer_name: Option<String>,
    pub elderly_recipient_certificate_info: Option<ElderlyRecipientCertificateInfo>,
    pub limit_application_certificate_related_cons_flg: Option<bool>,
    pub limit_application_certificate_related_cons_time: Option<PrimitiveDateTime>,
    pub limit_application_certificate_related_info: Option<LimitApplicationCertificateRelatedInfo>,
    pub specific_diseases_certificate_related_cons_flg: Option<ConsentStatus>,
    pub specific_diseases_certificate_related_cons_time: Option<PrimitiveDateTime>,
    pub specific_diseases_certificate_list: Vec<SpecificDiseasesCertificateInfo>,
    /// `SpecificHealthCheckupsInfo…`: checkup results.
    pub specific_health_checkups_info: Option<ConsentGroup>,
    /// `PharmacistsInfo…`: drug information.
    pub pharmacists_info: Option<ConsentGroup>,
    /// `DiagnosisInfo…`: diagnosis information.
    pub diagnosis_info: Option<ConsentGroup>,
    /// `OperationInfo…`: surgery information.
    pub operation_info: Option<ConsentGroup>,
    pub reference_number: Option<String>,
    pub prescription_issue_select: Option<PrescriptionIssueSelect>,
    /// The medical-aid block (医療扶助, since 2024): present for medical-aid qualifications
    /// (`InsuredCardClassification` A1). The fields sit at the end of the element, in this
    /// order (the notes list them after the rest; their exact place in the national schema is
    /// not public, and readers are order-independent).
    pub medical_aid: Option<MedicalAid>,
    /// `LimitApplicationCertificateChanged` (0/1): the copay-limit certificate changed since
    /// the last confirmation.
    pub limit_application_certificate_changed: Option<bool>,
    /// `ArbitraryIdentifier`: the receipt computer's own tag, echoed.
    pub arbitrary_identifier: Option<String>,
}

/// The medical-aid (医療扶助) part of a qualification: who pays (`PublicExpenseNumber`, the
/// welfare office's 公費負担者番号), who receives (`BeneficiaryNumber`, 受給者番号), and the
/// medical tickets (医療券・調剤券) the welfare office issued.
///
/// Present when any of its elements is; the two numbers are checked to be digits of the
/// usual length (8 and 7) and refused otherwise, like the other identifiers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MedicalAid {
    /// `PublicExpenseNumber`: 8 digits.
    pub public_expense_number: Option<String>,
    /// `BeneficiaryNumber`: 7 digits.
    pub beneficiary_number: Option<String>,
    /// `WelfareOfficeName`.
    pub welfare_office_name: Option<String>,
    /// `NumberOfMedicalTickets`, as stated by the file (a disagreement with the list is a
    /// warning, the tickets read are kept).
    pub number_of_medical_tickets: Option<u32>,
    /// `PublicExpenseResultList/MedicalTicketInfo`, in document order.
    pub medical_tickets: Vec<MedicalTicketInfo>,
}

impl MedicalAid {
    fn is_empty(&self) -> bool {
        *self == MedicalAid::default()
    }
}

/// `MedicalTicketInfo` (医療券・調剤券情報): one ticket of a medical-aid qualification.
///
/// Codes and numbers whose tables are not public are kept as written (UNCONFIRMED): a new
/// value cannot make the eligibility result unreadable, and the counter shows what the
/// welfare office wrote. The two institution codes are kept as written too: medical-aid
/// designations may use codes outside the 10-digit institution code form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MedicalTicketInfo {
    /// `TicketType` (券種: medical, dispensing, …), as written.
    pub ticket_type: Option<String>,
    /// `MedicalTicketValidDate`: first day the ticket is valid.
    pub valid_date: Option<Date>,
    /// `MedicalTicketExpirationDate`: last day the ticket is valid.
    pub expiration_date: Option<Date>,
    /// `IssueNumber` (発行番号).
    pub issue_number: Option<String>,
    /// `MedicalTreatmentMonth` (診療年月), as written (yyyyMM in the samples we know).
    pub medical_treatment_month: Option<String>,
    /// `DesignatedMedicalInstitutionCode`: the institution the ticket designates.
    pub designated_medical_institution_code: Option<String>,
    /// `DesignatedMedicalInstitutionFlag`, as written.
    pub designated_medical_institution_flag: Option<String>,
    /// `DesignatedMedicalInstitutionName`.
    pub designated_medical_institution_name: Option<String>,
    /// `PrescriptionIssuerMedicalInstitutionCode`: for dispensing tickets, the prescriber.
    pub prescription_issuer_medical_institution_code: Option<String>,
    /// `PrescriptionIssuerMedicalInstitutionName`.
    pub prescription_issuer_medical_institution_name: Option<String>,
    /// `InjuryName1`–`InjuryName3` (傷病名).
    pub injury_name1: Option<String>,
    pub injury_name2: Option<String>,
    pub injury_name3: Option<String>,
    /// `MedicalTreatmentType` (診療別: inpatient, outpatient, …), as written.
    pub medical_treatment_type: Option<String>,
    /// `SelfPayAmount` (本人支払額), as written.
    pub self_pay_amount: Option<String>,
    /// `DistrictContactName` (地区担当員名).
    pub district_contact_name: Option<String>,
    /// `HandlingContactName` (取扱担当者名).
    pub handling_contact_name: Option<String>,
    /// `SingleOrCombinedUse` (単独・併用別), as written.
    pub single_or_combined_use: Option<String>,
    /// `StatusOfSocialInsurance` (社会保険等の状況), as written.
    pub status_of_social_insurance: Option<String>,
    /// `ConsistencyFlag`, as written.
    pub consistency_flag: Option<String>,
    /// `StatusOfInfecton` (sic, the real element name): infectious disease status.
    pub status_of_infection: Option<String>,
    /// `StatusOfElderlyMedicalCare` (後期高齢者医療の状況), as written.
    pub status_of_elderly_medical_care: Option<String>,
    /// `StatusOfPrefecturalExpenses` (都道府県費の状況), as written.
    pub status_of_prefectural_expenses: Option<String>,
    /// `Remarks1`–`Remarks3`.
    pub remarks1: Option<String>,
    pub remarks2: Option<String>,
    pub remarks3: Option<String>,
}

/// The string fields of `MedicalTicketInfo` in element order, after the two dates: one table
/// for the reader and the writer, so they cannot disagree on a name.
const TICKET_TEXTS: [&str; 23] = [
    "IssueNumber",
    "MedicalTreatmentMonth",
    "DesignatedMedicalInstitutionCode",
    "DesignatedMedicalInstitutionFlag",
    "DesignatedMedicalInstitutionName",
    "PrescriptionIssuerMedicalInstitutionCode",
    "PrescriptionIssuerMedicalInstitutionName",
    "InjuryName1",
    "InjuryName2",
    "InjuryName3",
    "MedicalTreatmentType",
    "SelfPayAmount",
    "DistrictContactName",
    "HandlingContactName",
    "SingleOrCombinedUse",
    "StatusOfSocialInsurance",
    "ConsistencyFlag",
    "StatusOfInfecton",
    "StatusOfElderlyMedicalCare",
    "StatusOfPrefecturalExpenses",
    "Remarks1",
    "Remarks2",
    "Remarks3",
];

const TICKET_LIST: &str = "PublicExpenseResultList";
const TICKET: &str = "MedicalTicketInfo";

impl MedicalTicketInfo {
    fn texts_mut(&mut self) -> [&mut Option<String>; 23] {
        [
            &mut self.issue_number,
            &mut self.medical_treatment_month,
            &mut self.designated_medical_institution_code,
            &mut self.designated_medical_institution_flag,
            &mut self.designated_medical_institution_name,
            &mut self.prescription_issuer_medical_institution_code,
            &mut self.prescription_issuer_medical_institution_name,
            &mut self.injury_name1,
            &mut self.injury_name2,
            &mut self.injury_name3,
            &mut self.medical_treatment_type,
            &mut self.self_pay_amount,
            &mut self.district_contact_name,
            &mut self.handling_contact_name,
            &mut self.single_or_combined_use,
            &mut self.status_of_social_insurance,
            &mut self.consistency_flag,
            &mut self.status_of_infection,
            &mut self.status_of_elderly_medical_care,
            &mut self.status_of_prefectural_expenses,
            &mut self.remarks1,
            &mut self.remarks2,
            &mut self.remarks3,
        ]
    }

    fn texts(&self) -> [Option<&str>; 23] {
        [
            self.issue_number.as_deref(),
            self.medical_treatment_month.as_deref(),
            self.designated_medical_institution_code.as_deref(),
            self.designated_medical_institution_flag.as_deref(),
            self.designated_medical_institution_name.as_deref(),
            self.prescription_issuer_medical_institution_code.as_deref(),
            self.prescription_issuer_medical_institution_name.as_deref(),
            self.injury_name1.as_deref(),
            self.injury_name2.as_deref(),
            self.injury_name3.as_deref(),
            self.medical_treatment_type.as_deref(),
            self.self_pay_amount.as_deref(),
            self.district_contact_name.as_deref(),
            self.handling_contact_name.as_deref(),
            self.single_or_combined_use.as_deref(),
            self.status_of_social_insurance.as_deref(),
            self.consistency_flag.as_deref(),
            self.status_of_infection.as_deref(),
            self.status_of_elderly_medical_care.as_deref(),
            self.status_of_prefectural_expenses.as_deref(),
            self.remarks1.as_deref(),
            self.remarks2.as_deref(),
            self.remarks3.as_deref(),
        ]
    }

    fn read(n: &Node<'_>) -> Result<Self, XmlError> {
        let mut ticket = MedicalTicketInfo {
            ticket_type: n.opt_string("TicketType")?,
            valid_date: n.opt_date("MedicalTicketValidDate")?,
            expiration_date: n.opt_date("MedicalTicketExpirationDate")?,
            ..MedicalTicketInfo::default()
        };
        for (slot, name) in ticket.texts_mut().into_iter().zip(TICKET_TEXTS) {
            *slot = n.opt_string(name)?;
        }
        Ok(ticket)
    }

    fn write(&self, out: &mut Out) {
        out.open(TICKET);
        out.opt("TicketType", self.ticket_type.as_deref());
        out.opt_date("MedicalTicketValidDate", self.valid_date);
        out.opt_date("MedicalTicketExpirationDate", self.expiration_date);
        for (value, name) in self.texts().into_iter().zip(TICKET_TEXTS) {
            out.opt(name, value);
        }
        out.close(TICKET);
    }
}

fn digits_of_len(len: usize) -> impl Fn(&str) -> bool {
    move |v: &str| v.len() == len && v.bytes().all(|b| b.is_ascii_digit())
}

impl MedicalAid {
    /// `None` when the result has none of the block's elements.
    fn read(n: &Node<'_>) -> Result<Option<Self>, XmlError> {
        let number = |name: &str, len: usize| -> Result<Option<String>, XmlError> {
            n.text(name)?
                .map(|leaf| {
                    let v = leaf.raw.trim();
                    if digits_of_len(len)(v) {
                        Ok(v.to_owned())
                    } else {
                        Err(leaf.invalid(format!("expected {len} digits")))
                    }
                })
                .transpose()
        };
        let mut tickets = Vec::new();
        for item in n.list(TICKET_LIST, TICKET) {
            tickets.push(MedicalTicketInfo::read(&item.node(n))?);
        }
        let number_of_medical_tickets = n.opt_checked(
            "NumberOfMedicalTickets",
            |v| !v.is_empty() && v.len() <= 9 && v.bytes().all(|b| b.is_ascii_digit()),
            "a count (up to 9 digits)",
        )?;
        let number_of_medical_tickets = number_of_medical_tickets.and_then(|v| v.parse().ok());
        if let Some(stated) = number_of_medical_tickets
            && stated as usize != tickets.len()
        {
            n.warn(
                "NumberOfMedicalTickets",
                WarningKind::CountMismatch {
                    stated,
                    found: tickets.len(),
                },
                || XmlError::InvalidValue {
                    path: format!("{}/NumberOfMedicalTickets", n.path()),
                    value: stated.to_string(),
                    reason: format!("the list has {} {TICKET} entries", tickets.len()),
                },
            )?;
        }
        let aid = MedicalAid {
            public_expense_number: number("PublicExpenseNumber", 8)?,
            beneficiary_number: number("BeneficiaryNumber", 7)?,
            welfare_office_name: n.opt_string("WelfareOfficeName")?,
            number_of_medical_tickets,
            medical_tickets: tickets,
        };
        Ok((!aid.is_empty()).then_some(aid))
    }

    fn write(&self, out: &mut Out) {
        out.opt("PublicExpenseNumber", self.public_expense_number.as_deref());
        out.opt("BeneficiaryNumber", self.beneficiary_number.as_deref());
        out.opt("WelfareOfficeName", self.welfare_office_name.as_deref());
        out.opt(
            "NumberOfMedicalTickets",
            self.number_of_medical_tickets
                .map(|n| n.to_string())
                .as_deref(),
        );
        if !self.medical_tickets.is_empty() {
            out.open(TICKET_LIST);
            for t in &self.medical_tickets {
                t.write(out);
            }
            out.close(TICKET_LIST);
        }
    }
}

const CONSENT_PREFIXES: [&str; 4] = [
    "SpecificHealthCheckupsInfo",
    "PharmacistsInfo",
    "DiagnosisInfo",
    "OperationInfo",
];

impl ConsentGroup {
    /// Present when `<prefix>ConsFlg` is. A time without a flag is not guessed into a consent:
    /// the group is read as absent (no consent, the reading that discloses less) with a
    /// warning.
    fn read(node: &Node<'_>, prefix: &str) -> Result<Option<Self>, XmlError> {
        let flag = format!("{prefix}ConsFlg");
        let cons_time = node.opt_datetime(&format!("{prefix}ConsTime"))?;
        let available_time = node.opt_datetime(&format!("{prefix}AvailableTime"))?;
        match node.opt_code::<ConsentStatus>(&flag)? {
            Some(cons_flg) => Ok(Some(ConsentGroup {
                cons_flg,
                cons_time,
                available_time,
            })),
            None if cons_time.is_some() || available_time.is_some() => {
                node.warn(
                    &flag,
                    WarningKind::Unreadable {
                        expected: "a consent flag beside its times; the consent is read as absent",
                    },
                    || XmlError::MissingElement {
                        path: format!("{}/{flag}", node.path()),
                    },
                )?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    fn write(group: Option<&Self>, prefix: &str, out: &mut Out) {
        if let Some(g) = group {
            out.leaf(&format!("{prefix}ConsFlg"), g.cons_flg.code());
            out.opt_datetime(&format!("{prefix}ConsTime"), g.cons_time);
            out.opt_datetime(&format!("{prefix}AvailableTime"), g.available_time);
        }
    }
}

impl ResultOfQualificationConfirmation {
    fn consent_groups(&self) -> [Option<&ConsentGroup>; 4] {
        [
            self.specific_health_checkups_info.as_ref(),
            self.pharmacists_info.as_ref(),
            self.diagnosis_info.as_ref(),
            self.operation_info.as_ref(),
        ]
    }

    pub(crate) fn read(n: &Node<'_>) -> Result<Self, XmlError> {
        let insured_partial_contribution_ratio = n.opt_checked(
            "InsuredPartialContributionRatio",
            digits_of_len(3),
            "a 3-digit percentage, e.g. 030 for 30 %",
        )?;
        let elderly = match n.child("ElderlyRecipientCertificateInfo")? {
            None => None,
            Some(e) => Some(ElderlyRecipientCertificateInfo {
                certificate_date: e.opt_date("ElderlyRecipientCertificateDate")?,
                valid_start_date: e.opt_date("ElderlyRecipientValidStartDate")?,
                valid_end_date: e.opt_date("ElderlyRecipientValidEndDate")?,
                contribution_ratio: e.opt_string("ElderlyRecipientContributionRatio")?,
            }),
        };
        let limit = match n.child("LimitApplicationCertificateRelatedInfo")? {
            None => None,
            Some(l) => Some(LimitApplicationCertificateRelatedInfo {
                classification: l.opt_string("LimitApplicationCertificateClassification")?,
                classification_flag: l
                    .opt_string("LimitApplicationCertificateClassificationFlag")?,
                date: l.opt_date("LimitApplicationCertificateDate")?,
                valid_start_date: l.opt_date("LimitApplicationCertificateValidStartDate")?,
                valid_end_date: l.opt_date("LimitApplicationCertificateValidEndDate")?,
                long_term_date: l.opt_date("LimitApplicationCertificateLongTermDate")?,
            }),
        };
        let mut diseases = Vec::new();
        for item in n.list(
            "SpecificDiseasesCertificateList",
            "SpecificDiseasesCertificateInfo",
        ) {
            let d = item.node(n);
            diseases.push(SpecificDiseasesCertificateInfo {
                disease_category: d.opt_string("SpecificDiseasesDiseaseCategory")?,
                certificate_date: d.opt_date("SpecificDiseasesCertificateDate")?,
                valid_start_date: d.opt_date("SpecificDiseasesValidStartDate")?,
                valid_end_date: d.opt_date("SpecificDiseasesValidEndDate")?,
                self_pay: d.opt_string("SpecificDiseasesSelfPay")?,
            });
        }
        let [checkups, pharmacists, diagnosis, operation] = CONSENT_PREFIXES;
        Ok(ResultOfQualificationConfirmation {
            insured_card_classification: n.opt_code("InsuredCardClassification")?,
            insurer_number: n.opt_id("InsurerNumber", InsurerNumber::parse)?,
            insured_card_symbol: n.opt_id("InsuredCardSymbol", InsuredCardSymbol::parse)?,
            insured_identification_number: n.opt_id(
                "InsuredIdentificationNumber",
                InsuredIdentificationNumber::parse,
            )?,
            insured_branch_number: n.opt_id("InsuredBranchNumber", InsuredBranchNumber::parse)?,
            personal_family_classification: n.opt_code("PersonalFamilyClassification")?,
            insured_name: n.opt_string("InsuredName")?,
            name: n.opt_string("Name")?,
            name_of_other: n.opt_string("NameOfOther")?,
            name_kana: n.opt_string("NameKana")?,
            name_of_other_kana: n.opt_string("NameOfOtherKana")?,
            sex1: n.opt_code("Sex1")?,
            sex2: n.opt_code("Sex2")?,
            birthdate: n.opt_id("Birthdate", BirthDate::parse)?,
            address: n.opt_string("Address")?,
            post_number: n.opt_string("PostNumber")?,
            qualification_date: n.opt_date("QualificationDate")?,
            disqualification_date: n.opt_date("DisqualificationDate")?,
            insured_certificate_issuance_date: n.opt_date("InsuredCertificateIssuanceDate")?,
            insured_card_valid_date: n.opt_date("InsuredCardValidDate")?,
            insured_card_expiration_date: n.opt_date("InsuredCardExpirationDate")?,
            insured_partial_contribution_ratio,
            preschool_classification: n.opt_string("PreschoolClassification")?,
            reason_of_loss: n.opt_code("ReasonOfLoss")?,
            insurer_name: n.opt_string("InsurerName")?,
            elderly_recipient_certificate_info: elderly,
            limit_application_certificate_related_cons_flg: n
                .opt_flag("LimitApplicationCertificateRelatedConsFlg")?,
            limit_application_certificate_related_cons_time: n
                .opt_datetime("LimitApplicationCertificateRelatedConsTime")?,
            limit_application_certificate_related_info: limit,
            specific_diseases_certificate_related_cons_flg: n
                .opt_code("SpecificDiseasesCertificateRelatedConsFlg")?,
            specific_diseases_certificate_related_cons_time: n
                .opt_datetime("SpecificDiseasesCertificateRelatedConsTime")?,
            specific_diseases_certificate_list: diseases,
            specific_health_checkups_info: ConsentGroup::read(n, checkups)?,
            pharmacists_info: ConsentGroup::read(n, pharmacists)?,
            diagnosis_info: ConsentGroup::read(n, diagnosis)?,
            operation_info: ConsentGroup::read(n, operation)?,
            reference_number: n.opt_string("ReferenceNumber")?,
            prescription_issue_select: n.opt_code("PrescriptionIssueSelect")?,
            medical_aid: MedicalAid::read(n)?,
            limit_application_certificate_changed: n
                .opt_flag("LimitApplicationCertificateChanged")?,
            arbitrary_identifier: n.opt_string("ArbitraryIdentifier")?,
        })
    }

    pub(crate) fn write(&self, out: &mut Out) {
        out.open(RESULT);
        out.opt(
            "InsuredCardClassification",
            self.insured_card_classification.map(|c| c.code()),
        );
        let insurer = self
            .insurer_number
            .as_ref()
            .map(InsurerNumber::to_file_field);
        out.opt("InsurerNumber", insurer.as_deref());
        out.opt(
            "InsuredCardSymbol",
            self.insured_card_symbol
                .as_ref()
                .map(InsuredCardSymbol::as_str),
        );
        out.opt(
            "InsuredIdentificationNumber",
            self.insured_identification_number
                .as_ref()
                .map(InsuredIdentificationNumber::as_str),
        );
        out.opt(
            "InsuredBranchNumber",
            self.insured_branch_number
                .as_ref()
                .map(InsuredBranchNumber::as_str),
        );
        out.opt(
            "PersonalFamilyClassification",
            self.personal_family_classification.map(|c| c.code()),
        );
        out.opt("InsuredName", self.insured_name.as_deref());
        out.opt("Name", self.name.as_deref());
        out.opt("NameOfOther", self.name_of_other.as_deref());
        out.opt("NameKana", self.name_kana.as_deref());
        out.opt("NameOfOtherKana", self.name_of_other_kana.as_deref());
        out.opt("Sex1", self.sex1.map(|c| c.code()));
        out.opt("Sex2", self.sex2.map(|c| c.code()));
        out.opt("Birthdate", self.birthdate.as_ref().map(BirthDate::as_str));
        out.opt("Address", self.address.as_deref());
        out.opt("PostNumber", self.post_number.as_deref());
        out.opt_date("QualificationDate", self.qualification_date);
        out.opt_date("DisqualificationDate", self.disqualification_date);
        out.opt_date(
            "InsuredCertificateIssuanceDate",
            self.insured_certificate_issuance_date,
        );
        out.opt_date("InsuredCardValidDate", self.insured_card_valid_date);
        out.opt_date(
            "InsuredCardExpirationDate",
            self.insured_card_expiration_date,
        );
        out.opt(
            "InsuredPartialContributionRatio",
            self.insured_partial_contribution_ratio.as_deref(),
        );
        out.opt(
            "PreschoolClassification",
            self.preschool_classification.as_deref(),
        );
        out.opt("ReasonOfLoss", self.reason_of_loss.map(|c| c.code()));
        out.opt("InsurerName", self.insurer_name.as_deref());
        if let Some(e) = &self.elderly_recipient_certificate_info {
            out.open("ElderlyRecipientCertificateInfo");
            out.opt_date("ElderlyRecipientCertificateDate", e.certificate_date);
            out.opt_date("ElderlyRecipientValidStartDate", e.valid_start_date);
            out.opt_date("ElderlyRecipientValidEndDate", e.valid_end_date);
            out.opt(
                "ElderlyRecipientContributionRatio",
                e.contribution_ratio.as_deref(),
            );
            out.close("ElderlyRecipientCertificateInfo");
        }
        if let Some(flag) = self.limit_application_certificate_related_cons_flg {
            out.flag("LimitApplicationCertificateRelatedConsFlg", flag);
        }
        out.opt_datetime(
            "LimitApplicationCertificateRelatedConsTime",
            self.limit_application_certificate_related_cons_time,
        );
        if let Some(l) = &self.limit_application_certificate_related_info {
            out.open("LimitApplicationCertificateRelatedInfo");
            out.opt(
                "LimitApplicationCertificateClassification",
                l.classification.as_deref(),
            );
            out.opt(
                "LimitApplicationCertificateClassificationFlag",
                l.classification_flag.as_deref(),
            );
            out.opt_date("LimitApplicationCertificateDate", l.date);
            out.opt_date(
                "LimitApplicationCertificateValidStartDate",
                l.valid_start_date,
            );
            out.opt_date("LimitApplicationCertificateValidEndDate", l.valid_end_date);
            out.opt_date("LimitApplicationCertificateLongTermDate", l.long_term_date);
            out.close("LimitApplicationCertificateRelatedInfo");
        }
        out.opt(
            "SpecificDiseasesCertificateRelatedConsFlg",
            self.specific_diseases_certificate_related_cons_flg
                .map(|c| c.code()),
        );
        out.opt_datetime(
            "SpecificDiseasesCertificateRelatedConsTime",
            self.specific_diseases_certificate_related_cons_time,
        );
        if !self.specific_diseases_certificate_list.is_empty() {
            out.open("SpecificDiseasesCertificateList");
            for d in &self.specific_diseases_certificate_list {
                out.open("SpecificDiseasesCertificateInfo");
                out.opt(
                    "SpecificDiseasesDiseaseCategory",
                    d.disease_category.as_deref(),
                );
                out.opt_date("SpecificDiseasesCertificateDate", d.certificate_date);
                out.opt_date("SpecificDiseasesValidStartDate", d.valid_start_date);
                out.opt_date("SpecificDiseasesValidEndDate", d.valid_end_date);
                out.opt("SpecificDiseasesSelfPay", d.self_pay.as_deref());
                out.close("SpecificDiseasesCertificateInfo");
            }
            out.close("SpecificDiseasesCertificateList");
        }
        for (group, prefix) in self.consent_groups().into_iter().zip(CONSENT_PREFIXES) {
            ConsentGroup::write(group, prefix, out);
        }
        out.opt("ReferenceNumber", self.reference_number.as_deref());
        out.opt(
            "PrescriptionIssueSelect",
            self.prescription_issue_select.map(|c| c.code()),
        );
        if let Some(aid) = &self.medical_aid {
            aid.write(out);
        }
        if let Some(changed) = self.limit_application_certificate_changed {
            out.flag("LimitApplicationCertificateChanged", changed);
        }
        out.opt("ArbitraryIdentifier", self.arbitrary_identifier.as_deref());
        out.close(RESULT);
    }
}

impl QualificationConfirmationResult {
    /// The result file's bytes, with an XML declaration naming `enc`. The header's
    /// `character_code_identifier` is written as it is; keep it consistent with `enc`.
    pub fn to_xml(&self, enc: XmlEncoding) -> Vec<u8> {
        let h = &self.header;
        let b = &self.body;
        let mut out = Out::new(enc);
        out.open(ROOT);
        out.open(HEADER);
        out.datetime("ProcessExecutionTime", h.process_execution_time);
        out.date(
            "QualificationConfirmationDate",
            h.qualification_confirmation_date,
        );
        out.leaf(
            "MedicalInstitutionCode",
            h.medical_institution_code.as_str(),
        );
        out.opt(
            "ArbitraryFileIdentifier",
            h.arbitrary_file_identifier.as_deref(),
        );
        out.leaf("ReferenceClassification", h.reference_classification.code());
        out.leaf("SegmentOfResult", h.segment_of_result.code());
        out.opt("ErrorCode", h.error_code.as_deref());
        out.opt("ErrorMessage", h.error_message.as_deref());
        out.leaf(
            "CharacterCodeIdentifier",
            h.character_code_identifier.code(),
        );
        out.close(HEADER);
        out.open(BODY);
        out.opt(
            "ProcessingResultStatus",
            b.processing_result_status.map(|c| c.code()),
        );
        out.opt("ProcessingResultCode", b.processing_result_code.as_deref());
        out.opt(
            "ProcessingResultMessage",
            b.processing_result_message.as_deref(),
        );
        out.opt(
            "QualificationValidity",
            b.qualification_validity.map(|c| c.code()),
        );
        if let Some(s) = &b.search_info {
            s.write(&mut out);
        }
        out.opt(
            "PrescriptionIssueSelect",
            b.prescription_issue_select.map(|c| c.code()),
        );
        if !b.results.is_empty() {
            out.open(RESULT_LIST);
            for r in &b.results {
                r.write(&mut out);
            }
            out.close(RESULT_LIST);
        }
        out.close(BODY);
        out.close(ROOT);
        out.finish()
    }

    reading_shorthands!(XmlLimits::DEFAULT);

    pub fn read_xml_with_limits(
        bytes: &[u8],
        limits: &XmlLimits,
    ) -> Result<Warned<Self>, XmlError> {
        let doc = Doc::read(bytes, limits)?;
        let root = doc.root();
        let h = root.envelope(HEADER)?;
        let header = ResultHeader {
            process_execution_time: h.req_text("ProcessExecutionTime")?.datetime()?,
            qualification_confirmation_date: h.req_text("QualificationConfirmationDate")?.date()?,
            medical_institution_code: h
                .req_text("MedicalInstitutionCode")?
                .id(MedicalInstitutionCode::parse)?,
            arbitrary_file_identifier: h.opt_string("ArbitraryFileIdentifier")?,
            reference_classification: h.req_text("ReferenceClassification")?.code()?,
            segment_of_result: h.req_text("SegmentOfResult")?.code()?,
            error_code: h.opt_string("ErrorCode")?,
            error_message: h.opt_string("ErrorMessage")?,
            character_code_identifier: h
                .opt_code("CharacterCodeIdentifier")?
                .unwrap_or(character_code_of(doc.encoding())),
        };
        let body = match root.opt_envelope(BODY)? {
            None => ResultBody::default(),
            Some(b) => {
                let mut results = Vec::new();
                for item in b.list(RESULT_LIST, RESULT) {
                    results.push(ResultOfQualificationConfirmation::read(&item.node(&b))?);
                }
                ResultBody {
                    // The per-person outcome has no safe default: an unknown one is refused.
                    processing_result_status: b
                        .text("ProcessingResultStatus")?
                        .map(|l| l.code())
                        .transpose()?,
                    processing_result_code: b.opt_string("ProcessingResultCode")?,
                    processing_result_message: b.opt_string("ProcessingResultMessage")?,
                    qualification_validity: b.opt_code("QualificationValidity")?,
                    search_info: b
                        .child(SEARCH_INFO)?
                        .map(|s| QualificationConfirmSearchInfo::read(&s))
                        .transpose()?,
                    prescription_issue_select: b.opt_code("PrescriptionIssueSelect")?,
                    results,
                }
            }
        };
        Ok(doc.finish(QualificationConfirmationResult { header, body }))
    }
}

/// The character code a file decoded with `encoding` would state.
pub(crate) fn character_code_of(encoding: XmlEncoding) -> CharacterCodeIdentifier {
    match encoding {
        XmlEncoding::Utf8 => CharacterCodeIdentifier::Utf8,
        XmlEncoding::ShiftJis => CharacterCodeIdentifier::ShiftJis,
    }
}
