//! `[cmdb] type = "salt"` against the REAL salt lab (`scripts/salt-lab up`) and one real Tomcat 10 per
//! minion (`scripts/tomcat-lab up`): the test writes per-minion pillar data into the lab's pillar
//! roots (its own files, its own entries in `top.sls`; other entries are kept), refreshes the
//! minions' pillar, reads it back per minion through `SaltCmdb` (with grains, and a minion that does
//! not exist), then deploys through the `pushguide` binary a template whose per-host Tomcat settings
//! come only from the pillar. Its pillar entries are removed at the end, also when it fails.
//!
//! Needs `PUSHGUIDE_SALT_*` (with `PUSHGUIDE_SALT_LAB_DIR`) and `PUSHGUIDE_TOMCAT_*`; without them it
//! skips with a message, unless `PUSHGUIDE_REQUIRE_SALT=1`, where it fails naming what is missing.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pushguide_core::{MinionId, Outcome, SaltCall};
use pushguide_salt::{SaltApi, SaltApiSettings, SaltCmdb};
use pushguide_sources::{Cmdb, Error as SourceError};
use serde_json::{json, Value};
use support::tomcat::{build_war, lab, page, serve_files};
use support::{run, write};

/// The Tomcat context this test deploys (the other real tests use `shop`).
const CONTEXT: &str = "pillarshop";

// ------------------------------------------------------------------------------- pillar roots

/// This test's pillar files and `top.sls` entries; removed on drop (also after a failure).
struct Pillar {
    root: PathBuf,
    tag: String,
    files: Vec<PathBuf>,
}

/// `top.sls` is shared by everyone using the lab: it is edited under an exclusive lock, only inside
/// this test's marked block, and every other line is kept.
fn edit_top(root: &Path, edit: impl FnOnce(&str) -> String) {
    // a lock directory: creating it is atomic; whoever holds it removes it
    let lock = root.join(".top.sls.lock.d");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::create_dir(&lock).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} is held for more than 30 s",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let top = root.join("top.sls");
    let old = std::fs::read_to_string(&top).unwrap_or_default();
    let new = edit(&old);
    let mut rest = new
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    if rest.next() == Some("base:") && rest.next().is_none() {
        // nothing but `base:` left (this test created the file): no top file, as before
        let _ = std::fs::remove_file(&top);
    } else {
        let tmp = root.join(format!(".top.sls.{}", std::process::id()));
        std::fs::write(&tmp, new).unwrap();
        std::fs::rename(&tmp, &top).unwrap();
    }
    std::fs::remove_dir(&lock).unwrap();
}

impl Pillar {
    /// Writes one SLS file per minion with `data[minion]` and targets it at that minion only.
    fn write(root: &Path, tag: &str, data: &[(String, Value)]) -> Pillar {
        let mut p = Pillar {
            root: root.to_owned(),
            tag: tag.to_owned(),
            files: Vec::new(),
        };
        let mut block = vec![format!("  # begin {tag}")];
        for (minion, value) in data {
            let sls = format!("{tag}_{}", minion.replace(['-', '.'], "_"));
            let file = root.join(format!("{sls}.sls"));
            // JSON is YAML: every value is quoted by serde_json, nothing is rendered from it
            std::fs::write(&file, serde_json::to_string_pretty(value).unwrap()).unwrap();
            p.files.push(file);
            // a list target of its own (a key no other entry uses), for this one minion
            block.push(format!("  '{minion},{tag}':"));
            block.push("    - match: list".to_owned());
            block.push(format!("    - {sls}"));
        }
        block.push(format!("  # end {tag}"));
        let block = block.join("\n");
        edit_top(root, |old| {
            let mut lines: Vec<&str> = old.lines().collect();
            match lines.iter().position(|l| l.trim_end() == "base:") {
                Some(i) => {
                    lines.insert(i + 1, &block);
                    lines.join("\n") + "\n"
                }
                None => format!(
                    "{old}{}base:\n{block}\n",
                    if old.ends_with('\n') || old.is_empty() {
                        ""
                    } else {
                        "\n"
                    }
                ),
            }
        });
        p
    }

