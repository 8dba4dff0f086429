//! A receipt computer (レセコン) for the tests: request files of every kind it writes into a
//! `req` folder (whole: staged under a dot name in the same folder, then renamed), and the
//! folders' contents as evidence (every file's name and bytes).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use onshi_domain::ids::{
    InsuranceCardQuery, InsuredBranchNumber, InsuredCardSymbol, InsuredIdentificationNumber,
    InsurerNumber, MedicalInstitutionCode,
};
use onshi_domain::xml::{
    BulkInquiryRequest, BulkResultRequest, InfoRequestHeader, QualificationConfirmSearchInfo,
    QualificationConfirmationRequest, RequestHeader, XmlEncoding, YearMonth,
};

use crate::{SimPerson, eventually};

fn today() -> time::Date {
    (time::OffsetDateTime::now_utc() + time::Duration::hours(9)).date()
}

fn search(person: &SimPerson) -> anyhow::Result<QualificationConfirmSearchInfo> {
    let query = InsuranceCardQuery::parse(
        &person.insurer_number,
        &person.symbol,
        &person.number,
        &person.branch,
        &person.birthdate,
        today(),
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(QualificationConfirmSearchInfo::from_query(&query, false))
}

fn header(site: &str, file_id: &str) -> anyhow::Result<RequestHeader> {
    Ok(RequestHeader {
        qualification_confirmation_date: today(),
        medical_institution_code: MedicalInstitutionCode::parse(site)?,
        arbitrary_file_identifier: Some(file_id.to_string()),
    })
}

/// `OQSsiquc01req`: one eligibility confirmation.
pub fn eligibility(site: &str, person: &SimPerson, file_id: &str) -> anyhow::Result<Vec<u8>> {
    Ok(QualificationConfirmationRequest {
        header: header(site, file_id)?,
        search: search(person)?,
    }
    .to_xml(XmlEncoding::Utf8))
}

/// `OQSmuquc01req`: a batch inquiry for `people`.
pub fn batch(site: &str, people: &[SimPerson], file_id: &str) -> anyhow::Result<Vec<u8>> {
    let mut searches = Vec::new();
    for (i, person) in people.iter().enumerate() {
        let mut s = search(person)?;
        s.arbitrary_identifier = Some(format!("P{i:04}"));
        searches.push(s);
    }
    Ok(BulkInquiryRequest {
        header: header(site, file_id)?,
        searches,
    }
    .to_xml(XmlEncoding::Utf8))
}

/// `OQSmuquc02req`: the results of the batch accepted under `reception_number`.
pub fn batch_fetch(site: &str, reception_number: &str) -> anyhow::Result<Vec<u8>> {
    Ok(BulkResultRequest {
        medical_institution_code: MedicalInstitutionCode::parse(site)?,
        reception_number: reception_number.to_string(),
        arbitrary_file_identifier: None,
    }
    .to_xml(XmlEncoding::Utf8))
}

fn info_header(site: &str, person: &SimPerson, file_id: &str) -> anyhow::Result<InfoRequestHeader> {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Ok(InfoRequestHeader {
        medical_institution_code: MedicalInstitutionCode::parse(site)?,
        insurer_number: InsurerNumber::parse(&person.insurer_number)?,
        insurance_card_symbol: opt(&person.symbol)
            .map(|s| InsuredCardSymbol::parse(&s))
            .transpose()?,
        insured_person_identification_number: InsuredIdentificationNumber::parse(&person.number)?,
        branch_number: opt(&person.branch)
            .map(|s| InsuredBranchNumber::parse(&s))
            .transpose()?,
        arbitrary_file_identifier: Some(file_id.to_string()),
    })
}

/// `YZKsiquc01req`: drug information, as real clients ask.
pub fn drug(site: &str, person: &SimPerson, file_id: &str) -> anyhow::Result<Vec<u8>> {
    Ok(
        edge_agent::views::drug_request(
            info_header(site, person, file_id)?,
            YearMonth::of(today()),
        )
        .to_xml(XmlEncoding::ShiftJis),
    )
}

/// `TKKsiquc01req`: checkup information, as real clients ask.
pub fn checkup(site: &str, person: &SimPerson, file_id: &str) -> anyhow::Result<Vec<u8>> {
    Ok(
        edge_agent::views::checkup_request(info_header(site, person, file_id)?)
            .to_xml(XmlEncoding::Utf8),
    )
}

/// Writes a request whole into `dir` (staged under a dot name beside it, then renamed), as a
/// careful receipt computer does.
pub fn put(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let staging = dir.join(format!(".{name}.staging"));
    std::fs::write(&staging, bytes).with_context(|| format!("writing {}", staging.display()))?;
    std::fs::rename(&staging, dir.join(name))?;
    Ok(())
}

/// Waits for `dir/name` and returns its bytes once it reads as a whole XML file (or a zip
/// archive, a zipped batch result).
pub async fn await_result(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    eventually(&format!("the result {name}"), || async {
        let bytes = std::fs::read(&path).ok()?;
        let end = bytes
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(&bytes[..0], |i| &bytes[..=i]);
        // A zipped batch result is whole once its archive reads.
        let whole = end.ends_with(b"</XmlMsg>")
            || (onshi_domain::zip::is_zip(&bytes)
                && onshi_domain::zip::read_xml_entry(&bytes, 1 << 24).is_ok());
        whole.then_some(bytes)
    })
    .await
}

/// Every file under `dirs` (recursively), by path relative to `base`, with its bytes: two
/// snapshots are equal only if no file was added, removed, renamed or changed.
pub fn snapshot(base: &Path, dirs: &[&str]) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            let name = path
                .strip_prefix(base)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            if kind.is_dir() {
                out.insert(format!("{name}/"), Vec::new());
                walk(base, &path, out)?;
            } else {
                out.insert(name, std::fs::read(&path)?);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    for dir in dirs {
        walk(base, &base.join(dir), &mut out)?;
    }
    Ok(out)
}

/// A short digest of a snapshot for messages: files and total bytes.
pub fn describe(snapshot: &BTreeMap<String, Vec<u8>>) -> String {
    let bytes: usize = snapshot.values().map(Vec::len).sum();
    format!(
        "{} files, {bytes} bytes: {:?}",
        snapshot.len(),
        snapshot.keys().collect::<Vec<_>>()
    )
}
