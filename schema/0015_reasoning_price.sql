-- Reasoning (thinking) output where a provider bills it apart from the answer (LiteLLM's
-- output_cost_per_reasoning_token); the output rate when NULL.
ALTER TABLE prices ADD COLUMN reasoning_per_token numeric CHECK (reasoning_per_token >= 0);
