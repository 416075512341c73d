//! Versioned migrations, applied on start under a row lock of the migrations table.
//!
//! No advisory lock: session-level advisory locks break behind PgBouncer in transaction mode (the
//! lock and its unlock may land on different server connections). A row lock lives exactly as long
//! as its transaction, which every pooler keeps on one server connection.

use crate::sql::Sql;
use std::time::Duration;

use crate::conn::Conn;

use crate::error::Error;

/// The schema version this binary writes. A database with a newer version is refused
/// ([`Error::NewerSchema`]).
pub const SCHEMA_VERSION: i64 = 6;

/// The migrations, in order: (version, what it adds, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "journal, reports, fleet state, leases, store instances, minion status",
        V1,
    ),
    (2, "publish queue", V2),
    (
        3,
        "web service accounts: users, sessions, API tokens, audit log, template revisions",
        V3,
    ),
    (
        4,
        "records: start in milliseconds, history and statistics indexes, host failures",
        V4,
    ),
    (
        5,
        "publish queue write keys (writes retried after a lost connection)",
        V5,
    ),
    (6, "takeovers of interrupted deployments", V6),
];

// Times are `timestamptz`; lease expiry is compared with the database clock (`now()`), never with an
// instance's clock. `events` keeps every event of the journal as JSON in append order (`seq`), so the
// journal reads back exactly as it was written. `deployments.lease_token` is the fencing token of the
// lease the deployment held when it started (NULL for dry runs, which hold none).
const V1: &str = r#"
CREATE TABLE deployments (
    id               text PRIMARY KEY,
    template         text NOT NULL,
    version          text NOT NULL,
    principal        text NOT NULL,
    dry_run          boolean NOT NULL,
    rollback         boolean NOT NULL DEFAULT false,
    started_at       timestamptz NOT NULL,
    ended_at         timestamptz,
    duration_ms      bigint,
    outcome          text,
    reason           text,
    owner            text NOT NULL,
    lease_token      bigint,
    hosts            bigint,
    batches          bigint,
    events           bigint NOT NULL DEFAULT 0,
    last_event_at    timestamptz NOT NULL,
    finished_at      timestamptz,
    finished_outcome text
);
CREATE INDEX deployments_by_template ON deployments (template, started_at DESC);
CREATE INDEX deployments_by_start ON deployments (started_at DESC);
CREATE INDEX deployments_open ON deployments (owner) WHERE ended_at IS NULL;

CREATE TABLE events (
    deployment text NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    at         timestamptz NOT NULL,
    kind       text NOT NULL,
    event      jsonb NOT NULL,
    PRIMARY KEY (deployment, seq)
);

CREATE TABLE reports (
    deployment text PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
    report     jsonb NOT NULL
);

CREATE TABLE fleet (
    template text NOT NULL,
    host     text NOT NULL,
    version  text,
    healthy  boolean NOT NULL,
    since    timestamptz NOT NULL,
    good     jsonb NOT NULL,
    previous text,
    PRIMARY KEY (template, host)
);

-- A released lease keeps its row (holder NULL) so fencing tokens only grow.
CREATE TABLE leases (
    template    text PRIMARY KEY,
    holder      text,
    owner       text,
    reason      text,
    acquired_at timestamptz,
    expires_at  timestamptz NOT NULL DEFAULT '-infinity',
    token       bigint NOT NULL DEFAULT 0
);
CREATE INDEX leases_by_owner ON leases (owner) WHERE holder IS NOT NULL;

CREATE TABLE owners (
    owner        text PRIMARY KEY,
    pid          bigint NOT NULL,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    ttl_ms       bigint NOT NULL
);

CREATE TABLE minion_status (
    minion    text PRIMARY KEY,
    up        boolean NOT NULL,
    last_seen timestamptz,
    checked   timestamptz NOT NULL,
    since     timestamptz NOT NULL
);
"#;

// The queue of publish and rollback requests run by the service's workers (the same states as the
// SQLite store's `publish_requests`). At most one request per template runs: the partial unique
// index holds even if two claims raced past the claim query's own checks.
const V2: &str = r#"
CREATE TABLE publish_requests (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    template     text NOT NULL,
    requested_by text NOT NULL,
    groups       text[] NOT NULL,
    request      text NOT NULL,
    state        text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled',
                                                'interrupted')),
    queued_at    timestamptz NOT NULL,
    started_at   timestamptz,
    ended_at     timestamptz,
    deployment   text,
    error        text,
    worker       text
);
CREATE INDEX publish_requests_by_state ON publish_requests (state, id);
CREATE INDEX publish_requests_by_template ON publish_requests (template, id);
CREATE UNIQUE INDEX publish_requests_one_running ON publish_requests (template)
    WHERE state = 'running';
"#;

