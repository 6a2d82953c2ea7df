-- Which process is following each projection, and until when. A runner that applied a batch keeps
-- its projection for a moment (budget-projections/src/runner.rs), so that it can wait a few
-- milliseconds for more commits without a runner of another process taking the checkpoint in that
-- pause. The lease only decides who steps; exactly-once rests on the checkpoint row lock as before.
ALTER TABLE projection_checkpoints
    ADD COLUMN leader uuid,
    ADD COLUMN leader_until timestamptz;
