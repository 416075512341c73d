//! [`ServerStore`]: everything the web service (`pushguide-server`) reads and writes, as one async
//! trait, so that the same server runs on this crate's SQLite file or on another backend (the
//! `pushguide-postgres` crate implements it for several instances sharing one database).
//!
//! The methods mirror [`SqliteStore`]'s inherent methods of the same names, with the same arguments,
//! results and errors: each implementation keeps those semantics (a backend's own failures come back as
//! [`Error::Backend`]). The SQLite implementation runs each call on tokio's blocking threads.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pushguide_core::{Event, MinionId, MinionStatus, MinionStatusStore};

use crate::{
    ApiToken, AuditEntry, CallRow, DayStats, DeploymentRecord, Error, HistoryPage, HistoryQuery,
    HostResult, HostStageResult, HostVersion, InterruptedDeployment, QueuedPublish, Rate,
    RevisionWrite, Session, SessionLimits, SqliteStore, Stats, Takeover, TakeoverRequest,
    TemplateRevision, TokenUser, User, Window,
};

/// The web service's store: [`AccountStore`] (accounts, sessions, API tokens, the audit log,
/// template revisions), [`RecordStore`] (deployment records and their journal, history and statistics
/// queries) and [`PublishQueue`], plus core's [`MinionStatusStore`] (the service's minion monitor
/// records what it sees). Every type implementing the four is a `ServerStore`.
///
/// Implemented by [`SqliteStore`] (one file, one or several processes on one machine) and by
/// `pushguide_postgres::PgStore` (several instances on one PostgreSQL).
///
/// ```
/// use std::sync::Arc;
/// use pushguide_store::{ServerStore, SqliteStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pushguide_store::Error> {
/// let store: Arc<dyn ServerStore> = Arc::new(SqliteStore::open_in_memory()?);
/// assert!(store.user("nobody").await?.is_none());
/// assert!(store.publish_queue(None).await?.is_empty());
/// # Ok(()) }
/// ```
pub trait ServerStore: AccountStore + RecordStore + PublishQueue + MinionStatusStore {}

impl<T: AccountStore + RecordStore + PublishQueue + MinionStatusStore> ServerStore for T {}

