//! The accounts always equal a fold of the log, whatever the workload (a property-style test with a
//! seeded generator, so a failure is reproducible from its seed).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use budget_events::db::testing::TestDb;
use budget_events::db::WriteTx;
use budget_events::domain::policy::{Policy, PolicyInput, PolicyType, SetPolicy};
use budget_events::domain::{RecordUsage, UsageInput};
use budget_events::event::Event;
use budget_events::ledger::{
    self, Command, LastPolicies, LedgerCommand, LedgerError, PolicyCommand, Stages, UsageCommand, UsageItem,
};
use budget_events::writer::{LogSignal, Writer};
use budget_events::EventMetadata;
use chrono::{Duration, Utc};
use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

/// A small deterministic generator (xorshift64*), enough for workloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

fn random_policy(rng: &mut Rng) -> PolicyCommand {
    let mut input = json!({
        "period": rng.pick(&["hourly", "daily", "weekly", "monthly", "per_task", "per_session"]),
        "type": rng.pick(&["warn", "hard_limit", "soft_limit", "ignore"]),
        "timezone": rng.pick(&["UTC", "America/New_York", "Asia/Kolkata"]),
        "cost_limit": format!("{}.{:02}", rng.next() % 3, rng.next() % 100),
    });
    match rng.next() % 4 {
        0 => input["provider"] = json!(rng.pick(&["openai", "anthropic"])),
        1 => input["component"] = json!(rng.pick(&["codex", "rhetor"])),
        2 => input["tier"] = json!("remote_heavyweight"),
        _ => {}
    }
    if rng.next().is_multiple_of(2) {
        input["token_limit"] = json!(rng.next() % 20_000);
    }
    let input: PolicyInput = serde_json::from_value(input).unwrap();
    PolicyCommand { policy: SetPolicy::validate(&input).unwrap(), key: None, metadata: EventMetadata::default() }
}

fn random_usage(rng: &mut Rng) -> UsageCommand {
    let n = 1 + rng.next() % 5;
    // Records with a context may settle against an allocation, so their batch cannot foresee its
    // accounts; most records have none, so that the writer's foresight (and its misses, as policies
    // change between batches) is exercised too.
    let context = rng.next().is_multiple_of(4);
    let items = (0..n)
        .map(|_| {
            let input: UsageInput = serde_json::from_value(json!({
                "provider": rng.pick(&["openai", "anthropic", "ollama"]),
                "model": rng.pick(&["gpt-4o", "claude", "llama3"]),
                "component": rng.pick(&["codex", "rhetor"]),
                "context_id": if context { json!(rng.pick(&["t-1", "t-2"])) } else { json!(null) },
                "session_id": rng.pick(&["s-1", "s-2"]),
                "input_tokens": rng.next() % 3000,
                "output_tokens": rng.next() % 1000,
                "cost": format!("0.{:04}", rng.next() % 10_000),
                "timestamp": (Utc::now() - Duration::hours((rng.next() % 72) as i64)).to_rfc3339(),
            }))
            .unwrap();
            UsageItem { record: RecordUsage::validate(&input, Utc::now()).unwrap(), key: None }
        })
        .collect();
    UsageCommand { items, key: None, metadata: EventMetadata::default(), signer: None }
}

#[derive(Default, Debug, PartialEq)]
struct Folded {
    cost: Decimal,
    tokens: i64,
    records: i64,
}

#[tokio::test]
async fn accounts_equal_the_fold_of_the_log_after_a_random_workload() {
    let seed = 0x5EED_0000_0000_0001u64;
    let db = TestDb::new().await;
    let (writer, _task) = Writer::spawn(db.pool.clone(), LogSignal::default());
    let mut rng = Rng(seed);

    // Concurrent callers: policy changes interleaved with usage, so batches mix both.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut commands = Vec::new();
        for _ in 0..25 {
            commands.push(if rng.next().is_multiple_of(6) {
                Err(random_policy(&mut rng))
            } else {
                Ok(random_usage(&mut rng))
            });
        }
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            for c in commands {
                match c {
                    Ok(usage) => drop(writer.submit(usage).await.unwrap()),
                    Err(policy) => drop(writer.submit(policy).await.unwrap()),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    // Fold the log in order: policy definitions as they were, each record's postings, and whether it
    // left a hard-limited window past its limit.
    let client = db.pool.get().await.unwrap();
    let total = crate::helpers::count_events(&**client).await as usize;
    let events = crate::helpers::read_settled(&**client, budget_events::store::Cursor::START, total).await.unwrap();
    assert_eq!(events.len(), total);
    let mut policies: HashMap<Uuid, Policy> = HashMap::new();
    let mut folded: BTreeMap<(Uuid, String), Folded> = BTreeMap::new();
    let mut opened = BTreeSet::new();
    let mut usage_events = 0;
    for e in &events {
        match &e.event {
            Event::PolicySet(p) => {
                policies.insert(p.policy_id, Policy::from_event(p));
                // A policy that starts counting opens its window with what is already in it.
                if let Some(o) = &p.opening {
                    let opening = Folded { cost: o.posted_cost, tokens: o.posted_tokens, records: o.records };
                    folded.insert((p.policy_id, o.window.clone()), opening);
                    opened.insert((p.policy_id, o.window.clone()));
                }
            }
            Event::UsageRecorded(u) => {
                usage_events += 1;
                let mut expected_exceeded = Vec::new();
                for posting in &u.postings {
                    let f = folded.entry((posting.policy_id, posting.window.clone())).or_default();
                    f.cost += u.cost.amount();
                    f.tokens += u.input_tokens + u.output_tokens;
                    f.records += 1;
                    let p = &policies[&posting.policy_id];
                    let over = p.cost_limit.is_some_and(|l| f.cost > l.amount())
                        || p.token_limit.is_some_and(|l| f.tokens > l);
                    if p.policy_type == PolicyType::HardLimit && over {
                        expected_exceeded.push(p.id);
                    }
                }
                assert_eq!(
                    u.exceeded, expected_exceeded,
                    "seed {seed:#x}: over_limit flags at position {}",
                    e.position
                );
            }
            _ => {}
        }
    }
    assert!(usage_events > 100 && !policies.is_empty(), "the workload exercised something");

    folded.retain(|_, f| f.records > 0); // an opening with nothing in it, like the query below
    let rows = client
        .query("SELECT policy_id, window_key, posted_cost, posted_tokens, records FROM policy_accounts WHERE records > 0 ORDER BY 1, 2", &[])
        .await
        .unwrap();
    let accounts: BTreeMap<(Uuid, String), Folded> = rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), Folded { cost: r.get(2), tokens: r.get(3), records: r.get(4) }))
        .collect();
    let differing: Vec<_> = accounts
        .keys()
        .chain(folded.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| accounts.get(*k) != folded.get(*k))
        .map(|k| (k, accounts.get(k), folded.get(k)))
        .collect();
    assert!(
        differing.is_empty(),
        "seed {seed:#x}: accounts differ from the fold of the log (key, account, fold): {differing:?}"
    );
    // An empty account is an opening with nothing in it, never one a batch created and left behind.
    let empty: BTreeSet<(Uuid, String)> = client
        .query("SELECT policy_id, window_key FROM policy_accounts WHERE records = 0", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let stray: Vec<_> = empty.difference(&opened).collect();
    assert!(stray.is_empty(), "seed {seed:#x}: empty accounts no event opened: {stray:?}");
}

