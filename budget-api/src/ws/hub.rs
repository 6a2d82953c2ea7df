//! The hub: one task per process that tails the log and the alerts table and broadcasts updates.
//!
//! It reads the log with the gap-safe reader ([`store::read_after_cached`]), so a client connected to
//! any replica sees events appended through every replica, in commit order. It reads on a connection
//! of its own, not through the projections' shared [`store::LogTail`]: the tail holds its lock across
//! each read, so after a commit the hub queued behind a runner's read that had begun before it (and
//! found nothing), then read again. The faster the writer committed, the longer that queue: with the
//! writer's statements planned once per batch the same process's WebSocket p99 went from 43–69 ms to
//! 70–198 ms through the tail and 45–48 ms on its own (`budget bench`, alternating pairs).
//! Broadcasting never blocks: each connection has a bounded queue (a `broadcast` receiver), and one
//! that falls behind is told so and disconnected ([`crate::ws::session`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use budget_events::db::DbPool;
use budget_events::store::{self, Cursor};
use budget_events::writer::LogSignal;
use budget_projections::alerts;
use tokio::sync::{broadcast, watch};

use crate::ws::message::{alert_update, updates_for, Update, TOPICS};

/// How far the hub has broadcast: a connection replays up to here and takes the live feed after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub cursor: Cursor,
    pub alert_seq: i64,
}

/// How often the mark is moved to the end of the log while nobody listens. Moving it takes two queries
/// (`budget bench`: after every commit, 8 % of PostgreSQL's statements under single-record load); a
/// mark this stale only means a connection that arrives gets the last moments as live updates.
const IDLE_MARK_EVERY: Duration = Duration::from_millis(100);

/// One broadcast channel per topic, so a connection's queue counts only the topics it takes.
type Senders = Arc<BTreeMap<&'static str, broadcast::Sender<Arc<Update>>>>;

/// The mark, locked while a step's updates are sent and the mark moved past them, and while a
/// connection subscribes and reads it: so every update after the mark a connection reads reaches its
/// receiver, and none before it does twice.
type SharedMark = Arc<Mutex<Mark>>;

#[derive(Clone)]
pub struct Hub {
    senders: Senders,
    mark: SharedMark,
}

impl Hub {
    /// Subscribes to `topic` and reads the mark, atomically with respect to broadcasting: everything
    /// after the mark comes through the receiver.
    pub fn subscribe(&self, topic: &str) -> (broadcast::Receiver<Arc<Update>>, Mark) {
        let mark = self.mark.lock().expect("the mark lock is never poisoned");
        (self.senders[topic].subscribe(), *mark)
    }

    /// Starts the hub at the current end of the log. `queue` bounds each connection's backlog. The
    /// returned future tails the log until `stop`; the caller spawns (and supervises) it.
    pub async fn start(
        pool: DbPool,
        signal: LogSignal,
        queue: usize,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<(Hub, impl std::future::Future<Output = ()> + Send + 'static)> {
        let client = pool.get().await?;
        let start =
            Mark { cursor: store::settled_end(&**client).await?, alert_seq: alerts::last_seq(&**client).await? };
        drop(client);
        let senders: Senders = Arc::new(TOPICS.iter().map(|t| (*t, broadcast::channel(queue).0)).collect());
        let mark: SharedMark = Arc::new(Mutex::new(start));
        let task = tail(pool, signal, senders.clone(), mark.clone(), stop);
        Ok((Hub { senders, mark }, task))
    }
}

/// Alerts already broadcast, with the count each was announced with (bounded): a projection rebuild
/// re-inserts rows, which must not be announced again; a counting alert whose count rose must be.
struct Seen {
    counts: HashMap<uuid::Uuid, i64>,
    order: VecDeque<uuid::Uuid>,
}

impl Seen {
    const CAPACITY: usize = 100_000;

