//! `store` in the configuration: a SQLite path (the default), a `postgres://` URL, or a `[store]`
//! table; bad values are errors naming the key, and a password never shows.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use pushguide_cli::config::Config;
use pushguide_cli::error::CliError;

const TABLES: &str = "[user]\nname = \"alice\"\n[salt]\nendpoints = [\"http://127.0.0.1:8000\"]\n\
                      eauth = \"pam\"\nuser = \"pushguide\"\npassword_env = \"SALT_PW\"\n";

/// A config with `store` (a top-level key or a `[store]` table).
fn parse(store: &str) -> Result<Config, CliError> {
    let text = if store.starts_with('[') {
        format!("templates = \"templates\"\n{TABLES}{store}\n")
    } else {
        format!("{store}\ntemplates = \"templates\"\n{TABLES}")
    };
    Config::parse(&text, Path::new("/etc/pg/pushguide.toml"))
}

#[test]
fn a_path_is_sqlite_and_a_url_is_postgres() {
    let c = parse("store = \"state/pushguide.db\"").unwrap();
    assert!(c.postgres.is_none());
    assert_eq!(c.store, Path::new("/etc/pg/state/pushguide.db"));
    assert_eq!(c.log_dir, Path::new("/etc/pg/state/pushguide-logs"));

    let c = parse("store = \"postgres://pushguide@db.internal:5433/deploys\"").unwrap();
    let pg = c.postgres.as_ref().unwrap();
    assert_eq!(pg.endpoint(), "db.internal:5433/deploys");
    assert_eq!(c.store, Path::new(""));
    assert_eq!(c.log_dir, Path::new("/etc/pg/pushguide-logs"));

    let c = parse("[store]\npath = \"x.db\"").unwrap();
    assert!(c.postgres.is_none());
    assert_eq!(c.store, Path::new("/etc/pg/x.db"));
}

#[test]
fn the_store_table_reads_every_postgres_key() {
    let c = parse(
        "[store]\nurl = \"postgresql://pushguide@127.0.0.1/pg\"\npassword_file = \"pg.pw\"\n\
         schema = \"team_a\"\npool_size = 3\nlease_ttl_secs = 2.5\nca_file = \"ca.pem\"",
    )
    .unwrap();
    let pg = c.postgres.unwrap();
    assert_eq!(
        pg.password,
        pushguide_postgres::PasswordSource::File("/etc/pg/pg.pw".into())
    );
    assert_eq!(pg.schema.as_deref(), Some("team_a"));
    assert_eq!(pg.pool_size, 3);
    assert_eq!(pg.lease_ttl, Duration::from_millis(2500));
    assert_eq!(pg.ca_file.as_deref(), Some(Path::new("/etc/pg/ca.pem")));

    let c =
        parse("[store]\nurl = \"postgres://u@h/d\"\npassword_env = \"PG_PW_FOR_TEST\"").unwrap();
    assert_eq!(
        c.postgres.unwrap().password,
        pushguide_postgres::PasswordSource::Env("PG_PW_FOR_TEST".into())
    );
}

fn error(store: &str) -> String {
    let e = parse(store).unwrap_err();
    assert!(matches!(e, CliError::Config { .. }), "{e:?}");
    assert_eq!(e.exit_code(), 64);
    e.to_string()
}

