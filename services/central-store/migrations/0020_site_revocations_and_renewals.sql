-- One stolen agent key must not mint certificates without end (issue 15, item 6).
--
-- site_revocations: an operator revokes a whole site: every agent certificate of the site whose
-- validity starts before `issued_before` is refused at the handshake (fleet_tls::deny), those a
-- stolen key had minted included. The latest time per site applies. Audit data: append-only.
CREATE TABLE site_revocations (
    id            bigserial   PRIMARY KEY,
    site_code     text        NOT NULL CHECK (site_code ~ '^[0-9]{10}$'),
    issued_before timestamptz NOT NULL,
    reason        text        NOT NULL CHECK (length(btrim(reason)) > 0),
    revoked_by    text        NOT NULL,
    revoked_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX site_revocations_by_site ON site_revocations (site_code, issued_before DESC);
GRANT SELECT, INSERT ON site_revocations TO onshi_app;
GRANT USAGE ON SEQUENCE site_revocations_id_seq TO onshi_app;
CREATE TRIGGER site_revocations_append_only BEFORE UPDATE OR DELETE ON site_revocations
    FOR EACH ROW EXECUTE FUNCTION onshi_refuse_audit_change();

-- certificate_renewals: central signs a renewal once per certificate serial; the primary key
-- is what refuses a second one (two sessions racing included). Append-only.
CREATE TABLE certificate_renewals (
    renewed_serial     text        PRIMARY KEY CHECK (renewed_serial ~ '^[0-9a-f]+$'),
    site_code          text        NOT NULL,
    issued_serial      text        NOT NULL,
    issued_fingerprint text        NOT NULL CHECK (issued_fingerprint ~ '^[0-9a-f]{64}$'),
    issued_at          timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT ON certificate_renewals TO onshi_app;
CREATE TRIGGER certificate_renewals_append_only BEFORE UPDATE OR DELETE ON certificate_renewals
    FOR EACH ROW EXECUTE FUNCTION onshi_refuse_audit_change();
