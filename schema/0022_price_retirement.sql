-- The day a price's source says its provider stops serving the model (LiteLLM's deprecation_date),
-- so that an imported model retiring soon is not recommended (PriceSpec::retires_on).
ALTER TABLE prices ADD COLUMN retires_on date;
