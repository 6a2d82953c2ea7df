//! The write path: decide each command of a batch in order against the locked state, append the
//! events, write back the accounts and store the idempotency outcomes, all in the caller's one
//! transaction.
//!
//! The [`crate::writer`] feeds it batches of concurrent commands so that one commit (one fsync) serves
//! many callers. Everything a command needs to be decided is read inside the transaction, so the
//! outcome stored under an idempotency key is exactly what was committed.
//!
//! This file is the batch skeleton, the same for every command:
//! 1. load what the batch needs (stored keys, policies, the allocations and prices it names);
//! 2. pass 1, in order: replay keyed commands, decide what needs no account (policy, budget and price
//!    changes), and collect the accounts the rest will post to;
//! 3. lock those accounts in key order (two writers never deadlock);
//! 4. pass 2, in order: post each command against the locked accounts;
//! 5. append every event in one insert, write back accounts and allocations, store the outcomes.
//!
//! Each command family lives in its own module ([`usage`], [`allocation`], [`policy`], [`budget`],
//! [`prices`], [`alerts`], [`check`], [`keys`]) and implements [`Handle`]: its pass 1 and pass 2. A new command
//! is a type in one of them, a `Handle` impl, and a line in [`commands!`](command).

mod alerts;
mod allocation;
mod budget;
mod check;
mod command;
mod idempotency;
mod keys;
mod policy;
mod prices;
mod usage;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::db::{WriteTx, PLAN_ONCE};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::allocation::Allocation;
use crate::domain::policy::{Account, Policy};
use crate::event::NewEvent;
use crate::store::accounts::{self, AccountKey, Bounds};
use crate::store::idempotency::IdempotencyKey;
use crate::store::{allocations, insert_events, policies, prices as price_store, AppendError};

pub use alerts::{AcknowledgeCommand, AcknowledgeOutcome};
pub use allocation::{AllocateCommand, AllocationOutcome, ExpireCommand, ReleaseCommand};
pub use budget::{BudgetChange, BudgetCommand, BudgetOutcome};
pub use check::{CheckCommand, CheckOutcome};
pub use command::{Command, CommandError, LedgerCommand, Outcome};
pub use keys::{CreateKeyCommand, KeyOutcome, LastAdmin, RevokeKeyCommand};
pub use policy::{PolicyCommand, PolicyOutcome};
pub use prices::{PricesCommand, PricesOutcome, RepriceCommand, RepriceOutcome};
pub use usage::{ItemOutcome, ItemStatus, OutcomeError, UsageCommand, UsageItem, UsageOutcome};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Another process stored one of the batch's keys or appended to one of its streams meanwhile.
    /// Roll back and run the batch again: the retry sees what the other process committed.
    #[error("a concurrent writer committed a key or stream of this batch; retry")]
    Race,
    /// The accounts locked with the loads, foreseen from the policies of the batch before, were not
    /// the ones the batch posts to (a policy changed in between). Roll back and run the batch again
    /// without foreseeing.
    #[error("the accounts foreseen for this batch were not the ones it posts to; retry without foreseeing")]
    Misforeseen,
    #[error(transparent)]
    Append(AppendError),
    #[error("database error in the write path: {}", crate::db::error_message(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Read(#[from] crate::store::ReadError),
    /// A stored idempotency outcome that is not the JSON the write path stores: its row was changed
    /// outside budget. Nothing is decided on it.
    #[error("the stored outcome of idempotency key `{key}` is not JSON ({source}); its row in idempotency_keys was changed outside budget: restore it from a backup or delete it")]
    StoredOutcome { key: String, source: serde_json::Error },
    /// A bug: deciding the batch panicked (see `writer::write_once`).
    #[error("the write path failed on a bug (its log line has the details): {0}")]
    Panicked(String),
}

impl From<AppendError> for LedgerError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::ConcurrentAppend(_) => LedgerError::Race,
            other => LedgerError::Append(other),
        }
    }
}

/// An event with the stream and version it is appended at.
pub(crate) type VersionedEvent = (String, i64, NewEvent);

