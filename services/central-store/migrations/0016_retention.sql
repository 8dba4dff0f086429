-- Retention per event kind. Each month partition of `events` made from now on is itself
-- list-partitioned by kind, one sub-partition per retention period in `retention_policy`, so
-- expiry drops whole tables (no DELETE of audit rows, ever). Before a table is dropped, each of
-- its events leaves a stub in `expired_events`: sequence, time, id and its chain link. The chain
-- verifier walks stubs as "expired" (the next event's link must follow from the stub's), so it
-- tells expired-under-policy from missing, and daily seals over dropped ranges still check.
--
-- Months made before this migration are single tables holding every kind; they expire as a
-- whole after the longest period ('*' or any kind's, whichever is longer).

-- A partition key must be part of every unique key on a partitioned table: with months split
-- by kind, an event is its id, time and kind (a resend carries all three, so it is still
-- stored once).
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (event_id, occurred_at, kind);

CREATE TABLE retention_policy (
    -- An event kind, or '*' for every kind not listed.
    kind       text        PRIMARY KEY CHECK (kind ~ '^([a-z_]+|\*)$'),
    months     integer     NOT NULL CHECK (months BETWEEN 1 AND 1200),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text        NOT NULL
);
-- Who looked up whom and saw what: five years. What the agents observed about their own
-- equipment and links: thirteen months (a year, and the month it ends in).
INSERT INTO retention_policy (kind, months, updated_by) VALUES
    ('*', 60, 'migration 0016'),
    ('link_change', 13, 'migration 0016'),
    ('reader_change', 13, 'migration 0016'),
    ('certificate_inventory', 13, 'migration 0016'),
    ('outbox_pressure', 13, 'migration 0016');

CREATE TABLE expired_events (
    site_code   text        NOT NULL,
    stream_id   uuid        NOT NULL,
    sequence    bigint      NOT NULL,
    event_id    uuid        NOT NULL,
    kind        text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    chain_hash  bytea,
    expired_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_code, stream_id, sequence)
);

-- One row per table dropped: which, its month and kinds, how many events, when.
CREATE TABLE retention_expiries (
    id          bigserial   PRIMARY KEY,
    partition   text        NOT NULL,
    month_start date        NOT NULL,
    months      integer     NOT NULL,
    events      bigint      NOT NULL,
    expired_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER expired_events_append_only BEFORE UPDATE OR DELETE ON expired_events
    FOR EACH ROW EXECUTE FUNCTION onshi_refuse_audit_change();
CREATE TRIGGER retention_expiries_append_only BEFORE UPDATE OR DELETE ON retention_expiries
    FOR EACH ROW EXECUTE FUNCTION onshi_refuse_audit_change();

-- What the chain verifier and the bundle export read: the events, and the stubs of the expired.
CREATE VIEW chain_records AS
    SELECT site_code, stream_id, sequence, event_id, terminal_id, occurred_at, body, chain_hash,
           false AS expired
    FROM events
    UNION ALL
    SELECT site_code, stream_id, sequence, event_id, '' AS terminal_id, occurred_at,
           'null'::jsonb AS body, chain_hash, true AS expired
    FROM expired_events;

-- The longest retention in force: what a month made before this migration waits for.
CREATE FUNCTION onshi_longest_retention() RETURNS integer
LANGUAGE sql STABLE AS $$ SELECT max(months) FROM retention_policy $$;

-- A month as list partitions by kind: `<month>_r<months>` for each period other than the
-- default's, with its kinds, and `<month>_r<default months>` as the DEFAULT partition.
CREATE FUNCTION onshi_create_kind_partitions(parent text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    default_months integer := coalesce((SELECT months FROM retention_policy WHERE kind = '*'), 60);
    class record;
BEGIN
    FOR class IN
        SELECT months, array_agg(kind ORDER BY kind) AS kinds FROM retention_policy
        WHERE kind <> '*' AND months <> default_months GROUP BY months ORDER BY months
    LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES IN (%s)',
                       parent || '_r' || class.months, parent,
                       (SELECT string_agg(quote_literal(k), ', ') FROM unnest(class.kinds) k));
    END LOOP;
    EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', parent || '_r' || default_months,
                   parent);
END
$$;
REVOKE ALL ON FUNCTION onshi_create_kind_partitions(text) FROM PUBLIC;

-- As in migration 0006, with each new month split by kind.
CREATE OR REPLACE FUNCTION onshi_ensure_month_partition(month_start date) RETURNS boolean
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
        EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
                        PARTITION BY LIST (kind)', name);
        PERFORM onshi_create_kind_partitions(name);
        EXECUTE format(
            'WITH moved AS (DELETE FROM events_default WHERE occurred_at >= $1 AND occurred_at < $2
                            RETURNING *)
             INSERT INTO %I SELECT * FROM moved', name)
            USING from_at, to_at;
        EXECUTE format('ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       name, from_at, to_at);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)
                        PARTITION BY LIST (kind)', name, from_at, to_at);
        PERFORM onshi_create_kind_partitions(name);
    END IF;
    RETURN true;
END
$$;

-- Drops every table of `events` whose retention ran out by `now`: a month's kind partition
-- (`events_YYYY_MM_rN`, N months after the month ends) or a whole month made before this
-- migration (after the longest retention). Stubs first, then the drop, in one transaction.
-- Returns what it dropped.
CREATE FUNCTION onshi_expire_events(now timestamptz)
RETURNS TABLE (dropped text, month_start date, months integer, events bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
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
           > now THEN
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
REVOKE ALL ON FUNCTION onshi_expire_events(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION onshi_expire_events(timestamptz) TO onshi_app;

GRANT SELECT ON retention_policy, expired_events, retention_expiries, chain_records TO onshi_app;
GRANT INSERT, UPDATE ON retention_policy TO onshi_app;
