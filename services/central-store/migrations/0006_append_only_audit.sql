-- Least privilege (issue 5): the application role `onshi_app`, which central's serve process
-- runs as (a login role granted it, e.g. CREATE ROLE central LOGIN IN ROLE onshi_app), and
-- append-only audit tables.
--
-- The migrations run as the schema owner (`central migrate`), which owns every table and every
-- partition. `onshi_app` may read everything and write the operational tables, but the audit
-- tables (`events`, `security_events`) only take INSERT and SELECT: no UPDATE, DELETE or
-- TRUNCATE grant, and a trigger that refuses UPDATE and DELETE to every role that is not the
-- owner, so a grant added by mistake still changes nothing. What only the owner may do to
-- events (create a month's partition, move rows out of the default partition into it) is done
-- by SECURITY DEFINER functions that run as the owner and do nothing else.
--
-- A later migration that creates a table grants `onshi_app` what it needs on it.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'onshi_app') THEN
        BEGIN
            CREATE ROLE onshi_app NOLOGIN;
        EXCEPTION
            -- Another database of this cluster created it at the same moment.
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'the role onshi_app does not exist and % may not create it',
                    current_user
                    USING HINT = 'create it once as an administrator (CREATE ROLE onshi_app '
                                 'NOLOGIN), or run the migrations as a role with CREATEROLE';
        END;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO onshi_app;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO onshi_app;
GRANT INSERT ON events, security_events TO onshi_app;
GRANT INSERT, UPDATE, DELETE ON
    agent_streams, alerts, certificates, certificate_inventory_history, certificate_alerts,
    certificate_projection, chain_verification, agent_inventory
    TO onshi_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO onshi_app;

CREATE FUNCTION onshi_refuse_audit_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER') THEN
        RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION 'audit rows are append-only: % on % refused for %', TG_OP, TG_TABLE_NAME,
        current_user
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'events and security events are never changed or deleted by the application';
END
$$;

-- Row triggers on the partitioned table are cloned to every partition, present and future.
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION onshi_refuse_audit_change();
CREATE TRIGGER security_events_append_only BEFORE UPDATE OR DELETE ON security_events
    FOR EACH ROW EXECUTE FUNCTION onshi_refuse_audit_change();

-- The month starting at `month_start` (a first of month, UTC) as a partition of events, unless it
-- exists; rows the default partition holds for it are moved in first (PostgreSQL refuses to
-- attach a range the default partition holds rows for). Returns whether it created one.
CREATE FUNCTION onshi_ensure_month_partition(month_start date) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    name text := format('events_%s', to_char(month_start, 'YYYY_MM'));
    from_at timestamptz := month_start::timestamp AT TIME ZONE 'UTC';
    to_at timestamptz := (month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF extract(day FROM month_start) <> 1 THEN
        RAISE EXCEPTION 'a month partition starts on the first of a month, not %', month_start;
    END IF;
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM events_default WHERE occurred_at >= from_at AND occurred_at < to_at) THEN
        EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
        EXECUTE format(
            'WITH moved AS (DELETE FROM events_default WHERE occurred_at >= $1 AND occurred_at < $2
                            RETURNING *)
             INSERT INTO %I SELECT * FROM moved', name)
            USING from_at, to_at;
        EXECUTE format('ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       name, from_at, to_at);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                       name, from_at, to_at);
    END IF;
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION onshi_ensure_month_partition(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION onshi_ensure_month_partition(date) TO onshi_app;
