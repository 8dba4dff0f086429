//! Which sites a query may return: the whole chain, or an area manager's prefectures and sites.
//!
//! The scope is applied inside the SQL of every listing (`SiteScope::sql`), so a person outside
//! it cannot reach a row by guessing a filter; per-site requests check `allows` before querying.

use onshi_domain::site::SiteCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteScope {
    /// Every site of the chain.
    All,
    /// Sites in these prefectures (two-digit codes, the first two digits of a site code) and
    /// these individual sites.
    Area {
        prefectures: Vec<String>,
        sites: Vec<String>,
    },
}

impl SiteScope {
    pub fn allows(&self, site: &SiteCode) -> bool {
        match self {
            SiteScope::All => true,
            SiteScope::Area { prefectures, sites } => {
                sites.iter().any(|s| s == site.as_str())
                    || prefectures.iter().any(|p| site.as_str().starts_with(p))
            }
        }
    }

    /// The SQL condition "`column` is in scope", with the scope as the two text-array
    /// parameters `$prefectures` and `$sites` (see [`SiteScope::params`]); both are NULL for
    /// the whole chain.
    pub fn sql(column: &str, prefectures: usize, sites: usize) -> String {
        format!(
            "(${prefectures}::text[] IS NULL \
              OR left({column}, 2) = ANY(${prefectures}::text[]) \
              OR {column} = ANY(${sites}::text[]))"
        )
    }

    /// The two parameters [`SiteScope::sql`] reads.
    pub fn params(&self) -> (Option<Vec<String>>, Option<Vec<String>>) {
        match self {
            SiteScope::All => (None, None),
            SiteScope::Area { prefectures, sites } => {
                (Some(prefectures.clone()), Some(sites.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(nine: &str) -> SiteCode {
        let code = onshi_domain::ids::MedicalInstitutionCode::with_check_digit(nine).unwrap();
        SiteCode::parse(code.as_str()).unwrap()
    }

    #[test]
    fn an_area_allows_its_prefectures_and_its_listed_sites_only() {
        let osaka_listed = code("271000001");
        let area = SiteScope::Area {
            prefectures: vec!["13".into()],
            sites: vec![osaka_listed.as_str().into()],
        };
        assert!(area.allows(&code("131234567")));
        assert!(area.allows(&osaka_listed));
        assert!(!area.allows(&code("271234567")));
        assert!(SiteScope::All.allows(&code("271234567")));
    }

    #[test]
    fn the_sql_condition_reads_both_parameters() {
        let sql = SiteScope::sql("e.site_code", 3, 4);
        assert!(sql.contains("$3::text[] IS NULL"), "{sql}");
        assert!(
            sql.contains("left(e.site_code, 2) = ANY($3::text[])"),
            "{sql}"
        );
        assert!(sql.contains("e.site_code = ANY($4::text[])"), "{sql}");
        assert_eq!(SiteScope::All.params(), (None, None));
    }
}
