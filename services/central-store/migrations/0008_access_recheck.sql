-- Central's re-check of information views (issue 5, onshi_domain::access::recheck): every view an
-- agent allowed is checked again against the policy table and the consents central holds; what
-- fails is kept as a violation and raises an `access_violation` alert (kept, like a chain break).

-- How far the re-check has read: (received_at, event_id) of the last view checked.
CREATE TABLE access_recheck_position (
    id          boolean     PRIMARY KEY DEFAULT true CHECK (id),
    received_at timestamptz NOT NULL,
    event_id    uuid        NOT NULL
);

CREATE TABLE access_violations (
    event_id    uuid        PRIMARY KEY,
    site_code   text        NOT NULL,
    stream_id   uuid        NOT NULL,
    sequence    bigint      NOT NULL,
    occurred_at timestamptz NOT NULL,
    code        text        NOT NULL,
    detail      text        NOT NULL,
    found_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX access_violations_by_stream ON access_violations (site_code, stream_id);

-- The re-check reads allowed views by arrival.
CREATE INDEX events_info_view_by_received ON events (received_at, event_id) WHERE kind = 'info_view';

ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_check CHECK (kind IN
    ('sequence_gap', 'produced_received_divergence', 'chain_break', 'access_violation'));

GRANT SELECT, INSERT, UPDATE ON access_recheck_position TO onshi_app;
GRANT SELECT, INSERT ON access_violations TO onshi_app;
CREATE TRIGGER access_violations_append_only BEFORE UPDATE OR DELETE ON access_violations
    FOR EACH ROW EXECUTE FUNCTION onshi_refuse_audit_change();