/// Accounts, sessions, API tokens, the audit log and template revisions: the web service's own
/// records.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    // Accounts and sessions
    /// See [`SqliteStore::user`].
    async fn user(&self, name: &str) -> Result<Option<User>, Error>;
    /// See [`SqliteStore::put_user`].
    async fn put_user(
        &self,
        name: &str,
        password_hash: &str,
        groups: &[String],
        replace: bool,
        now: SystemTime,
    ) -> Result<(), Error>;
    /// See [`SqliteStore::users`].
    async fn users(&self) -> Result<Vec<User>, Error>;
    /// See [`SqliteStore::set_user_groups`].
    async fn set_user_groups(&self, name: &str, groups: &[String]) -> Result<(), Error>;
    /// See [`SqliteStore::delete_user`].
    async fn delete_user(&self, name: &str) -> Result<bool, Error>;
    /// See [`SqliteStore::external_user`].
    async fn external_user(
        &self,
        name: &str,
        groups: &[String],
        now: SystemTime,
    ) -> Result<(), Error>;
    /// See [`SqliteStore::create_session`].
    async fn create_session(
        &self,
        token_sha256: &str,
        user: &str,
        csrf: &str,
        now: SystemTime,
    ) -> Result<(), Error>;
    /// See [`SqliteStore::session`].
    async fn session(
        &self,
        token_sha256: &str,
        limits: SessionLimits,
        now: SystemTime,
    ) -> Result<Option<Session>, Error>;
    /// See [`SqliteStore::delete_session`].
    async fn delete_session(&self, token_sha256: &str) -> Result<bool, Error>;
    /// See [`SqliteStore::purge_sessions`].
    async fn purge_sessions(&self, limits: SessionLimits, now: SystemTime) -> Result<usize, Error>;

    // API tokens
    /// See [`SqliteStore::create_api_token`].
    async fn create_api_token(
        &self,
        id: &str,
        token_sha256: &str,
        user: &str,
        label: &str,
        created: SystemTime,
        expires: Option<SystemTime>,
    ) -> Result<ApiToken, Error>;
    /// See [`SqliteStore::api_tokens`].
    async fn api_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>, Error>;
    /// See [`SqliteStore::api_token`].
    async fn api_token(&self, id: &str) -> Result<Option<ApiToken>, Error>;
    /// See [`SqliteStore::api_token_user`].
    async fn api_token_user(
        &self,
        token_sha256: &str,
        now: SystemTime,
    ) -> Result<Option<TokenUser>, Error>;
    /// See [`SqliteStore::delete_api_token`].
    async fn delete_api_token(&self, id: &str) -> Result<bool, Error>;

    // Audit log and template revisions
    /// See [`SqliteStore::append_audit`].
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, Error>;
    /// See [`SqliteStore::audit_log`].
    async fn audit_log(
        &self,
        before: Option<i64>,
        user: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, Error>;
    /// See [`SqliteStore::add_template_revision`].
    async fn add_template_revision(
        &self,
        template: &str,
        base: Option<i64>,
        user: &str,
        file: &str,
        content: &str,
        at: SystemTime,
    ) -> Result<RevisionWrite, Error>;
    /// See [`SqliteStore::template_revisions`].
    async fn template_revisions(
        &self,
        template: &str,
        limit: usize,
    ) -> Result<Vec<TemplateRevision>, Error>;
    /// See [`SqliteStore::template_revision`]. The default reads every revision of `template`
    /// ([`Self::template_revisions`]) and picks `revision`; a backend answers it with one query.
    async fn template_revision(
        &self,
        template: &str,
        revision: i64,
    ) -> Result<Option<TemplateRevision>, Error> {
        Ok(self
            .template_revisions(template, usize::MAX)
            .await?
            .into_iter()
            .find(|r| r.revision == revision))
    }
    /// See [`SqliteStore::latest_template_revision`].
    async fn latest_template_revision(&self, template: &str) -> Result<i64, Error>;
    /// See [`SqliteStore::remove_template_revision`].
    async fn remove_template_revision(&self, template: &str, revision: i64) -> Result<bool, Error>;
    /// See [`SqliteStore::check_writable`].
    async fn check_writable(&self) -> Result<(), Error>;
}

/// Deployment records, per-host logs and salt calls, the journal the live view folds, history and
/// statistics queries, fleet versions and minion states.
#[async_trait]
pub trait RecordStore: Send + Sync + 'static {
    // Deployment records, logs and the journal
    /// See [`SqliteStore::deployment`].
    async fn deployment(&self, id: &str) -> Result<Option<DeploymentRecord>, Error>;
    /// See [`SqliteStore::last_deployment`].
    async fn last_deployment(&self, template: &str) -> Result<Option<DeploymentRecord>, Error>;
    /// See [`SqliteStore::host_results`].
    async fn host_results(&self, id: &str) -> Result<Vec<HostResult>, Error>;
    /// See [`SqliteStore::host_stage_results`].
    async fn host_stage_results(&self, id: &str) -> Result<Vec<HostStageResult>, Error>;
    /// See [`SqliteStore::host_log`].
    async fn host_log(&self, id: &str, host: &str) -> Result<Vec<String>, Error>;
    /// See [`SqliteStore::host_status`].
    async fn host_status(&self, id: &str, host: &str) -> Result<Option<String>, Error>;
    /// See [`SqliteStore::calls`].
    async fn calls(&self, id: &str) -> Result<Vec<CallRow>, Error>;
    /// See [`SqliteStore::journal_after`].
    async fn journal_after(
        &self,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, Error>;
    /// See [`SqliteStore::append_events`].
    async fn append_events(&self, events: &[Event]) -> Result<(), Error>;
    /// See [`SqliteStore::interrupted_deployment`].
    async fn interrupted_deployment(
        &self,
        id: &str,
    ) -> Result<Option<InterruptedDeployment>, Error>;
    /// See [`SqliteStore::recover`].
    async fn recover(&self) -> Result<Vec<InterruptedDeployment>, Error>;

    /// Resolves when the journal of `deployment` may have grown (another instance appended to
    /// it), or after `poll` at the latest; the live view then reads [`Self::journal_after`]. The
    /// default sleeps `poll`; a shared database wakes every instance's live views at once
    /// (PostgreSQL: `LISTEN`).
    async fn wait_for_journal(&self, deployment: &str, poll: Duration) {
        let _ = deployment;
        tokio::time::sleep(poll).await;
    }

    // History, statistics and fleet
    /// See [`SqliteStore::history_page`].
    async fn history_page(&self, q: &HistoryQuery) -> Result<HistoryPage, Error>;
    /// See [`SqliteStore::stats`].
    async fn stats(&self, w: &Window) -> Result<Stats, Error>;
    /// See [`SqliteStore::daily`].
    async fn daily(&self, w: &Window) -> Result<Vec<DayStats>, Error>;
    /// See [`SqliteStore::by_hour_of_week`].
    async fn by_hour_of_week(&self, w: &Window) -> Result<Vec<Rate>, Error>;
    /// See [`SqliteStore::deployment_outcome_counts`].
    async fn deployment_outcome_counts(&self) -> Result<Vec<(String, u64)>, Error>;
    /// See [`SqliteStore::fleet`].
    async fn fleet(&self, template: &str) -> Result<Vec<HostVersion>, Error>;
    /// See [`SqliteStore::minion_states`].
    async fn minion_states(&self, minions: &[MinionId]) -> Result<Vec<MinionStatus>, Error>;
}