/// Commits `commands` as the writer's hot path decides them, foreseeing accounts from `last`.
async fn foreseeing(db: &TestDb, last: &LastPolicies, commands: Vec<Command>) -> Result<(), LedgerError> {
    let tx = WriteTx::new(db.pool.get().await.unwrap());
    match ledger::process_timed(&tx, &commands, &mut Stages::default(), Some(last)).await {
        Ok(results) => {
            assert!(results.iter().all(Result::is_ok), "{results:?}");
            tx.commit().await.unwrap();
            Ok(())
        }
        Err(e) => {
            tx.rollback().await.unwrap();
            Err(e)
        }
    }
}

fn policy(input: serde_json::Value) -> Command {
    let input: PolicyInput = serde_json::from_value(input).unwrap();
    PolicyCommand { policy: SetPolicy::validate(&input).unwrap(), key: None, metadata: EventMetadata::default() }
        .into_command()
}

fn usage(session: &str) -> Command {
    let input: UsageInput = serde_json::from_value(json!({
        "provider": "openai", "model": "gpt-4o", "component": "codex", "session_id": session,
        "input_tokens": 100, "output_tokens": 10, "cost": "0.0100"
    }))
    .unwrap();
    let record = RecordUsage::validate(&input, Utc::now()).unwrap();
    UsageCommand {
        items: vec![UsageItem { record, key: None }],
        key: None,
        metadata: EventMetadata::default(),
        signer: None,
    }
    .into_command()
}

#[tokio::test]
async fn a_batch_that_foresaw_its_accounts_from_changed_policies_is_decided_again() {
    let db = TestDb::new().await;
    let last = LastPolicies::default();
    let daily = json!({"period": "daily", "type": "warn", "cost_limit": "10"});
    let per_session = json!({"period": "per_session", "type": "warn", "cost_limit": "1"});
    foreseeing(&db, &last, vec![policy(daily.clone())]).await.unwrap();
    // Foreseen from the policies the batch before loaded (none): nothing to lock up front.
    foreseeing(&db, &last, vec![usage("s-1")]).await.unwrap();
    foreseeing(&db, &last, vec![policy(per_session.clone())]).await.unwrap();

    // Foreseen from the daily policy alone, the record also posts to the per-session one: decided again.
    let missed = foreseeing(&db, &last, vec![usage("s-2")]).await;
    assert!(matches!(missed, Err(LedgerError::Misforeseen)), "{missed:?}");
    // The batch that missed remembered the policies it loaded: foreseen right now.
    foreseeing(&db, &last, vec![usage("s-2")]).await.unwrap();

    // Foreseen from a per-session policy that is now off, the lock would create the new session's
    // account, which the record does not post to: decided again rather than leave it behind empty.
    foreseeing(
        &db,
        &last,
        vec![policy(json!({"period": "per_session", "type": "warn", "cost_limit": "1", "enabled": false}))],
    )
    .await
    .unwrap();
    let missed = foreseeing(&db, &last, vec![usage("s-3")]).await;
    assert!(matches!(missed, Err(LedgerError::Misforeseen)), "{missed:?}");
    foreseeing(&db, &last, vec![usage("s-3")]).await.unwrap();

    // The daily window counts each record once; the per-session policy has s-2's account and no other.
    let client = db.pool.get().await.unwrap();
    let accounts: Vec<(String, i64)> = client
        .query(
            "SELECT CASE WHEN p.period = 'daily' THEN 'daily' ELSE a.window_key END, a.records
             FROM policy_accounts a JOIN policies p USING (policy_id) ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(accounts, [("daily".to_string(), 3), ("session:s-2".to_string(), 1)]);
}
