-- What each agent stream last said it sees (InventorySnapshot: readers with their health,
-- watched certificates, terminals), after each Welcome and when central asks. Live state for the
-- site pages, replaced on every snapshot; the audit trail of changes is in `events`.
CREATE TABLE agent_inventory (
    site_code   text        NOT NULL,
    stream_id   uuid        NOT NULL,
    taken_at    timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    inventory   jsonb       NOT NULL,
    PRIMARY KEY (site_code, stream_id)
);
