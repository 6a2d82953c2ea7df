-- API keys: the write-side rows of ApiKeyCreated / ApiKeyRevoked, kept by the write path (budget-events
-- owns this table). Only a SHA-256 of the secret is stored; the secret is shown once, at creation.
CREATE TABLE api_keys (
    key_id        uuid PRIMARY KEY,
    secret_hash   text NOT NULL UNIQUE,
    -- The secret's first characters (`bgt_1a2b`), to recognise a key in a list; not enough to use it.
    prefix        text NOT NULL,
    name          text,
    scope         text NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    component     text,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz,
    revoked_at    timestamptz,
    -- Updated at most once a minute per key and process (not part of the log).
    last_used_at  timestamptz
);
