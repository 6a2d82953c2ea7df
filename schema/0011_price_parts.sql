-- More parts of a price: writing to a prompt cache, and tiers of higher rates above an input size
-- (as JSON: [{above_input_tokens, input_per_token, output_per_token?, cached_input_per_token?,
-- cache_creation_per_token?}], exact decimals).
ALTER TABLE prices
    ADD COLUMN cache_creation_per_token numeric CHECK (cache_creation_per_token >= 0),
    ADD COLUMN tiers jsonb NOT NULL DEFAULT '[]';
