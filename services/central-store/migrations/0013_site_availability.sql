-- Is the site really offline? (issue 6, onshi_domain::hours and ::availability)
--
-- Opening hours: one row per site that has its own, and the chain default under scope '*'.
-- Presence: how each site's latest session stands, written by the replica that holds it; a
-- session's end only applies to the row while it is still that session's (a reconnect through
-- another replica may already have replaced it). The availability table is the verdict the
-- maintenance task computes from both and from the agent's own signals, and the alert checker
-- opens `site_unavailable` alerts from it, only for sites that are open at that moment.
CREATE TABLE opening_hours (
    scope   text        PRIMARY KEY,  -- '*' (chain default) or a site code
    hours   jsonb       NOT NULL,
    set_by  text        NOT NULL,
    set_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agent_presence (
    site_code  text        PRIMARY KEY,
    stream_id  uuid        NOT NULL,
    session_id uuid        NOT NULL,
    connected  boolean     NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    -- prompt: the agent closed or its connection dropped; silent: central heard nothing for
    -- longer than its silence limit and ended the session itself.
    ended      text        CHECK (ended IN ('prompt', 'silent'))
);

CREATE TABLE site_availability (
    site_code   text        PRIMARY KEY,
    stream_id   uuid        NOT NULL,
    state       text        NOT NULL,
    underlying  text        NOT NULL,
    alerting    boolean     NOT NULL,
    open_now    boolean     NOT NULL,
    since       timestamptz NOT NULL,
    checked_at  timestamptz NOT NULL,
    detail      text        NOT NULL
);

-- The agent's latest link probe and reader change per site, without walking its lookups.
CREATE INDEX events_signals_by_site ON events (site_code, kind, occurred_at DESC)
    WHERE kind IN ('link_change', 'reader_change');

ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_check CHECK (kind IN
    ('sequence_gap', 'produced_received_divergence', 'chain_break', 'access_violation',
     'site_unavailable'));

GRANT SELECT, INSERT, UPDATE, DELETE ON opening_hours, agent_presence, site_availability TO onshi_app;
