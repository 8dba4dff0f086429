-- People at the dashboard and programs with API tokens; the names chain IT gives its sites;
-- who acknowledged an alert.

-- The chain's site directory. A site exists for central once an agent connects or chain IT
-- plans its adoption; this table adds what only people know: the name staff call it by.
CREATE TABLE sites (
    site_code  text        PRIMARY KEY CHECK (site_code ~ '^[0-9]{10}$'),
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Dashboard accounts. The password is an argon2id PHC string; the clear password never
-- reaches the database. An area manager sees only the prefectures and sites of their scope.
CREATE TABLE accounts (
    login             text        PRIMARY KEY CHECK (login ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    display_name      text        NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    role              text        NOT NULL
        CHECK (role IN ('chain_admin', 'area_manager', 'auditor', 'viewer')),
    scope_prefectures text[]      NOT NULL DEFAULT '{}',
    scope_sites       text[]      NOT NULL DEFAULT '{}',
    password_hash     text        NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    disabled_at       timestamptz,
    -- An area manager without a scope would see nothing; refuse the mistake where it is made.
    CHECK (role <> 'area_manager'
           OR cardinality(scope_prefectures) + cardinality(scope_sites) > 0)
);

-- Browser sessions. The cookie carries a random token; only its SHA-256 is stored, so a copy
-- of this table signs nobody in. Each session has its own CSRF token for forms.
CREATE TABLE web_sessions (
    token_hash   bytea       PRIMARY KEY CHECK (length(token_hash) = 32),
    login        text        NOT NULL REFERENCES accounts ON DELETE CASCADE,
    csrf_token   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);

-- API tokens for automation, each acting as the account that made it. Shown once; stored as
-- SHA-256.
CREATE TABLE api_tokens (
    id           bigserial   PRIMARY KEY,
    token_hash   bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    login        text        NOT NULL REFERENCES accounts,
    label        text        NOT NULL CHECK (length(label) BETWEEN 1 AND 200),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz
);

ALTER TABLE alerts
    ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN acknowledged_by text,
    ADD CHECK ((acknowledged_at IS NULL) = (acknowledged_by IS NULL));

GRANT SELECT, INSERT, UPDATE ON sites, accounts TO onshi_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON web_sessions TO onshi_app;
GRANT SELECT, INSERT, UPDATE ON api_tokens TO onshi_app;
GRANT USAGE ON SEQUENCE api_tokens_id_seq TO onshi_app;
