-- Per-site summaries kept by ingest, so that the dashboard's pages cost the same whatever the
-- history (issue 20). Ingest (`store::summaries`) updates them in the transaction that stores
-- the events, from the rows it actually inserted (a resend adds nothing), one statement per
-- table per group, rows in key order (two writers never deadlock). Every column is a pure
-- function of the events stored: a latest value is the one with the greatest (occurred_at,
-- event_id), a first one the least occurred_at, a count the number of events; so the
-- summaries agree with a recount from `events` however late or how often events arrive
-- (`tests/summaries.rs` in central checks it).

-- One row per site that sent an event.
CREATE TABLE site_summaries (
    site_code             text        PRIMARY KEY,
    last_event_at         timestamptz NOT NULL,
    last_event_id         uuid        NOT NULL,
    last_lookup_at        timestamptz,
    last_lookup_id        uuid,
    last_lookup_outcome   text,
    -- The adoption checklist's proofs (store::adoption): the first reader seen present, the
    -- first "up" of the national link (or the terminal), the first valid lookup.
    first_reader_at       timestamptz,
    first_reader_name     text,
    first_national_up_at  timestamptz,
    first_valid_lookup_at timestamptz
);

-- The latest link report per site and target (onshi, central, terminal).
CREATE TABLE site_links (
    site_code   text        NOT NULL,
    target      text        NOT NULL,
    state       text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    event_id    uuid        NOT NULL,
    PRIMARY KEY (site_code, target)
);

-- Lookups per site, UTC hour and outcome: the overview's 24-hour chart sums the hours it
-- shows over the sites in scope. Hours older than the window the pages read are deleted by
-- maintenance (`Store::prune_lookup_hours`), so the table's size follows the fleet, not the
-- history.
CREATE TABLE site_lookup_hours (
    hour      timestamptz NOT NULL,
    site_code text        NOT NULL,
    outcome   text        NOT NULL,
    lookups   bigint      NOT NULL CHECK (lookups > 0),
    PRIMARY KEY (hour, site_code, outcome)
);

-- Backfill from the events already stored (once, at upgrade: one pass over events).
INSERT INTO site_summaries (site_code, last_event_at, last_event_id)
SELECT DISTINCT ON (site_code) site_code, occurred_at, event_id
FROM events ORDER BY site_code, occurred_at DESC, event_id DESC;

UPDATE site_summaries s SET last_lookup_at = l.occurred_at, last_lookup_id = l.event_id,
                            last_lookup_outcome = l.outcome
FROM (SELECT DISTINCT ON (site_code) site_code, occurred_at, event_id,
             coalesce(body->>'outcome', 'unknown') AS outcome
      FROM events WHERE kind = 'lookup'
      ORDER BY site_code, occurred_at DESC, event_id DESC) l
WHERE l.site_code = s.site_code;

UPDATE site_summaries s SET first_reader_at = r.occurred_at, first_reader_name = r.reader
FROM (SELECT DISTINCT ON (site_code) site_code, occurred_at, body->>'reader_name' AS reader
      FROM events WHERE kind = 'reader_change'
        AND body->>'state' IN ('present_empty', 'card_present')
      ORDER BY site_code, occurred_at, event_id) r
WHERE r.site_code = s.site_code;

UPDATE site_summaries s SET first_national_up_at = u.first_at
FROM (SELECT site_code, min(occurred_at) AS first_at FROM events
      WHERE kind = 'link_change' AND body->>'target' IN ('onshi', 'terminal')
        AND body->>'state' = 'up'
      GROUP BY site_code) u
WHERE u.site_code = s.site_code;

UPDATE site_summaries s SET first_valid_lookup_at = v.first_at
FROM (SELECT site_code, min(occurred_at) AS first_at FROM events
      WHERE kind = 'lookup' AND body->>'outcome' = 'valid'
      GROUP BY site_code) v
WHERE v.site_code = s.site_code;

INSERT INTO site_links (site_code, target, state, occurred_at, event_id)
SELECT DISTINCT ON (site_code, body->>'target') site_code, body->>'target', body->>'state',
       occurred_at, event_id
FROM events WHERE kind = 'link_change'
ORDER BY site_code, body->>'target', occurred_at DESC, event_id DESC;

INSERT INTO site_lookup_hours (hour, site_code, outcome, lookups)
SELECT date_trunc('hour', occurred_at, 'UTC'), site_code, coalesce(body->>'outcome', 'unknown'),
       count(*)
FROM events WHERE kind = 'lookup' AND occurred_at >= now() - interval '8 days'
GROUP BY 1, 2, 3;

-- Ingest writes all three; maintenance deletes old hours; the pages read.
GRANT SELECT, INSERT, UPDATE ON site_summaries, site_links TO onshi_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON site_lookup_hours TO onshi_app;

-- The adoption proofs are read from site_summaries now; migration 0017's cache of them goes.
DROP TABLE adoption_proofs;
