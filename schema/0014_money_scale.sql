-- Amounts keep 18 decimal places (budget_events::money): a call of a few tokens at a price like
-- 2.5e-11 USD per token costs something, and 100,000 of them add up exactly. The columns are
-- unconstrained NUMERIC, so PostgreSQL never rounds nor overflows a sum; the bounds are the Money
-- type's (18 decimals, below 10^10 USD per amount), checked before anything is written.
ALTER TABLE usage_rollups ALTER COLUMN cost TYPE numeric;
ALTER TABLE policies ALTER COLUMN cost_limit TYPE numeric;
ALTER TABLE policy_accounts ALTER COLUMN posted_cost TYPE numeric, ALTER COLUMN pending_cost TYPE numeric;
ALTER TABLE allocations
    ALTER COLUMN estimated_cost TYPE numeric,
    ALTER COLUMN actual_cost TYPE numeric,
    ALTER COLUMN remaining_cost TYPE numeric;
ALTER TABLE alert_windows ALTER COLUMN cost TYPE numeric;
ALTER TABLE alert_hourly_spend ALTER COLUMN cost TYPE numeric;
ALTER TABLE prices ALTER COLUMN per_request TYPE numeric;
