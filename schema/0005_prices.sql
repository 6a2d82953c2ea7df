-- The price book: every version of every model's price (write-side state, kept by the write path).
-- A version is in effect from effective_from until the next version's effective_from (effective_to).
CREATE TABLE prices (
    version_id             uuid PRIMARY KEY,
    provider               text NOT NULL,
    model                  text NOT NULL,
    input_per_token        numeric(28,18) NOT NULL CHECK (input_per_token >= 0),
    output_per_token       numeric(28,18) NOT NULL CHECK (output_per_token >= 0),
    cached_input_per_token numeric(28,18) CHECK (cached_input_per_token >= 0),
    per_request            numeric(24,10) CHECK (per_request >= 0),
    effective_from         timestamptz NOT NULL,
    effective_to           timestamptz CHECK (effective_to > effective_from),
    source                 text NOT NULL CHECK (source IN ('bundled', 'file', 'url', 'manual')),
    context_window         bigint,
    capabilities           jsonb NOT NULL DEFAULT '[]',
    recorded_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, model, effective_from)
);
CREATE INDEX prices_model ON prices (model, effective_from);
