-- Agent version rollouts (issue 6, onshi_domain::rollout): the rollout with its wave plan,
-- gates and window; each site's place in it; and every transition, append-only, so that who
-- started, paused, resumed or rolled back a rollout, and which gate stopped it, is never lost.
CREATE TABLE rollouts (
    id                 bigserial   PRIMARY KEY,
    target_version     text        NOT NULL,
    waves              jsonb       NOT NULL,
    gates              jsonb       NOT NULL,
    -- outside_opening_hours: a site is told its target only while it is closed; any: at once.
    update_window      text        NOT NULL CHECK (update_window IN ('outside_opening_hours', 'any')),
    on_gate_failure    text        NOT NULL CHECK (on_gate_failure IN ('pause', 'rollback')),
    soak_secs          integer     NOT NULL CHECK (soak_secs >= 0),
    apply_timeout_secs integer     NOT NULL CHECK (apply_timeout_secs > 0),
    state              text        NOT NULL CHECK (state IN ('running', 'paused', 'completed', 'rolled_back')),
    current_wave       integer     NOT NULL DEFAULT 0,
    wave_started_at    timestamptz NOT NULL DEFAULT now(),
    -- When every site of the current wave had applied (or failed): the soak starts there.
    wave_applied_at    timestamptz,
    created_by         text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rollout_sites (
    rollout_id       bigint      NOT NULL REFERENCES rollouts (id),
    site_code        text        NOT NULL,
    wave             integer     NOT NULL,
    -- The version the site ran when the rollout took it: what a rollback returns it to.
    previous_version text        NOT NULL,
    state            text        NOT NULL CHECK (state IN ('pending', 'targeted', 'applied', 'failed', 'rolled_back')),
    targeted_at      timestamptz,
    reported_at      timestamptz,
    PRIMARY KEY (rollout_id, site_code)
);
CREATE INDEX rollout_sites_by_site ON rollout_sites (site_code, rollout_id DESC);

CREATE TABLE rollout_transitions (
    id         bigserial   PRIMARY KEY,
    rollout_id bigint      NOT NULL REFERENCES rollouts (id),
    at         timestamptz NOT NULL DEFAULT now(),
    from_state text,
    to_state   text        NOT NULL,
    wave       integer     NOT NULL,
    reason     text        NOT NULL,
    actor      text        NOT NULL
);
CREATE INDEX rollout_transitions_by_rollout ON rollout_transitions (rollout_id, id);
CREATE TRIGGER rollout_transitions_append_only BEFORE UPDATE OR DELETE ON rollout_transitions
    FOR EACH ROW EXECUTE FUNCTION onshi_refuse_audit_change();

GRANT SELECT, INSERT, UPDATE ON rollouts, rollout_sites TO onshi_app;
GRANT SELECT, INSERT ON rollout_transitions TO onshi_app;
GRANT USAGE ON SEQUENCE rollouts_id_seq, rollout_transitions_id_seq TO onshi_app;
