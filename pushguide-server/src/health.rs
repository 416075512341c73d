//! Watching the service itself: `GET /healthz` and `GET /metrics`, both public (no session), for
//! load balancers and Prometheus. Neither shows a secret: the health answer names the store's
//! state and each salt-api endpoint's URL and error; the metrics are counts, durations and the
//! endpoints' URLs. Put the service behind a proxy that hides them if that is too much.
//!
//! - `/healthz`: `200` when the store takes writes and every salt-api endpoint answers, else
//!   `503`; JSON naming each part (`{"status": "ok"|"failing", "store": {…}, "salt": […]}`).
//! - `/metrics`: the Prometheus text format ([`crate::Metrics`]); the queue depth is counted in the
//!   store and the running deployments in the service when the page is asked for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pushguide_core::{TargetExpr, TargetType, Transport};
use serde::Serialize;

use crate::app::AppState;
use crate::Error;

/// How long the health check waits for the salt-api endpoints.
pub const SALT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// One salt-api endpoint's answer to a health probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointCheck {
    /// The endpoint (its base URL).
    pub endpoint: String,
    /// Whether it answered.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// How long the probe took, in seconds (fed to the salt request latency metric).
    pub secs: f64,
}

/// Probes each salt-api endpoint (the CLI's implementation asks every configured endpoint on its
/// own). Without one, `/healthz` asks the service's transport to resolve `*` and reports it as
/// one endpoint, `salt-api`.
#[pushguide_core::async_trait]
pub trait SaltHealth: Send + Sync + 'static {
    /// Asks every endpoint once.
    async fn check(&self) -> Vec<EndpointCheck>;
}

/// Health of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreCheck {
    /// Whether it takes writes.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
}

/// The answer of `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    /// `ok` or `failing`.
    pub status: &'static str,
    /// The store.
    pub store: StoreCheck,
    /// Each salt-api endpoint (empty when the service has no salt).
    pub salt: Vec<EndpointCheck>,
}

async fn transport_check(t: Arc<dyn Transport>) -> Vec<EndpointCheck> {
    let all = TargetExpr {
        expression: "*".into(),
        tgt_type: TargetType::Glob,
    };
    let begun = Instant::now();
    let r = t.resolve(&all).await;
    vec![EndpointCheck {
        endpoint: "salt-api".into(),
        ok: r.is_ok(),
        error: r.err().map(|e| e.to_string()),
        secs: begun.elapsed().as_secs_f64(),
    }]
}

/// `GET /healthz`.
pub(crate) async fn healthz(State(app): State<AppState>) -> Response {
    let store = match app.0.store.check_writable().await.map_err(Error::from) {
        Ok(()) => StoreCheck {
            ok: true,
            error: None,
        },
        Err(e) => {
            tracing::warn!(error = %e, "health check: the store does not take writes");
            StoreCheck {
                ok: false,
                error: Some(e.to_string()),
            }
        }
    };
    let probe = async {
        match (&app.0.salt_health, &app.0.transport) {
            (Some(h), _) => h.check().await,
            (None, Some(t)) => transport_check(t.clone()).await,
            (None, None) => Vec::new(),
        }
    };
    let salt = match tokio::time::timeout(SALT_CHECK_TIMEOUT, probe).await {
        Ok(checks) => checks,
        Err(_) => vec![EndpointCheck {
            endpoint: "salt-api".into(),
            ok: false,
            error: Some(format!(
                "no answer within {} s",
                SALT_CHECK_TIMEOUT.as_secs()
            )),
            secs: SALT_CHECK_TIMEOUT.as_secs_f64(),
        }],
    };
    for c in &salt {
        app.0.metrics.salt_request(&c.endpoint, c.secs);
        if !c.ok {
            tracing::warn!(endpoint = c.endpoint, error = ?c.error, "health check: a salt-api endpoint does not answer");
        }
    }
    let ok = store.ok && salt.iter().all(|c| c.ok);
    let health = Health {
        status: if ok { "ok" } else { "failing" },
        store,
        salt,
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CACHE_CONTROL, "no-store")], Json(health)).into_response()
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(app): State<AppState>) -> Response {
    let store = &app.0.store;
    let counted = async {
        let outcomes = store.deployment_outcome_counts().await?;
        let queued = store
            .publish_queue(None)
            .await?
            .iter()
            .filter(|q| q.state == "queued")
            .count();
        Ok::<_, Error>((outcomes, queued))
    }
    .await;
    let outcomes = match counted {
        Ok((outcomes, queued)) => {
            app.0.metrics.queue_depth_set(queued as u64);
            app.0.metrics.running_set(app.0.live.len() as u64);
            outcomes
        }
        Err(e) => {
            tracing::error!(error = %e, "metrics: cannot count deployments");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the store (see the service's log)\n",
            )
                .into_response();
        }
    };
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        app.0.metrics.render(&outcomes),
    )
        .into_response()
}
