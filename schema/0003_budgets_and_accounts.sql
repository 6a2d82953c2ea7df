-- Write-side state of budgets and policies, kept by the write path in the same transaction as the
-- events that change it (budget-events owns these tables). They can be refolded from the log.
CREATE TABLE budgets (
    budget_id    uuid PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    description  text,
    owner        text,
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE policies (
    policy_id          uuid PRIMARY KEY,
    budget_id          uuid NOT NULL REFERENCES budgets,
    policy_type        text NOT NULL CHECK (policy_type IN ('ignore', 'warn', 'soft_limit', 'hard_limit')),
    period             text NOT NULL CHECK (period IN ('hourly', 'daily', 'weekly', 'monthly', 'per_session', 'per_task')),
    -- The scope as set (jsonb of the filters), and a canonical text of it for uniqueness.
    scope              jsonb NOT NULL,
    scope_key          text NOT NULL,
    cost_limit         numeric(24,10) CHECK (cost_limit >= 0),
    token_limit        bigint CHECK (token_limit >= 0),
    warning_threshold  numeric(6,4) NOT NULL CHECK (warning_threshold > 0 AND warning_threshold <= 1),
    action_threshold   numeric(6,4) NOT NULL CHECK (action_threshold > 0 AND action_threshold <= 1),
    enabled            boolean NOT NULL,
    timezone           text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (cost_limit IS NOT NULL OR token_limit IS NOT NULL),
    UNIQUE (budget_id, period, scope_key)
);

-- One account per (policy, window): what was posted (usage) and what is pending (reservations).
-- Updated in the transaction that appends the events, so the log and the accounts never disagree.
CREATE TABLE policy_accounts (
    policy_id       uuid NOT NULL REFERENCES policies,
    window_key      text NOT NULL,
    window_start    timestamptz,
    window_end      timestamptz,
    posted_cost     numeric(24,10) NOT NULL DEFAULT 0 CHECK (posted_cost >= 0),
    posted_tokens   bigint NOT NULL DEFAULT 0 CHECK (posted_tokens >= 0),
    pending_cost    numeric(24,10) NOT NULL DEFAULT 0 CHECK (pending_cost >= 0),
    pending_tokens  bigint NOT NULL DEFAULT 0 CHECK (pending_tokens >= 0),
    records         bigint NOT NULL DEFAULT 0 CHECK (records >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (policy_id, window_key)
);
CREATE INDEX policy_accounts_window ON policy_accounts (policy_id, window_start);
