//! Embedded schema migrations.
//!
//! Migrations are SQL files under `services/central-store/migrations/`, compiled into the binary and
//! applied in order, each in its own transaction, under an advisory lock so that two replicas
//! starting together do not race. `schema_migrations` records what was applied with a checksum:
//! a shipped migration that was edited afterwards is refused rather than silently skipped.

use deadpool_postgres::Pool;

use super::StoreError;

#[derive(Debug)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "events",
        sql: include_str!("../migrations/0001_events.sql"),
    },
    Migration {
        version: 2,
        name: "partitioned_events_and_alerts",
        sql: include_str!("../migrations/0002_partitioned_events_and_alerts.sql"),
    },
    Migration {
        version: 3,
        name: "certificates",
        sql: include_str!("../migrations/0003_certificates.sql"),
    },
    Migration {
        version: 4,
        name: "event_chain",
        sql: include_str!("../migrations/0004_event_chain.sql"),
    },
    Migration {
        version: 5,
        name: "agent_inventory",
        sql: include_str!("../migrations/0005_agent_inventory.sql"),
    },
    Migration {
        version: 6,
        name: "append_only_audit",
        sql: include_str!("../migrations/0006_append_only_audit.sql"),
    },
    Migration {
        version: 7,
        name: "seals",
        sql: include_str!("../migrations/0007_seals.sql"),
    },
    Migration {
        version: 8,
        name: "access_recheck",
        sql: include_str!("../migrations/0008_access_recheck.sql"),
    },
    Migration {
        version: 9,
        name: "access_rules",
        sql: include_str!("../migrations/0009_access_rules.sql"),
    },
    Migration {
        version: 10,
        name: "revocations",
        sql: include_str!("../migrations/0010_revocations.sql"),
    },
    Migration {
        version: 11,
        name: "adoption",
        sql: include_str!("../migrations/0011_adoption.sql"),
    },
    Migration {
        version: 12,
        name: "grace_notifications",
        sql: include_str!("../migrations/0012_grace_notifications.sql"),
    },
    Migration {
        version: 13,
        name: "site_availability",
        sql: include_str!("../migrations/0013_site_availability.sql"),
    },
    Migration {
        version: 14,
        name: "rollouts",
        sql: include_str!("../migrations/0014_rollouts.sql"),
    },
    Migration {
        version: 15,
        name: "accounts_and_sites",
        sql: include_str!("../migrations/0015_accounts_and_sites.sql"),
    },
    Migration {
        version: 16,
        name: "retention",
        sql: include_str!("../migrations/0016_retention.sql"),
    },
    Migration {
        version: 17,
        name: "dashboard_speed",
        sql: include_str!("../migrations/0017_dashboard_speed.sql"),
    },
    Migration {
        version: 18,
        name: "retention_guard",
        sql: include_str!("../migrations/0018_retention_guard.sql"),
    },
    Migration {
        version: 19,
        name: "sign_in_refusals",
        sql: include_str!("../migrations/0019_sign_in_refusals.sql"),
    },
    Migration {
        version: 20,
        name: "site_revocations_and_renewals",
        sql: include_str!("../migrations/0020_site_revocations_and_renewals.sql"),
    },
    Migration {
        version: 21,
        name: "notifications",
        sql: include_str!("../migrations/0021_notifications.sql"),
    },
    Migration {
        version: 22,
        name: "site_summaries",
        sql: include_str!("../migrations/0022_site_summaries.sql"),
    },
];

/// Arbitrary constant naming central's migration lock among PostgreSQL advisory locks.
const MIGRATION_LOCK: i64 = 0x6f6e_7368_6946_6c74; // "onshiFlt"

fn checksum(sql: &str) -> String {
    fleet_tls::identity::hex(ring::digest::digest(&ring::digest::SHA256, sql.as_bytes()).as_ref())
}

/// Where a database stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SchemaStatus {
    pub current_version: i32,
    pub latest_version: i32,
    pub applied: Vec<AppliedMigration>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AppliedMigration {
    pub version: i32,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub applied_at: time::OffsetDateTime,
}

/// Applies every pending migration; returns the versions applied now. With the owner's URL, to
/// PostgreSQL directly (never through a transaction pooler): it holds a session advisory lock.
#[allow(clippy::disallowed_methods)]
pub async fn migrate(pool: &Pool) -> Result<Vec<i32>, StoreError> {
    let mut client = pool.get().await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer     PRIMARY KEY,
                 name       text        NOT NULL,
                 checksum   text        NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = apply_pending(&mut client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    result
}

async fn apply_pending(client: &mut deadpool_postgres::Client) -> Result<Vec<i32>, StoreError> {
    let rows = client
        .query("SELECT version, checksum FROM schema_migrations", &[])
        .await?;
    let applied: std::collections::HashMap<i32, String> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    if let Some(newest) = applied.keys().max()
        && *newest > MIGRATIONS.last().map_or(0, |m| m.version)
    {
        return Err(StoreError::SchemaTooNew {
            database: *newest,
            binary: MIGRATIONS.last().map_or(0, |m| m.version),
        });
    }
    let mut done = Vec::new();
    for migration in MIGRATIONS {
        let sum = checksum(migration.sql);
        match applied.get(&migration.version) {
            Some(existing) if *existing == sum => continue,
            Some(_) => {
                return Err(StoreError::MigrationEdited {
                    version: migration.version,
                    name: migration.name,
                });
            }
            None => {}
        }
        let tx = client.transaction().await?;
        tx.batch_execute(migration.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&migration.version, &migration.name, &sum],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
        done.push(migration.version);
    }
    Ok(done)
}

pub async fn status(pool: &Pool) -> Result<SchemaStatus, StoreError> {
    // Served by the API too: behind a pooler like every other query.
    let client = super::conn::checkout(pool).await?;
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    let applied = if exists {
        client
            .query(
                "SELECT version, name, applied_at FROM schema_migrations ORDER BY version",
                &[],
            )
            .await?
            .iter()
            .map(|r| AppliedMigration {
                version: r.get(0),
                name: r.get(1),
                applied_at: r.get(2),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(SchemaStatus {
        current_version: applied.last().map_or(0, |m| m.version),
        latest_version: MIGRATIONS.last().map_or(0, |m| m.version),
        applied,
    })
}
