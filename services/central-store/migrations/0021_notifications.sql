-- Notifications (issue 19): endpoints chain IT configures (a webhook URL or a mail address, the
-- alert kinds and the prefectures/sites they want, quiet hours), and one row per notification
-- to send, so deliveries survive a restart and every replica's worker can take a share.
--
-- Rows are made by triggers on `alerts` and `certificate_alerts`, in the transaction that opens,
-- resolves or raises the alert: whichever code path changes an alert, its notifications commit
-- with it or not at all.

CREATE TABLE notification_endpoints (
    id          bigserial   PRIMARY KEY,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    channel     text        NOT NULL CHECK (channel IN ('webhook', 'mail')),
    -- An http(s) URL or a mail address (checked by central before it gets here).
    target      text        NOT NULL CHECK (length(target) BETWEEN 3 AND 2000),
    -- Empty: every kind.
    kinds       text[]      NOT NULL DEFAULT '{}',
    -- Both empty: the whole chain; otherwise the sites of these prefectures and these sites.
    prefectures text[]      NOT NULL DEFAULT '{}',
    sites       text[]      NOT NULL DEFAULT '{}',
    -- Hold what need not wake anyone while the site is closed (chain breaks and access
    -- violations are sent at once).
    quiet_hours boolean     NOT NULL DEFAULT true,
    -- A webhook's signing secret, sealed with central's notification key (AES-256-GCM:
    -- nonce || ciphertext || tag); never stored in clear, never shown after creation.
    secret_sealed bytea,
    enabled     boolean     NOT NULL DEFAULT true,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((channel = 'webhook') = (secret_sealed IS NOT NULL))
);

CREATE TABLE notifications (
    id              bigserial   PRIMARY KEY,
    endpoint_id     bigint      NOT NULL REFERENCES notification_endpoints,
    -- Which alert: `alert:<id>` or `certificate:<fingerprint>`; the order of delivery holds per
    -- key and endpoint (a certificate's thresholds escalate one notice).
    alert_key       text        NOT NULL,
    source          text        NOT NULL CHECK (source IN ('alert', 'certificate', 'test')),
    alert_id        bigint,
    event           text        NOT NULL CHECK (event IN ('opened', 'resolved', 'escalated', 'test')),
    kind            text        NOT NULL,
    site_code       text        NOT NULL,
    detail          text        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    opened_at       timestamptz,
    resolved_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- When a worker may take it next (a claim pushes it past the delivery's timeout, so a
    -- replica that dies mid-delivery leaves it to another).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    last_attempt_at timestamptz,
    last_error      text,
    -- Set while quiet hours hold it; kept once delivered, to show it was held.
    held_since      timestamptz,
    delivered_at    timestamptz
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX notifications_by_alert ON notifications (endpoint_id, alert_key, id)
    WHERE delivered_at IS NULL;
CREATE INDEX notifications_by_endpoint ON notifications (endpoint_id, id DESC);

-- One row per enabled endpoint whose route matches.
CREATE FUNCTION onshi_enqueue_notifications(
    p_key text, p_source text, p_alert_id bigint, p_event text, p_kind text, p_site text,
    p_detail text, p_occurred timestamptz, p_opened timestamptz, p_resolved timestamptz)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO notifications (endpoint_id, alert_key, source, alert_id, event, kind, site_code,
                               detail, occurred_at, opened_at, resolved_at)
    SELECT e.id, p_key, p_source, p_alert_id, p_event, p_kind, p_site, p_detail, p_occurred,
           p_opened, p_resolved
    FROM notification_endpoints e
    WHERE e.enabled
      AND (cardinality(e.kinds) = 0 OR p_kind = ANY(e.kinds))
      AND ((cardinality(e.prefectures) = 0 AND cardinality(e.sites) = 0)
           OR left(p_site, 2) = ANY(e.prefectures) OR p_site = ANY(e.sites))
$$;

-- An alert opens (opened_at set) or resolves (resolved_at set on an opened alert). A pending
-- condition that clears before its threshold was never opened and says nothing.
CREATE FUNCTION onshi_alert_notifications() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    event text;
    detail text := NEW.detail;
BEGIN
    IF NEW.opened_at IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.opened_at IS NULL) THEN
        event := 'opened';
    ELSIF NEW.opened_at IS NOT NULL AND NEW.resolved_at IS NOT NULL
          AND TG_OP = 'UPDATE' AND OLD.resolved_at IS NULL THEN
        event := 'resolved';
    ELSE
        RETURN NULL;
    END IF;
    -- An access violation's detail names the member of staff; a notification does not.
    IF NEW.kind = 'access_violation' THEN
        detail := '施設で許可された閲覧がセンターの再確認で不適合になりました。ダッシュボードで確認してください / '
                  'views allowed at the site fail central''s re-check; see the dashboard';
    END IF;
    PERFORM onshi_enqueue_notifications(
        'alert:' || NEW.id, 'alert', NEW.id, event, NEW.kind, NEW.site_code, detail,
        CASE event WHEN 'opened' THEN NEW.opened_at ELSE NEW.resolved_at END,
        NEW.opened_at, NEW.resolved_at);
    RETURN NULL;
END $$;

CREATE TRIGGER alerts_notify AFTER INSERT OR UPDATE OF opened_at, resolved_at ON alerts
    FOR EACH ROW EXECUTE FUNCTION onshi_alert_notifications();

-- A certificate crosses an expiry threshold: the first one opens its notice, each later
-- (nearer) one escalates it.
CREATE FUNCTION onshi_certificate_notifications() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    earlier boolean;
BEGIN
    SELECT EXISTS (SELECT 1 FROM certificate_alerts
                   WHERE sha256_fingerprint = NEW.sha256_fingerprint AND id <> NEW.id)
      INTO earlier;
    PERFORM onshi_enqueue_notifications(
        'certificate:' || NEW.sha256_fingerprint, 'certificate', NEW.id,
        CASE WHEN earlier THEN 'escalated' ELSE 'opened' END, 'certificate_expiry',
        NEW.site_code, NEW.detail, NEW.raised_at, NEW.raised_at, NULL);
    RETURN NULL;
END $$;

CREATE TRIGGER certificate_alerts_notify AFTER INSERT ON certificate_alerts
    FOR EACH ROW EXECUTE FUNCTION onshi_certificate_notifications();

GRANT SELECT, INSERT, UPDATE ON notification_endpoints TO onshi_app;
-- DELETE: delivered notifications older than the log keeps (`Store::forget_delivered_notifications`).
GRANT SELECT, INSERT, UPDATE, DELETE ON notifications TO onshi_app;
GRANT USAGE ON SEQUENCE notification_endpoints_id_seq, notifications_id_seq TO onshi_app;
