-- Grace notifications (猶予届出, onshi_domain::grace): a site that could not start by the March
-- 2023 mandate files one of six categories with the regional bureau, and the grace ends on a
-- condition of its category (the system ready, 6 months after the optical line, the works'
-- end, the closure...). Chain IT records each filing here to see which sites are covered, until
-- when, and which ran past their deadline without being ended.
--
-- `deadline` is the last day the grace covers as computed by onshi_domain::grace when it was
-- filed (for category 6, and 2 without a line date, the review date: `deadline_is_review`), kept
-- so the notification states what was filed and the chain-wide list can be ordered by it; the
-- status (active / overdue / ended) is computed when read, for the Tokyo date.
--
-- A filing is never rewritten: the application role may only end a notification (the ended_*
-- columns, once), never change what was filed or delete it; filing and ending are
-- `admin_action` security events.
CREATE TABLE grace_notifications (
    id                 bigserial   PRIMARY KEY,
    site_code          text        NOT NULL,
    category           smallint    NOT NULL CHECK (category BETWEEN 1 AND 6),
    filed_on           date        NOT NULL,
    -- Category 1: the vendor contract (by 2023-02-28).
    contracted_on      date,
    -- Category 2: when the optical line is available (the grace ends 6 months later).
    line_available_on  date,
    -- Categories 4 and 5 (category 1: the expected ready date).
    ends_on            date,
    -- Category 6 (and 2 while the carrier gives no date).
    review_on          date,
    deadline           date        NOT NULL CHECK (deadline >= filed_on),
    deadline_is_review boolean     NOT NULL DEFAULT false,
    -- Category 1 needs the vendor contract copy.
    evidence           text        CHECK (category <> 1 OR coalesce(btrim(evidence), '') <> ''),
    filed_by           text        NOT NULL,
    filed_at           timestamptz NOT NULL DEFAULT now(),
    ended_on           date        CHECK (ended_on >= filed_on),
    ended_by           text,
    ended_at           timestamptz,
    CHECK ((ended_on IS NULL) = (ended_by IS NULL) AND (ended_on IS NULL) = (ended_at IS NULL))
);

CREATE INDEX grace_notifications_site ON grace_notifications (site_code, filed_on);
CREATE INDEX grace_notifications_open ON grace_notifications (deadline) WHERE ended_on IS NULL;

-- UPDATE only of the ending: what was filed stays as filed.
GRANT SELECT, INSERT ON grace_notifications TO onshi_app;
GRANT UPDATE (ended_on, ended_by, ended_at) ON grace_notifications TO onshi_app;
GRANT USAGE ON SEQUENCE grace_notifications_id_seq TO onshi_app;
