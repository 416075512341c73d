//! A pooled connection that keeps the store's session settings — its schema (`search_path`) and the
//! idle-in-transaction limit — in force behind a transaction-pooling proxy.
//!
//! Connected directly (or through a session-mode pool) the settings are startup parameters of the
//! connection (`options=-c …`, see `PgConfig::resolved`) and [`Conn`] adds nothing. Behind PgBouncer
//! in transaction mode ([`crate::PgConfig::transaction_pooling`]) a client's consecutive transactions
//! run on whichever server connection is free, and PgBouncer refuses the `options` startup
//! parameter: the settings must hold per transaction. So in that mode
//!
//! - every transaction ([`Conn::transaction`]) starts with `SET LOCAL` of the settings;
//! - every statement outside a transaction ([`Sql`] on [`Conn`]) runs in a transaction of its own:
//!   `BEGIN; SET LOCAL …`, the statement, `COMMIT` — sent together (pipelined: one round trip), so
//!   the proxy keeps one server connection for the three. A failed statement turns the `COMMIT` into
//!   a rollback.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::join3;
use tokio_postgres::{Error, Row};

use crate::sql::{typed, Param, Sql};

/// A connection from the store's pool (see the module docs).
pub(crate) struct Conn {
    client: deadpool_postgres::Client,
    /// `SET LOCAL …` of the session settings; `None` when the connection's startup parameters
    /// carry them (no transaction pooling).
    session: Option<Arc<str>>,
}

impl Conn {
    pub(crate) fn new(client: deadpool_postgres::Client, session: Option<Arc<str>>) -> Conn {
        Conn { client, session }
    }

    /// Starts a transaction with the session settings in force.
    pub(crate) async fn transaction(
        &mut self,
    ) -> Result<deadpool_postgres::Transaction<'_>, Error> {
        let tx = self.client.transaction().await?;
        if let Some(set) = &self.session {
            tx.batch_execute(set).await?;
        }
        Ok(tx)
    }

    /// Runs `sql` (simple protocol, several statements allowed, no parameters) with the session
    /// settings in force: in a transaction of its own behind a transaction-pooling proxy (rolled
    /// back when a statement fails). `sql` must not end or start transactions itself.
    pub(crate) async fn batch(&self, sql: &str) -> Result<(), Error> {
        let Some(set) = &self.session else {
            return self.client.batch_execute(sql).await;
        };
        match self
            .client
            .batch_execute(&format!("BEGIN; {set}; {sql}; COMMIT"))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                // the error skipped the COMMIT: end the transaction, or the proxy keeps the server
                // connection for this client in an aborted transaction
                if let Err(end) = self.client.batch_execute("ROLLBACK").await {
                    tracing::debug!(error = %end, "rolling back a failed batch");
                }
                Err(e)
            }
        }
    }

    /// Runs `statement` (already built, not yet polled) between `BEGIN; SET LOCAL …` and `COMMIT`,
    /// the three sent together.
    async fn wrapped<T>(
        &self,
        set: &str,
        statement: impl std::future::Future<Output = Result<T, Error>> + Send,
    ) -> Result<T, Error> {
        let begin = format!("BEGIN; {set}");
        // join3 polls its futures in order, and each sends its messages when first polled: the
        // server gets BEGIN, the statement, COMMIT in that order
        let (begun, done, committed) = join3(
            self.client.batch_execute(&begin),
            statement,
            self.client.batch_execute("COMMIT"),
        )
        .await;
        begun?;
        let v = done?;
        committed?;
        Ok(v)
    }
}

impl Deref for Conn {
    type Target = deadpool_postgres::Client;
    fn deref(&self) -> &Self::Target {
        &self.client
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.client
    }
}

#[async_trait]
impl Sql for Conn {
    async fn rows(&self, sql: &str, params: &[&dyn Param]) -> Result<Vec<Row>, Error> {
        let c: &tokio_postgres::Client = &self.client;
        match &self.session {
            None => c.rows(sql, params).await,
            Some(set) => self.wrapped(set, c.query_typed(sql, &typed(params))).await,
        }
    }
    async fn one(&self, sql: &str, params: &[&dyn Param]) -> Result<Row, Error> {
        let c: &tokio_postgres::Client = &self.client;
        match &self.session {
            None => c.one(sql, params).await,
            Some(set) => {
                self.wrapped(set, c.query_typed_one(sql, &typed(params)))
                    .await
            }
        }
    }
    async fn opt(&self, sql: &str, params: &[&dyn Param]) -> Result<Option<Row>, Error> {
        let c: &tokio_postgres::Client = &self.client;
        match &self.session {
            None => c.opt(sql, params).await,
            Some(set) => {
                self.wrapped(set, c.query_typed_opt(sql, &typed(params)))
                    .await
            }
        }
    }
    async fn exec(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, Error> {
        let c: &tokio_postgres::Client = &self.client;
        match &self.session {
            None => c.exec(sql, params).await,
            Some(set) => {
                self.wrapped(set, c.execute_typed(sql, &typed(params)))
                    .await
            }
        }
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
