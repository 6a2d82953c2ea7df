-- Allocations: two-phase token reservations (write-side state, kept by the write path).
CREATE TABLE allocations (
    allocation_id     uuid PRIMARY KEY,
    context_id        text NOT NULL,
    component         text NOT NULL,
    tier              text NOT NULL,
    provider          text,
    model             text,
    task_type         text NOT NULL,
    priority          smallint NOT NULL CHECK (priority BETWEEN 1 AND 10),
    tokens_allocated  bigint NOT NULL CHECK (tokens_allocated > 0),
    estimated_cost    numeric(24,10) NOT NULL CHECK (estimated_cost >= 0),
    expires_at        timestamptz NOT NULL,
    state             text NOT NULL CHECK (state IN ('active', 'released', 'expired', 'exhausted')),
    input_tokens_used bigint NOT NULL DEFAULT 0,
    output_tokens_used bigint NOT NULL DEFAULT 0,
    actual_cost       numeric(24,10) NOT NULL DEFAULT 0,
    -- What is still reserved, in each of the windows below (the same amount in each).
    remaining_tokens  bigint NOT NULL CHECK (remaining_tokens >= 0),
    remaining_cost    numeric(24,10) NOT NULL CHECK (remaining_cost >= 0),
    reservations      jsonb NOT NULL,
    created_at        timestamptz NOT NULL,
    resolved_at       timestamptz,
    CHECK (state = 'active' OR (remaining_tokens = 0 AND remaining_cost = 0))
);
CREATE INDEX allocations_due ON allocations (expires_at) WHERE state = 'active';
CREATE INDEX allocations_context ON allocations (context_id);