// The web service's accounts (the SQLite store's schema versions 9 and 10, same semantics). Times
// are milliseconds since the epoch as the caller passed them (`*_ms`), exactly as SQLite keeps them:
// session expiry is decided on the caller's `now`, compared in whole milliseconds. Session and API
// tokens are stored as their SHA-256 (hex) only. `users.name` is the primary key, so of two instances
// adding one user at once exactly one insert wins; `template_revisions`' primary key does the same
// for two saves of the next revision.
const V3: &str = r#"
CREATE TABLE users (
    name       text PRIMARY KEY,
    password   text NOT NULL,
    groups     text[] NOT NULL,
    created_ms bigint NOT NULL
);
CREATE TABLE sessions (
    token_sha256 text PRIMARY KEY,
    user_name    text NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    csrf         text NOT NULL,
    created_ms   bigint NOT NULL,
    last_seen_ms bigint NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_name);
CREATE TABLE api_tokens (
    id           text PRIMARY KEY,
    token_sha256 text NOT NULL UNIQUE,
    user_name    text NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    label        text NOT NULL,
    created_ms   bigint NOT NULL,
    last_used_ms bigint,
    expires_ms   bigint
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_name);
CREATE TABLE audit (
    seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms     bigint NOT NULL,
    user_name text NOT NULL,
    address   text,
    action    text NOT NULL,
    target    text NOT NULL,
    detail    text NOT NULL
);
CREATE INDEX audit_by_user ON audit (user_name, seq);
CREATE TABLE template_revisions (
    template  text NOT NULL,
    revision  bigint NOT NULL,
    user_name text NOT NULL,
    at_ms     bigint NOT NULL,
    file      text NOT NULL,
    content   text NOT NULL,
    PRIMARY KEY (template, revision)
);
"#;

// The web service's records (`RecordStore`). `started_ms` is the start in whole milliseconds since
// the Unix epoch, as the SQLite store keeps it: history pages are found by the key (start in ms, id),
// and statistics windows compare milliseconds. The two covering indexes serve both: a history page
// walks one from its key (ids compared bytewise, `COLLATE "C"`, as SQLite does), and a statistics
// query over a window is answered from the index alone (index-only scan) — over every template by
// start, or one template's. `host_failures` holds one row per `HostFailed` event (template, start
// and dry run copied from the deployment), kept by a trigger on `events` in the appending
// transaction, so hosts and stages are ranked without reading the journal.
const V4: &str = r#"
ALTER TABLE deployments ADD COLUMN started_ms bigint
    GENERATED ALWAYS AS (floor(extract(epoch FROM (started_at AT TIME ZONE 'UTC')) * 1000)::bigint)
    STORED;
CREATE INDEX deployments_records_by_start ON deployments (started_ms, id COLLATE "C")
    INCLUDE (template, principal, dry_run, rollback, outcome, duration_ms);
CREATE INDEX deployments_records_by_template ON deployments (template, started_ms, id COLLATE "C")
    INCLUDE (principal, dry_run, rollback, outcome, duration_ms);

CREATE TABLE host_failures (
    deployment text NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    template   text NOT NULL,
    started_ms bigint NOT NULL,
    dry_run    boolean NOT NULL,
    host       text NOT NULL,
    stage      text NOT NULL,
    PRIMARY KEY (deployment, seq)
);
CREATE INDEX host_failures_by_start ON host_failures (started_ms) INCLUDE (template, host, stage)
    WHERE NOT dry_run;
CREATE INDEX host_failures_by_template ON host_failures (template, started_ms) INCLUDE (host, stage)
    WHERE NOT dry_run;

CREATE FUNCTION pushguide_host_failure() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO host_failures (deployment, seq, template, started_ms, dry_run, host, stage)
    SELECT NEW.deployment, NEW.seq, d.template, d.started_ms, d.dry_run,
           NEW.event -> 'kind' ->> 'host', NEW.event -> 'kind' ->> 'stage'
    FROM deployments d WHERE d.id = NEW.deployment
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER events_host_failures AFTER INSERT ON events FOR EACH ROW
    WHEN (NEW.kind = 'host-failed') EXECUTE FUNCTION pushguide_host_failure();

INSERT INTO host_failures (deployment, seq, template, started_ms, dry_run, host, stage)
SELECT e.deployment, e.seq, d.template, d.started_ms, d.dry_run,
       e.event -> 'kind' ->> 'host', e.event -> 'kind' ->> 'stage'
FROM events e JOIN deployments d ON d.id = e.deployment
WHERE e.kind = 'host-failed';
"#;

// Keys the writing instance generates for its queue writes, so that a write retried after a lost
// connection is applied once: the enqueue (a request queued twice would run twice), the claim (a
// retried claim must neither take a second request nor lose the first; the unique index also makes a
// retry wait for an attempt still in flight) and the end (finish or withdraw).
const V5: &str = r#"
ALTER TABLE publish_requests ADD COLUMN enqueue_key text, ADD COLUMN claim_key text,
    ADD COLUMN end_key text;
