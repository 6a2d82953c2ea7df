-- An allocation whose request named no task type, or neither a tier nor a provider, reserved as if
-- for any (CreateAllocation::task_type_open, ::tier_open): a policy set later opens its window with
-- it on the same rule. Allocations made before kept their `default` task type and derived tier.
ALTER TABLE allocations
    ADD COLUMN task_type_open boolean NOT NULL DEFAULT false,
    ADD COLUMN tier_open boolean NOT NULL DEFAULT false;
