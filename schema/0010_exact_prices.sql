-- Per-token prices are kept exactly as given (LiteLLM has some with more than 18 decimal places): a
-- numeric without a scale stores every digit, so the row equals the event and importing the same file
-- again finds every price unchanged.
ALTER TABLE prices
    ALTER COLUMN input_per_token TYPE numeric,
    ALTER COLUMN output_per_token TYPE numeric,
    ALTER COLUMN cached_input_per_token TYPE numeric;