/// The publish queue: requests as rows, claimed one at a time per template, in order.
#[async_trait]
pub trait PublishQueue: Send + Sync + 'static {
    // The publish queue
    /// See [`SqliteStore::enqueue_publish`].
    async fn enqueue_publish(
        &self,
        template: &str,
        user: &str,
        groups: &[String],
        request: &str,
    ) -> Result<i64, Error>;
    /// See [`SqliteStore::claim_publish`].
    async fn claim_publish(&self) -> Result<Option<QueuedPublish>, Error>;
    /// See [`SqliteStore::publish_started`].
    async fn publish_started(&self, id: i64, deployment: &str) -> Result<(), Error>;
    /// See [`SqliteStore::finish_publish`].
    async fn finish_publish(&self, id: i64, error: Option<&str>) -> Result<(), Error>;
    /// See [`SqliteStore::cancel_publish`].
    async fn cancel_publish(&self, id: i64) -> Result<bool, Error>;
    /// See [`SqliteStore::publish_request`].
    async fn publish_request(&self, id: i64) -> Result<Option<QueuedPublish>, Error>;
    /// See [`SqliteStore::publish_queue`].
    async fn publish_queue(&self, template: Option<&str>) -> Result<Vec<QueuedPublish>, Error>;
    /// See [`SqliteStore::interrupt_dead_publishes`].
    async fn interrupt_dead_publishes(&self) -> Result<Vec<QueuedPublish>, Error>;

    /// Resolves when a publish request may be waiting (another instance sharing the store enqueued
    /// or finished one), or after `poll` at the latest; a worker then tries [`Self::claim_publish`].
    /// The default sleeps `poll` (one machine: the service wakes its own workers when it enqueues);
    /// a shared database wakes every instance's workers at once (PostgreSQL: `LISTEN`).
    async fn wait_for_publishes(&self, poll: Duration) {
        tokio::time::sleep(poll).await;
    }

    // Takeovers of interrupted deployments. The defaults answer that the backend records no
    // takeovers (an error, logged by the service): exactly-once needs the backend's transaction.
    /// See [`SqliteStore::untaken_interrupted`].
    async fn untaken_interrupted(&self) -> Result<Vec<InterruptedDeployment>, Error> {
        Err(no_takeovers())
    }
    /// See [`SqliteStore::take_over`].
    async fn take_over(&self, t: &TakeoverRequest) -> Result<Option<Takeover>, Error> {
        let _ = t;
        Err(no_takeovers())
    }
    /// See [`SqliteStore::takeover`].
    async fn takeover(&self, deployment: &str) -> Result<Option<Takeover>, Error> {
        let _ = deployment;
        Err(no_takeovers())
    }
    /// See [`SqliteStore::takeover_by_request`].
    async fn takeover_by_request(&self, request: i64) -> Result<Option<Takeover>, Error> {
        let _ = request;
        Err(no_takeovers())
    }
}

