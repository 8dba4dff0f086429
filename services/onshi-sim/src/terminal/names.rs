//! File names of the terminal's folders: which request a file is, what its result is called,
//! and the unasked face-reader results.
//!
//! A request is `<Kind>req_<suffix>.xml` where `<Kind>` is ten characters (`OQSsiquc01`,
//! `YZKsiquc01`, …); its result is the same name with `req` replaced by `res` (domain notes §4).
//! Dot files and `.tmp` names are a writer's work in progress and are never requests.

use time::PrimitiveDateTime;

/// The message kinds the simulated terminal answers from its population.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `OQSsiquc01`: single eligibility.
    Eligibility,
    /// `OQSmuquc01`: batch inquiry, answered with a reception number.
    BatchSubmit,
    /// `OQSmuquc02`: batch results for a reception number.
    BatchFetch,
    /// `YZKsiquc01`: drug information.
    Drug,
    /// `TKKsiquc01`: specific health checkup information.
    Checkup,
    /// Any other `<Kind>req_` the terminal software knows (`OQSsiimm01`, `OQSmutic01`, …):
    /// not simulated; answered with an abnormal end in the eligibility shape.
    Other,
}

const KIND_LEN: usize = 10;

/// The kind of a request file name, or `None` when the name is not a request.
pub fn request_kind(name: &str) -> Option<Kind> {
    if name.starts_with('.') || !name.is_char_boundary(KIND_LEN) {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    if !lower.ends_with(".xml") || lower.len() <= KIND_LEN + 4 + 4 {
        return None;
    }
    let (kind, rest) = name.split_at(KIND_LEN);
    if !rest.starts_with("req_") || !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some(match kind {
        "OQSsiquc01" => Kind::Eligibility,
        "OQSmuquc01" => Kind::BatchSubmit,
        "OQSmuquc02" => Kind::BatchFetch,
        "YZKsiquc01" => Kind::Drug,
        "TKKsiquc01" => Kind::Checkup,
        _ => Kind::Other,
    })
}

/// `OQSsiquc01req_X.xml` → `OQSsiquc01res_X.xml` (call only for names [`request_kind`] accepts).
pub fn result_name(request: &str) -> String {
    let (kind, rest) = request.split_at(KIND_LEN.min(request.len()));
    format!("{kind}res{}", rest.strip_prefix("req").unwrap_or(rest))
}

/// `OQSsiquc01res_face_<unique>_<yyyyMMddHHmmss>.xml`. The middle part of real names is
/// UNCONFIRMED; `unique` keeps many readings in one second apart.
pub fn face_name(unique: &str, at: PrimitiveDateTime) -> String {
    format!(
        "OQSsiquc01res_face_{unique}_{:04}{:02}{:02}{:02}{:02}{:02}.xml",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn kinds_and_result_names() {
        assert_eq!(
            request_kind("OQSsiquc01req_202601150001.xml"),
            Some(Kind::Eligibility)
        );
        assert_eq!(
            request_kind("YZKsiquc01req_02261201093012340.xml"),
            Some(Kind::Drug)
        );
        assert_eq!(request_kind("TKKsiquc01req_a.XML"), Some(Kind::Checkup));
        assert_eq!(request_kind("OQSmuquc01req_b.xml"), Some(Kind::BatchSubmit));
        assert_eq!(request_kind("OQSmuquc02req_c.xml"), Some(Kind::BatchFetch));
        assert_eq!(request_kind("OQSsiimm01req_d.xml"), Some(Kind::Other));
        for not_a_request in [
            ".OQSsiquc01req_x.xml.tmp",
            "OQSsiquc01req_x.xml.tmp",
            "OQSsiquc01res_x.xml",
            "OQSsiquc01req_.xml",
            "notes.txt",
            "ＯＱＳ",
        ] {
            assert_eq!(request_kind(not_a_request), None, "{not_a_request}");
        }
        assert_eq!(
            result_name("OQSmuquc02req_20260115_0001.xml"),
            "OQSmuquc02res_20260115_0001.xml"
        );
        assert_eq!(
            face_name("ab12", datetime!(2026-12-01 09:15:02)),
            "OQSsiquc01res_face_ab12_20261201091502.xml"
        );
    }
}
