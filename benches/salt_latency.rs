//! Against the REAL salt stack: delay from a minion's return event (its `_stamp`, set by the master when
//! it fires `salt/job/<jid>/ret/<id>`) to the engine's host result (the `CallFinished` event of the call
//! that carried that job). Both clocks are this machine's.
//!
//! ```sh
//! scripts/salt-lab up && . "$(scripts/salt-lab env --path)"
//! cargo bench --bench salt_latency
//! ```
//! Without the `PUSHGUIDE_SALT_*` settings it prints a message and exits (non-zero with
//! `PUSHGUIDE_REQUIRE_SALT=1`).
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushguide::salt::decode::{self, SseParser};
use pushguide::salt::{SaltApi, SaltApiSettings};
use pushguide::{
    Deployer, DeployerConfig, DeploymentOutcome, Engine, Error, EventKind, KindInfo, Principal,
    Request, SaltCall, StageContext, StageError, Template,
};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ProbeConfig {}

/// Three read-only calls per batch.
#[derive(Debug)]
struct Probe;

#[async_trait::async_trait]
impl Deployer for Probe {
    async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(SaltCall::read("test.echo").arg("pre")).await?;
        Ok(())
    }
    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(SaltCall::read("test.ping")).await?;
        Ok(())
    }
    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(SaltCall::read("file.file_exists").arg("/etc/hostname"))
            .await?;
        Ok(())
    }
    async fn rollback(&self, _cx: &mut StageContext<'_>) -> Result<(), StageError> {
        Ok(())
    }
}

#[typetag::serde(name = "latency-probe")]
impl DeployerConfig for ProbeConfig {
    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        Ok(Box::new(Probe))
    }
}

inventory::submit! {
    KindInfo { kind: "latency-probe", summary: "read-only probe", platforms: &[], example: "kind = \"latency-probe\"\n" }
}

/// `2026-11-27T07:18:36.284035+00:00` (UTC) as a `SystemTime`.
fn parse_stamp(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix("+00:00").unwrap_or(s);
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let micros: i64 = format!("{frac:0<6}")[..6].parse().ok()?;
    // days from civil (Howard Hinnant)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(secs as u64) + Duration::from_micros(micros as u64))
}

type Stamps = Arc<Mutex<HashMap<(String, String), SystemTime>>>;

/// Follows `/events` on its own connection and records each job return's `_stamp`.
async fn follow_events(url: String, token: String, stamps: Stamps) {
    let http = reqwest::Client::new();
    let mut resp = http
        .get(format!("{url}/events"))
        .header("X-Auth-Token", token)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut parser = SseParser::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        for rec in parser.push(&chunk) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&rec.data) else {
                continue;
            };
            let tag = v["tag"].as_str().unwrap_or_default();
            let parts: Vec<&str> = tag.split('/').collect();
            if let ["salt", "job", jid, "ret", id] = parts.as_slice() {
                if let Some(t) = v["data"]["_stamp"].as_str().and_then(parse_stamp) {
                    stamps
                        .lock()
                        .unwrap()
                        .insert(((*jid).to_owned(), (*id).to_owned()), t);
                }
            }
        }
    }
}

fn main() {
    let settings = match SaltApiSettings::from_env() {
        Ok(mut s) => {
            s.endpoints.truncate(1);
            s
        }
        Err(e) => {
            eprintln!(
                "salt_latency: no salt lab ({e}); run scripts/salt-lab up and source its env"
            );
            if std::env::var("PUSHGUIDE_REQUIRE_SALT").as_deref() == Ok("1") {
                std::process::exit(1);
            }
            return;
        }
    };
    let minions: Vec<String> = std::env::var("PUSHGUIDE_SALT_MINIONS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let url = settings.endpoints[0].clone();
        let login = reqwest::Client::new()
            .post(format!("{url}/login"))
            .json(&serde_json::json!({
                "username": settings.user, "password": settings.password, "eauth": settings.eauth
            }))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let token = decode::login(&login).unwrap().token;
        let stamps: Stamps = Arc::default();
        tokio::spawn(follow_events(url, token, stamps.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;

        let list: Vec<String> = minions.iter().map(|m| format!("\"{m}\"")).collect();
        let text = format!(
            "name = \"latency\"\n[acl.deployers]\nusers = [\"bench\"]\n[targets]\nminions = [{}]\n[rollout]\nbatch = 1\n[project]\nkind = \"latency-probe\"\n",
            list.join(", ")
        );
        let template = Arc::new(Template::from_toml_str(&text, "<latency>").unwrap());
        let engine = Engine::builder(Arc::new(SaltApi::new(settings).unwrap())).build();
        let rounds = 15;
        let mut finished: Vec<(String, SystemTime)> = Vec::new();
        for i in 0..rounds {
            let report = engine
                .deploy(Request::new(template.clone(), format!("1.0.{i}"), Principal::user("bench")))
                .await
                .unwrap();
            assert_eq!(report.outcome, DeploymentOutcome::Succeeded, "{report}");
            for e in &report.events {
                if let EventKind::CallFinished { jid: Some(jid), .. } = &e.kind {
                    finished.push((jid.clone(), e.at));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stamps = stamps.lock().unwrap().clone();
        let mut delays: Vec<f64> = Vec::new();
        for (jid, at) in &finished {
            for ((j, _minion), stamp) in &stamps {
                if j == jid {
                    if let Ok(d) = at.duration_since(*stamp) {
                        delays.push(d.as_secs_f64() * 1000.0);
                    }
                }
            }
        }
        delays.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| delays[((delays.len() as f64 - 1.0) * p).round() as usize];
        assert!(!delays.is_empty(), "no return events matched the engine's calls");
        println!(
            "return event _stamp -> engine host result over {} host results ({} calls, {rounds} deployments): median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
            delays.len(),
            finished.len(),
            pct(0.5),
            pct(0.9),
            delays[delays.len() - 1]
        );
    });
}