/// What one command of a batch does: its pass 1 (`plan`) and pass 2 (the [`Step::Post`] it returns).
pub(crate) trait Handle: LedgerCommand {
    /// The command's own idempotency key.
    fn key(&self) -> Option<&IdempotencyKey> {
        None
    }
    /// Every key the batch must look up for it (the command's, and its items' own).
    fn keys(&self) -> Vec<&IdempotencyKey> {
        self.key().into_iter().collect()
    }
    /// The API key that sent it, checked again in the transaction (revoked or expired: refused, nothing
    /// written). The API admits these commands on a key it remembers instead of looking the key up for
    /// every request (`auth::guard`); this check keeps a revocation immediate in every process.
    fn signer(&self) -> Option<Uuid> {
        None
    }
    /// Records the command writes, for sizing batches.
    fn weight(&self) -> usize {
        1
    }
    /// Allocations it names, locked before anything is decided.
    fn allocations(&self) -> Vec<Uuid> {
        Vec::new()
    }
    /// Whether it reads the log to be decided (a policy opening its window with the usage already in
    /// it): its batch then runs alone, with no other batch between its read and its commit.
    fn excludes_other_batches(&self) -> bool {
        false
    }
    /// Whether every statement it runs finds its rows by key (the batch's loads, locks and writes),
    /// with no search of the log or of a table whose plan depends on the values searched for: its
    /// statements may then be planned once per connection (see [`process_timed`]).
    fn reads_by_key(&self) -> bool {
        false
    }
    /// (context, component) pairs whose active allocations it may settle against, locked with the named.
    fn contexts(&self) -> Vec<(&str, &str)> {
        Vec::new()
    }
    /// The accounts it will post to, foreseen from `policies` (those the writer's previous batch loaded)
    /// before anything is loaded, so that its batch can lock them together with its loads; `None` when
    /// that cannot be told before the loads (an allocation to settle, a provider to look up), and the
    /// batch then locks its accounts after pass 1. A wrong guess costs a retry, never a wrong answer:
    /// pass 1 decides on the policies the batch loads itself ([`process_timed`]).
    fn foreseen_accounts(&self, _policies: &[Policy], _now: DateTime<Utc>) -> Option<Vec<(AccountKey, Bounds)>> {
        None
    }
    /// (provider, model) of the records it prices.
    fn priced_models(&self) -> Vec<(&str, &str)> {
        Vec::new()
    }
    /// Pass 1: decide what needs no account, and ask for the accounts pass 2 posts to.
    async fn plan<'a>(&'a self, tx: &WriteTx, batch: &mut Batch<'a>) -> Result<Step<'a>, LedgerError>;
    /// An outcome returned again (a retry with the same key).
    fn mark_replayed(_outcome: &mut Self::Outcome) {}
    /// Fills in the log positions of the events the outcome names, once they are appended (or, for an
    /// outcome replayed to a retry, looked up).
    fn assign_positions(_outcome: &mut Self::Outcome, _positions: &HashMap<Uuid, i64>) {}
    /// The events an outcome names without their position. An outcome is stored before its events'
    /// positions are known (in the same round trip as the events' insert), so a replayed one looks
    /// them up in the log.
    fn unpositioned(_outcome: &Self::Outcome) -> Vec<Uuid> {
        Vec::new()
    }
    /// Keys of parts of the command (a batch's records) to store besides the command's own.
    fn part_outcomes<'a>(&'a self, _outcome: &Self::Outcome, _batch: &Batch<'_>) -> Vec<(&'a IdempotencyKey, String)> {
        Vec::new()
    }
}

/// A command's decision, or its posting, deferred until the accounts are locked.
pub(crate) enum Step<'a> {
    /// Decided in pass 1, with its events.
    Done(Result<Outcome, CommandError>, Vec<VersionedEvent>),
    /// Decided in pass 2 against the locked accounts.
    Post(PostFn<'a>),
}

/// Pass 2 of one command: posts it to the locked books and returns its outcome.
pub(crate) type PostFn<'a> = Box<dyn FnOnce(&mut Books) -> Result<Outcome, CommandError> + Send + 'a>;

