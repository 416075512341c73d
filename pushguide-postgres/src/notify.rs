//! One `LISTEN` connection per store, shared by every waiter: idle queue workers
//! ([`PgStore::listen_publishes`], [`pushguide_store::PublishQueue::wait_for_publishes`]) and live
//! views following a deployment's journal ([`PgStore::wait_journal`]).
//!
//! The hub starts with its first waiter, on a connection of its own outside the pool (`LISTEN` is
//! session state: behind PgBouncer that connection must go to a session-mode pool or to the server
//! directly). It listens on [`PUBLISH_CHANNEL`] and [`JOURNAL_CHANNEL`] and fans notifications out:
//! a counter (`tokio::sync::watch`) for the queue, the deployment ids (`tokio::sync::broadcast`) for
//! journals. A lost connection is made again with a backoff (100 ms doubling to 10 s); once
//! listening again every waiter is woken, since notifications may have been missed meanwhile. Every
//! wait is bounded by its caller's poll interval, the backstop for anything missed. The hub's task
//! ends with the store (its last clone).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use crate::error::Error;
use crate::queue::PUBLISH_CHANNEL;
use crate::store::PgStore;

/// The channel of journal notifications: sent in the transaction of every journal append, with the
/// deployment's id as the payload (the events themselves are read from the tables).
pub const JOURNAL_CHANNEL: &str = "pushguide_journal";

/// How many journal notifications a slow live view may fall behind before it is simply woken.
const JOURNAL_BACKLOG: usize = 1024;

/// The store's notification hub (see the module documentation). Started by its first waiter.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    running: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    publishes: watch::Sender<u64>,
    /// `None`: every deployment (the hub (re)started listening).
    journal: broadcast::Sender<Option<Arc<str>>>,
    listening: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

/// What the hub's task sends.
struct Senders {
    publishes: watch::Sender<u64>,
    journal: broadcast::Sender<Option<Arc<str>>>,
    listening: watch::Sender<bool>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(r) = self
            .running
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            r.task.abort();
        }
    }
}

/// The receivers a waiter gets.
pub(crate) struct Subscription {
    pub(crate) publishes: watch::Receiver<u64>,
    pub(crate) journal: broadcast::Receiver<Option<Arc<str>>>,
    pub(crate) listening: bool,
}

