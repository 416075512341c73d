//! The store behind a real PgBouncer in transaction mode (`pool_mode = transaction`,
//! `default_pool_size = 2`): each test starts a PgBouncer of its own (Debian's `pgbouncer`; the
//! binary from `PUSHGUIDE_PGBOUNCER`, else `pgbouncer` on PATH or in /usr/sbin) in front of the test
//! database, on a free loopback port, and stops it (by its process handle) at the end. Without the
//! binary a test skips with a message, unless `PUSHGUIDE_REQUIRE_PG=1`: then it fails.
//!
//! With two server connections shared by every client, a client's consecutive transactions land on
//! different server connections ([`pgbouncer_moves_a_clients_transactions_between_server_connections`]
//! shows it, and that a named prepared statement is lost there): through it run migrations at first
//! start, the store conformance suite, a lease race of two instances, deploys through core's
//! engine, and the queue.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pushguide_core::store_conformance as suite;
use pushguide_postgres::{PgConfig, PgStore};

use crate::support::{config, raw, store, unique_schema, View};
use crate::{SHORT_TTL, TTL};

/// A running PgBouncer, stopped when dropped.
pub(crate) struct Bouncer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn binary() -> Option<PathBuf> {
    if let Ok(b) = std::env::var("PUSHGUIDE_PGBOUNCER") {
        return Some(PathBuf::from(b));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("pgbouncer"))
        .find(|p| p.is_file())
}

/// Our effective uid, from /proc (PgBouncer refuses to run as root: then it runs as `postgres`).
fn euid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        })
        .and_then(|u| u.parse().ok())
        .unwrap_or(u32::MAX)
}

/// uid and gid of `user` from /etc/passwd.
fn ids_of(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn password() -> Option<String> {
    if let Ok(file) = std::env::var("PUSHGUIDE_PG_PASSWORD_FILE") {
        let text = std::fs::read_to_string(file).expect("password file");
        return Some(text.lines().next().unwrap_or_default().to_owned());
    }
    std::env::var("PUSHGUIDE_PG_PASSWORD").ok()
}

/// A PgBouncer in transaction mode in front of the test database and the store settings reaching
/// the database through it (a fresh schema, [`PgConfig::transaction_pooling`] on), or `None` (skip).
pub(crate) fn bouncer(test: &str) -> Option<(Bouncer, PgConfig)> {
    let direct = config(test)?;
    let Some(bin) = binary() else {
        if std::env::var("PUSHGUIDE_REQUIRE_PG").as_deref() == Ok("1") {
            panic!("PUSHGUIDE_REQUIRE_PG=1 but pgbouncer is not installed (apt-get install pgbouncer, or set PUSHGUIDE_PGBOUNCER)");
        }
        eprintln!("SKIPPED {test}: pgbouncer is not installed (apt-get install pgbouncer)");
        return None;
    };
    let url: tokio_postgres::Config = std::env::var("PUSHGUIDE_PG_URL")
        .expect("url")
        .parse()
        .expect("url");
    let host = match url.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        other => panic!("the test database must be reached over TCP for PgBouncer, not {other:?}"),
    };
    let db_port = url.get_ports().first().copied().unwrap_or(5432);
    let db = url
        .get_dbname()
        .expect("a database name in PUSHGUIDE_PG_URL");
    let user = url.get_user().expect("a user in PUSHGUIDE_PG_URL");
    let dir = std::env::temp_dir().join(unique_schema(&format!("pgbouncer_{test}")));
    std::fs::create_dir_all(&dir).expect("pgbouncer dir");
    let port = free_port();
    let pw = password()
        .map(|p| format!(" password='{}'", p.replace('\'', "\\'")))
        .unwrap_or_default();
    // clients log in as anyone (loopback, a test's own port); PgBouncer logs in to the database
    // with the lab's user and password. No `ignore_startup_parameters`: a client sending `options`
    // is refused, as by a default PgBouncer.
    let ini = format!(
        "[databases]\n\
         {db} = host={host} port={db_port} dbname={db} user={user}{pw}\n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = any\n\
         pool_mode = transaction\n\
         default_pool_size = 2\n\
         max_client_conn = 500\n\
         logfile = {log}\n",
        log = dir.join("pgbouncer.log").display()
    );
    let ini_path = dir.join("pgbouncer.ini");
    std::fs::write(&ini_path, ini).expect("pgbouncer.ini");
    let mut cmd = Command::new(&bin);
    if euid() == 0 {
        let (uid, gid) = ids_of("postgres").expect(
            "PgBouncer refuses to run as root, and there is no user 'postgres' to run it as",
        );
        for p in [&dir, &ini_path] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown");
        }
        cmd.args(["-u", "postgres"]);
    }
    let child = cmd
        .arg(&ini_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let mut b = Bouncer { child, dir, port };
    let begun = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = b.child.try_wait() {
            panic!(
                "pgbouncer exited ({status}): {}",
                log_of(&b.dir).unwrap_or_default()
            );
        }
        assert!(
            begun.elapsed() < Duration::from_secs(20),
            "pgbouncer did not listen on 127.0.0.1:{port} within 20 s: {}",
            log_of(&b.dir).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut c = PgConfig::from_url(&format!("postgres://{user}@127.0.0.1:{port}/{db}"))
        .expect("bouncer url")
        .transaction_pooling(true)
        .schema(direct.schema.clone().expect("a test schema"))
        .expect("schema")
        .pool_size(4);
    // for a listener connecting to the server directly (`listen_url`)
    c.password = direct.password.clone();
    c.ca_file = direct.ca_file.clone();
    b.port = port;
    Some((b, c))
}

fn log_of(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("pgbouncer.log")).ok()
}