impl<'a> Step<'a> {
    pub(crate) fn post(f: impl FnOnce(&mut Books) -> Result<Outcome, CommandError> + Send + 'a) -> Self {
        Step::Post(Box::new(f))
    }
}

/// What pass 1 reads and shares between the commands of a batch.
pub(crate) struct Batch<'a> {
    pub now: DateTime<Utc>,
    /// Keys stored by earlier transactions: key → (request hash, outcome).
    pub known: HashMap<String, (String, serde_json::Value)>,
    /// Every policy, as the commands before this one left it.
    pub policies: Vec<Policy>,
    /// The allocations the batch names, locked.
    pub allocations: HashMap<Uuid, Allocation>,
    /// The active allocations of each (context, component) the batch's usage names (also locked).
    pub by_context: HashMap<(String, String), Vec<Uuid>>,
    /// Every price version the batch's records could resolve to.
    pub price_versions: Vec<crate::domain::price::PriceVersion>,
    pub price_keys: Vec<(String, String)>,
    /// Streams appended to by earlier commands of the batch, at their last version.
    pub stream_versions: HashMap<String, i64>,
    /// Item keys taken by earlier records of the batch: key → (request hash, record id).
    pub item_keys: HashMap<&'a str, (&'a str, Uuid)>,
    /// Records corrected by an earlier re-price of the batch (the log does not show them yet).
    pub repriced: HashSet<Uuid>,
    /// The accounts pass 2 posts to, with their windows' bounds.
    pub needed: BTreeMap<AccountKey, Bounds>,
    /// Keys that sent commands of the batch and can no longer be used (revoked or expired).
    pub inactive_keys: HashSet<Uuid>,
}

impl Batch<'_> {
    /// Reads what the batch's commands need to be decided: their stored keys, every policy, the
    /// allocations they name (locked, in id order) and the price versions their records could resolve to.
    async fn load(tx: &WriteTx, commands: &[Command]) -> Result<Self, LedgerError> {
        let keys: Vec<&str> = commands.iter().flat_map(Command::keys).map(|k| k.key.as_str()).collect();
        let contexts: Vec<(&str, &str)> = commands.iter().flat_map(Command::contexts).collect();
        // The price versions every record of the batch could resolve to (one query).
        let price_keys = crate::domain::price::candidate_keys(commands.iter().flat_map(Command::priced_models));
        let mut signers: Vec<Uuid> = commands.iter().filter_map(Command::signer).collect();
        signers.sort();
        signers.dedup();
        // Independent reads, sent together: tokio-postgres pipelines them on the connection, so they
        // cost one round trip instead of five (the server runs them in order, after the ledger lock).
        let (known, policies, by_context, price_versions, inactive_keys) = tokio::try_join!(
            crate::store::idempotency::lookup(tx, &keys),
            policies::load_all(tx),
            allocations::active_by_context(tx, &contexts),
            price_store::versions_for_in(tx, &price_keys),
            crate::store::keys::inactive_among(tx, &signers),
        )?;
        let known = known
            .into_iter()
            .map(|(key, stored)| match serde_json::from_str(&stored.outcome) {
                Ok(outcome) => Ok((key, (stored.request_hash, outcome))),
                Err(source) => Err(LedgerError::StoredOutcome { key, source }),
            })
            .collect::<Result<_, _>>()?;
        // Every allocation the batch names or may settle by context, locked up front (one query, in id
        // order, so two writers never deadlock).
        let mut named: Vec<Uuid> = commands.iter().flat_map(Command::allocations).collect();
        named.extend(by_context.values().flatten());
        named.sort();
        named.dedup();
        let allocations = allocations::lock(tx, &named).await?;
        Ok(Batch {
            now: Utc::now(),
            known,
            policies,
            allocations,
            by_context,
            price_versions,
            price_keys,
            stream_versions: HashMap::new(),
            item_keys: HashMap::new(),
            repriced: HashSet::new(),
            needed: BTreeMap::new(),
            inactive_keys,
        })
    }

    pub fn need(&mut self, policy_id: Uuid, window: &crate::domain::policy::Window) {
        self.needed.insert((policy_id, window.key.clone()), (window.start, window.end));
    }

    /// Asks for the accounts an allocation is pending in.
    pub fn need_reserved(&mut self, a: &Allocation) {
        for r in &a.reservations {
            self.needed.entry((r.policy_id, r.window.clone())).or_insert((None, None));
        }
    }

    /// The version a new event of `stream` is appended at.
    pub async fn next_version(&mut self, tx: &WriteTx, stream: &str) -> Result<i64, LedgerError> {
        let version = self.current_version(tx, stream).await? + 1;
        self.stream_versions.insert(stream.to_string(), version);
        Ok(version)
    }

    /// The version of `stream`'s last event, counting those of earlier commands of the batch (0: none).
    pub async fn current_version(&self, tx: &WriteTx, stream: &str) -> Result<i64, LedgerError> {
        Ok(match self.stream_versions.get(stream) {
            Some(v) => *v,
            None => crate::store::current_versions(tx, &[stream]).await?.get(stream).copied().unwrap_or(0),
        })
    }
}

