-- Tamper evidence (issue 5): each event's link in its agent stream's hash chain
-- (onshi_domain::chain), and where central's chain verifier stands per stream.

-- NULL for events from agents that predate chaining.
ALTER TABLE events ADD COLUMN chain_hash bytea
    CONSTRAINT events_chain_hash_length CHECK (chain_hash IS NULL OR length(chain_hash) = 32);

-- The verifier follows each stream's contiguous sequence (never the ingest path): `walk` is the
-- resumable onshi_domain::chain::ChainWalk (last sequence walked, the head the next event must
-- follow, whether the chain has started). Every break found is kept (`breaks`, `findings`, the
-- latest 100 at most), and `break_detail` is what the `chain_break` alert says; a break stays on
-- record for good: it is evidence, not a passing condition.
CREATE TABLE chain_verification (
    site_code    text        NOT NULL,
    stream_id    uuid        NOT NULL,
    walk         jsonb       NOT NULL,
    events       bigint      NOT NULL DEFAULT 0,
    breaks       bigint      NOT NULL DEFAULT 0,
    findings     jsonb       NOT NULL DEFAULT '[]',
    break_detail text,
    verified_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_code, stream_id)
);

ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_check
    CHECK (kind IN ('sequence_gap', 'produced_received_divergence', 'chain_break'));
