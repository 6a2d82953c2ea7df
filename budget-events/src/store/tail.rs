//! The newest part of the log, read once and shared by every reader of the process: the projection
//! runners and the WebSocket hub.
//!
//! Each of them read and decoded every event on its own, right after every commit: under batch ingest
//! PostgreSQL spent as long printing the log back to two projection runners as inserting it, and
//! decoding it twice was a quarter of the service's CPU (`budget bench`, perf and pg_stat_statements).
//!
//! Why sharing is exact: a read after a cursor returns the first settled events past it in reading
//! order ([`super::read`]), and the settled events never change, whichever connection or transaction
//! reads them. So the pages held here are a contiguous stretch of the one eternal sequence, from
//! `start` to `end`, and the events a reader gets from them are the ones its own read would return.
//! A reader outside that stretch (behind it, or ahead of it because another process moved a
//! checkpoint) reads the log itself, as before.

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::Mutex;

use crate::event::RecordedEvent;
use crate::store::read::{read_after_cached, Cursor, ReadError};

/// Events read per query when the stretch is extended (what a projection applies in one step).
const PAGE: i64 = 5_000;
/// Events held at most; older pages are dropped first. A reader this far behind reads for itself.
const HELD: usize = 10_000;

/// The shared stretch of the log. Cheap to share behind an `Arc`.
pub struct LogTail {
    /// Its own connections, so that a reader waiting for the stretch while holding one of the main
    /// pool's can never leave the reader that extends it without one.
    pool: Pool,
    pages: Mutex<Pages>,
    /// Most events held.
    held: usize,
    /// Queries sent to the log, for tests and metrics.
    queries: AtomicU64,
}

#[derive(Default)]
struct Pages {
    /// The cursor before the first held event (`None` until the first read).
    start: Option<Cursor>,
    pages: VecDeque<Arc<Page>>,
    held: usize,
}

/// Consecutive events, all past `after`.
struct Page {
    after: Cursor,
    events: Vec<RecordedEvent>,
}

impl Page {
    fn end(&self) -> Cursor {
        self.events.last().map_or(self.after, Cursor::after)
    }
}

/// Events a reader got from [`LogTail::read_after`]: a slice of a shared page, or a page of its own.
pub struct TailEvents {
    page: Arc<Page>,
    from: usize,
    to: usize,
}

impl Deref for TailEvents {
    type Target = [RecordedEvent];

    fn deref(&self) -> &[RecordedEvent] {
        &self.page.events[self.from..self.to]
    }
}

impl LogTail {
    /// A tail reading through `pool`, which should be its own (see [`LogTail`]'s `pool`).
    pub fn new(pool: Pool) -> Arc<LogTail> {
        Self::holding(pool, HELD)
    }

    /// A tail that holds about `held` events, read in pages of at most that many.
    pub fn holding(pool: Pool, held: usize) -> Arc<LogTail> {
        let held = held.max(1);
        Arc::new(LogTail { pool, pages: Mutex::new(Pages::default()), held, queries: AtomicU64::new(0) })
    }

    /// How many times the log was read so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Up to `limit` events after `cursor` whose transactions can no longer change, oldest first: what
    /// [`super::read_after`] returns, read from the log only by the first reader to ask past the end.
    /// Readers ask one at a time, so the ones that come right after that reader find its page here.
    pub async fn read_after(&self, cursor: Cursor, limit: i64) -> Result<TailEvents, ReadError> {
        let limit = usize::try_from(limit).unwrap_or(0);
        let mut pages = self.pages.lock().await;
        let start = *pages.start.get_or_insert(cursor);
        if cursor < start {
            // Behind the stretch: read alone, without disturbing what the others share or holding
            // them up meanwhile.
            drop(pages);
            let page = Arc::new(self.fetch(cursor, limit as i64).await?);
            let to = page.events.len();
            return Ok(TailEvents { page, from: 0, to });
        }
        if cursor > pages.end() {
            // Ahead of it (a checkpoint moved by another process): start a new stretch here.
            *pages = Pages { start: Some(cursor), ..Pages::default() };
        }
        if cursor == pages.end() {
            let page = Arc::new(self.fetch(cursor, PAGE.min(self.held as i64)).await?);
            if page.events.is_empty() {
                return Ok(TailEvents { page, from: 0, to: 0 });
            }
            pages.push(page, self.held);
        }
        let page = pages.containing(cursor).expect("a cursor inside the stretch lies on one of its pages");
        let from = page.events.partition_point(|e| Cursor::after(e) <= cursor);
        let to = page.events.len().min(from + limit);
        Ok(TailEvents { page, from, to })
    }

    async fn fetch(&self, cursor: Cursor, limit: i64) -> Result<Page, ReadError> {
        let client = self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => ReadError::Db(e),
            other => ReadError::Unavailable(other.to_string()),
        })?;
        self.queries.fetch_add(1, Ordering::Relaxed);
        Ok(Page { after: cursor, events: read_after_cached(&client, cursor, limit).await? })
    }
}

impl Pages {
    fn end(&self) -> Cursor {
        self.pages.back().map_or_else(|| self.start.unwrap_or_default(), |p| p.end())
    }

    fn push(&mut self, page: Arc<Page>, most: usize) {
        assert_eq!(page.after, self.end(), "the held pages are one contiguous stretch of the log");
        self.held += page.events.len();
        self.pages.push_back(page);
        while self.held > most && self.pages.len() > 1 {
            let dropped = self.pages.pop_front().expect("more than one page");
            self.held -= dropped.events.len();
            self.start = Some(dropped.end());
        }
    }

    /// The page holding the first event after `cursor` (`start <= cursor < end`).
    fn containing(&self, cursor: Cursor) -> Option<Arc<Page>> {
        self.pages.iter().find(|p| p.after <= cursor && cursor < p.end()).cloned()
    }
}
