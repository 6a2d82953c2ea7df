//! The tokio runtime every command runs on, sized for the service that `budget start` runs on it.
//!
//! actix serves HTTP on threads of its own, one per core. What runs on this runtime (the batching
//! writer, the projection runners, the WebSocket hub, the connections' driver tasks) mostly waits on
//! PostgreSQL and hands work to one another: with a thread per core here as well, the service had
//! twice as many busy threads as cores, and every hand-off between these tasks could be a wake-up of
//! another thread. `budget bench` on two cores, six runs each, alternating: one runtime thread gave
//! 6,111–8,575 single-record writes/s (mean 7,901), two gave 6,448–7,613 (mean 6,914). So the runtime
//! gets half the cores, at least one; `BUDGET_RUNTIME_THREADS` sets another number.

use std::num::NonZeroUsize;

use anyhow::Context;

pub fn build() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(threads()?).enable_all().build()?)
}

fn threads() -> anyhow::Result<usize> {
    match std::env::var("BUDGET_RUNTIME_THREADS") {
        Ok(v) => Ok(v
            .trim()
            .parse::<NonZeroUsize>()
            .ok()
            .with_context(|| {
                format!("BUDGET_RUNTIME_THREADS={v:?} is not a number of threads: set a whole number above 0, e.g. 2")
            })?
            .get()),
        Err(_) => Ok((std::thread::available_parallelism().map_or(2, usize::from) / 2).max(1)),
    }
}