/// The error of a backend that does not record takeovers.
fn no_takeovers() -> Error {
    Error::Backend {
        backend: "store",
        retryable: false,
        source: "this store does not record takeovers of interrupted deployments".into(),
    }
}

/// Runs one call of the SQLite store on tokio's blocking threads.
async fn run<T, F>(store: &SqliteStore, f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(&SqliteStore) -> Result<T, Error> + Send + 'static,
{
    let s = store.clone();
    match tokio::task::spawn_blocking(move || f(&s)).await {
        Ok(r) => r,
        Err(e) => Err(Error::Backend {
            backend: "sqlite",
            retryable: false,
            source: Box::new(e),
        }),
    }
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn user(&self, name: &str) -> Result<Option<User>, Error> {
        let name = name.to_owned();
        run(self, move |s| s.user(&name)).await
    }

    async fn put_user(
        &self,
        name: &str,
        password_hash: &str,
        groups: &[String],
        replace: bool,
        now: SystemTime,
    ) -> Result<(), Error> {
        let name = name.to_owned();
        let password_hash = password_hash.to_owned();
        let groups = groups.to_vec();
        run(self, move |s| {
            s.put_user(&name, &password_hash, &groups, replace, now)
        })
        .await
    }

    async fn users(&self) -> Result<Vec<User>, Error> {
        run(self, move |s| s.users()).await
    }

    async fn set_user_groups(&self, name: &str, groups: &[String]) -> Result<(), Error> {
        let name = name.to_owned();
        let groups = groups.to_vec();
        run(self, move |s| s.set_user_groups(&name, &groups)).await
    }

    async fn delete_user(&self, name: &str) -> Result<bool, Error> {
        let name = name.to_owned();
        run(self, move |s| s.delete_user(&name)).await
    }

    async fn external_user(
        &self,
        name: &str,
        groups: &[String],
        now: SystemTime,
    ) -> Result<(), Error> {
        let name = name.to_owned();
        let groups = groups.to_vec();
        run(self, move |s| s.external_user(&name, &groups, now)).await
    }

    async fn create_session(
        &self,
        token_sha256: &str,
        user: &str,
        csrf: &str,
        now: SystemTime,
    ) -> Result<(), Error> {
        let token_sha256 = token_sha256.to_owned();
        let user = user.to_owned();
        let csrf = csrf.to_owned();
        run(self, move |s| {
            s.create_session(&token_sha256, &user, &csrf, now)
        })
        .await
    }

    async fn session(
        &self,
        token_sha256: &str,
        limits: SessionLimits,
        now: SystemTime,
    ) -> Result<Option<Session>, Error> {
        let token_sha256 = token_sha256.to_owned();
        run(self, move |s| s.session(&token_sha256, limits, now)).await
    }

    async fn delete_session(&self, token_sha256: &str) -> Result<bool, Error> {
        let token_sha256 = token_sha256.to_owned();
        run(self, move |s| s.delete_session(&token_sha256)).await
    }

    async fn purge_sessions(&self, limits: SessionLimits, now: SystemTime) -> Result<usize, Error> {
        run(self, move |s| s.purge_sessions(limits, now)).await
    }

    async fn create_api_token(
        &self,
        id: &str,
        token_sha256: &str,
        user: &str,
        label: &str,
        created: SystemTime,
        expires: Option<SystemTime>,
    ) -> Result<ApiToken, Error> {
        let id = id.to_owned();
        let token_sha256 = token_sha256.to_owned();
        let user = user.to_owned();
        let label = label.to_owned();
        run(self, move |s| {
            s.create_api_token(&id, &token_sha256, &user, &label, created, expires)
        })
        .await
    }

    async fn api_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>, Error> {
        let user = user.map(str::to_owned);
        run(self, move |s| s.api_tokens(user.as_deref())).await
    }

    async fn api_token(&self, id: &str) -> Result<Option<ApiToken>, Error> {
        let id = id.to_owned();
        run(self, move |s| s.api_token(&id)).await
    }

    async fn api_token_user(
        &self,
        token_sha256: &str,
        now: SystemTime,
    ) -> Result<Option<TokenUser>, Error> {
        let token_sha256 = token_sha256.to_owned();
        run(self, move |s| s.api_token_user(&token_sha256, now)).await
    }

    async fn delete_api_token(&self, id: &str) -> Result<bool, Error> {
        let id = id.to_owned();
        run(self, move |s| s.delete_api_token(&id)).await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, Error> {
        let entry = entry.clone();
        run(self, move |s| s.append_audit(&entry)).await
    }

    async fn audit_log(
        &self,
        before: Option<i64>,
        user: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, Error> {
        let user = user.map(str::to_owned);
        run(self, move |s| s.audit_log(before, user.as_deref(), limit)).await
    }

    async fn add_template_revision(
        &self,
        template: &str,
        base: Option<i64>,
        user: &str,
        file: &str,
        content: &str,
        at: SystemTime,
    ) -> Result<RevisionWrite, Error> {
        let template = template.to_owned();
        let user = user.to_owned();
        let file = file.to_owned();
        let content = content.to_owned();
        run(self, move |s| {
            s.add_template_revision(&template, base, &user, &file, &content, at)
        })
        .await
    }

    async fn template_revisions(
        &self,
        template: &str,
        limit: usize,
    ) -> Result<Vec<TemplateRevision>, Error> {
        let template = template.to_owned();
        run(self, move |s| s.template_revisions(&template, limit)).await
    }

    async fn template_revision(
        &self,
        template: &str,
        revision: i64,
    ) -> Result<Option<TemplateRevision>, Error> {
        let template = template.to_owned();
        run(self, move |s| s.template_revision(&template, revision)).await
    }

    async fn latest_template_revision(&self, template: &str) -> Result<i64, Error> {
        let template = template.to_owned();
        run(self, move |s| s.latest_template_revision(&template)).await
    }

    async fn remove_template_revision(&self, template: &str, revision: i64) -> Result<bool, Error> {
        let template = template.to_owned();
        run(self, move |s| {
            s.remove_template_revision(&template, revision)
        })
        .await
    }

    async fn check_writable(&self) -> Result<(), Error> {
        run(self, move |s| s.check_writable()).await
    }
}

#[async_trait]
impl RecordStore for SqliteStore {
    async fn deployment(&self, id: &str) -> Result<Option<DeploymentRecord>, Error> {
        let id = id.to_owned();
        run(self, move |s| s.deployment(&id)).await
    }

    async fn last_deployment(&self, template: &str) -> Result<Option<DeploymentRecord>, Error> {
        let template = template.to_owned();
        run(self, move |s| s.last_deployment(&template)).await
    }

    async fn host_results(&self, id: &str) -> Result<Vec<HostResult>, Error> {
        let id = id.to_owned();
        run(self, move |s| s.host_results(&id)).await
    }

    async fn host_stage_results(&self, id: &str) -> Result<Vec<HostStageResult>, Error> {
        let id = id.to_owned();
        run(self, move |s| s.host_stage_results(&id)).await
    }

    async fn host_log(&self, id: &str, host: &str) -> Result<Vec<String>, Error> {
        let id = id.to_owned();
        let host = host.to_owned();
        run(self, move |s| s.host_log(&id, &host)).await
    }

    async fn host_status(&self, id: &str, host: &str) -> Result<Option<String>, Error> {
        let id = id.to_owned();
        let host = host.to_owned();
        run(self, move |s| s.host_status(&id, &host)).await
    }

    async fn calls(&self, id: &str) -> Result<Vec<CallRow>, Error> {
        let id = id.to_owned();
        run(self, move |s| s.calls(&id)).await
    }

    async fn journal_after(
        &self,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, Error> {
        let id = id.to_owned();
        run(self, move |s| s.journal_after(&id, after, limit)).await
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), Error> {
        let events = events.to_vec();
        run(self, move |s| s.append_events(&events)).await
    }

    async fn interrupted_deployment(
        &self,
        id: &str,
    ) -> Result<Option<InterruptedDeployment>, Error> {
        let id = id.to_owned();
        run(self, move |s| s.interrupted_deployment(&id)).await
    }

    async fn recover(&self) -> Result<Vec<InterruptedDeployment>, Error> {
        run(self, move |s| s.recover()).await
    }

    async fn history_page(&self, q: &HistoryQuery) -> Result<HistoryPage, Error> {
        let q = q.clone();
        run(self, move |s| s.history_page(&q)).await
    }

    async fn stats(&self, w: &Window) -> Result<Stats, Error> {
        let w = w.clone();
        run(self, move |s| s.stats(&w)).await
    }

    async fn daily(&self, w: &Window) -> Result<Vec<DayStats>, Error> {
        let w = w.clone();
        run(self, move |s| s.daily(&w)).await
    }

    async fn by_hour_of_week(&self, w: &Window) -> Result<Vec<Rate>, Error> {
        let w = w.clone();
        run(self, move |s| s.by_hour_of_week(&w)).await
    }

    async fn deployment_outcome_counts(&self) -> Result<Vec<(String, u64)>, Error> {
        run(self, move |s| s.deployment_outcome_counts()).await
    }

    async fn fleet(&self, template: &str) -> Result<Vec<HostVersion>, Error> {
        let template = template.to_owned();
        run(self, move |s| s.fleet(&template)).await
    }

    async fn minion_states(&self, minions: &[MinionId]) -> Result<Vec<MinionStatus>, Error> {
        let minions = minions.to_vec();
        run(self, move |s| s.minion_states(&minions)).await
    }
}

#[async_trait]
impl PublishQueue for SqliteStore {
    async fn enqueue_publish(
        &self,
        template: &str,
        user: &str,
        groups: &[String],
        request: &str,
    ) -> Result<i64, Error> {
        let template = template.to_owned();
        let user = user.to_owned();
        let groups = groups.to_vec();
        let request = request.to_owned();
        run(self, move |s| {
            s.enqueue_publish(&template, &user, &groups, &request)
        })
        .await
    }

    async fn claim_publish(&self) -> Result<Option<QueuedPublish>, Error> {
        run(self, move |s| s.claim_publish()).await
    }

    async fn publish_started(&self, id: i64, deployment: &str) -> Result<(), Error> {
        let deployment = deployment.to_owned();
        run(self, move |s| s.publish_started(id, &deployment)).await
    }

    async fn finish_publish(&self, id: i64, error: Option<&str>) -> Result<(), Error> {
        let error = error.map(str::to_owned);
        run(self, move |s| s.finish_publish(id, error.as_deref())).await
    }

    async fn cancel_publish(&self, id: i64) -> Result<bool, Error> {
        run(self, move |s| s.cancel_publish(id)).await
    }

    async fn publish_request(&self, id: i64) -> Result<Option<QueuedPublish>, Error> {
        run(self, move |s| s.publish_request(id)).await
    }

    async fn publish_queue(&self, template: Option<&str>) -> Result<Vec<QueuedPublish>, Error> {
        let template = template.map(str::to_owned);
        run(self, move |s| s.publish_queue(template.as_deref())).await
    }

    async fn interrupt_dead_publishes(&self) -> Result<Vec<QueuedPublish>, Error> {
        run(self, move |s| s.interrupt_dead_publishes()).await
    }

    async fn untaken_interrupted(&self) -> Result<Vec<InterruptedDeployment>, Error> {
        run(self, move |s| s.untaken_interrupted()).await
    }

    async fn take_over(&self, t: &TakeoverRequest) -> Result<Option<Takeover>, Error> {
        let t = t.clone();
        run(self, move |s| s.take_over(&t)).await
    }

    async fn takeover(&self, deployment: &str) -> Result<Option<Takeover>, Error> {
        let deployment = deployment.to_owned();
        run(self, move |s| s.takeover(&deployment)).await
    }

    async fn takeover_by_request(&self, request: i64) -> Result<Option<Takeover>, Error> {
        run(self, move |s| s.takeover_by_request(request)).await
    }
}
