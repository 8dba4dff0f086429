-- Events partitioned by month of occurred_at, and the alerts table.
--
-- Keys. A unique key on a partitioned table must contain the partition key, so the event id
-- alone can no longer be the primary key: it becomes (event_id, occurred_at). That still stores
-- every event once, because a resend is the same outbox record, byte for byte: same id, same
-- occurred_at, so it hits the same partition and the same key and ON CONFLICT DO NOTHING skips
-- it. The same id with a different occurred_at can only come from a broken or forged agent;
-- central's store also refuses it when it lands on a stream position that is already taken
-- (below). A separate, unpartitioned "event ids" table would make global uniqueness absolute at
-- the cost of a second row and two more index entries per event on the hot path; not worth it
-- for a case that no correct agent produces.
--
-- Stream positions. (site_code, stream_id, sequence) cannot be UNIQUE without occurred_at either,
-- so it is a plain index here, and the store enforces "one event per position" itself: every
-- batch of a stream is written under that stream's agent_streams row lock, a batch entirely
-- above the stream's highest received sequence cannot meet a taken position, and any other
-- batch is checked position by position (a different event at a taken position is refused and
-- audited in security_events).
--
-- Partitions. events_default catches any date without a monthly partition (a site clock far
-- off), so ingest never fails on a date. Central creates the current month and the next two at
-- start and periodically (store::partitions), under an advisory lock, moving rows out of the
-- default partition first if a month arrives that the default already holds rows for.

ALTER TABLE events RENAME TO events_v1;
ALTER INDEX events_pkey RENAME TO events_v1_pkey;
ALTER INDEX events_by_site_and_time RENAME TO events_v1_by_site_and_time;
ALTER INDEX events_by_kind_and_time RENAME TO events_v1_by_kind_and_time;
ALTER TABLE events_v1 RENAME CONSTRAINT events_site_code_stream_id_sequence_key TO events_v1_position_key;

CREATE TABLE events (
    event_id     uuid        NOT NULL,
    site_code    text        NOT NULL,
    stream_id    uuid        NOT NULL,
    sequence     bigint      NOT NULL CHECK (sequence > 0),
    terminal_id  text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    kind         text        NOT NULL,
    body         jsonb       NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
-- The dashboard's queries: a site's events by time, events of a kind by time.
CREATE INDEX events_by_site_and_time ON events (site_code, occurred_at DESC);
CREATE INDEX events_by_kind_and_time ON events (kind, occurred_at DESC);
-- Contiguity walks and the position check of replayed batches.
CREATE INDEX events_by_position ON events (site_code, stream_id, sequence);

CREATE TABLE events_default PARTITION OF events DEFAULT;

-- A monthly partition for every month the unpartitioned table held, then the rows themselves.
DO $$
DECLARE
    month date;
BEGIN
    FOR month IN
        SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date FROM events_v1
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
            'events_' || to_char(month, 'YYYY_MM'),
            (month::timestamp AT TIME ZONE 'UTC'),
            ((month + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
    END LOOP;
END
$$;
INSERT INTO events SELECT * FROM events_v1;
DROP TABLE events_v1;

-- Conditions the alert checker watches, once each: a row is written when a condition is first
-- observed (opened_at still NULL: pending), opened when it has held longer than its threshold,
-- and resolved when it clears. A condition that clears before its threshold leaves no row.
CREATE TABLE alerts (
    id          bigserial   PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('sequence_gap', 'produced_received_divergence')),
    site_code   text        NOT NULL,
    stream_id   uuid        NOT NULL,
    observed_at timestamptz NOT NULL DEFAULT now(),
    opened_at   timestamptz,
    resolved_at timestamptz,
    detail      text        NOT NULL
);
-- The dedup rule: at most one unresolved alert per condition and stream.
CREATE UNIQUE INDEX alerts_one_unresolved
    ON alerts (kind, site_code, stream_id) WHERE resolved_at IS NULL;
CREATE INDEX alerts_by_opened ON alerts (opened_at DESC) WHERE opened_at IS NOT NULL;
