//! Each site's access rules as chain IT sets them: the staff roster and the disaster windows
//! (migration 0009). Sessions push them to agents (`ingest`); every change is audited.

use onshi_domain::access::{AccessRules, DisasterWindow, Role, Staff};
use onshi_domain::ids::Prefecture;
use onshi_domain::site::SiteCode;
use time::OffsetDateTime;

use super::{Store, StoreError};

impl Store {
    /// Replaces `site`'s roster; `by` (the operator) is recorded with the change.
    pub async fn put_roster(
        &self,
        site: &SiteCode,
        staff: &[Staff],
        by: &str,
    ) -> Result<(), StoreError> {
        let mut ids: Vec<&str> = staff.iter().map(|s| s.id.as_str()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) || ids.iter().any(|id| id.trim().is_empty()) {
            return Err(StoreError::BadQuery(
                "every staff member needs an id of their own, not empty and not repeated".into(),
            ));
        }
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM site_staff WHERE site_code = $1",
            &[&site.as_str()],
        )
        .await?;
        for member in staff {
            tx.execute(
                "INSERT INTO site_staff (site_code, staff_id, role) VALUES ($1, $2, $3)",
                &[&site.as_str(), &member.id, &member.role.as_str()],
            )
            .await?;
        }
        super::audit_admin(
            &tx,
            Some(site.as_str()),
            &format!("roster of site {site} set to {} staff by {by}", staff.len()),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Opens (or changes) a disaster window; `by` is recorded.
    pub async fn open_disaster_window(
        &self,
        window: &DisasterWindow,
        by: &str,
    ) -> Result<(), StoreError> {
        if window.id.trim().is_empty()
            || window.prefectures.is_empty()
            || window.ends_at <= window.starts_at
        {
            return Err(StoreError::BadQuery(
                "a disaster window needs an id, at least one prefecture, and an end after its start".into(),
            ));
        }
        let prefectures: Vec<&str> = window.prefectures.iter().map(Prefecture::as_str).collect();
        let mut client = self.conn().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO disaster_windows (id, prefectures, starts_at, ends_at, opened_by)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET prefectures = EXCLUDED.prefectures,
                 starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at,
                 opened_by = EXCLUDED.opened_by, opened_at = now()",
            &[
                &window.id,
                &prefectures,
                &window.starts_at,
                &window.ends_at,
                &by,
            ],
        )
        .await?;
        super::audit_admin(
            &tx,
            None,
            &format!(
                "disaster window {} for prefectures {} from {} to {} opened by {by}",
                window.id,
                prefectures.join(","),
                window.starts_at,
                window.ends_at
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// What `site`'s agent must apply: its roster and the windows that cover its prefecture and
    /// have not ended at `now`. `None` while chain IT has set neither (the agent's own
    /// configuration then stays in force).
    pub async fn access_rules(
        &self,
        site: &SiteCode,
        now: OffsetDateTime,
    ) -> Result<Option<AccessRules>, StoreError> {
        let client = self.conn().await?;
        let staff: Vec<Staff> = client
            .query(
                "SELECT staff_id, role FROM site_staff WHERE site_code = $1 ORDER BY staff_id",
                &[&site.as_str()],
            )
            .await?
            .iter()
            .filter_map(|r| {
                Some(Staff {
                    id: r.get(0),
                    role: Role::parse(r.get::<_, &str>(1))?,
                })
            })
            .collect();
        let windows: Vec<DisasterWindow> = client
            .query(
                "SELECT id, prefectures, starts_at, ends_at FROM disaster_windows
                 WHERE $1 = ANY(prefectures) AND ends_at > $2 ORDER BY id",
                &[&site.prefecture().as_str(), &now],
            )
            .await?
            .iter()
            .map(|r| DisasterWindow {
                id: r.get(0),
                prefectures: r
                    .get::<_, Vec<String>>(1)
                    .iter()
                    .filter_map(|p| Prefecture::parse(p).ok())
                    .collect(),
                starts_at: r.get(2),
                ends_at: r.get(3),
            })
            .collect();
        if staff.is_empty() && windows.is_empty() {
            return Ok(None);
        }
        // The version names the content, so a session pushes only what changed.
        let content = serde_json::to_vec(&(&staff, &windows)).expect("rules serialise");
        let version = onshi_domain::hex::encode(
            &ring::digest::digest(&ring::digest::SHA256, &content).as_ref()[..16],
        );
        Ok(Some(AccessRules {
            version,
            staff,
            disaster_windows: windows,
        }))
    }
}
