//! The schema, versioned through `PRAGMA user_version`: migration `i` brings version `i` to `i + 1`.

/// Migrations in order; the schema version of a database is the number applied.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, V13];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

// Stage numbers: `Stage::index` (0 prepare, 1 pre-deploy, 2 deploy, 3 post-deploy, 4 rollback),
// written and read through `StageCode` only. Batch -1 = prepare (or no batch). Times are milliseconds since the Unix epoch.
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
-- When the rollback of every touched host began (`RollbackStarted`): from then on host rollback
-- events set the hosts' statuses; before it they record restores of failed hosts, which stay failed.
ALTER TABLE deployments ADD COLUMN rollback_started_ms INTEGER;
UPDATE deployments SET finished_ms = ended_ms, finished_outcome = outcome
WHERE ended_ms IS NOT NULL AND outcome IS NOT NULL AND outcome != 'interrupted';

-- Each host's result as the journal's events left it, kept up to date as events are appended (one
-- path: the report no longer carries statuses). `status`: pending (planned, batch not started),
-- interrupted (batch started, no result yet), succeeded, failed, excluded (failed, then excluded by a
-- decision), rolled-back, rollback-failed, no-rollback-target. `stage` (code), `fun` and `failure`:
-- the release failure, else the rollback failure. `batch` NULL: never in a batch.
CREATE TABLE host_state (
    deployment     TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    host           TEXT NOT NULL,
    batch          INTEGER,
    status         TEXT NOT NULL,
    stage          INTEGER,
    fun            TEXT,
    failure        TEXT,
    rolled_back_to TEXT,
    PRIMARY KEY (deployment, host)
) WITHOUT ROWID;

-- Deployments recorded before: from their report, else from their journal's host events and the
-- hosts of their batches.
INSERT OR IGNORE INTO host_state
    (deployment, host, batch, status, stage, fun, failure, rolled_back_to)
SELECT deployment, host, batch, status,
       CASE failed_stage WHEN 'prepare' THEN 0 WHEN 'pre-deploy' THEN 1 WHEN 'deploy' THEN 2
                         WHEN 'post-deploy' THEN 3 WHEN 'rollback' THEN 4 END,
       failed_fun, failure, rolled_back_to
FROM report_hosts;
INSERT OR IGNORE INTO host_state
    (deployment, host, batch, status, stage, fun, failure, rolled_back_to)
SELECT e.deployment, e.host, CASE WHEN e.batch >= 0 THEN e.batch END, e.status,
       CASE WHEN e.status IN ('failed', 'rollback-failed') THEN e.stage END, e.fun,
       CASE WHEN e.status IN ('failed', 'rollback-failed') THEN e.detail END,
       CASE WHEN e.status = 'rolled-back' THEN e.detail END
FROM host_events e
WHERE e.host IS NOT NULL
  AND e.id = (SELECT max(l.id) FROM host_events l
              WHERE l.deployment = e.deployment AND l.host = e.host)
  AND NOT EXISTS (SELECT 1 FROM reports r WHERE r.deployment = e.deployment);
INSERT OR IGNORE INTO host_state (deployment, host, batch, status)
SELECT b.deployment, j.value, b.batch, 'interrupted'
FROM batches b, json_each(b.minions) j
WHERE b.minions IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM reports r WHERE r.deployment = b.deployment);

-- The report keeps what events do not carry: each host's log lines. `hosts` is a JSON array of
-- groups of hosts with the same log ({log, hosts: [...]}; reports recorded before also carry the
-- results now in `host_state`), `log` indexing `logs`.
DROP VIEW report_hosts;
CREATE VIEW report_hosts AS
SELECT r.deployment AS deployment,
       h.value AS host,
       r.logs -> ('$[' || (g.value ->> '$.log') || ']') AS log
FROM reports r, json_each(r.hosts) g, json_each(g.value, '$.hosts') h;
"#;

// Statistics filter on `rollback` (rollbacks are their own series) and on lists of templates: the
// covering indexes carry both, so a year of history is counted from the index alone.
const V8: &str = r#"
DROP INDEX deployments_by_start;
CREATE INDEX deployments_by_start
    ON deployments (started_ms, dry_run, rollback, outcome, duration_ms, ended_ms, template);
DROP INDEX deployments_by_template;
CREATE INDEX deployments_by_template
    ON deployments (template, started_ms, dry_run, rollback, outcome, duration_ms, ended_ms);
"#;

