-- Per-user limits: the end user an allocation reserves for (usage records keep theirs in the log).
ALTER TABLE allocations ADD COLUMN user_id text;
