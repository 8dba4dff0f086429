//! `onshi-sim terminal present`: a patient uses a My Number card on the face-recognition
//! reader. The terminal writes the eligibility result unasked into `<folder>/face`
//! (`OQSsiquc01res_face_<unique>_<yyyyMMddHHmmss>.xml`, `ReferenceClassification` 1, the
//! consent groups as chosen, elements in no schema order unless asked) and the national side keeps the consent for 24 hours: it is
//! written to `<folder>/.sim/consents/` first, so a drug or checkup request sent as soon as
//! the face file appears is answered.
//!
//! The running terminal and this command are different processes: the people and the
//! institution are taken from `<folder>/.sim/terminal.json` (written by the terminal at
//! start) unless given.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use onshi_domain::ids::MedicalInstitutionCode;
use ring::rand::SecureRandom;

use super::files::{self, Folders, Identity};
use super::names;
use super::national::National;
use crate::card::ConsentChoices;
use crate::http::now_jst;
use crate::population::Population;

/// One reading at the face reader.
#[derive(Debug, Clone)]
pub struct Presentation {
    /// The person's index in the population.
    pub holder: usize,
    pub consent: ConsentChoices,
    pub limit_consent: bool,
    /// Write the elements in schema order; by default they are not, as the real terminal
    /// writes face results (`shared/onshi-corpus/OQSsiquc01res_face_unordered.xml`).
    pub schema_order: bool,
}

/// Writes the face result and keeps the consent; returns the face file's path.
pub fn present(
    folders: &Folders,
    identity: &Identity,
    presentation: &Presentation,
) -> anyhow::Result<PathBuf> {
    let institution = MedicalInstitutionCode::parse(&identity.institution)
        .map_err(|e| anyhow::anyhow!("institution {}: {e}", identity.institution))?;
    let population = Arc::new(Population::generate(identity.seed, identity.population));
    let national = National::new(institution, population, Duration::ZERO);
    let unique = unique_id()?;
    let now = now_jst();
    let (xml, consent) = national
        .face_reading(
            presentation.holder,
            &unique,
            presentation.limit_consent,
            presentation.consent,
            now,
        )
        .with_context(|| {
            format!(
                "no person {} in a population of {} (seed {}): 指定された番号の方は母集団にいません",
                presentation.holder, identity.population, identity.seed
            )
        })?;
    let xml = if presentation.schema_order {
        xml
    } else {
        out_of_order(&xml)
    };
    folders.create(false)?;
    if let Some(consent) = &consent {
        files::write_consent(folders, consent)?;
    }
    let path = folders.face.join(names::face_name(&unique, now));
    files::write_atomic(&path, &xml).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The identity of the terminal serving `folders`, or `None` when none was started there.
pub fn identity_of(folders: &Folders) -> anyhow::Result<Option<Identity>> {
    match std::fs::read(folders.identity()) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("reading {}", folders.identity().display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", folders.identity().display())),
    }
}

/// The codec's file with every run of one-line elements at the same depth reversed: the same
/// content, in no schema order (the codec writes one element per line, so this stays
/// well-formed).
fn out_of_order(xml: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(xml);
    let is_leaf = |line: &str| {
        let t = line.trim();
        t.starts_with('<') && !t.starts_with("</") && !t.starts_with("<?") && t.contains("</")
    };
    let indent = |line: &str| line.len() - line.trim_start().len();
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out: Vec<&str> = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let mut j = i;
        while j < lines.len() && is_leaf(lines[j]) && indent(lines[j]) == indent(lines[i]) {
            j += 1;
        }
        if j > i {
            out.extend(lines[i..j].iter().rev());
            i = j;
        } else {
            out.push(lines[i]);
            i += 1;
        }
    }
    out.join("\n").into_bytes()
}

/// 16 random hex digits: unique among readings in the same second, across processes.
fn unique_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    Ok(onshi_domain::hex::encode(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use onshi_domain::xml::QualificationConfirmationResult;

    #[test]
    fn a_face_result_out_of_order_reads_the_same() {
        let population = Arc::new(Population::generate(42, 20));
        let national = National::new(
            MedicalInstitutionCode::parse(super::super::DEFAULT_INSTITUTION).unwrap(),
            population,
            Duration::ZERO,
        );
        let choices = ConsentChoices {
            drug: true,
            ..ConsentChoices::default()
        };
        let now = time::macros::datetime!(2026-12-01 09:15:02);
        let (xml, consent) = national.face_reading(3, "id", true, choices, now).unwrap();
        assert_eq!(consent.map(|c| c.holder), Some(3));
        let (_, none) = national
            .face_reading(3, "id", false, ConsentChoices::default(), now)
            .unwrap();
        assert!(none.is_none(), "no choice, no new consent");
        let shuffled = out_of_order(&xml);
        assert_ne!(shuffled, xml);
        let text = String::from_utf8(shuffled.clone()).unwrap();
        let header = |name: &str| text.find(&format!("<{name}>")).unwrap();
        assert!(header("CharacterCodeIdentifier") < header("ProcessExecutionTime"));
        assert_eq!(
            QualificationConfirmationResult::from_xml(&shuffled).unwrap(),
            QualificationConfirmationResult::from_xml(&xml).unwrap()
        );
        assert!(
            national
                .face_reading(20, "id", false, choices, now)
                .is_none()
        );
    }
}