// Web service accounts and sessions. `password` is an argon2id PHC string; `groups` a JSON array.
// A session's token is never stored: only its SHA-256 (hex). Times in milliseconds.
const V9: &str = r#"
CREATE TABLE users (
    name       TEXT PRIMARY KEY,
    password   TEXT NOT NULL,
    groups     TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE sessions (
    token_sha256 TEXT PRIMARY KEY,
    user         TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    csrf         TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_by_user ON sessions (user);
"#;

// The web service's tables. `audit`: every action a user took through the service (who, what,
// when, from which address). `api_tokens`: CI's bearer tokens, stored as SHA-256 (hex) only, each
// scoped to its user's rights. `template_revisions`: every saved revision of a template file.
// `publish_requests`: the queue of publish and rollback requests run by the service's workers;
// `request` is JSON, `state` one of queued, running, done, failed, cancelled.
const V10: &str = r#"
CREATE TABLE audit (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    user    TEXT NOT NULL,
    address TEXT,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_by_user ON audit (user, seq);
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    user         TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    label        TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    last_used_ms INTEGER,
    expires_ms   INTEGER
) WITHOUT ROWID;
CREATE INDEX api_tokens_by_user ON api_tokens (user);
CREATE TABLE template_revisions (
    template TEXT NOT NULL,
    revision INTEGER NOT NULL,
    user     TEXT NOT NULL,
    at_ms    INTEGER NOT NULL,
    file     TEXT NOT NULL,
    content  TEXT NOT NULL,
    PRIMARY KEY (template, revision)
) WITHOUT ROWID;
CREATE TABLE publish_requests (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    template   TEXT NOT NULL,
    user       TEXT NOT NULL,
    groups     TEXT NOT NULL,
    request    TEXT NOT NULL,
    state      TEXT NOT NULL,
    queued_ms  INTEGER NOT NULL,
    started_ms INTEGER,
    ended_ms   INTEGER,
    deployment TEXT,
    error      TEXT,
    worker     TEXT
);
CREATE INDEX publish_requests_by_state ON publish_requests (state, id);
CREATE INDEX publish_requests_by_template ON publish_requests (template, id);
"#;

// The history page (`pushguide-server`): newest first, paged by key (start, id), filtered by
// template, user and outcome. Both indexes carry the filtered columns, so a page is found from the
// index without reading the rows it skips.
const V11: &str = r#"
CREATE INDEX deployments_history ON deployments (started_ms, id, template, principal, outcome);
CREATE INDEX deployments_history_by_template
    ON deployments (template, started_ms, id, principal, outcome);
"#;

// The live view of a deployment run by another process (`pushguide-server`): the events its
// page folds, by (deployment, journal sequence), followed while the deployment runs. Host
// successes and salt calls are left out (the page shows neither; their effects are in the stage
// events), so the sequence has gaps.
const V12: &str = r#"
CREATE TABLE journal (
    deployment TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    event      TEXT NOT NULL,
    PRIMARY KEY (deployment, seq)
) WITHOUT ROWID;
"#;

// Takeovers (`pushguide-server`): what an instance did with a deployment interrupted by the death
// of the instance that ran it (its template's `takeover` policy). The primary key makes it exactly
// once per deployment; the queued request is written in the same transaction. Deployments
// interrupted before this schema are recorded as marked, so that no instance acts on old ones.
const V13: &str = r#"
CREATE TABLE takeovers (
    deployment TEXT PRIMARY KEY,
    policy     TEXT NOT NULL,
    request    INTEGER,
    note       TEXT NOT NULL,
    by_owner   TEXT NOT NULL,
    at_ms      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX takeovers_by_request ON takeovers (request);
INSERT INTO takeovers (deployment, policy, request, note, by_owner, at_ms)
    SELECT id, 'mark', NULL, 'interrupted before takeovers were recorded', 'migration',
           COALESCE(ended_ms, last_event_ms)
    FROM deployments WHERE outcome = 'interrupted';
"#;

/// A database file at `path` as a build with schema `version` left it (for migration tests).
#[cfg(test)]
pub(crate) fn database_at_version(path: &std::path::Path, version: usize) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("a database file");
    for sql in &MIGRATIONS[..version] {
        conn.execute_batch(sql).expect("an old migration");
    }
    conn.pragma_update(None, "user_version", version)
        .expect("the old schema version");
    conn
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::SqliteStore;

    /// A schema 6 database keeps its hosts' results readable: from the report where one was
    /// recorded (status, failure, rollback target and log), else from the journal.
    #[test]
    fn schema_6_results_move_to_host_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v6.db");
        {
            let conn = database_at_version(&path, 6);
            conn.execute_batch(
                r#"INSERT INTO deployments (id, template, version, principal, dry_run, started_ms,
                    owner, last_event_ms, ended_ms, duration_ms, outcome)
                VALUES ('d1', 'shop', '2.0', 'alice', 0, 1000, 'old', 9000, 9000, 8000,
                        'partially-applied'),
                       ('d2', 'shop', '3.0', 'alice', 0, 10000, 'old', 12000, 12000, 2000,
                        'interrupted');
                INSERT INTO reports (deployment, hosts, logs) VALUES ('d1',
                  '[{"batch":0,"status":"succeeded","log":0,"hosts":["web-01"]},
                    {"batch":0,"status":"failed","stage":"deploy","fun":"file.symlink",
                     "failure":"disk full","rolled_back_to":"1.0","log":1,"hosts":["web-02"]}]',
                  '[["ok"],["failed","restored"]]');
                INSERT INTO host_results (deployment, template, started_ms, dry_run, host, hosts,
                    batch, stage, status, fun, detail, at_ms)
                VALUES ('d2', 'shop', 10000, 0, NULL, '["web-01"]', 0, 3, 'succeeded', NULL,
                        NULL, 11000),
                       ('d2', 'shop', 10000, 0, 'web-02', NULL, 1, 2, 'failed', 'cmd.run',
                        'exit 2', 11500);
                INSERT INTO batches (deployment, batch, hosts, started_ms, minions)
                VALUES ('d2', 1, 2, 11000, '["web-02","web-03"]');"#,
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let r: Vec<_> = s
            .host_results("d1")
            .unwrap()
            .into_iter()
            .map(|h| {
                (
                    h.host,
                    h.batch,
                    h.status,
                    h.failed_stage,
                    h.fun,
                    h.failure,
                    h.rolled_back_to,
                )
            })
            .collect();
        assert_eq!(
            r,
            vec![
                (
                    "web-01".into(),
                    Some(0),
                    "succeeded".into(),
                    None,
                    None,
                    None,
                    None
                ),
                (
                    "web-02".into(),
                    Some(0),
                    "failed".into(),
                    Some("deploy".into()),
                    Some("file.symlink".into()),
                    Some("disk full".into()),
                    Some("1.0".into())
                ),
            ]
        );
        assert_eq!(s.host_log("d1", "web-02").unwrap(), ["failed", "restored"]);
        let st = |h| s.host_status("d2", h).unwrap();
        assert_eq!(st("web-01").as_deref(), Some("succeeded"));
        assert_eq!(st("web-02").as_deref(), Some("failed"));
        assert_eq!(st("web-03").as_deref(), Some("interrupted"));
        let d1 = s.deployment("d1").unwrap().unwrap();
        assert_eq!(d1.outcome.as_deref(), Some("partially-applied"));
    }

    /// Stages are stored as [`pushguide_core::Stage::index`], the numbers the schema's own SQL
    /// (the `host_stage_results` view of version 1: `BETWEEN 1 AND 3` for the batch stages, 4 for
    /// rollback) was written against: every stage reads back as itself through the store's queries
    /// and through the view.
    #[test]
    fn stage_numbers_are_the_ones_the_schema_was_written_against() {
        use pushguide_core::Stage;

        use crate::store::StageCode;

        assert_eq!(Stage::BATCH.map(Stage::index), [1, 2, 3]);
        assert_eq!(Stage::Rollback.index(), 4);
        let s = SqliteStore::open_in_memory().unwrap();
        {
            let conn = s.conn();
            conn.execute_batch(
                "INSERT INTO deployments (id, template, version, principal, dry_run, started_ms,
                    owner, last_event_ms)
                 VALUES ('d1', 'shop', '2.0', 'alice', 0, 1000, 'o', 1000);
                 -- web-01 failed in post-deploy (3), web-02 was rolled back (4)
                 INSERT INTO host_results (deployment, template, started_ms, dry_run, host, batch,
                    stage, status, fun, detail, at_ms)
                 VALUES ('d1', 'shop', 1000, 0, 'web-01', 0, 3, 'failed', 'cmd.run', 'exit 1', 2000),
                        ('d1', 'shop', 1000, 0, 'web-02', 0, 4, 'rolled-back', NULL, '1.0', 2000);",
            )
            .unwrap();
            let stored: Vec<i64> = Stage::ALL
                .iter()
                .map(|s| conn.query_row("SELECT ?1", [StageCode(*s)], |r| r.get(0)))
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(stored, [0, 1, 2, 3, 4, 5]);
            for (n, stage) in (0..).zip(Stage::ALL) {
                let read: StageCode = conn.query_row("SELECT ?1", [n], |r| r.get(0)).unwrap();
                assert_eq!(read.0, stage);
                conn.execute(
                    "INSERT INTO calls (deployment, batch, stage, fun, ok, failed, millis, at_ms)
                     VALUES ('d1', 0, ?1, 'test.ping', 1, 0, 5, 1000)",
                    [StageCode(stage)],
                )
                .unwrap();
                conn.execute(
                    "INSERT INTO stages (deployment, batch, stage, hosts, started_ms, ended_ms)
                     VALUES ('d1', 0, ?1, 2, 1000, 1500)",
                    [StageCode(stage)],
                )
                .unwrap();
            }
        }
        let names: Vec<String> = s
            .calls("d1")
            .unwrap()
            .into_iter()
            .map(|c| c.stage)
            .collect();
        assert_eq!(names, Stage::ALL.map(|s| s.as_str().to_owned()));
        let rows: Vec<(String, String, String)> = s
            .host_stage_results("d1")
            .unwrap()
            .into_iter()
            .map(|r| (r.host, r.stage, r.status))
            .collect();
        let row =
            |h: &str, s: Stage, st: &str| (h.to_owned(), s.as_str().to_owned(), st.to_owned());
        assert_eq!(
            rows,
            [
                row("web-01", Stage::Prepare, "ok"),
                row("web-01", Stage::PreDeploy, "ok"),
                row("web-01", Stage::Deploy, "ok"),
                row("web-01", Stage::PostDeploy, "failed"),
                row("web-02", Stage::Rollback, "ok"),
            ]
        );
    }

    /// Version 7 turned each report's failed stage names into numbers: the same numbers the store
    /// writes now, so every name reads back as itself.
    #[test]
    fn schema_7_wrote_stage_numbers_as_the_store_does() {
        use pushguide_core::Stage;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v6-stages.db");
        {
            let conn = database_at_version(&path, 6);
            conn.execute_batch(
                "INSERT INTO deployments (id, template, version, principal, dry_run, started_ms,
                     owner, last_event_ms, ended_ms, duration_ms, outcome)
                 VALUES ('d1', 'shop', '2.0', 'alice', 0, 1000, 'old', 9000, 9000, 8000, 'failed');",
            )
            .unwrap();
            // the stages a version-7 store knew (staging came later)
            let groups: Vec<String> = Stage::ALL[..5]
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    format!(
                        r#"{{"batch":0,"status":"failed","stage":"{s}","fun":"cmd.run","log":0,"hosts":["web-{i}"]}}"#
                    )
                })
                .collect();
            conn.execute(
                "INSERT INTO reports (deployment, hosts, logs) VALUES ('d1', ?1, '[[]]')",
                [format!("[{}]", groups.join(","))],
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let stored: Vec<(String, i64)> = {
            let conn = s.conn();
            let mut stmt = conn
                .prepare("SELECT host, stage FROM host_state WHERE deployment = 'd1' ORDER BY host")
                .unwrap();
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            rows
        };
        let want: Vec<(String, i64)> = Stage::ALL[..5]
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("web-{i}"), s.index() as i64))
            .collect();
        assert_eq!(stored, want);
        let read: Vec<Option<String>> = s
            .host_results("d1")
            .unwrap()
            .into_iter()
            .map(|h| h.failed_stage)
            .collect();
        let known: Vec<Option<String>> = Stage::ALL[..5]
            .iter()
            .map(|s| Some(s.as_str().to_owned()))
            .collect();
        assert_eq!(read, known);
    }

    /// A stage number no stage has (a foreign or damaged row) is a typed error naming the number
    /// and the known ones, not a panic and not silently `rollback`.
    #[test]
    fn an_unknown_stage_number_is_an_error() {
        let s = SqliteStore::open_in_memory().unwrap();
        s.conn()
            .execute_batch(
                "INSERT INTO deployments (id, template, version, principal, dry_run, started_ms,
                    owner, last_event_ms)
                 VALUES ('d1', 'shop', '2.0', 'alice', 0, 1000, 'o', 1000);
                 INSERT INTO calls (deployment, batch, stage, fun, ok, failed, millis, at_ms)
                 VALUES ('d1', 0, 9, 'test.ping', 1, 0, 5, 1000);
                 INSERT INTO host_state (deployment, host, batch, status, stage)
                 VALUES ('d1', 'web-01', 0, 'failed', -1);",
            )
            .unwrap();
        let err = s.calls("d1").unwrap_err();
        assert!(matches!(err, crate::Error::Sqlite { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("stage number 9") && msg.contains("4 rollback"),
            "{msg}"
        );
        let err = s.host_results("d1").unwrap_err();
        assert!(err.to_string().contains("stage number -1"), "{err}");
    }
}
