-- Each site's adoption checklist (issue 6, onshi_domain::adoption): the planned start that the
-- deadlines are computed back from, and the steps chain IT marked done with their evidence. Steps
-- the agent can prove are derived from its events and inventory when read, never stored.
CREATE TABLE site_adoption (
    site_code     text        PRIMARY KEY,
    planned_start date        NOT NULL,
    new_site      boolean     NOT NULL DEFAULT false,
    updated_by    text        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE adoption_steps (
    site_code text        NOT NULL,
    step      text        NOT NULL,
    done_on   date        NOT NULL,
    evidence  text        NOT NULL,
    set_by    text        NOT NULL,
    set_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_code, step)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON site_adoption, adoption_steps TO onshi_app;
