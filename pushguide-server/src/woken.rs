//! Tests' store: SQLite behind the [`ServerStore`] traits, whose wake-ups come only when a test
//! says so ([`Woken::publishes`], [`Woken::journal`]) and never by the poll interval, the way a
//! shared database's notifications wake every instance. A test that sees a wake-up through it
//! shows the service waits on the store's wake-ups, not on a plain sleep.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use pushguide_core::async_trait;
use pushguide_core::{Event, MinionId, MinionStatus, MinionStatusStore, StatusChange};
use pushguide_store::{
    AccountStore, ApiToken, AuditEntry, CallRow, DayStats, DeploymentRecord, Error, HistoryPage,
    HistoryQuery, HostResult, HostStageResult, HostVersion, InterruptedDeployment, PublishQueue,
    QueuedPublish, Rate, RecordStore, RevisionWrite, Session, SessionLimits, SqliteStore, Stats,
    TemplateRevision, TokenUser, User, Window,
};
use tokio::sync::Notify;

/// SQLite, woken by hand.
#[derive(Debug)]
pub(crate) struct Woken {
    pub(crate) inner: SqliteStore,
    /// Wakes one [`PublishQueue::wait_for_publishes`].
    pub(crate) publishes: Notify,
    /// Wakes one [`RecordStore::wait_for_journal`].
    pub(crate) journal: Notify,
}

impl Woken {
    pub(crate) fn new(inner: SqliteStore) -> Self {
        Woken {
            inner,
            publishes: Notify::new(),
            journal: Notify::new(),
        }
    }
}

#[async_trait]
impl MinionStatusStore for Woken {
    async fn record(
        &self,
        checks: &[(MinionId, bool)],
        at: SystemTime,
    ) -> Result<Vec<StatusChange>, pushguide_core::Error> {
        MinionStatusStore::record(&self.inner, checks, at).await
    }

    async fn status(
        &self,
        minions: &[MinionId],
    ) -> Result<Vec<MinionStatus>, pushguide_core::Error> {
        MinionStatusStore::status(&self.inner, minions).await
    }
}

