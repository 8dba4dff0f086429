-- Daily seals (issue 5, onshi_domain::seal): once a day central signs, per agent stream, the
-- last sequence its chain verifier walked and that event's chain hash, chained to the stream's
-- previous seal. Audit data: append-only like events (migration 0006).
CREATE TABLE seals (
    site_code        text        NOT NULL,
    stream_id        uuid        NOT NULL,
    -- The Asia/Tokyo day the seal was made.
    day              date        NOT NULL,
    through_sequence bigint      NOT NULL CHECK (through_sequence > 0),
    head             bytea       NOT NULL CHECK (length(head) = 32),
    previous         bytea       NOT NULL CHECK (length(previous) = 32),
    sealed_at        timestamptz NOT NULL,
    -- Ed25519: the signature over the seal's message, and the public key that made it.
    signature        bytea       NOT NULL,
    public_key       bytea       NOT NULL CHECK (length(public_key) = 32),
    PRIMARY KEY (site_code, stream_id, day)
);

GRANT SELECT, INSERT ON seals TO onshi_app;
CREATE TRIGGER seals_append_only BEFORE UPDATE OR DELETE ON seals
    FOR EACH ROW EXECUTE FUNCTION onshi_refuse_audit_change();