/// A plain driver connection through `b` (simple queries only).
async fn through(b: &Bouncer) -> tokio_postgres::Client {
    let url = std::env::var("PUSHGUIDE_PG_URL").expect("url");
    let mut pg: tokio_postgres::Config = url.parse().expect("url");
    pg.host("127.0.0.1").port(b.port);
    let (client, conn) = pg
        .connect(tokio_postgres::NoTls)
        .await
        .expect("a connection through pgbouncer");
    tokio::spawn(conn);
    client
}

async fn backend(c: &tokio_postgres::Client) -> String {
    let rows = c.simple_query("SELECT pg_backend_pid()").await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a pid")
}

/// The proxy really pools by transaction: with two server connections, one client's consecutive
/// statements run on both, and a named prepared statement (what tokio-postgres's `query` makes)
/// does not survive the move; the store started through it afterwards (migrations at first start)
/// works, with its tables in its schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_moves_a_clients_transactions_between_server_connections() {
    let Some((b, c)) = bouncer("pgb_moves") else {
        return;
    };
    let (x, a, z) = (through(&b).await, through(&b).await, through(&b).await);
    x.batch_execute("BEGIN").await.unwrap();
    let held_by_x = backend(&x).await;
    // x holds one server connection: a runs on the other
    let first = backend(&a).await;
    assert_ne!(first, held_by_x);
    let named = a.prepare("SELECT 1::int4").await.unwrap();
    // z takes that other one, x lets its own go: a's next statement runs where x was
    z.batch_execute("BEGIN").await.unwrap();
    assert_eq!(backend(&z).await, first);
    x.batch_execute("COMMIT").await.unwrap();
    let second = backend(&a).await;
    assert_eq!(
        second, held_by_x,
        "the client moved to the other server connection"
    );
    let lost = a.query(&named, &[]).await;
    let e = lost.expect_err("a named statement prepared on another server connection");
    let said = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(said.contains("does not exist"), "{e}: {said}");
    z.batch_execute("COMMIT").await.unwrap();
    drop((x, a, z));

    // the store, whose every statement is unnamed and carries its settings per transaction
    let s = store(&c, TTL).await;
    assert!(!s.migration().applied.is_empty(), "migrated at first start");
    let direct = raw(&c).await;
    let schema = c.schema.clone().unwrap();
    let tables: i64 = direct
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1
               AND table_name IN ('deployments', 'events', 'leases', 'fleet', 'publish_requests')",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 5, "the tables are in schema {schema}");
    let public: i64 = direct
        .query_one(
            "SELECT count(*) FROM information_schema.tables
             WHERE table_schema = 'public' AND table_name = 'pushguide_schema'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(public, 0, "nothing landed in the default schema");
    // a second instance finds the work done
    let again = store(&c, TTL).await;
    assert!(again.migration().applied.is_empty());
    s.close().await.unwrap();
    again.close().await.unwrap();
}