/// What pass 2 posts to: the locked accounts and allocations, and the events to append.
pub(crate) struct Books {
    pub now: DateTime<Utc>,
    pub accounts: BTreeMap<AccountKey, Account>,
    pub allocations: HashMap<Uuid, Allocation>,
    /// Allocations changed by the batch, written back after the append.
    pub touched: BTreeSet<Uuid>,
    pub events: Vec<VersionedEvent>,
}

impl Books {
    /// Appends the events with one insert, writes back the accounts and the changed allocations, and
    /// stores the batch's `outcomes`; returns the log position of each event appended, and of each of
    /// `earlier` (events of earlier batches that replayed outcomes name).
    async fn write_back(
        self,
        tx: &WriteTx,
        outcomes: &[(&IdempotencyKey, String)],
        earlier: &[Uuid],
    ) -> Result<HashMap<Uuid, i64>, LedgerError> {
        let Books { accounts, allocations, touched, events, .. } = self;
        let rows: Vec<(&str, i64, &NewEvent)> = events.iter().map(|(s, v, e)| (s.as_str(), *v, e)).collect();
        let changed: Vec<&Allocation> = touched.iter().map(|id| &allocations[id]).collect();
        // Sent together (pipelined): one round trip. If the append fails (a concurrent writer took a
        // stream version), its error comes first, since the server answers in order: the batch is
        // then retried.
        let (appended, (), (), (), mut positions) = tokio::try_join!(
            async { insert_events(tx, &rows).await.map_err(LedgerError::from) },
            async { accounts::save(tx, &accounts).await.map_err(LedgerError::from) },
            async { allocations::save(tx, &changed).await.map_err(LedgerError::from) },
            idempotency::store_all(tx, outcomes),
            async { crate::store::append::positions_of(tx, earlier).await.map_err(LedgerError::from) },
        )?;
        assert_eq!(appended.len(), events.len(), "every event of the batch is appended exactly once");
        positions.extend(appended.iter().map(|a| (a.event_id, a.position)));
        Ok(positions)
    }
}

/// The advisory lock key every write batch holds (see [`process`]). Public so that tests can hold it
/// and queue batches behind it.
pub const LEDGER_LOCK: i64 = 0x6275_6467_6574; // "budget"

/// What a command did, and the log position of the last event it appended (none for a replay, or a
/// command that appended nothing): a client that reads a projection right after may wait for it.
pub type Written = (Outcome, Option<i64>);

/// How long one batch spent in each stage of [`process`], for the writer's metrics: where a batch's
/// time goes decides what is worth making faster (`budget bench` prints it per phase).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stages {
    /// `BEGIN`, the ledger lock and the loads (one round trip), and the allocations' lock.
    pub load: Duration,
    /// Pass 1, the accounts' lock, pass 2 and the outcomes to store: deciding every command.
    pub decide: Duration,
    /// Appending the events, writing back accounts and allocations, storing the outcomes (one round trip).
    pub append: Duration,
    /// `COMMIT` (the fsync), measured by the writer.
    pub commit: Duration,
}

impl Stages {
    /// Adds `other`'s times to these (a batch written command by command is the sum of its tries).
    pub fn add(&mut self, other: &Stages) {
        self.load += other.load;
        self.decide += other.decide;
        self.append += other.append;
        self.commit += other.commit;
    }
}

