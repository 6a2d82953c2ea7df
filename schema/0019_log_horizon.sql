-- The log's horizon: the oldest transaction still running that could append to this database's log.
-- Readers of the log read only events of transactions older than it, so that an event committed late
-- is never skipped. Why this is the right id, and why it is safe, is told at `HORIZON` in
-- budget-events/src/store/read.rs, which calls this function as `(SELECT log_horizon())` inside the
-- reading statement.
--
-- It was a CTE of every read. The service's connections plan each statement with its parameters
-- (budget-events/src/db/mod.rs), so that CTE was planned again on every read: 0.41 ms of
-- PostgreSQL's CPU per read against 0.30 ms to run it (pg_stat_statements over a `budget bench` run,
-- 7,785 reads: the projections and the WebSocket hub read after every commit). As a function its plan
-- is made once per connection (`force_generic_plan`: it has no parameters and reads no table whose
-- size could change the plan).
--
-- STABLE matters: a STABLE PL/pgSQL function runs on the snapshot of the statement that calls it
-- (it takes none of its own), so `pg_current_snapshot()` here is the snapshot the caller's scan of
-- `events` uses, as the reasoning in read.rs requires.
CREATE FUNCTION log_horizon() RETURNS xid8
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    h xid8;
BEGIN
    WITH locks AS MATERIALIZED (
        SELECT l.locktype, l.database, l.transactionid, l.classid, l.objid, l.objsubid, l.virtualtransaction,
               l.mode, l.granted
        FROM pg_lock_status() AS l
    )
    SELECT LEAST(
        pg_snapshot_xmax(snap.s),
        (SELECT min(x) FROM pg_snapshot_xip(snap.s) AS x
         WHERE (x::text::numeric % 4294967296)::text NOT IN (
             -- transactions of sessions connected to other databases
             SELECT a.backend_xid::text FROM pg_stat_get_activity(NULL) a
             WHERE a.backend_xid IS NOT NULL AND a.datid IS NOT NULL AND a.datid <> 0 AND a.datid <> here.oid
             UNION ALL
             -- prepared transactions of other databases
             SELECT p.transaction::text FROM pg_prepared_xact() AS p(transaction, gid, prepared, ownerid, dbid)
             WHERE p.dbid <> here.oid
             UNION ALL
             -- transactions that took the never-appends mark (budget-events/src/store/read.rs,
             -- NON_APPENDER_LOCK: its high and low 32 bits, objsubid 1 for a bigint key)
             SELECT own.transactionid::text FROM locks own JOIN locks mark
                 ON mark.virtualtransaction = own.virtualtransaction
             WHERE own.locktype = 'transactionid' AND own.mode = 'ExclusiveLock' AND own.granted
               AND mark.database = here.oid AND mark.locktype = 'advisory' AND mark.granted AND mark.classid = 29285 AND mark.objid = 1633969522 AND mark.objsubid = 1))
    )
    INTO h
    FROM (SELECT pg_current_snapshot() AS s) AS snap,
         (SELECT oid FROM pg_database WHERE datname = current_database()) AS here;
    RETURN h;
END
$$;
