-- Certificate inventory (issue 6): what each site's agent reports in `certificate_inventory`
-- events, projected by the maintenance task (never on the ingest path), and expiry alerts.

-- The projection reads certificate events by arrival; this partial index keeps that off the
-- rest of the events table.
CREATE INDEX events_certificate_inventory_by_received
    ON events (received_at) WHERE kind = 'certificate_inventory';

-- The current inventory: one row per site, terminal and certificate. A full snapshot retires
-- the certificates it no longer lists (retired_at); a reported certificate is current again.
CREATE TABLE certificates (
    site_code          text        NOT NULL,
    terminal_id        text        NOT NULL,
    sha256_fingerprint text        NOT NULL,
    role               text        NOT NULL,
    subject            text        NOT NULL,
    issuer             text        NOT NULL,
    serial_hex         text        NOT NULL,
    not_before         timestamptz NOT NULL,
    not_after          timestamptz NOT NULL,
    key_type           text        NOT NULL,
    key_bits           integer     NOT NULL,
    source             text        NOT NULL,
    -- The agent can no longer read the file it came from (source 'missing:<path>').
    missing            boolean     NOT NULL DEFAULT false,
    first_seen_at      timestamptz NOT NULL,
    -- occurred_at of the latest event that listed it: an older event never overrides a newer one.
    last_seen_at       timestamptz NOT NULL,
    retired_at         timestamptz,
    PRIMARY KEY (site_code, terminal_id, sha256_fingerprint)
);
CREATE INDEX certificates_current_by_expiry ON certificates (not_after) WHERE retired_at IS NULL;

-- Every projected inventory event, as reported.
CREATE TABLE certificate_inventory_history (
    event_id      uuid        NOT NULL,
    occurred_at   timestamptz NOT NULL,
    received_at   timestamptz NOT NULL,
    site_code     text        NOT NULL,
    terminal_id   text        NOT NULL,
    full_snapshot boolean     NOT NULL,
    certificates  jsonb       NOT NULL,
    projected_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, occurred_at)
);
CREATE INDEX certificate_inventory_history_by_site
    ON certificate_inventory_history (site_code, occurred_at DESC);

-- Expiry alerts: each threshold (days before not_after) once per certificate. A separate table
-- rather than `alerts`: those are per agent stream (stream_id NOT NULL, one unresolved alert per
-- kind and stream) and the stream checker resolves every unresolved alert its own conditions do
-- not hold; an expiry threshold is a one-time notice, not a condition that clears.
CREATE TABLE certificate_alerts (
    id                 bigserial   PRIMARY KEY,
    sha256_fingerprint text        NOT NULL,
    threshold_days     integer     NOT NULL,
    -- The site and terminal where it was first seen past the threshold (a CA is held by many).
    site_code          text        NOT NULL,
    terminal_id        text        NOT NULL,
    role               text        NOT NULL,
    subject            text        NOT NULL,
    not_after          timestamptz NOT NULL,
    raised_at          timestamptz NOT NULL,
    detail             text        NOT NULL,
    UNIQUE (sha256_fingerprint, threshold_days)
);
CREATE INDEX certificate_alerts_by_raised ON certificate_alerts (raised_at DESC);

-- How far the projection has read (events.received_at); it re-reads a margin behind it, since
-- transactions commit out of received_at order, and skips what the history already holds.
CREATE TABLE certificate_projection (
    id          integer     PRIMARY KEY CHECK (id = 1),
    received_at timestamptz NOT NULL
);
INSERT INTO certificate_projection VALUES (1, '-infinity');