    fn remove(&mut self) {
        if self.files.is_empty() {
            return; // removed already
        }
        for f in self.files.drain(..) {
            let _ = std::fs::remove_file(f);
        }
        let (begin, end) = (
            format!("# begin {}", self.tag),
            format!("# end {}", self.tag),
        );
        edit_top(&self.root, |old| {
            let mut out = Vec::new();
            let mut inside = false;
            for l in old.lines() {
                if l.trim() == begin {
                    inside = true;
                } else if l.trim() == end {
                    inside = false;
                } else if !inside {
                    out.push(l);
                }
            }
            out.join("\n") + "\n"
        });
    }
}

impl Drop for Pillar {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Refreshes the minions' pillar and waits until `pillar.item key` shows `want` on each minion (or
/// nothing, with `want` `None`).
async fn refresh(api: &SaltApi, minions: &[MinionId], key: &str, want: Option<&[(String, Value)]>) {
    let call = SaltCall::mutate("saltutil.refresh_pillar")
        .kwarg("wait", true)
        .timeout(Duration::from_secs(60));
    let r = api.run(minions, &call).await.unwrap();
    for m in minions {
        assert!(matches!(r.minions[m], Outcome::Ok { .. }), "{m}: {r:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = api
            .run(
                minions,
                &SaltCall::read("pillar.item")
                    .arg(key)
                    .kwarg("unmask", true)
                    .timeout(Duration::from_secs(30)),
            )
            .await
            .unwrap();
        let seen = minions.iter().all(|m| {
            let got = match &r.minions[m] {
                Outcome::Ok { value } => value.get(key).cloned(),
                _ => None,
            };
            let expected = match want {
                Some(data) => data
                    .iter()
                    .find(|(id, _)| id == m.as_str())
                    .map(|(_, v)| v["pushguide"].as_object().unwrap().values().next().cloned()),
                None => Some(Some(json!(""))),
            };
            expected.is_some_and(|e| got == e)
        });
        if seen {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the minions' pillar did not show the test's data: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ------------------------------------------------------------------------------- artifacts, pages

// ------------------------------------------------------------------------------------- the test

#[test]
fn pillar_settings_are_read_per_minion_and_drive_a_real_tomcat_deployment() {
    let Some(lab) = lab("salt-pillar-cmdb") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let tag = format!("pg_pillar_{pid}_{nanos}");
    let template = format!("pillarshop-{pid}");
    let key = format!("pushguide:{template}");
    let t = &lab.tomcat_dir;
    // each minion's whole Tomcat setup, from the pillar only
    let data: Vec<(String, Value)> = lab
        .minions
        .iter()
        .zip(&lab.ports)
        .map(|(m, p)| {
            let settings = json!({
                "root": format!("{t}/{m}/pillar-app"),
                "catalina_base": format!("{t}/{m}/base"),
                "start_command": [format!("{t}/{m}/bin/start")],
                "stop_command": [format!("{t}/{m}/bin/stop")],
                "health_url": format!("http://127.0.0.1:{p}/{CONTEXT}/health.html"),
            });
            (
                m.clone(),
                json!({ "pushguide": { template.clone(): settings } }),
            )
        })
        .collect();
    let pillar_root = lab.dir.join("srv/pillar");
    std::fs::create_dir_all(&pillar_root).unwrap();
    let mut pillar = Pillar::write(&pillar_root, &tag, &data);

    let settings = SaltApiSettings::from_env().unwrap();
    let api = SaltApi::new(settings.clone()).unwrap();
    let minions: Vec<MinionId> = lab
        .minions
        .iter()
        .map(|m| MinionId::new(m).unwrap())
        .collect();
    rt.block_on(refresh(&api, &minions, &key, Some(&data)));

    // read back per minion through the CMDB: pillar and grains in one job; the pillar wins over
    // a grain that names the same key
    let cmdb = SaltCmdb::new(SaltApi::new(settings.clone()).unwrap())
        .grain("lab_root", "lab_root")
        .unwrap()
        .grain("minion_id", "id")
        .unwrap()
        .grain("root", "id")
        .unwrap()
        .timeout(Duration::from_secs(30));
    let got = rt
        .block_on(cmdb.host_settings(&template, &minions))
        .unwrap();
    assert_eq!(got.len(), minions.len(), "{got:?}");
    for (m, (_, want)) in minions.iter().zip(&data) {
        let mut want = want["pushguide"][&template].as_object().unwrap().clone();
        want.insert(
            "lab_root".into(),
            json!(lab.dir.join("minions").join(m.as_str()).join("root")),
        );
        want.insert("minion_id".into(), json!(m.as_str()));
        assert_eq!(got[m], want, "{m}");
    }
    // a minion salt does not know is reported, not given the defaults
    let ghost = MinionId::new(&format!("ghost-{pid}")).unwrap();
    let e = rt
        .block_on(cmdb.host_settings(&template, &[minions[0].clone(), ghost.clone()]))
        .unwrap_err();
    match &e {
        SourceError::Unanswered { hosts, .. } => assert_eq!(hosts, &[ghost.to_string()]),
        other => panic!("{other}"),
    }

    // a deployment through the binary whose Tomcat settings come from the pillar: the template's
    // [project] defaults point nowhere, so a deployment without the pillar's values fails
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let artifacts = dir.join("artifacts");
    build_war(dir, &artifacts, &template, CONTEXT, "1.0.0");
    let port = serve_files(artifacts.clone());
    let list: Vec<String> = lab.minions.iter().map(|m| format!("\"{m}\"")).collect();
    write(
        &dir.join(format!("templates/{template}.toml")),
        &format!(
            "name = \"{template}\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [{}]\n\
             [rollout]\nbatch = 1\n[health]\nretries = 3\ninterval_secs = 1\ntimeout_secs = 60\n\
             [project]\nkind = \"java-tomcat\"\ncontext = \"{CONTEXT}\"\n\
             root = \"/nonexistent/pillar-default\"\ncatalina_base = \"/nonexistent/pillar-default\"\n\
             service = \"pillar-default\"\n",
            list.join(", ")
        ),
    );
    let endpoints: Vec<String> = settings
        .endpoints
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect();
    let config = dir.join("pushguide.toml");
    write(
        &config,
        &format!(
            "store = \"state/pushguide.db\"\ntemplates = \"templates\"\n\
             [user]\nname = \"ops\"\n\
             [salt]\nendpoints = [\"{}\"]\neauth = \"{}\"\nuser = \"{}\"\n\
             password_env = \"PUSHGUIDE_SALT_PASSWORD\"\njob_timeout = 120\nstep_jobs = false\n\
             [ci]\ntype = \"directory\"\npath = \"artifacts\"\nurl_base = \"http://127.0.0.1:{port}/\"\n\
             [cmdb]\ntype = \"salt\"\npillar_key = \"pushguide:<template>\"\n\
             endpoints = [{}]\nbatch = 1\ntimeout_secs = 30\n",
            lab.url,
            lab.eauth,
            lab.user,
            endpoints.join(", ")
        ),
    );
    let r = run(&config, &["plan", &template, "1.0.0", "--json"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let plan = r.stdout.clone();
    for m in &lab.minions {
        assert!(plan.contains(&format!("{t}/{m}/pillar-app")), "{plan}");
    }
    assert!(!plan.contains("/nonexistent/pillar-default"), "{plan}");

    let r = run(&config, &["deploy", &template, "1.0.0", "--json"], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["outcome"], "succeeded", "{}", r.stdout);
    for (m, port) in lab.minions.iter().zip(&lab.ports) {
        let p = page(port, CONTEXT);
        assert!(
            p.contains("pillarshop version 1.0.0"),
            "{m} (port {port}):\n{p}"
        );
        let current =
            std::fs::read_link(Path::new(t).join(m).join("base/webapps").join(CONTEXT)).unwrap();
        assert!(
            current.starts_with(Path::new(t).join(m).join("pillar-app/releases")),
            "{m}: {}",
            current.display()
        );
    }

    // the pillar is gone again: the CMDB has nothing for the template, and the other entries of
    // top.sls are intact
    pillar.remove();
    rt.block_on(refresh(&api, &minions, &key, None));
    let got = rt
        .block_on(cmdb.host_settings(&template, &minions))
        .unwrap();
    for m in &minions {
        assert!(!got[m].contains_key("catalina_base"), "{m}: {:?}", got[m]);
    }
    let top = std::fs::read_to_string(pillar_root.join("top.sls")).unwrap_or_default();
    assert!(!top.contains(&tag), "{top}");
    for m in &lab.minions {
        let _ = std::fs::remove_file(Path::new(t).join(m).join("base/webapps").join(CONTEXT));
        let _ = std::fs::remove_dir_all(Path::new(t).join(m).join("pillar-app"));
    }
}
