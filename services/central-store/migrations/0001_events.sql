-- Events as the agents recorded them, stored once per event id.
CREATE TABLE events (
    event_id     uuid        PRIMARY KEY,
    site_code    text        NOT NULL,
    stream_id    uuid        NOT NULL,
    sequence     bigint      NOT NULL CHECK (sequence > 0),
    terminal_id  text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    kind         text        NOT NULL,
    body         jsonb       NOT NULL,
    UNIQUE (site_code, stream_id, sequence)
);
CREATE INDEX events_by_site_and_time ON events (site_code, occurred_at DESC);
CREATE INDEX events_by_kind_and_time ON events (kind, occurred_at DESC);

-- One row per agent outbox (stream). contiguous_sequence is the highest n such that central
-- holds every event 1..n of the stream: acks never go past it.
CREATE TABLE agent_streams (
    site_code                 text        NOT NULL,
    stream_id                 uuid        NOT NULL,
    agent_version             text        NOT NULL,
    config_hash               text        NOT NULL,
    last_produced_sequence    bigint      NOT NULL DEFAULT 0,
    highest_received_sequence bigint      NOT NULL DEFAULT 0,
    contiguous_sequence       bigint      NOT NULL DEFAULT 0,
    first_seen_at             timestamptz NOT NULL DEFAULT now(),
    last_seen_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_code, stream_id)
);

-- What central refused and why: a batch for another site, a bad hello, a conflicting sequence.
CREATE TABLE security_events (
    id                bigserial   PRIMARY KEY,
    occurred_at       timestamptz NOT NULL DEFAULT now(),
    kind              text        NOT NULL,
    peer_site_code    text,
    claimed_site_code text,
    detail            text        NOT NULL
);
CREATE INDEX security_events_by_time ON security_events (occurred_at DESC);
