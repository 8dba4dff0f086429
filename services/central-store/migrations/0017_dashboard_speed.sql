-- What the dashboard's slowest questions needed (measured with 1,000 sites and 10 million
-- events, `fleet-bench pages`):
-- * an auditor's search by patient over all time: an index on the keyed hash;
-- * a search over a period without a site: events by time, whatever their kind;
-- * each site's latest link probe per target (the overview's links tile);
-- * the adoption checklist's proofs, which never change once made: kept once found.
CREATE INDEX events_by_patient ON events ((body->>'patient_ref'), occurred_at DESC);
CREATE INDEX events_by_time ON events (occurred_at DESC);
CREATE INDEX events_link_probes ON events (site_code, (body->>'target'), occurred_at DESC)
    WHERE kind = 'link_change';

CREATE TABLE adoption_proofs (
    site_code text        NOT NULL,
    evidence  text        NOT NULL,
    first_at  timestamptz NOT NULL,
    what      text        NOT NULL,
    PRIMARY KEY (site_code, evidence)
);
GRANT SELECT, INSERT ON adoption_proofs TO onshi_app;
