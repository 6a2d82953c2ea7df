//! Caps glibc's malloc arenas at one per core (at least two) before any thread starts.
//!
//! glibc gives a thread that meets a locked arena a new one, up to eight per core, and an arena keeps
//! the memory freed into it. The service's many threads (tokio's workers and blocking pool, actix's
//! workers) each churn through large buffers (a 1,000-record batch, a 2,000-event page of the log), so
//! the freed memory sat in up to 16 arenas: `budget bench` measured the server at 130–155 MB with
//! 1,000,046 events in the log, and 110–124 MB with two arenas (`MALLOC_ARENA_MAX=2`), at the same
//! throughput. An operator's own `MALLOC_ARENA_MAX` is left to glibc.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only sets a malloc parameter; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_arenas() {}