/// Decides and writes `commands` in order in `tx`, which it begins if need be. The caller commits.
pub async fn process(tx: &WriteTx, commands: &[Command]) -> Result<Vec<Result<Written, CommandError>>, LedgerError> {
    process_timed(tx, commands, &mut Stages::default(), None).await
}

/// The policies the writer's last batch loaded. The next batch foresees from them the accounts it will
/// post to and locks those together with its loads instead of in a round trip after them
/// ([`process_timed`]): on single records that was one round trip of four (a batch's `COMMIT` goes
/// with the next one's loads). Policies change rarely; when they did, the guess misses and the batch
/// is decided again without it ([`LedgerError::Misforeseen`]).
#[derive(Default)]
pub struct LastPolicies(std::sync::Mutex<Option<std::sync::Arc<Vec<Policy>>>>);

impl LastPolicies {
    fn get(&self) -> Option<std::sync::Arc<Vec<Policy>>> {
        self.0.lock().expect("the last policies' lock is never poisoned").clone()
    }

    fn remember(&self, policies: &[Policy]) {
        let mut last = self.0.lock().expect("the last policies' lock is never poisoned");
        if last.as_deref().is_none_or(|known| known.as_slice() != policies) {
            *last = Some(std::sync::Arc::new(policies.to_vec()));
        }
    }
}