#[async_trait]
impl AccountStore for Woken {
    async fn user(&self, name: &str) -> Result<Option<User>, Error> {
        <SqliteStore as AccountStore>::user(&self.inner, name).await
    }
    async fn put_user(
        &self,
        name: &str,
        password_hash: &str,
        groups: &[String],
        replace: bool,
        now: SystemTime,
    ) -> Result<(), Error> {
        <SqliteStore as AccountStore>::put_user(
            &self.inner,
            name,
            password_hash,
            groups,
            replace,
            now,
        )
        .await
    }
    async fn users(&self) -> Result<Vec<User>, Error> {
        <SqliteStore as AccountStore>::users(&self.inner).await
    }
    async fn set_user_groups(&self, name: &str, groups: &[String]) -> Result<(), Error> {
        <SqliteStore as AccountStore>::set_user_groups(&self.inner, name, groups).await
    }
    async fn delete_user(&self, name: &str) -> Result<bool, Error> {
        <SqliteStore as AccountStore>::delete_user(&self.inner, name).await
    }
    async fn external_user(
        &self,
        name: &str,
        groups: &[String],
        now: SystemTime,
    ) -> Result<(), Error> {
        <SqliteStore as AccountStore>::external_user(&self.inner, name, groups, now).await
    }
    async fn create_session(
        &self,
        token_sha256: &str,
        user: &str,
        csrf: &str,
        now: SystemTime,
    ) -> Result<(), Error> {
        <SqliteStore as AccountStore>::create_session(&self.inner, token_sha256, user, csrf, now)
            .await
    }
    async fn session(
        &self,
        token_sha256: &str,
        limits: SessionLimits,
        now: SystemTime,
    ) -> Result<Option<Session>, Error> {
        <SqliteStore as AccountStore>::session(&self.inner, token_sha256, limits, now).await
    }
    async fn delete_session(&self, token_sha256: &str) -> Result<bool, Error> {
        <SqliteStore as AccountStore>::delete_session(&self.inner, token_sha256).await
    }
    async fn purge_sessions(&self, limits: SessionLimits, now: SystemTime) -> Result<usize, Error> {
        <SqliteStore as AccountStore>::purge_sessions(&self.inner, limits, now).await
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
        <SqliteStore as AccountStore>::create_api_token(
            &self.inner,
            id,
            token_sha256,
            user,
            label,
            created,
            expires,
        )
        .await
    }
    async fn api_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>, Error> {
        <SqliteStore as AccountStore>::api_tokens(&self.inner, user).await
    }
    async fn api_token(&self, id: &str) -> Result<Option<ApiToken>, Error> {
        <SqliteStore as AccountStore>::api_token(&self.inner, id).await
    }
    async fn api_token_user(
        &self,
        token_sha256: &str,
        now: SystemTime,
    ) -> Result<Option<TokenUser>, Error> {
        <SqliteStore as AccountStore>::api_token_user(&self.inner, token_sha256, now).await
    }
    async fn delete_api_token(&self, id: &str) -> Result<bool, Error> {
        <SqliteStore as AccountStore>::delete_api_token(&self.inner, id).await
    }
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, Error> {
        <SqliteStore as AccountStore>::append_audit(&self.inner, entry).await
    }
    async fn audit_log(
        &self,
        before: Option<i64>,
        user: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, Error> {
        <SqliteStore as AccountStore>::audit_log(&self.inner, before, user, limit).await
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
        <SqliteStore as AccountStore>::add_template_revision(
            &self.inner,
            template,
            base,
            user,
            file,
            content,
            at,
        )
        .await
    }
    async fn template_revisions(
        &self,
        template: &str,
        limit: usize,
    ) -> Result<Vec<TemplateRevision>, Error> {
        <SqliteStore as AccountStore>::template_revisions(&self.inner, template, limit).await
    }
    async fn template_revision(
        &self,
        template: &str,
        revision: i64,
    ) -> Result<Option<TemplateRevision>, Error> {
        <SqliteStore as AccountStore>::template_revision(&self.inner, template, revision).await
    }
    async fn latest_template_revision(&self, template: &str) -> Result<i64, Error> {
        <SqliteStore as AccountStore>::latest_template_revision(&self.inner, template).await
    }
    async fn remove_template_revision(&self, template: &str, revision: i64) -> Result<bool, Error> {
        <SqliteStore as AccountStore>::remove_template_revision(&self.inner, template, revision)
            .await
    }
    async fn check_writable(&self) -> Result<(), Error> {
        <SqliteStore as AccountStore>::check_writable(&self.inner).await
    }
}

#[async_trait]
impl RecordStore for Woken {
    async fn wait_for_journal(&self, deployment: &str, poll: Duration) {
        let _ = (deployment, poll);
        self.journal.notified().await;
    }
    async fn deployment(&self, id: &str) -> Result<Option<DeploymentRecord>, Error> {
        <SqliteStore as RecordStore>::deployment(&self.inner, id).await
    }
    async fn last_deployment(&self, template: &str) -> Result<Option<DeploymentRecord>, Error> {
        <SqliteStore as RecordStore>::last_deployment(&self.inner, template).await
    }
    async fn host_results(&self, id: &str) -> Result<Vec<HostResult>, Error> {
        <SqliteStore as RecordStore>::host_results(&self.inner, id).await
    }
    async fn host_stage_results(&self, id: &str) -> Result<Vec<HostStageResult>, Error> {
        <SqliteStore as RecordStore>::host_stage_results(&self.inner, id).await
    }
    async fn host_log(&self, id: &str, host: &str) -> Result<Vec<String>, Error> {
        <SqliteStore as RecordStore>::host_log(&self.inner, id, host).await
    }
    async fn host_status(&self, id: &str, host: &str) -> Result<Option<String>, Error> {
        <SqliteStore as RecordStore>::host_status(&self.inner, id, host).await
    }
    async fn calls(&self, id: &str) -> Result<Vec<CallRow>, Error> {
        <SqliteStore as RecordStore>::calls(&self.inner, id).await
    }
    async fn journal_after(
        &self,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, Error> {
        <SqliteStore as RecordStore>::journal_after(&self.inner, id, after, limit).await
    }
    async fn append_events(&self, events: &[Event]) -> Result<(), Error> {
        <SqliteStore as RecordStore>::append_events(&self.inner, events).await
    }
    async fn interrupted_deployment(
        &self,
        id: &str,
    ) -> Result<Option<InterruptedDeployment>, Error> {
        <SqliteStore as RecordStore>::interrupted_deployment(&self.inner, id).await
    }
    async fn recover(&self) -> Result<Vec<InterruptedDeployment>, Error> {
        <SqliteStore as RecordStore>::recover(&self.inner).await
    }
    async fn history_page(&self, q: &HistoryQuery) -> Result<HistoryPage, Error> {
        <SqliteStore as RecordStore>::history_page(&self.inner, q).await
    }
    async fn stats(&self, w: &Window) -> Result<Stats, Error> {
        <SqliteStore as RecordStore>::stats(&self.inner, w).await
    }
    async fn daily(&self, w: &Window) -> Result<Vec<DayStats>, Error> {
        <SqliteStore as RecordStore>::daily(&self.inner, w).await
    }
    async fn by_hour_of_week(&self, w: &Window) -> Result<Vec<Rate>, Error> {
        <SqliteStore as RecordStore>::by_hour_of_week(&self.inner, w).await
    }
    async fn deployment_outcome_counts(&self) -> Result<Vec<(String, u64)>, Error> {
        <SqliteStore as RecordStore>::deployment_outcome_counts(&self.inner).await
    }
    async fn fleet(&self, template: &str) -> Result<Vec<HostVersion>, Error> {
        <SqliteStore as RecordStore>::fleet(&self.inner, template).await
    }
    async fn minion_states(&self, minions: &[MinionId]) -> Result<Vec<MinionStatus>, Error> {
        <SqliteStore as RecordStore>::minion_states(&self.inner, minions).await
    }
}

#[async_trait]
impl PublishQueue for Woken {
    async fn wait_for_publishes(&self, poll: Duration) {
        let _ = poll;
        self.publishes.notified().await;
    }
    async fn enqueue_publish(
        &self,
        template: &str,
        user: &str,
        groups: &[String],
        request: &str,
    ) -> Result<i64, Error> {
        <SqliteStore as PublishQueue>::enqueue_publish(&self.inner, template, user, groups, request)
            .await
    }
    async fn claim_publish(&self) -> Result<Option<QueuedPublish>, Error> {
        <SqliteStore as PublishQueue>::claim_publish(&self.inner).await
    }
    async fn publish_started(&self, id: i64, deployment: &str) -> Result<(), Error> {
        <SqliteStore as PublishQueue>::publish_started(&self.inner, id, deployment).await
    }
    async fn finish_publish(&self, id: i64, error: Option<&str>) -> Result<(), Error> {
        <SqliteStore as PublishQueue>::finish_publish(&self.inner, id, error).await
    }
    async fn cancel_publish(&self, id: i64) -> Result<bool, Error> {
        <SqliteStore as PublishQueue>::cancel_publish(&self.inner, id).await
    }
    async fn publish_request(&self, id: i64) -> Result<Option<QueuedPublish>, Error> {
        <SqliteStore as PublishQueue>::publish_request(&self.inner, id).await
    }
    async fn publish_queue(&self, template: Option<&str>) -> Result<Vec<QueuedPublish>, Error> {
        <SqliteStore as PublishQueue>::publish_queue(&self.inner, template).await
    }
    async fn interrupt_dead_publishes(&self) -> Result<Vec<QueuedPublish>, Error> {
        <SqliteStore as PublishQueue>::interrupt_dead_publishes(&self.inner).await
    }
}
