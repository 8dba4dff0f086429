-- Revoked agent (and operator) certificates (issue 6): central's deny list, checked at every
-- TLS handshake (fleet_tls::deny). Audit data: append-only; a revocation is never undone (the
-- site gets a new certificate instead).
CREATE TABLE revoked_certificates (
    sha256_fingerprint text        PRIMARY KEY CHECK (sha256_fingerprint ~ '^[0-9a-f]{64}$'),
    reason             text        NOT NULL,
    revoked_by         text        NOT NULL,
    revoked_at         timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT ON revoked_certificates TO onshi_app;
CREATE TRIGGER revoked_certificates_append_only BEFORE UPDATE OR DELETE ON revoked_certificates
    FOR EACH ROW EXECUTE FUNCTION onshi_refuse_audit_change();
