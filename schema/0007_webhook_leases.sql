-- Webhook deliveries are claimed with a lease instead of a row lock held across the HTTP call: a
-- worker sets claimed_until and commits, delivers outside any transaction, then records the outcome.
-- A lease that runs out (the worker died mid-delivery) makes the row claimable again: at least once.
ALTER TABLE alert_outbox ADD COLUMN claimed_until timestamptz;
