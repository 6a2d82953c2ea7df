//! The model filter of the reads (`domain::price::is_model_sql`) decides as the limits do
//! (`domain::price::is_model`): a listing by model shows the records a limit on that model counts.

use budget_events::db::testing::TestDb;
use budget_events::domain::price::{is_model, is_model_sql};

#[tokio::test]
async fn the_sql_model_filter_agrees_with_is_model() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.unwrap();
    let names = ["gpt-4o", "gpt-4o-2024-08-06", "openai/gpt-4o", "claude-3-5-sonnet", "gpt-4o-mini", "g"];
    let calls = [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-2024-08-06"),
        ("openai", "openai/gpt-4o"),
        ("openai", "openai/gpt-4o-2024-08-06"),
        ("azure", "openai/gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4o-mini-2024-07-18"),
        ("openai", "gpt-4o.1"),
        ("openai", "gpt-4o-2024"),
        ("openai", "-2024-08-06"),
        ("anthropic", "claude-3-5-sonnet-20241022"),
        ("anthropic", "claude-3-5-sonnet-19991022"),
        ("anthropic", "anthropic/claude-3-5-sonnet-20241022"),
        ("openai", "g-2024-08-06"),
        ("openai", "ünïcode-2024-08-06"),
    ];
    let sql = format!("SELECT {}", is_model_sql("$1::text", "$2::text", "$3::text"));
    for (provider, model) in calls {
        for name in names {
            let row = client.query_one(&sql, &[&provider, &model, &name]).await.unwrap();
            let in_sql: Option<bool> = row.get(0);
            assert_eq!(in_sql, Some(is_model(provider, model, name)), "{provider} {model} as {name}");
        }
    }
}
