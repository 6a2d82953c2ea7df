use budget_events::db::testing::TestDb;
use budget_events::period::Period;
use budget_projections::usage_rollups::{report, UsageFilter, DIMENSIONS};
use rust_decimal_macros::dec;
use serde_json::json;

use crate::{apply_all, input, record, runner};

#[tokio::test]
async fn reports_sum_buckets_and_groups_exactly() {
    let db = TestDb::new().await;
    let rec = |provider: &str, model: &str, component: &str, ts: &str, tokens: i64, cost: &str| {
        input(json!({"provider": provider, "model": model, "component": component, "task_type": "coding",
                     "input_tokens": tokens, "output_tokens": 1, "cost": cost, "timestamp": ts}))
    };
    record(
        &db,
        &[
            rec("openai", "gpt-4o", "codex", "2026-11-20T10:15:00Z", 100, "0.1"),
            rec("openai", "gpt-4o", "codex", "2026-11-20T10:45:00Z", 100, "0.2"),
            rec("openai", "gpt-4o-mini", "rhetor", "2026-11-21T08:00:00Z", 50, "0.0000000001"),
            rec("anthropic", "claude", "codex", "2026-11-21T09:00:00+02:00", 7, "3"),
        ],
    )
    .await;
    apply_all(&runner(&db), 4).await;
    let client = db.pool.get().await.unwrap();

    let all = report(&**client, &UsageFilter::default(), Period::Daily, &DIMENSIONS).await.unwrap();
    assert_eq!(all.totals.count, 4);
    assert_eq!(all.totals.cost, dec!(3.3000000001), "decimal sums are exact");
    assert_eq!(all.totals.input_tokens, 257);
    assert_eq!(all.series.len(), 2);
    assert_eq!(all.series[0].totals.count, 2);
    assert_eq!(all.groups["provider"]["openai"].count, 3);
    assert_eq!(all.groups["model"]["gpt-4o"].cost, dec!(0.3));
    assert_eq!(all.groups["component"]["codex"].count, 3);
    assert_eq!(all.groups["task_type"]["coding"].count, 4);

    let filter = UsageFilter {
        provider: Some("openai".into()),
        start: Some("2026-11-21T00:00:00Z".parse().unwrap()),
        ..Default::default()
    };
    let openai = report(&**client, &filter, Period::Hourly, &["component"]).await.unwrap();
    assert_eq!(openai.totals.count, 1);
    assert_eq!(openai.groups.len(), 1);
    assert_eq!(openai.groups["component"]["rhetor"].input_tokens, 50);
}
