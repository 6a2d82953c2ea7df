-- alerts (projection): raised by folding the log; one row per (policy, window, threshold), per
-- (policy, window) refused, per allocation overrun, per unpriced model, per spiking hour. An alert's id
-- is derived from what it is about, so replays and rebuilds find the same row.
CREATE TABLE alerts (
    alert_id         uuid PRIMARY KEY,
    -- Insertion order, for the WebSocket hub's tail (one runner inserts at a time).
    seq              bigserial UNIQUE,
    -- Log position of the event that raised it.
    position         bigint NOT NULL,
    budget_id        uuid,
    policy_id        uuid,
    severity         text NOT NULL CHECK (severity IN ('info', 'warning', 'error')),
    alert_type       text NOT NULL,
    message          text NOT NULL,
    details          jsonb NOT NULL,
    raised_at        timestamptz NOT NULL,
    -- Occurrences folded into this alert (refusals in the window, records of an unpriced model).
    occurrences      bigint NOT NULL DEFAULT 1 CHECK (occurrences > 0),
    acknowledged     boolean NOT NULL DEFAULT false,
    acknowledged_by  text,
    acknowledged_at  timestamptz
);
CREATE INDEX alerts_open ON alerts (acknowledged, raised_at DESC);

-- The alerts projection's own view of what it folds: policies and budget names as of the log, each
-- window's used cost and tokens, and spend per UTC hour (for spikes).
CREATE TABLE alert_policies (
    policy_id   uuid PRIMARY KEY,
    definition  jsonb NOT NULL
);
CREATE TABLE alert_budgets (
    budget_id   uuid PRIMARY KEY,
    name        text NOT NULL,
    active      boolean NOT NULL DEFAULT true
);
CREATE TABLE alert_windows (
    policy_id   uuid NOT NULL,
    window_key  text NOT NULL,
    cost        numeric(24,10) NOT NULL,
    tokens      bigint NOT NULL,
    PRIMARY KEY (policy_id, window_key)
);
CREATE TABLE alert_hourly_spend (
    hour  timestamptz PRIMARY KEY,
    cost  numeric(24,10) NOT NULL
);

-- Webhook deliveries, written in the transaction that raised the alert. Not a projection table: a
-- rebuild keeps it, so rebuilt alerts are not delivered again (one row per alert and receiver).
CREATE TABLE alert_outbox (
    alert_id         uuid NOT NULL,
    url              text NOT NULL,
    format           text NOT NULL CHECK (format IN ('json', 'slack')),
    payload          jsonb NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    last_error       text,
    PRIMARY KEY (alert_id, url)
);
CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at) WHERE delivered_at IS NULL;

INSERT INTO projection_checkpoints (name) VALUES ('alerts');