#[test]
fn bad_store_settings_name_the_key_and_never_show_a_password() {
    // a password in the URL is refused, and not repeated
    for store in [
        "store = \"postgres://u:hunter2@db:5432/x\"",
        "[store]\nurl = \"postgres://u:hunter2@db:5432/x\"",
        "[store]\nurl = \"postgres://u:hunter2@db:notaport/x\"",
    ] {
        let e = error(store);
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("u:***@db"), "{e}");
    }
    let e = error("[store]\npath = \"a.db\"\nurl = \"postgres://u@h/d\"");
    assert!(e.contains("not both"), "{e}");
    let e = error("[store]\npath = \"a.db\"\nschema = \"x\"");
    assert!(
        e.contains("`store.schema`") && e.contains("PostgreSQL"),
        "{e}"
    );
    let e = error("[store]\nurl = \"postgres://u@h/d\"\nschema = \"Bad-Name\"");
    assert!(e.contains("`store.schema`"), "{e}");
    let e = error("[store]\nurl = \"postgres://u@h/d\"\npool_size = 0");
    assert!(e.contains("`store.pool_size`"), "{e}");
    let e = error("[store]\nurl = \"postgres://u@h/d\"\nlease_ttl_secs = 0.1");
    assert!(e.contains("`store.lease_ttl_secs`"), "{e}");
    let e =
        error("[store]\nurl = \"postgres://u@h/d\"\npassword_env = \"A\"\npassword_file = \"b\"");
    assert!(e.contains("not both"), "{e}");
    let e = error("[store]\nurl = \"mysql://u@h/d\"");
    assert!(e.contains("postgres://"), "{e}");
    let e = error("[store]\nurl = \"postgres://u@h/d\"\npasword_env = \"A\"");
    assert!(
        e.contains("unknown key") && e.contains("password_env"),
        "{e}"
    );
    let e = error("[store]\nschema = \"x\"");
    assert!(e.contains("`store.path`") && e.contains("missing"), "{e}");
    let e = error("store = \"postgres://h/d\"");
    assert!(e.contains("user"), "{e}");
}

#[test]
fn the_password_is_never_in_debug_output() {
    std::env::set_var("PG_PW_DEBUG_TEST", "s3cret-db-pw");
    let c =
        parse("[store]\nurl = \"postgres://u@h/d\"\npassword_env = \"PG_PW_DEBUG_TEST\"").unwrap();
    for text in [format!("{c:?}"), format!("{:?}", c.postgres)] {
        assert!(!text.contains("s3cret-db-pw"), "{text}");
        assert!(text.contains("PG_PW_DEBUG_TEST"), "{text}");
    }
}

#[test]
fn the_store_table_reads_the_transaction_pooling_keys() {
    let c = parse(
        "[store]\nurl = \"postgres://pushguide@pgbouncer.internal:6432/pg\"\n\
         transaction_pooling = true\nlisten_url = \"postgres://pushguide@db.internal:5432/pg\"",
    )
    .unwrap();
    let pg = c.postgres.unwrap();
    assert!(pg.transaction_pooling);
    assert_eq!(pg.listen_endpoint().as_deref(), Some("db.internal:5432/pg"));
    let c = parse("[store]\nurl = \"postgres://u@h/d\"").unwrap();
    assert!(!c.postgres.unwrap().transaction_pooling, "off by default");
    let e = error("[store]\nurl = \"postgres://u@h/d\"\nlisten_url = \"postgres://u:hunter2@h/d\"");
    assert!(e.contains("`store.listen_url`"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let e = error("[store]\nurl = \"postgres://u@h/d\"\ntransaction_pooling = \"yes\"");
    assert!(e.contains("`store.transaction_pooling`"), "{e}");
    let e = error("[store]\npath = \"x.db\"\ntransaction_pooling = true");
    assert!(e.contains("only for a PostgreSQL store"), "{e}");
}

#[test]
fn a_sqlite_store_takes_a_lease_ttl_bounded_like_postgres() {
    let c = parse("[store]\npath = \"x.db\"\nlease_ttl_secs = 2.5").unwrap();
    assert_eq!(c.store_lease_ttl, Some(Duration::from_millis(2500)));
    assert!(c.postgres.is_none());
    assert_eq!(parse("store = \"x.db\"").unwrap().store_lease_ttl, None);
    let c = parse("[store]\nurl = \"postgres://u@h/d\"\nlease_ttl_secs = 2").unwrap();
    assert_eq!(c.store_lease_ttl, None);
    for bad in ["0.1", "4000", "\"10\""] {
        let e = parse(&format!("[store]\npath = \"x.db\"\nlease_ttl_secs = {bad}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`store.lease_ttl_secs`"), "{e}");
    }
}
