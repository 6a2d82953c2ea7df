-- Usage rollups by end user too (`group_by=user`): '' for records without one. The projection's
-- existing rows are all ''-user rows, since no record had a user before.
ALTER TABLE usage_rollups ADD COLUMN user_id text NOT NULL DEFAULT '';
ALTER TABLE usage_rollups DROP CONSTRAINT usage_rollups_pkey;
ALTER TABLE usage_rollups ADD PRIMARY KEY (hour, provider, model, component, task_type, user_id);
