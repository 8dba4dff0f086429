//! The single eligibility request (`OQSsiquc01req_*.xml`) and its result
//! (`OQSsiquc01res_*.xml`, also written for face-reader confirmations).
//!
//! Element names are the real ones (see `shared/domain/onshi.md` §3). Both messages have the
//! root `XmlMsg` with `MessageHeader` and `MessageBody`.
//!
//! Reading is order-independent and ignores elements we do not model. Insurer numbers are
//! written in the 8-character file form (6-digit national health insurance numbers padded with
//! spaces); spaces or zeros are accepted on input.
//!
//! Rules enforced when a clerk types a query (late-stage elderly: no branch, 8-digit number;
//! birth date not in the future) are *not* re-applied when reading files: a result states what
//! the national system holds, and the simulator must be able to read a bad request in order to
//! answer it with an error code.

use time::{Date, PrimitiveDateTime};

use super::read::Node;
use super::tree::{self, Element};
use super::write::Out;
use super::{XmlEncoding, XmlError, XmlLimits, charset, shown};
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

    /// Reads a request file with the default [`XmlLimits`].
    pub fn from_xml(bytes: &[u8]) -> Result<Self, XmlError> {
        Self::from_xml_with_limits(bytes, &XmlLimits::DEFAULT)
    }

    pub fn from_xml_with_limits(bytes: &[u8], limits: &XmlLimits) -> Result<Self, XmlError> {
        let (root, _) = read_root(bytes, limits)?;
        let root = Node::root(&root);
        let header = root.req_child(HEADER)?;
        let body = root.req_child(BODY)?;
        Ok(QualificationConfirmationRequest {
            header: RequestHeader {
                qualification_confirmation_date: header
                    .req_text("QualificationConfirmationDate")?
                    .date()?,
                medical_institution_code: header
                    .req_text("MedicalInstitutionCode")?
                    .id(MedicalInstitutionCode::parse)?,
                arbitrary_file_identifier: header.opt_string("ArbitraryFileIdentifier")?,
            },
            search: QualificationConfirmSearchInfo::read(&body.req_child(SEARCH_INFO)?)?,
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
///
/// The body-level `PrescriptionIssueSelect` element is read into each result's
/// [`ResultOfQualificationConfirmation::prescription_issue_select`] when the result has none of
/// its own (and written there), so no information is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultBody {
    pub processing_result_status: Option<ProcessingResultStatus>,
    /// Not public; never branch on its text.
    pub processing_result_code: Option<String>,
    pub processing_result_message: Option<String>,
    pub qualification_validity: Option<QualificationValidity>,
    /// Echo of the request's search (absent for My Number card confirmations).
    pub search_info: Option<QualificationConfirmSearchInfo>,
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
}

const CONSENT_PREFIXES: [&str; 4] = [
    "SpecificHealthCheckupsInfo",
    "PharmacistsInfo",
    "DiagnosisInfo",
    "OperationInfo",
];

impl ConsentGroup {
    /// Present when `<prefix>ConsFlg` is; a time without a flag is an error rather than a
    /// guess.
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
                Err(XmlError::MissingElement {
                    path: format!("{}/{flag}", node.path()),
                })
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
        let ratio = n.text("InsuredPartialContributionRatio")?;
        let insured_partial_contribution_ratio = match ratio {
            None => None,
            Some(leaf) => {
                let v = leaf.raw.trim();
                if v.len() == 3 && v.bytes().all(|b| b.is_ascii_digit()) {
                    Some(v.to_owned())
                } else {
                    return Err(leaf.invalid("expected a 3-digit percentage, e.g. 030 for 30 %"));
                }
            }
        };
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
        if let Some(list) = n.child("SpecificDiseasesCertificateList")? {
            for d in list.children("SpecificDiseasesCertificateInfo") {
                diseases.push(SpecificDiseasesCertificateInfo {
                    disease_category: d.opt_string("SpecificDiseasesDiseaseCategory")?,
                    certificate_date: d.opt_date("SpecificDiseasesCertificateDate")?,
                    valid_start_date: d.opt_date("SpecificDiseasesValidStartDate")?,
                    valid_end_date: d.opt_date("SpecificDiseasesValidEndDate")?,
                    self_pay: d.opt_string("SpecificDiseasesSelfPay")?,
                });
            }
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

    /// Reads a result file with the default [`XmlLimits`].
    pub fn from_xml(bytes: &[u8]) -> Result<Self, XmlError> {
        Self::from_xml_with_limits(bytes, &XmlLimits::DEFAULT)
    }

    pub fn from_xml_with_limits(bytes: &[u8], limits: &XmlLimits) -> Result<Self, XmlError> {
        let (root, encoding) = read_root(bytes, limits)?;
        let root = Node::root(&root);
        let h = root.req_child(HEADER)?;
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
            character_code_identifier: h.opt_code("CharacterCodeIdentifier")?.unwrap_or(
                match encoding {
                    XmlEncoding::Utf8 => CharacterCodeIdentifier::Utf8,
                    XmlEncoding::ShiftJis => CharacterCodeIdentifier::ShiftJis,
                },
            ),
        };
        let body = match root.child(BODY)? {
            None => ResultBody::default(),
            Some(b) => {
                let body_prescription: Option<PrescriptionIssueSelect> =
                    b.opt_code("PrescriptionIssueSelect")?;
                let mut results = Vec::new();
                if let Some(list) = b.child(RESULT_LIST)? {
                    for r in list.children(RESULT) {
                        let mut r = ResultOfQualificationConfirmation::read(&r)?;
                        if r.prescription_issue_select.is_none() {
                            r.prescription_issue_select = body_prescription;
                        }
                        results.push(r);
                    }
                }
                ResultBody {
                    processing_result_status: b.opt_code("ProcessingResultStatus")?,
                    processing_result_code: b.opt_string("ProcessingResultCode")?,
                    processing_result_message: b.opt_string("ProcessingResultMessage")?,
                    qualification_validity: b.opt_code("QualificationValidity")?,
                    search_info: b
                        .child(SEARCH_INFO)?
                        .map(|s| QualificationConfirmSearchInfo::read(&s))
                        .transpose()?,
                    results,
                }
            }
        };
        Ok(QualificationConfirmationResult { header, body })
    }
}

/// Bytes → checked root element `XmlMsg`, and the encoding the file was decoded with.
pub(crate) fn read_root(
    bytes: &[u8],
    limits: &XmlLimits,
) -> Result<(Element, XmlEncoding), XmlError> {
    if bytes.len() > limits.max_bytes {
        return Err(XmlError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let decoded = charset::decode(bytes)?;
    let root = tree::parse(&decoded.text, limits, decoded.offset)?;
    if Node::root(&root).name() != ROOT {
        return Err(XmlError::UnexpectedRoot {
            found: shown(&root.name),
        });
    }
    Ok((root, decoded.encoding))
}
