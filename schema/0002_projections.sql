-- Where each projection has read the log up to. Locked FOR UPDATE SKIP LOCKED by the worker that
-- runs the projection, which also decides which replica runs it.
CREATE TABLE projection_checkpoints (
    name            text PRIMARY KEY,
    tx_id           xid8 NOT NULL DEFAULT '0'::xid8,
    position        bigint NOT NULL DEFAULT 0,
    events_applied  bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- usage_rollups: usage per hour (UTC) x provider x model x component x task_type.
CREATE TABLE usage_rollups (
    hour           timestamptz NOT NULL CHECK (date_trunc('hour', hour, 'UTC') = hour),
    provider       text NOT NULL,
    model          text NOT NULL,
    component      text NOT NULL,
    task_type      text NOT NULL,
    input_tokens   bigint NOT NULL CHECK (input_tokens >= 0),
    output_tokens  bigint NOT NULL CHECK (output_tokens >= 0),
    cost           numeric(24,10) NOT NULL CHECK (cost >= 0),
    count          bigint NOT NULL CHECK (count > 0),
    PRIMARY KEY (hour, provider, model, component, task_type)
);
INSERT INTO projection_checkpoints (name) VALUES ('usage_rollups');
