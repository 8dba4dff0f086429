-- Who may see what, set centrally (issue 5): each site's staff roster and the disaster windows
-- chain IT opens mirroring the national announcements. Central pushes them to the agents
-- (Directive.access_rules); every change is an `admin_action` security event.
CREATE TABLE site_staff (
    site_code  text        NOT NULL,
    staff_id   text        NOT NULL,
    role       text        NOT NULL CHECK (role IN ('doctor', 'dentist', 'pharmacist', 'clerk', 'site_admin')),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_code, staff_id)
);

CREATE TABLE disaster_windows (
    id          text        PRIMARY KEY,
    -- Two-digit prefecture codes.
    prefectures text[]      NOT NULL CHECK (cardinality(prefectures) > 0),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL CHECK (ends_at > starts_at),
    opened_by   text        NOT NULL,
    opened_at   timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE, DELETE ON site_staff, disaster_windows TO onshi_app;
