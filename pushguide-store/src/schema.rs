//! The schema, versioned through `PRAGMA user_version`: migration `i` brings version `i` to `i + 1`.

/// Migrations in order; the schema version of a database is the number applied.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

// Stage numbers: 0 prepare, 1 pre-deploy, 2 deploy, 3 post-deploy, 4 rollback. Batch -1 = prepare
// (or no batch). Times are milliseconds since the Unix epoch.
const V1: &str = r#"
CREATE TABLE deployments (
    id            TEXT PRIMARY KEY,
    template      TEXT NOT NULL,
    version       TEXT NOT NULL,
    principal     TEXT NOT NULL,
    dry_run       INTEGER NOT NULL,
    started_ms    INTEGER NOT NULL,
    ended_ms      INTEGER,
    duration_ms   INTEGER,
    outcome       TEXT,
    reason        TEXT,
    owner         TEXT NOT NULL,
    hosts         INTEGER,
    batches       INTEGER,
    cur_batch     INTEGER NOT NULL DEFAULT -1,
    cur_stage     INTEGER NOT NULL DEFAULT 0,
    events        INTEGER NOT NULL DEFAULT 0,
    last_event_ms INTEGER NOT NULL
);
CREATE INDEX deployments_by_start ON deployments (started_ms, dry_run, outcome, duration_ms);
CREATE INDEX deployments_by_template
    ON deployments (template, started_ms, dry_run, outcome, duration_ms, ended_ms);
CREATE INDEX deployments_open ON deployments (owner) WHERE ended_ms IS NULL;

CREATE TABLE batches (
    deployment TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    batch      INTEGER NOT NULL,
    hosts      INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms   INTEGER,
    ok         INTEGER,
    failed     INTEGER,
    PRIMARY KEY (deployment, batch)
) WITHOUT ROWID;

CREATE TABLE stages (
    id         INTEGER PRIMARY KEY,
    deployment TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    batch      INTEGER NOT NULL,
    stage      INTEGER NOT NULL,
    hosts      INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms   INTEGER,
    ok         INTEGER,
    failed     INTEGER
);
CREATE INDEX stages_by_deployment ON stages (deployment, batch, stage);

CREATE TABLE calls (
    id         INTEGER PRIMARY KEY,
    deployment TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    batch      INTEGER NOT NULL,
    stage      INTEGER NOT NULL,
    fun        TEXT NOT NULL,
    jid        TEXT,
    ok         INTEGER NOT NULL,
    failed     INTEGER NOT NULL,
    millis     INTEGER NOT NULL,
    at_ms      INTEGER NOT NULL
);
CREATE INDEX calls_by_deployment ON calls (deployment);
CREATE INDEX calls_by_jid ON calls (jid) WHERE jid IS NOT NULL;

-- Host events: one row per failed host (stage, call, reason) and per rollback failure; hosts that
-- succeeded (or were rolled back to the same version) one after another in the same batch share one
-- row whose `hosts` is a JSON array. Template, start and dry run are copied from the deployment for
-- the statistics.
CREATE TABLE host_results (
    id         INTEGER PRIMARY KEY,
    deployment TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    template   TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    dry_run    INTEGER NOT NULL,
    host       TEXT,
    hosts      TEXT,
    batch      INTEGER NOT NULL,
    stage      INTEGER NOT NULL,
    status     TEXT NOT NULL,
    fun        TEXT,
    detail     TEXT,
    at_ms      INTEGER NOT NULL
);
CREATE INDEX host_results_by_deployment ON host_results (deployment);
CREATE INDEX host_failures_by_start ON host_results (started_ms, host, stage)
    WHERE status = 'failed' AND dry_run = 0;
CREATE INDEX host_failures_by_template ON host_results (template, started_ms, host, stage)
    WHERE status = 'failed' AND dry_run = 0;

-- host_results with one row per host.
CREATE VIEW host_events AS
SELECT r.id, r.deployment, coalesce(r.host, j.value) AS host, r.batch, r.stage, r.status, r.fun,
       r.detail, r.at_ms
FROM host_results r, json_each(coalesce(r.hosts, '[null]')) j;

-- Per stage and host, with the stage's start, end and duration (from the batch's stage events).
CREATE VIEW host_stage_results AS
SELECT r.deployment AS deployment,
       r.host AS host,
       s.batch AS batch,
       CASE s.stage WHEN 0 THEN 'prepare' WHEN 1 THEN 'pre-deploy' WHEN 2 THEN 'deploy'
                    WHEN 3 THEN 'post-deploy' ELSE 'rollback' END AS stage,
       CASE WHEN r.status IN ('failed', 'rollback-failed') AND s.stage = r.stage THEN 'failed'
            ELSE 'ok' END AS status,
       s.started_ms AS started_ms,
       s.ended_ms AS ended_ms,
       s.ended_ms - s.started_ms AS duration_ms,
       CASE WHEN s.stage = r.stage THEN r.fun END AS fun,
       CASE WHEN s.stage = r.stage THEN r.detail END AS detail
FROM host_events r
JOIN stages s ON s.deployment = r.deployment AND s.batch = r.batch
 AND CASE r.status
         WHEN 'succeeded' THEN s.stage BETWEEN 1 AND 3
         WHEN 'failed' THEN s.stage <= r.stage AND (r.stage < 4 OR s.stage = 4)
         ELSE s.stage = 4
     END;

