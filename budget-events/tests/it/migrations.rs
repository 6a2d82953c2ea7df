use budget_events::db::migrate::{migrate, MigrationError, MIGRATIONS};
use budget_events::db::testing::TestDb;
use tokio_postgres::NoTls;

#[tokio::test]
async fn migrations_apply_once_and_are_recorded() {
    let db = TestDb::new().await; // already migrated from the template
    let (mut client, conn) = db.config.connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    assert!(migrate(&mut client).await.unwrap().is_empty(), "a migrated database needs nothing");
    let n: i64 = client.query_one("SELECT count(*) FROM schema_migrations", &[]).await.unwrap().get(0);
    assert_eq!(n as usize, MIGRATIONS.len());
}

#[tokio::test]
async fn a_changed_applied_migration_stops_start_up() {
    let db = TestDb::new().await;
    let (mut client, conn) = db.config.connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    client.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1", &[]).await.unwrap();
    let err = migrate(&mut client).await.unwrap_err();
    assert!(matches!(err, MigrationError::Changed { .. }), "{err}");
    assert!(err.to_string().contains("0001_event_log"), "{err}");
}

#[tokio::test]
async fn a_failing_migration_leaves_the_database_as_it_was() {
    let db = TestDb::new().await;
    let (mut client, conn) = db.config.connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    // Pretend the second migration was never applied, and make it fail half-way by pre-creating a table
    // it creates further down; its first statements must not survive.
    client
        .batch_execute(
            "DELETE FROM schema_migrations WHERE version = 2;
             DROP TABLE usage_rollups; DROP TABLE projection_checkpoints;
             CREATE TABLE usage_rollups (x int);",
        )
        .await
        .unwrap();
    let err = migrate(&mut client).await.unwrap_err();
    assert!(matches!(err, MigrationError::Failed { name: "0002_projections", .. }), "{err}");
    let checkpoints: Option<String> =
        client.query_one("SELECT to_regclass('projection_checkpoints')::text", &[]).await.unwrap().get(0);
    assert_eq!(checkpoints, None, "the failed migration's first table was rolled back");
}
