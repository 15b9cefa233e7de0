//! The PostgreSQL test harness itself (`battleplan_tests::postgres`): a database on the shared
//! server answers, from a sync and from an async test, with the password it hands out; and a
//! private cluster keeps a committed row through an immediate (crash) restart on the same port,
//! which the store's crash tests rely on. Skipped loudly without PostgreSQL, failed under CI.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use battleplan_tests::postgres;

/// `SELECT 1` on a connection of its own, driven alongside the query.
async fn select_one(config: tokio_postgres::Config) -> i32 {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    let query = async move { client.query_one("SELECT 1", &[]).await };
    let (row, ended) = tokio::join!(query, connection);
    ended.unwrap();
    row.unwrap().get(0)
}

#[test]
fn a_database_answers_with_the_password_it_hands_out() {
    let Some(database) = postgres::database("a_database_answers") else {
        return;
    };
    assert!(
        !database.url.contains(&database.password),
        "no password in the URL"
    );
    assert!(database.url.ends_with(&format!("/{}", database.name)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(select_one(database.config())), 1);

    // Without the password the server refuses (scram-sha-256, no trust on loopback).
    let mut config: tokio_postgres::Config = database.url.parse().unwrap();
    config.password("not the password");
    let refused = runtime.block_on(config.connect(tokio_postgres::NoTls));
    assert!(refused.is_err(), "a wrong password was accepted");
}

#[tokio::test]
async fn databases_from_an_async_test_are_distinct() {
    let Some(first) = postgres::database_async("databases_from_async").await else {
        return;
    };
    // The synchronous helper works inside an async test too (a thread of its own).
    let second = postgres::database("databases_from_async").unwrap();
    assert_ne!(first.name, second.name);
    let client = postgres::connect(&second.url, &second.password).await;
    let row = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), second.name);
    assert_eq!(select_one(first.config()).await, 1);
}

#[test]
fn a_private_cluster_keeps_a_committed_row_through_an_immediate_restart() {
    let Some(cluster) = postgres::private_cluster("immediate_restart") else {
        return;
    };
    let url = cluster.database("harness");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = postgres::connect(&url, cluster.password()).await;
        client
            .batch_execute(
                "CREATE TABLE kept (id integer PRIMARY KEY, note text NOT NULL);
                 INSERT INTO kept VALUES (1, 'committed before the crash');",
            )
            .await
            .unwrap();
    });

    cluster.restart_immediate();

    let note: String = runtime.block_on(async {
        let client = postgres::connect(&url, cluster.password()).await;
        client
            .query_one("SELECT note FROM kept WHERE id = 1", &[])
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(note, "committed before the crash");

    // Down, then up again on the same port.
    cluster.stop_immediate();
    let down = runtime.block_on(cluster.config(&url).connect(tokio_postgres::NoTls));
    assert!(
        down.is_err(),
        "the server still answers after stop_immediate"
    );
    cluster.start();
    assert_eq!(runtime.block_on(select_one(cluster.config(&url))), 1);
}