CREATE UNIQUE INDEX publish_requests_by_enqueue_key ON publish_requests (enqueue_key);
CREATE UNIQUE INDEX publish_requests_by_claim_key ON publish_requests (claim_key);
"#;

// Takeovers of interrupted deployments (the SQLite store's schema version 13): one row per
// deployment, whatever instance took it over (the primary key), with the request it queued, written
// in the same transaction. `write_key` finds the takeover of an attempt whose answer was lost.
// Deployments interrupted before this schema are recorded as marked, so that no instance acts on
// old ones.
const V6: &str = r#"
CREATE TABLE takeovers (
    deployment text PRIMARY KEY,
    policy     text NOT NULL,
    request    bigint,
    note       text NOT NULL,
    by_owner   text NOT NULL,
    at         timestamptz NOT NULL,
    write_key  text
);
CREATE INDEX takeovers_by_request ON takeovers (request);
INSERT INTO takeovers (deployment, policy, request, note, by_owner, at)
    SELECT id, 'mark', NULL, 'interrupted before takeovers were recorded', 'migration',
           COALESCE(ended_at, last_event_at)
    FROM deployments WHERE outcome = 'interrupted';
"#;

/// What the migrations did when a store connected (`PgStore::connect`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Migration {
    /// The version found once the lock was held (0: an empty database).
    pub from: i64,
    /// The version now.
    pub to: i64,
    /// The versions this process applied (empty when another process had applied them).
    pub applied: Vec<i64>,
}

// Creating the migrations table is the only step outside the row lock: two processes may run it at
// once, and `CREATE TABLE IF NOT EXISTS` can then still fail on the catalog's unique index; it is
// retried.
const BOOTSTRAP: &str = "
CREATE TABLE IF NOT EXISTS pushguide_schema (
    id         integer PRIMARY KEY CHECK (id = 1),
    version    bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS pushguide_schema_log (
    version     bigint PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO pushguide_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
";

/// Whether `e` is the catalog race of two concurrent `CREATE ... IF NOT EXISTS`.
fn is_create_race(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| {
        *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::DUPLICATE_TABLE
            || *c == SqlState::DUPLICATE_SCHEMA
            || *c == SqlState::DUPLICATE_OBJECT
    })
}

/// Runs `sql` (idempotent DDL), retrying the catalog race of concurrent creators.
pub(crate) async fn create_idempotent(
    client: &Conn,
    sql: &str,
    endpoint: &str,
    during: &'static str,
) -> Result<(), Error> {
    let mut attempt = 0;
    loop {
        match client.batch(sql).await {
            Ok(()) => return Ok(()),
            Err(e) if is_create_race(&e) && attempt < 10 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            Err(source) => {
                return Err(Error::Db {
                    endpoint: endpoint.to_owned(),
                    during,
                    source,
                })
            }
        }
    }
}

/// Brings the schema to [`SCHEMA_VERSION`]: takes the migrations row's lock (`SELECT … FOR UPDATE`),
/// applies the missing migrations and records them in the same transaction. A second process
/// migrating at the same moment waits on the lock, then finds the work done. A database newer than
/// this binary is refused before anything is changed.
pub(crate) async fn migrate(client: &mut Conn, endpoint: &str) -> Result<Migration, Error> {
    create_idempotent(client, BOOTSTRAP, endpoint, "creating the migrations table").await?;
    let db = |during: &'static str| {
        move |source| Error::Db {
            endpoint: endpoint.to_owned(),
            during,
            source,
        }
    };
    let tx = client
        .transaction()
        .await
        .map_err(db("starting the migration"))?;
    let from: i64 = tx
        .one(
            "SELECT version FROM pushguide_schema WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(db("locking the migrations table"))?
        .get(0);
    if from > SCHEMA_VERSION {
        return Err(Error::NewerSchema {
            endpoint: endpoint.to_owned(),
            found: from,
            supported: SCHEMA_VERSION,
        });
    }
    let mut applied = Vec::new();
    for (version, what, sql) in MIGRATIONS.iter().filter(|m| m.0 > from) {
        tracing::info!(endpoint, version, what, "applying a schema migration");
        tx.batch_execute(sql)
            .await
            .map_err(db("applying a schema migration"))?;
        tx.exec(
            "INSERT INTO pushguide_schema_log (version, description) VALUES ($1, $2)",
            &[version, what],
        )
        .await
        .map_err(db("recording a schema migration"))?;
        applied.push(*version);
    }
    if !applied.is_empty() {
        tx.exec(
            "UPDATE pushguide_schema SET version = $1, updated_at = now() WHERE id = 1",
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(db("recording the schema version"))?;
    }
    tx.commit().await.map_err(db("committing the migration"))?;
    Ok(Migration {
        from,
        to: SCHEMA_VERSION.max(from),
        applied,
    })
}