/// [`process`], noting in `stages` how long its load, decide and append stages took.
pub async fn process_timed(
    tx: &WriteTx,
    commands: &[Command],
    stages: &mut Stages,
    last: Option<&LastPolicies>,
) -> Result<Vec<Result<Written, CommandError>>, LedgerError> {
    let started = Instant::now();
    // Every batch holds the ledger lock until it commits: shared, or exclusive when a command reads the
    // log to decide (a policy's opening balance). So no usage commits between that read and the policy
    // becoming visible to the next batch, across every process writing to this database.
    let exclusive = commands.iter().any(Command::excludes_other_batches);
    let lock = if exclusive { "pg_advisory_xact_lock" } else { "pg_advisory_xact_lock_shared" };
    // The lock goes first on the connection, as a simple query with the transaction's `BEGIN` in front
    // of it (no statement to prepare, so nothing can be sent before it), and the loads are pipelined
    // behind it: the server runs them only once it holds the lock, and the batch waits for one round
    // trip instead of three.
    // A batch of the hot commands (usage, reservations) has its statements planned once per connection
    // (`db::PLAN_ONCE`): planning them for each batch was about 0.9 ms of PostgreSQL's CPU, on the
    // writer's path, against ~1.7 ms to run them (`pg_stat_statements` with `track_planning`).
    let planning = if commands.iter().all(Command::reads_by_key) { format!("{PLAN_ONCE}; ") } else { String::new() };
    let lock = format!("{planning}SELECT {lock}({LEDGER_LOCK})");
    // The accounts every command foresees from the last batch's policies are locked behind the loads,
    // in the same round trip (none foreseen, or a command that cannot tell: after pass 1, as ever).
    let foreseen = last.and_then(LastPolicies::get).and_then(|policies| {
        let now = Utc::now();
        let mut keys = BTreeMap::new();
        for command in commands {
            keys.extend(command.foreseen_accounts(&policies, now)?);
        }
        Some(keys).filter(|keys| !keys.is_empty())
    });
    let ((), mut batch, prelocked) = tokio::try_join!(
        biased;
        async { tx.open_with(&lock).await.map_err(LedgerError::from) },
        Batch::load(tx, commands),
        async {
            match &foreseen {
                Some(keys) => Ok(Some(accounts::lock_creating(tx, keys).await?)),
                None => Ok(None),
            }
        },
    )?;
    if let Some(last) = last {
        last.remember(&batch.policies);
    }
    stages.load = started.elapsed();

    // Pass 1, in order. A keyed command seen before (in an earlier transaction or earlier in this
    // batch) is not decided again.
    let mut first_use: HashMap<&str, (&str, usize)> = HashMap::new();
    let mut steps: Vec<Result<Step<'_>, usize>> = Vec::with_capacity(commands.len());
    let mut fresh = vec![false; commands.len()];
    for (index, command) in commands.iter().enumerate() {
        if let Some(key_id) = command.signer().filter(|id| batch.inactive_keys.contains(id)) {
            steps.push(Ok(Step::Done(Err(CommandError::KeyInactive(key_id)), Vec::new())));
            continue;
        }
        if let Some(key) = command.key() {
            if let Some((hash, stored)) = batch.known.get(&key.key) {
                steps.push(Ok(Step::Done(command.replay(key, hash, stored), Vec::new())));
                continue;
            }
            if let Some((hash, original)) = first_use.get(key.key.as_str()) {
                steps.push(if *hash == key.request_hash {
                    Err(*original)
                } else {
                    Ok(Step::Done(Err(CommandError::KeyReused(idempotency::client_key(key))), Vec::new()))
                });
                continue;
            }
            first_use.insert(&key.key, (&key.request_hash, index));
        }
        fresh[index] = true;
        steps.push(Ok(command.plan(tx, &mut batch).await?));
    }

    // Pass 2: lock every account the batch posts to (in key order), unless they were foreseen and
    // locked with the loads, then post each command in order. Foreseen, they must hold every account
    // pass 1 asked for, and none the batch does not post to may have been created by that lock (it
    // would stay behind, empty); the others are only locked, and left as they are.
    let accounts = match prelocked {
        None => accounts::lock(tx, &batch.needed).await?,
        Some((mut locked, created)) => {
            let covered = batch.needed.keys().all(|key| locked.contains_key(key));
            if !covered || created.iter().any(|key| !batch.needed.contains_key(key)) {
                return Err(LedgerError::Misforeseen);
            }
            locked.retain(|key, _| batch.needed.contains_key(key));
            locked
        }
    };
    let mut books = Books {
        now: batch.now,
        accounts,
        allocations: std::mem::take(&mut batch.allocations),
        touched: BTreeSet::new(),
        events: Vec::new(),
    };
    let mut results: Vec<Result<Outcome, CommandError>> = Vec::with_capacity(commands.len());
    let mut copies: Vec<(usize, usize)> = Vec::new();
    // Which of the batch's events each command appended, for the position its answer carries.
    let mut spans: Vec<std::ops::Range<usize>> = Vec::with_capacity(commands.len());
    for (index, step) in steps.into_iter().enumerate() {
        let first = books.events.len();
        results.push(match step {
            Ok(Step::Done(result, mut events)) => {
                books.events.append(&mut events);
                result
            }
            Ok(Step::Post(post)) => post(&mut books),
            Err(original) => {
                copies.push((index, original));
                Err(CommandError::KeyReused(String::new())) // replaced below, once the original is known
            }
        });
        spans.push(first..books.events.len());
    }

    let event_ids: Vec<Uuid> = books.events.iter().map(|(_, _, e)| e.event_id).collect();
    // The outcomes are stored as decided, without their events' positions: they go in the same round
    // trip as the events. A replayed outcome gets its positions from the log instead.
    let outcomes = idempotency::outcomes_to_store(commands, &results, &fresh, &batch);
    let appending: HashSet<&Uuid> = event_ids.iter().collect();
    let earlier: Vec<Uuid> =
        results.iter().flatten().flat_map(Outcome::unpositioned).filter(|id| !appending.contains(id)).collect();
    stages.decide = started.elapsed() - stages.load;
    let positions = books.write_back(tx, &outcomes, &earlier).await?;
    stages.append = started.elapsed() - stages.load - stages.decide;
    let mut last_positions: Vec<Option<i64>> =
        spans.into_iter().map(|span| event_ids[span].iter().map(|id| positions[id]).max()).collect();

    for outcome in results.iter_mut().flatten() {
        outcome.assign_positions(&positions);
    }
    for (copy, original) in copies {
        results[copy] = results[original].clone().map(Outcome::replayed);
        last_positions[copy] = last_positions[original];
    }
    Ok(results.into_iter().zip(last_positions).map(|(r, position)| r.map(|outcome| (outcome, position))).collect())
}