/// Without transaction pooling the store sends its settings as startup `options`, which a default
/// PgBouncer refuses: the setting is what makes the proxy work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_setting_pgbouncer_refuses_the_startup_options() {
    let Some((_b, c)) = bouncer("pgb_refused") else {
        return;
    };
    let e = PgStore::connect(&c.clone().transaction_pooling(false))
        .await
        .expect_err("startup options refused");
    assert!(
        e.to_string()
            .contains("unsupported startup parameter: options"),
        "{e}"
    );
}

/// The store conformance suite, unchanged, through the proxy: journal order, fleet state, leases,
/// a lease race of two instances, takeover fencing, journal fencing, minion status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_pgbouncer() {
    let Some((_b, c)) = bouncer("pgb_conformance") else {
        return;
    };
    suite::journal_order(&View(store(&c, TTL).await), "j").await;
    suite::fleet_state(&store(&c, TTL).await, "f").await;
    suite::leases(&store(&c, TTL).await, "l").await;
    let (a, b) = (store(&c, TTL).await, store(&c, TTL).await);
    assert_ne!(a.owner(), b.owner(), "two instances");
    suite::lease_race(&a, &b, "r", 40).await;
    let (old, new) = (store(&c, SHORT_TTL).await, store(&c, TTL).await);
    old.stop_heartbeat();
    suite::takeover_fences(&old, &new, SHORT_TTL, "t").await;
    let (old, new) = (store(&c, SHORT_TTL).await, store(&c, TTL).await);
    old.stop_heartbeat();
    suite::journal_fencing(&old, &new, SHORT_TTL, "jf").await;
    suite::minion_status(&store(&c, TTL).await, "m").await;
}

/// Deploys through core's engine: journal, fleet state and lease; and a deployment whose lease is
/// taken over writes nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_through_pgbouncer() {
    let Some((_b, c)) = bouncer("pgb_engine") else {
        return;
    };
    crate::engine::engine_releases_are_journaled_with_fleet_state_and_lease_on(c.clone()).await;
    crate::engine::a_deployment_whose_lease_is_taken_over_writes_nothing_more_on(
        c.clone().schema(unique_schema("pgb_engine2")).unwrap(),
    )
    .await;
}

/// The queue through the proxy: order per template, fencing by the claiming instance, and three
/// instances × four workers running 30 requests each exactly once without overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_through_pgbouncer() {
    let Some((_b, c)) = bouncer("pgb_queue") else {
        return;
    };
    let fresh = |n: &str| c.clone().schema(unique_schema(n)).unwrap();
    crate::queue::queue_runs_a_templates_requests_one_at_a_time_in_order_on(fresh("pgb_q1")).await;
    crate::queue::queue_writes_are_fenced_by_the_claiming_instance_on(fresh("pgb_q2")).await;
    crate::queue::queue_concurrent_claimers_run_each_request_once_without_overlap_on(fresh(
        "pgb_q3",
    ))
    .await;
}

/// `LISTEN` needs a session: behind the proxy the listener connects to `listen_url` (here the
/// server directly) and a request queued through the proxy wakes it; without `listen_url` nothing
/// listens and an idle worker wakes by its poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_wakeups_through_pgbouncer_need_a_listen_url() {
    let Some((_b, c)) = bouncer("pgb_listen") else {
        return;
    };
    let direct = std::env::var("PUSHGUIDE_PG_URL").unwrap();
    crate::queue::queue_notify_wakes_an_idle_worker_of_another_instance_on(
        c.clone().listen_url(&direct).unwrap(),
    )
    .await;

    let s = store(&c.clone().schema(unique_schema("pgb_poll")).unwrap(), TTL).await;
    let mut waiter = s.listen_publishes().await.unwrap();
    s.enqueue_publish("a", "alice", &["ops".to_owned()], "{}")
        .await
        .unwrap();
    let t0 = Instant::now();
    assert!(
        !waiter.wait(Duration::from_millis(300)).await,
        "no notification without a listener"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "waited out the poll"
    );
    assert!(
        s.claim_publish().await.unwrap().is_some(),
        "the poll finds it"
    );
}
