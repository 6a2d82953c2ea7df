//! The tokio runtime every command runs on: the one `budget start` runs the writer, the projection
//! runners, the WebSocket hub and the database connections on (actix serves HTTP on threads of its
//! own, one per core).
//!
//! It has a thread per core, unless `BUDGET_RUNTIME_THREADS` says otherwise. On the two-core
//! development machine one thread made single-record writes faster (`budget bench`, six alternating
//! runs each: mean 7,901 against 6,914 records/s; fewer wake-ups of another thread between the writer
//! and its connection) but the replay slower (158,000–160,000 against 218,000 events/s: the replay's
//! reader and its fold then share that thread), so the default stays, and an operator can choose.

use std::num::NonZeroUsize;

use anyhow::Context;

pub fn build() -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads()? {
        builder.worker_threads(threads);
    }
    Ok(builder.enable_all().build()?)
}

fn threads() -> anyhow::Result<Option<usize>> {
    let Ok(v) = std::env::var("BUDGET_RUNTIME_THREADS") else { return Ok(None) };
    let n = v.trim().parse::<NonZeroUsize>().ok().with_context(|| {
        format!("BUDGET_RUNTIME_THREADS={v:?} is not a number of threads: set a whole number above 0, e.g. 2")
    })?;
    Ok(Some(n.get()))
}
