//! The write path's transaction, whose `BEGIN` goes out with the batch's first statement.
//!
//! tokio-postgres opens a transaction with a `BEGIN` of its own and waits for its answer before
//! anything else can be sent: a round trip per writer batch that does nothing, about a millisecond
//! when the machine's cores are busy (`budget bench`, the writer's own timings). A `WriteTx` sends
//! `BEGIN` in one simple query with the batch's first statement (the ledger lock), and the batch's
//! other statements are pipelined behind it.
//!
//! A `WriteTx` owns its connection. One dropped before [`WriteTx::commit`] or [`WriteTx::rollback`]
//! finished (an error, a panic, a lost connection) takes its connection out of the pool and closes
//! it, and PostgreSQL rolls back what it held: a connection inside a transaction never goes back to
//! the pool.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::{Client, ClientWrapper};

pub struct WriteTx {
    /// `None` once the transaction ended and the connection went back to the pool.
    client: Option<Client>,
    /// Whether `BEGIN` has been sent.
    begun: AtomicBool,
    /// Whether a `COMMIT` was sent by [`WriteTx::commit_continuing`]: the next [`WriteTx::open_with`]
    /// begins a new transaction behind it.
    continuing: AtomicBool,
}

impl WriteTx {
    /// A transaction on `client` that is begun by its first [`WriteTx::open_with`].
    pub fn new(client: Client) -> WriteTx {
        WriteTx { client: Some(client), begun: AtomicBool::new(false), continuing: AtomicBool::new(false) }
    }

    /// A transaction on `client`, begun now (tests, and callers without a first statement to send).
    pub async fn begin(client: Client) -> Result<WriteTx, tokio_postgres::Error> {
        let tx = WriteTx::new(client);
        tx.open_with("").await?;
        Ok(tx)
    }

    /// Runs `sql` (a simple query, no parameters) as the transaction's first statement, with `BEGIN`
    /// in front of it unless the transaction is already begun. Statements sent after this call (even
    /// before it is answered) run inside the transaction.
    pub async fn open_with(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        if self.continuing.swap(false, Ordering::SeqCst) {
            return self.batch_execute(&format!("BEGIN; {sql}")).await;
        }
        if self.begun.swap(true, Ordering::SeqCst) {
            if sql.is_empty() {
                return Ok(());
            }
            return self.batch_execute(sql).await;
        }
        self.batch_execute(&format!("BEGIN; {sql}")).await
    }

    /// The connection, for the readers that take any client.
    pub fn client(&self) -> &tokio_postgres::Client {
        self
    }

    /// Sends `COMMIT` and keeps the connection for the next transaction, which the next
    /// [`WriteTx::open_with`] begins behind it: the writer sends a batch's `COMMIT` and the next batch's
    /// `BEGIN`, ledger lock and loads in one round trip. PostgreSQL runs them in order, so the next
    /// batch is decided on everything this one committed; if the `COMMIT` fails, the next transaction
    /// still begins on its own. The future must be polled (which sends the `COMMIT`) before anything of
    /// the next transaction is sent. Until that transaction ends, dropping the `WriteTx` closes the
    /// connection, as for any transaction that may be open.
    pub fn commit_continuing(&self) -> impl std::future::Future<Output = Result<(), tokio_postgres::Error>> + '_ {
        assert!(self.begun.load(Ordering::SeqCst), "a transaction is ended only after it was begun");
        let sent = self.client().batch_execute("COMMIT");
        self.continuing.store(true, Ordering::SeqCst);
        sent
    }

    pub async fn commit(mut self) -> Result<(), tokio_postgres::Error> {
        self.end("COMMIT").await
    }

    pub async fn rollback(mut self) -> Result<(), tokio_postgres::Error> {
        self.end("ROLLBACK").await
    }

    /// Ends the transaction; only when the server said so does the connection go back to the pool.
    async fn end(&mut self, sql: &str) -> Result<(), tokio_postgres::Error> {
        assert!(self.begun.load(Ordering::SeqCst), "a transaction is ended only after it was begun");
        self.batch_execute(sql).await?;
        self.client.take();
        Ok(())
    }
}

impl Deref for WriteTx {
    type Target = ClientWrapper;

    fn deref(&self) -> &ClientWrapper {
        self.client.as_ref().expect("a transaction is used only until it ends")
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if *self.begun.get_mut() {
                // Not ended: the connection may be inside a transaction. Closing it rolls that back.
                drop(Client::take(client));
            }
        }
    }
}