    /// Whether `alert` is news: never announced, or with a higher count than when it was.
    fn insert(&mut self, alert: &alerts::AlertRow) -> bool {
        match self.counts.get_mut(&alert.id) {
            Some(count) if *count >= alert.occurrences => false,
            Some(count) => {
                *count = alert.occurrences;
                true
            }
            None => {
                self.counts.insert(alert.id, alert.occurrences);
                self.order.push_back(alert.id);
                if self.order.len() > Self::CAPACITY {
                    if let Some(old) = self.order.pop_front() {
                        self.counts.remove(&old);
                    }
                }
                true
            }
        }
    }
}

async fn tail(pool: DbPool, signal: LogSignal, senders: Senders, shared: SharedMark, mut stop: watch::Receiver<bool>) {
    let mut appended = signal.subscribe();
    let mut mark = *shared.lock().expect("the mark lock is never poisoned");
    let mut seen = Seen { counts: HashMap::new(), order: VecDeque::new() };
    let mut wait = Duration::from_millis(10);
    let mut idle_moved = Instant::now();
    while !*stop.borrow() {
        match step(&pool, &senders, &shared, &mut mark, &mut seen, &mut idle_moved).await {
            Ok(true) => {
                wait = Duration::from_millis(10);
                continue;
            }
            Ok(false) => wait = (wait * 2).min(Duration::from_millis(500)),
            Err(e) => {
                tracing::warn!(error = %e, "WebSocket hub could not read the log; will retry");
                wait = Duration::from_secs(1);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = appended.changed() => { wait = Duration::from_millis(10); }
            _ = stop.changed() => {}
        }
    }
}

/// Broadcasts what was appended or raised since `mark`; true when there was something.
async fn step(
    pool: &DbPool,
    senders: &Senders,
    shared: &SharedMark,
    mark: &mut Mark,
    seen: &mut Seen,
    idle_moved: &mut Instant,
) -> anyhow::Result<bool> {
    let listened = || -> BTreeSet<&'static str> {
        senders.iter().filter(|(_, s)| s.receiver_count() > 0).map(|(t, _)| *t).collect()
    };
    if listened().is_empty() && idle_moved.elapsed() < IDLE_MARK_EVERY {
        return Ok(false);
    }
    let client = pool.get().await?;
    if listened().is_empty() {
        // Nobody listens: move the mark to the end without reading (or decoding) what is between.
        *idle_moved = Instant::now();
        let end = Mark { cursor: store::settled_end(&**client).await?, alert_seq: alerts::last_seq(&**client).await? };
        let mut guard = shared.lock().expect("the mark lock is never poisoned");
        if listened().is_empty() {
            *mark = end;
            *guard = end;
            return Ok(false);
        }
    }
    // Both at once, pipelined on the one connection: after a commit the hub waits for one round trip
    // here, not two, before it can broadcast.
    let (events, raised) =
        tokio::try_join!(async { anyhow::Ok(store::read_after_cached(&client, mark.cursor, 500).await?) }, async {
            anyhow::Ok(alerts::after_seq(&**client, mark.alert_seq, 500).await?)
        },)?;
    if events.is_empty() && raised.is_empty() {
        return Ok(false);
    }
    loop {
        // Work only for the topics someone listens to; if a listener arrived meanwhile, do it again,
        // since the mark is about to move past these events.
        let topics = listened();
        let updates = if events.is_empty() || topics.is_empty() {
            Vec::new()
        } else {
            updates_for(&**client, &events, &|t| topics.contains(t)).await?
        };
        let mut guard = shared.lock().expect("the mark lock is never poisoned");
        if !listened().is_subset(&topics) {
            continue;
        }
        // No receivers is not an error: nobody is listening right now.
        for update in updates {
            let _ = senders[update.topic].send(Arc::new(update));
        }
        for alert in raised.iter().filter(|a| seen.insert(a)) {
            let update = alert_update(alert);
            let _ = senders[update.topic].send(Arc::new(update));
        }
        if let Some(last) = events.last() {
            mark.cursor = Cursor::after(last);
        }
        if let Some(last) = raised.last() {
            mark.alert_seq = last.seq;
        }
        *guard = *mark;
        return Ok(true);
    }
}
