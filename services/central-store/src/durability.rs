//! Whether an acknowledgement means "on two servers": PostgreSQL's synchronous replication as
//! the server central writes to is configured. Central acks a batch after its commit returns;
//! with `synchronous_standby_names` set and `synchronous_commit` at `on`, `remote_write` or
//! `remote_apply`, a commit returns only once a standby has the WAL, so a failover to that
//! standby loses no acknowledged event. With `local`/`off` or no standby named, an ack is on the
//! primary alone (docs/scale.md, "High availability").

use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// `synchronous_standby_names` of the server (empty: none).
    pub synchronous_standby_names: String,
    /// `synchronous_commit` of central's sessions.
    pub synchronous_commit: String,
    /// Standbys in `sync` or `quorum` state now; `None` when central's role may not see
    /// `pg_stat_replication` (it needs `pg_read_all_stats`, e.g. through `pg_monitor`).
    pub synchronous_standbys_connected: Option<i64>,
}

impl Durability {
    /// Whether a commit waits for a standby.
    pub fn synchronous(&self) -> bool {
        !self.synchronous_standby_names.trim().is_empty()
            && matches!(
                self.synchronous_commit.as_str(),
                "on" | "remote_write" | "remote_apply"
            )
            && self.synchronous_standbys_connected != Some(0)
    }

    /// One line for the log and `central health`.
    pub fn describe(&self) -> String {
        let connected = match self.synchronous_standbys_connected {
            Some(n) => format!("{n} connected"),
            None => "connection not visible to this role".to_string(),
        };
        format!(
            "synchronous_standby_names = {:?}, synchronous_commit = {} ({connected})",
            self.synchronous_standby_names, self.synchronous_commit
        )
    }
}

impl Store {
    pub async fn durability(&self) -> Result<Durability, StoreError> {
        let client = self.conn().await?;
        let row = client
            .query_one(
                "SELECT current_setting('synchronous_standby_names') AS names,
                        current_setting('synchronous_commit') AS commit,
                        CASE WHEN pg_has_role(session_user, 'pg_read_all_stats', 'USAGE')
                             THEN (SELECT count(*) FROM pg_stat_replication
                                    WHERE sync_state IN ('sync', 'quorum'))
                        END AS connected",
                &[],
            )
            .await?;
        Ok(Durability {
            synchronous_standby_names: row.get("names"),
            synchronous_commit: row.get("commit"),
            synchronous_standbys_connected: row.get("connected"),
        })
    }
}

impl Store {
    /// How far the read replica's data is behind (`None` without a replica, or before it replayed
    /// anything). Zero when it replayed all the WAL it received: an idle primary is not lag.
    pub async fn replica_lag(&self) -> Result<Option<std::time::Duration>, StoreError> {
        let Some(replica) = &self.replica else {
            return Ok(None);
        };
        let seconds: Option<f64> = super::conn::checkout(replica)
            .await?
            .query_one(
                "SELECT CASE
                   WHEN NOT pg_is_in_recovery() THEN 0
                   WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
                     THEN 0
                   ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())
                 END::float8",
                &[],
            )
            .await?
            .get(0);
        Ok(seconds.map(|s| std::time::Duration::from_secs_f64(s.max(0.0))))
    }
}
