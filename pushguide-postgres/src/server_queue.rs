//! [`pushguide_store::PublishQueue`] on PostgreSQL: the web service's queue, shared by every
//! instance (the methods of `queue.rs`), with idle workers woken by the store's one `LISTEN`
//! connection (`notify.rs`) and their poll as the backstop.

use std::time::Duration;

use async_trait::async_trait;
use pushguide_store::{
    InterruptedDeployment, PublishQueue, QueuedPublish, Takeover, TakeoverRequest,
};

use crate::store::PgStore;

#[async_trait]
impl PublishQueue for PgStore {
    async fn enqueue_publish(
        &self,
        template: &str,
        user: &str,
        groups: &[String],
        request: &str,
    ) -> Result<i64, pushguide_store::Error> {
        Ok(PgStore::enqueue_publish(self, template, user, groups, request).await?)
    }

    async fn claim_publish(&self) -> Result<Option<QueuedPublish>, pushguide_store::Error> {
        Ok(PgStore::claim_publish(self).await?)
    }

    async fn publish_started(
        &self,
        id: i64,
        deployment: &str,
    ) -> Result<(), pushguide_store::Error> {
        Ok(PgStore::publish_started(self, id, deployment).await?)
    }

    async fn finish_publish(
        &self,
        id: i64,
        error: Option<&str>,
    ) -> Result<(), pushguide_store::Error> {
        Ok(PgStore::finish_publish(self, id, error).await?)
    }

    async fn cancel_publish(&self, id: i64) -> Result<bool, pushguide_store::Error> {
        Ok(PgStore::cancel_publish(self, id).await?)
    }

    async fn publish_request(
        &self,
        id: i64,
    ) -> Result<Option<QueuedPublish>, pushguide_store::Error> {
        Ok(PgStore::publish_request(self, id).await?)
    }

    async fn publish_queue(
        &self,
        template: Option<&str>,
    ) -> Result<Vec<QueuedPublish>, pushguide_store::Error> {
        Ok(PgStore::publish_queue(self, template).await?)
    }

    async fn interrupt_dead_publishes(&self) -> Result<Vec<QueuedPublish>, pushguide_store::Error> {
        Ok(PgStore::interrupt_dead_publishes(self).await?)
    }

    /// Woken by the store's one listening connection (a request queued, finished or withdrawn by
    /// any instance), or after `poll`.
    async fn wait_for_publishes(&self, poll: Duration) {
        self.wait_publishes(poll).await;
    }

    async fn untaken_interrupted(
        &self,
    ) -> Result<Vec<InterruptedDeployment>, pushguide_store::Error> {
        Ok(PgStore::untaken_interrupted(self).await?)
    }

    async fn take_over(
        &self,
        t: &TakeoverRequest,
    ) -> Result<Option<Takeover>, pushguide_store::Error> {
        Ok(PgStore::take_over(self, t).await?)
    }

    async fn takeover(&self, deployment: &str) -> Result<Option<Takeover>, pushguide_store::Error> {
        Ok(PgStore::takeover(self, deployment).await?)
    }

    async fn takeover_by_request(
        &self,
        request: i64,
    ) -> Result<Option<Takeover>, pushguide_store::Error> {
        Ok(PgStore::takeover_by_request(self, request).await?)
    }
}

#[cfg(test)]
#[path = "write_retry_tests.rs"]
pub(crate) mod write_retry_tests;
