-- Columns that hold sums get 18 integer digits (numeric(28,10), still within rust_decimal's range):
-- with one record bounded at $1,000,000 (domain::usage::MAX_RECORD_COST), no number of valid records
-- can overflow a rollup, an account or an alert window, so a large record can never stop a projection.
ALTER TABLE usage_rollups ALTER COLUMN cost TYPE numeric(28,10);
ALTER TABLE policy_accounts ALTER COLUMN posted_cost TYPE numeric(28,10), ALTER COLUMN pending_cost TYPE numeric(28,10);
ALTER TABLE allocations ALTER COLUMN actual_cost TYPE numeric(28,10);
ALTER TABLE alert_windows ALTER COLUMN cost TYPE numeric(28,10);
ALTER TABLE alert_hourly_spend ALTER COLUMN cost TYPE numeric(28,10);