impl Hub {
    /// Subscribes to the hub, starting it (on `first`, a connection already made, when given) if it
    /// does not run yet.
    fn subscribe<S, T>(
        &self,
        store: &PgStore,
        first: Option<(tokio_postgres::Client, tokio_postgres::Connection<S, T>)>,
    ) -> Subscription
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let r = running.get_or_insert_with(|| {
            let (publishes, _) = watch::channel(0u64);
            let (journal, _) = broadcast::channel(JOURNAL_BACKLOG);
            let (listening_tx, listening) = watch::channel(false);
            let senders = Senders {
                publishes: publishes.clone(),
                journal: journal.clone(),
                listening: listening_tx,
            };
            let (pg, tls) = store.inner.listen.parts();
            let endpoint = store.inner.endpoint.clone();
            let task = tokio::spawn(async move {
                if let Some((client, conn)) = first {
                    if let Err(e) = listen(client, conn, &senders).await {
                        tracing::warn!(%endpoint, error = %e, "notification listener connection lost; reconnecting");
                    }
                }
                let mut backoff = Duration::from_millis(100);
                loop {
                    match pg.connect(tls.clone()).await {
                        Ok((client, conn)) => {
                            backoff = Duration::from_millis(100);
                            match listen(client, conn, &senders).await {
                                Ok(()) => tracing::warn!(%endpoint, "notification listener connection closed; reconnecting"),
                                Err(e) => tracing::warn!(%endpoint, error = %e, "notification listener connection lost; reconnecting"),
                            }
                        }
                        Err(e) => {
                            tracing::warn!(%endpoint, error = %e, "notification listener cannot connect; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            });
            Running {
                publishes,
                journal,
                listening,
                task,
            }
        });
        let listening = *r.listening.borrow();
        Subscription {
            publishes: r.publishes.subscribe(),
            journal: r.journal.subscribe(),
            listening,
        }
    }
}

/// Runs `LISTEN` on both channels and fans notifications out until the connection ends (`Ok`) or
/// fails. Once listening it wakes every waiter: notifications may have been missed before.
async fn listen<S, T>(
    client: tokio_postgres::Client,
    mut conn: tokio_postgres::Connection<S, T>,
    to: &Senders,
) -> Result<(), tokio_postgres::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    // the simple-query protocol: LISTEN takes no parameters, and this connection is never pooled
    let sql = format!("LISTEN {PUBLISH_CHANNEL}; LISTEN {JOURNAL_CHANNEL}");
    let subscribe = client.batch_execute(&sql);
    tokio::pin!(subscribe);
    let mut subscribed = false;
    let result = loop {
        tokio::select! {
            r = &mut subscribe, if !subscribed => {
                if let Err(e) = r {
                    break Err(e);
                }
                subscribed = true;
                to.listening.send_replace(true);
                to.publishes.send_modify(|n| *n += 1);
                let _ = to.journal.send(None);
            }
            m = messages.next() => match m {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if n.channel() == JOURNAL_CHANNEL {
                        let _ = to.journal.send(Some(Arc::from(n.payload())));
                    } else {
                        to.publishes.send_modify(|n| *n += 1);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(e),
                None => break Ok(()),
            },
        }
    };
    to.listening.send_replace(false);
    result
}

/// Wakes an idle worker when the queue may have a request for it. Clone one per worker; every
/// clone shares the store's one listening connection.
#[derive(Clone, Debug)]
pub struct PublishWaiter {
    rx: watch::Receiver<u64>,
}

impl PublishWaiter {
    /// Waits until a notification arrived since this waiter's last wait (or the listener
    /// (re)started listening: notifications may have been missed), or `poll` passed (the backstop
    /// for a missed notification). `true` when woken by the listener.
    pub async fn wait(&mut self, poll: Duration) -> bool {
        match tokio::time::timeout(poll, self.rx.changed()).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                // the hub is gone with its store: polling is all that is left
                tokio::time::sleep(poll).await;
                false
            }
            Err(_) => false,
        }
    }
}

impl PgStore {
    /// A waiter for queue notifications ([`PUBLISH_CHANNEL`]), served by the store's one listening
    /// connection (made here when it is not there yet, so that a caller learns at once when it
    /// cannot listen; later losses are made good by the listener itself). The waiter's first wait
    /// returns at once when the listener already listens: requests may have been queued before.
    pub async fn listen_publishes(&self) -> Result<PublishWaiter, Error> {
        let started = self
            .inner
            .hub
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        let first = if started {
            None
        } else {
            let (pg, tls) = self.inner.listen.parts();
            Some(
                pg.connect(tls)
                    .await
                    .map_err(|e| self.db("connecting the notification listener", e))?,
            )
        };
        // a hub started meanwhile by another waiter keeps its own connection; this one is dropped
        let sub = self.inner.hub.subscribe(self, first);
        let mut rx = sub.publishes;
        if sub.listening {
            rx.mark_changed();
        }
        Ok(PublishWaiter { rx })
    }

    /// Resolves when a request may be waiting in the queue: a notification on [`PUBLISH_CHANNEL`]
    /// (queued, finished or withdrawn by any instance) arrived, or `poll` passed.
    pub async fn wait_publishes(&self, poll: Duration) {
        let mut rx = self.hub_subscription().publishes;
        let _ = tokio::time::timeout(poll, rx.changed()).await;
    }

    /// Resolves when the journal of `deployment` may have grown: a notification on
    /// [`JOURNAL_CHANNEL`] for it arrived (from any instance's append), the listener (re)started
    /// listening, or `poll` passed (the backstop for a missed notification). The live view then
    /// reads the journal from the tables.
    pub async fn wait_journal(&self, deployment: &str, poll: Duration) {
        let mut rx = self.hub_subscription().journal;
        let until = tokio::time::Instant::now() + poll;
        loop {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Err(_) => return,
                Ok(Ok(Some(id))) if &*id != deployment => {}
                // its id, every deployment, or notifications missed by a slow waiter
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => return,
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    tokio::time::sleep_until(until).await;
                    return;
                }
            }
        }
    }

    fn hub_subscription(&self) -> Subscription {
        self.inner
            .hub
            .subscribe::<tokio_postgres::Socket, tokio_postgres::Socket>(self, None)
    }
}
