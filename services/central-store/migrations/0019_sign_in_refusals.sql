-- Refused sign-in attempts, counted instead of written one by one (issue 15, item 4).
--
-- Every attempt on the sign-in page used to be a `security_events` row, even one refused by the
-- rate limit, with the login as typed: an address could fill the append-only table without an
-- account. Attempts whose password is checked stay one row each (the limiter bounds them per
-- login and address); attempts refused without a check (rate limited, or every check slot
-- busy) are one row per reason, key and window here, with their count. Not append-only, since
-- the count grows; a trigger lets it only grow.
CREATE TABLE sign_in_refusals (
    -- The start of the limiter's window the attempts fell in.
    window_start timestamptz NOT NULL,
    reason       text        NOT NULL CHECK (reason IN ('rate_limited', 'busy')),
    -- `login:<login>` or `address:<ip>` (a login is at most 64 characters).
    key          text        NOT NULL CHECK (length(key) <= 128),
    attempts     bigint      NOT NULL CHECK (attempts > 0),
    first_at     timestamptz NOT NULL DEFAULT now(),
    last_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (window_start, reason, key)
);
CREATE INDEX sign_in_refusals_by_time ON sign_in_refusals (last_at DESC);

CREATE FUNCTION onshi_refusal_counts_only_grow() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.window_start IS DISTINCT FROM OLD.window_start OR NEW.reason IS DISTINCT FROM OLD.reason
       OR NEW.key IS DISTINCT FROM OLD.key OR NEW.first_at IS DISTINCT FROM OLD.first_at
       OR NEW.attempts < OLD.attempts THEN
        RAISE EXCEPTION 'sign-in refusal counts only grow: % on sign_in_refusals refused for %',
            TG_OP, current_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER sign_in_refusals_only_grow BEFORE UPDATE ON sign_in_refusals
    FOR EACH ROW EXECUTE FUNCTION onshi_refusal_counts_only_grow();

GRANT SELECT, INSERT, UPDATE ON sign_in_refusals TO onshi_app;
