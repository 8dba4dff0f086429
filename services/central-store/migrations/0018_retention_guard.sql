-- Expiry that the application role cannot turn into erasure (issue 15, item 1).
--
-- Migration 0016 let `onshi_app` call `onshi_expire_events(now)` with any `now` (so
-- `onshi_expire_events('9999-01-01')` dropped every events partition, and the verifier then
-- reported the events as expired, not missing) and write `retention_policy` directly. From here:
-- * expiry reads the database's clock itself: `onshi_expire_events()` takes no time;
-- * `retention_policy` changes only through the owner's `onshi_set_retention`, which refuses a
--   period below the floor this migration sets for the kind (`retention_floor`, owner-only), and
--   writes a `security_events` row naming the database role and the person who asked;
-- * `onshi_app` keeps SELECT on the policy and loses every write on it.

-- The least months each kind may be kept: the audit of who looked up whom (and every kind not
-- listed, '*') five years, what agents report about their own equipment and links thirteen
-- months, as migration 0016 set them. Raising a floor, or lowering one, takes a migration.
CREATE TABLE retention_floor (
    kind   text    PRIMARY KEY CHECK (kind ~ '^([a-z_]+|\*)$'),
    months integer NOT NULL CHECK (months BETWEEN 1 AND 1200)
);
INSERT INTO retention_floor (kind, months) VALUES
    ('*', 60),
    ('link_change', 13),
    ('reader_change', 13),
    ('certificate_inventory', 13),
    ('outbox_pressure', 13);
GRANT SELECT ON retention_floor TO onshi_app;

REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON retention_policy FROM onshi_app;

-- Sets one kind's period for the months partitioned from now on; `requested_by` is the person
-- or program the application acts for (the database role is recorded as well). Refuses a kind
-- that is not an event kind's shape and a period below the kind's floor (SQLSTATE 22023, with
-- the floor in the message).
CREATE FUNCTION onshi_set_retention(kind text, months integer, requested_by text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    floor_months integer;
BEGIN
    IF kind IS NULL OR kind !~ '^([a-z_]+|\*)$' THEN
        RAISE EXCEPTION '% is not an event kind', quote_literal(coalesce(kind, 'NULL'))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF requested_by IS NULL OR length(btrim(requested_by)) = 0 THEN
        RAISE EXCEPTION 'a retention change names who asks for it'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    floor_months := coalesce(
        (SELECT f.months FROM retention_floor f WHERE f.kind = kind),
        (SELECT f.months FROM retention_floor f WHERE f.kind = '*'));
    IF months IS NULL OR months < floor_months OR months > 1200 THEN
        RAISE EXCEPTION '% の保存期間は%か月以上です: the retention of % must be % to 1200 months, not %',
            kind, floor_months, kind, floor_months, coalesce(months::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'the floor per kind is set by migration 0018 (retention_floor)';
    END IF;
    INSERT INTO retention_policy AS p (kind, months, updated_by)
        VALUES (kind, months, requested_by)
        ON CONFLICT ON CONSTRAINT retention_policy_pkey DO UPDATE
            SET months = EXCLUDED.months, updated_by = EXCLUDED.updated_by, updated_at = now();
    INSERT INTO security_events (kind, peer_site_code, claimed_site_code, detail)
        VALUES ('admin_action', NULL, NULL,
                format('%s set the retention of %s to %s months (months partitioned from now on; '
                       'database role %s)', requested_by, kind, months, session_user));
END
$$;
REVOKE ALL ON FUNCTION onshi_set_retention(text, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION onshi_set_retention(text, integer, text) TO onshi_app;

-- As in migration 0016, with the time read from the database's clock: no caller can make a
-- partition look older than it is.
DROP FUNCTION onshi_expire_events(timestamptz);
CREATE FUNCTION onshi_expire_events()
RETURNS TABLE (dropped text, month_start date, months integer, events bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    -- The transaction's start: the clock, not an argument.
    current timestamptz := now();
    leaf record;
    moved bigint;
BEGIN
    FOR leaf IN
        SELECT c.relname::text AS name, p.relname::text AS parent
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE c.relkind = 'r'
          AND (p.relname = 'events' AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$'
               OR c.relname ~ '^events_[0-9]{4}_[0-9]{2}_r[0-9]+$')
        ORDER BY 1
    LOOP
        month_start := to_date(substr(leaf.name, 8, 7), 'YYYY_MM');
        months := CASE WHEN leaf.name ~ '_r[0-9]+$'
                       THEN substring(leaf.name FROM '_r([0-9]+)$')::integer
                       ELSE onshi_longest_retention() END;
        IF (month_start + make_interval(months => months + 1))::timestamp AT TIME ZONE 'UTC'
           > current THEN
            CONTINUE;
        END IF;
        EXECUTE format(
            'INSERT INTO expired_events (site_code, stream_id, sequence, event_id, kind,
                                         occurred_at, chain_hash)
             SELECT site_code, stream_id, sequence, event_id, kind, occurred_at, chain_hash
             FROM %I ON CONFLICT DO NOTHING', leaf.name);
        GET DIAGNOSTICS moved = ROW_COUNT;
        events := moved;
        dropped := leaf.name;
        INSERT INTO retention_expiries (partition, month_start, months, events)
            VALUES (leaf.name, month_start, months, moved);
        EXECUTE format('DROP TABLE %I', leaf.name);
        -- A month whose kind partitions are all gone goes too.
        IF leaf.parent <> 'events' AND NOT EXISTS (
            SELECT 1 FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = leaf.parent) THEN
            EXECUTE format('DROP TABLE %I', leaf.parent);
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION onshi_expire_events() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION onshi_expire_events() TO onshi_app;