-- The final report: `hosts` is a JSON array of groups of hosts that ended alike
-- ({batch, status, stage, fun, failure, rolled_back_to, log, hosts: [...]}), `log` indexing `logs`, a
-- JSON array of distinct host logs (each an array of lines, as `Report::host_log` prints them).
CREATE TABLE reports (
    deployment TEXT PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
    hosts      TEXT NOT NULL,
    logs       TEXT NOT NULL
) WITHOUT ROWID;

-- One row per host of each report.
CREATE VIEW report_hosts AS
SELECT r.deployment AS deployment,
       h.value AS host,
       g.value ->> '$.batch' AS batch,
       g.value ->> '$.status' AS status,
       g.value ->> '$.stage' AS failed_stage,
       g.value ->> '$.fun' AS failed_fun,
       g.value ->> '$.failure' AS failure,
       g.value ->> '$.rolled_back_to' AS rolled_back_to,
       r.logs -> ('$[' || (g.value ->> '$.log') || ']') AS log
FROM reports r, json_each(r.hosts) g, json_each(g.value, '$.hosts') h;

CREATE TABLE fleet (
    template          TEXT NOT NULL,
    host              TEXT NOT NULL,
    version           TEXT NOT NULL,
    since_ms          INTEGER NOT NULL,
    previous          TEXT,
    previous_since_ms INTEGER,
    PRIMARY KEY (template, host)
) WITHOUT ROWID;

-- A released lease keeps its row (holder NULL) so fencing tokens only grow.
CREATE TABLE leases (
    template    TEXT PRIMARY KEY,
    holder      TEXT,
    owner       TEXT,
    reason      TEXT,
    acquired_ms INTEGER,
    expires_ms  INTEGER NOT NULL DEFAULT 0,
    token       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX leases_by_holder ON leases (holder) WHERE holder IS NOT NULL;

-- Store instances (processes) and their last heartbeat.
CREATE TABLE owners (
    owner        TEXT PRIMARY KEY,
    pid          INTEGER NOT NULL,
    started_ms   INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    ttl_ms       INTEGER NOT NULL
) WITHOUT ROWID;
"#;

// Minion connectivity (the monitor's last seen / up / down).
const V2: &str = r#"
CREATE TABLE minion_status (
    minion       TEXT PRIMARY KEY,
    up           INTEGER NOT NULL,
    last_seen_ms INTEGER,
    checked_ms   INTEGER NOT NULL,
    since_ms     INTEGER NOT NULL
) WITHOUT ROWID;
"#;

// The hosts of each batch (JSON list), so recovery names the hosts of a batch that was under way.
const V3: &str = r#"
ALTER TABLE batches ADD COLUMN minions TEXT;
"#;

// Whether a deployment was a rollback request. Deployments recorded before this version are taken for
// rollbacks when their version is `previous` (what a rollback without `--to` records); one with an
// explicit target cannot be told from a release of that version.
const V4: &str = r#"
ALTER TABLE deployments ADD COLUMN rollback INTEGER NOT NULL DEFAULT 0;
UPDATE deployments SET rollback = 1 WHERE version = 'previous';
"#;

// Fleet state as a log of good versions per host: what a host runs now may be unknown (`version`
// NULL) or unhealthy (a release failed there), and the rollback target is the last version that ran
// successfully before it (`good`, a JSON array, oldest first; `previous` derived from it).
const V5: &str = r#"
CREATE TABLE fleet_v5 (
    template TEXT NOT NULL,
    host     TEXT NOT NULL,
    version  TEXT,
    healthy  INTEGER NOT NULL,
    since_ms INTEGER NOT NULL,
    good     TEXT NOT NULL,
    previous TEXT,
    PRIMARY KEY (template, host)
) WITHOUT ROWID;
INSERT INTO fleet_v5 (template, host, version, healthy, since_ms, good, previous)
SELECT template, host, version, 1, since_ms,
       CASE WHEN previous IS NULL OR previous = version THEN json_array(version)
            ELSE json_array(previous, version) END,
       previous
FROM fleet;
DROP TABLE fleet;
ALTER TABLE fleet_v5 RENAME TO fleet;
"#;

// Every planned host of a deployment (JSON array in batch order), so recovery names hosts never reached.
const V6: &str = r#"
ALTER TABLE deployments ADD COLUMN planned TEXT;
"#;

// The end the journal recorded (`DeploymentFinished`), apart from the outcome: `outcome`, `reason`,
// `ended_ms` and `duration_ms` are written with the report, in one transaction, so whoever sees an
// outcome also sees the host statuses and logs. A deployment with `finished_ms` but no `ended_ms` died
// between the two; recovery marks it interrupted and names the journaled outcome in its reason.
const V7: &str = r#"
ALTER TABLE deployments ADD COLUMN finished_ms INTEGER;
ALTER TABLE deployments ADD COLUMN finished_outcome TEXT;
UPDATE deployments SET finished_ms = ended_ms, finished_outcome = outcome
WHERE ended_ms IS NOT NULL AND outcome IS NOT NULL AND outcome != 'interrupted';
"#;
