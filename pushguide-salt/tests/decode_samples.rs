//! Every captured real salt-api exchange (tests/fixtures, salt 3008.4) through the matching decoder,
//! plus a fuzz-style run of random and mutated bodies through every decoder.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use pushguide_core::Outcome;
use pushguide_salt::decode;
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Sample {
    name: String,
    request: Value,
    status: u64,
    /// The body as salt-api sent it (JSON text, or the raw text of an HTML page).
    raw: Vec<u8>,
}

fn samples() -> Vec<Sample> {
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let body = &v["response"]["body"];
        let raw = match body {
            Value::String(s) => s.clone().into_bytes(),
            other => serde_json::to_vec(other).unwrap(),
        };
        out.push(Sample {
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            request: v["request"].clone(),
            status: v["response"]["status"].as_u64().unwrap(),
            raw,
        });
    }
    out
}

fn sample(name_prefix: &str) -> Sample {
    samples()
        .into_iter()
        .find(|s| s.name.starts_with(name_prefix))
        .unwrap_or_else(|| panic!("no fixture {name_prefix}"))
}

/// Which decoder a sample goes through.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Decoder {
    Login,
    Local,
    LocalAsync,
    Job,
    ManageStatus,
    Runner,
    Envelope,
    ErrorPage,
}

fn decoder_for(s: &Sample) -> Decoder {
    if !(200..300).contains(&s.status) {
        return Decoder::ErrorPage;
    }
    let method = s.request["method"].as_str().unwrap_or("");
    let path = s.request["path"].as_str().unwrap_or("");
    let low = s.request["body"].get(0).cloned().unwrap_or(Value::Null);
    let client = low["client"].as_str().unwrap_or("");
    match (method, path, client) {
        ("POST", "/login", _) => Decoder::Login,
        ("GET", p, _) if p.starts_with("/jobs/") => Decoder::Job,
        ("POST", "/" | "/run", "local" | "local_batch") => Decoder::Local,
        ("POST", "/", "local_async") => Decoder::LocalAsync,
        ("POST", "/", "runner") if low["fun"] == "manage.status" => Decoder::ManageStatus,
        ("POST", "/", "runner" | "runner_async") => Decoder::Runner,
        _ => Decoder::Envelope,
    }
}

fn fun_of(s: &Sample) -> String {
    s.request["body"][0]["fun"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn every_sample_goes_through_its_decoder() {
    let all = samples();
    assert!(
        all.len() >= 98,
        "expected the 98 captured JSON samples, found {}",
        all.len()
    );
    let mut per_decoder: BTreeMap<String, usize> = BTreeMap::new();
    for s in &all {
        let d = decoder_for(s);
        *per_decoder.entry(format!("{d:?}")).or_default() += 1;
        let fun = fun_of(s);
        match d {
            Decoder::Login => {
                let t = decode::login(&s.raw).unwrap_or_else(|e| panic!("{}: {e}", s.name));
                assert!(!format!("{t:?}").contains(&t.token), "token in Debug");
                assert!(t.lifetime_secs() > 0.0, "{}", s.name);
            }
            Decoder::Local => {
                let r = decode::local(&fun, &s.raw).unwrap_or_else(|e| panic!("{}: {e}", s.name));
                assert!(
                    r.len() <= 3,
                    "{}: more minions than the lab has: {r:?}",
                    s.name
                );
            }
            Decoder::LocalAsync => {
                decode::local_async(&s.raw).unwrap_or_else(|e| panic!("{}: {e}", s.name));
            }
            Decoder::Job => {
                decode::job(&s.raw).unwrap_or_else(|e| panic!("{}: {e}", s.name));
            }
            Decoder::ManageStatus => {
                let m = decode::manage_status(&s.raw).unwrap_or_else(|e| panic!("{}: {e}", s.name));
                assert!(!m.up.is_empty(), "{}", s.name);
            }
            Decoder::Runner => {
                decode::runner(&s.raw).unwrap_or_else(|e| panic!("{}: {e}", s.name));
            }
            Decoder::Envelope => {
                decode::envelope(&s.raw).unwrap_or_else(|e| panic!("{}: {e}", s.name));
            }
            Decoder::ErrorPage => {
                let m = decode::error_message(&s.raw);
                assert!(
                    !m.is_empty() && m.chars().count() <= 201,
                    "{}: {m:?}",
                    s.name
                );
                assert!(!m.contains('<'), "{}: HTML left in {m:?}", s.name);
            }
        }
    }
    eprintln!("decoded samples per decoder: {per_decoder:?}");
    for d in [
        "Login",
        "Local",
        "LocalAsync",
        "Job",
        "ManageStatus",
        "Runner",
        "Envelope",
        "ErrorPage",
    ] {
        assert!(per_decoder.contains_key(d), "no sample for {d}");
    }
}

fn local_of(prefix: &str) -> BTreeMap<String, Outcome> {
    let s = sample(prefix);
    decode::local(&fun_of(&s), &s.raw).unwrap()
}

fn failed(o: &Outcome) -> (Option<i64>, String) {
    match o {
        Outcome::Failed { retcode, message } => (*retcode, message.clone()),
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn login_bodies() {
    let t = decode::login(&sample("05-").raw).unwrap();
    assert!((t.lifetime_secs() - 3.0).abs() < 0.01, "{t:?}");
    assert!(decode::login(b"{\"return\":[{}]}").is_err());
    assert!(decode::login(b"{\"return\":[]}").is_err());
    let e = decode::login(&sample("02-").raw).unwrap_err();
    assert!(e.to_string().chars().count() < 400, "{e}");
    assert_eq!(
        decode::error_message(&sample("02-").raw),
        "Could not authenticate using provided credentials"
    );
}

#[test]
fn local_returns_are_normalized() {
    assert_eq!(local_of("10-")["web-01"], Outcome::ok(true));
    let r = local_of("12-");
    assert_eq!(r.len(), 2);
    assert_eq!(r["web-02"], Outcome::ok("3008.4"));
    // unknown id in a list target: NoReturn, the other answered
    let r = local_of("31-");
    assert_eq!(r["web-01"], Outcome::ok(true));
    assert_eq!(r["db-99"], Outcome::NoReturn);
    assert_eq!(local_of("43-")["web-02"], Outcome::NoReturn);
    // cmd.run_all exit 3: retcode + stderr
    assert_eq!(
        failed(&local_of("34-")["web-01"]),
        (Some(3), "err".to_owned())
    );
    assert!(local_of("35-")["web-01"].is_ok());
    // cmd.run hides failures
    assert!(local_of("33-")["web-01"].is_ok());
    // unknown function, exception
    let (rc, msg) = failed(&local_of("37-")["web-01"]);
    assert_eq!(
        (rc, msg.as_str()),
        (None, "'nosuch.function' is not available.")
    );
    let (_, msg) = failed(&local_of("38-")["web-01"]);
    assert!(msg.contains("FileNotFoundError"), "{msg}");
    assert!(
        msg.starts_with("The minion function caused an exception"),
        "{msg}"
    );
    // full_return
    let (rc, _) = failed(&local_of("39-")["web-01"]);
    assert_eq!(rc, Some(3));
    // state returns
    assert!(local_of("90-")["web-01"].is_ok());
    let (rc, msg) = failed(&local_of("92-")["web-02"]);
    assert_eq!(rc, Some(2));
    assert!(msg.contains("does not match the specified hash"), "{msg}");
    assert!(local_of("95-").values().all(Outcome::is_ok));
    let (_, msg) = failed(&local_of("97-")["web-01"]);
    assert!(msg.contains("No matching sls"), "{msg}");
    let (rc, msg) = failed(&local_of("98-")["web-02"]);
    assert_eq!(rc, Some(2));
    assert!(msg.contains("404"), "{msg}");
    assert_eq!(local_of("86-")["web-01"], Outcome::ok(Value::Null));
    // local_batch: one dict per minion
    assert_eq!(local_of("103-").len(), 2);
}

#[test]
fn async_and_job_bodies() {
    let j = decode::local_async(&sample("20-").raw).unwrap().unwrap();
    assert_eq!(j.jid, "20261127071735747785");
    assert_eq!(j.minions, ["web-01", "web-02"]);
    assert_eq!(decode::local_async(&sample("32-").raw).unwrap(), None);
    let running = decode::job(&sample("21-").raw).unwrap();
    assert!(running.returned.is_empty());
    assert_eq!(running.minions, ["web-01", "web-02"]);
    let done = decode::job(&sample("23-").raw).unwrap();
    assert_eq!(done.returned["web-01"], Outcome::ok("done-async"));
    assert_eq!(done.jid.as_deref(), Some("20261127071735747785"));
    let failing = decode::job(&sample("41-").raw).unwrap();
    assert_eq!(
        failed(&failing.returned["web-02"]),
        (Some(7), "partial".to_owned())
    );
    let partial = decode::job(&sample("45-").raw).unwrap();
    assert_eq!(partial.returned.len(), 1);
    assert_eq!(partial.minions.len(), 2);
    assert!(decode::job(b"{\"return\":[{}]}").is_err());
}

#[test]
fn runner_bodies() {
    let m = decode::manage_status(&sample("46-").raw).unwrap();
    assert_eq!(m.up, ["app-01", "web-01"]);
    assert_eq!(m.down, ["web-02"]);
    let m = decode::manage_status(&sample("101-").raw).unwrap();
    assert_eq!((m.up.len(), m.down.len()), (2, 0));
    assert_eq!(
        decode::error_message(&sample("107-").raw),
        "An unexpected error occurred"
    );
    assert!(decode::manage_status(b"{\"return\":[[\"web-01\"]]}").is_err());
}

#[test]
fn sse_capture_gives_both_returns() {
    let text = std::fs::read(fixtures_dir().join("70-events-sse.txt")).unwrap();
    let records = decode::sse_records(&text);
    assert!(records.len() >= 4, "{records:?}");
    assert_eq!(records[0].retry, Some(400));
    let mut rets = Vec::new();
    for r in &records {
        if let Some(ev) = decode::job_return_event(r).unwrap() {
            rets.push(ev);
        }
    }
    assert_eq!(rets.len(), 2, "{rets:?}");
    assert!(rets
        .iter()
        .all(|e| e.jid == "20261127071836090402" && e.outcome == Outcome::ok("evt")));
    let mut ids: Vec<_> = rets.iter().map(|e| e.minion.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["web-01", "web-02"]);
    // chunked arbitrarily, the same records come out
    let mut p = decode::SseParser::new();
    let mut again = Vec::new();
    for chunk in text.chunks(7) {
        again.extend(p.push(chunk));
    }
    assert_eq!(again, records[..again.len()]);
    // a failing return event
    let rec = decode::SseRecord {
        tag: Some("salt/job/1/ret/web-01".into()),
        data: r#"{"data": {"fun": "cmd.run", "return": "x", "retcode": 7, "success": false}}"#
            .into(),
        retry: None,
    };
    let ev = decode::job_return_event(&rec).unwrap().unwrap();
    assert_eq!(failed(&ev.outcome).0, Some(7));
    let bad = decode::SseRecord {
        data: "{".into(),
        ..rec
    };
    assert!(decode::job_return_event(&bad).is_err());
}

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const FUNS: [&str; 5] = [
    "cmd.run_all",
    "state.single",
    "test.ping",
    "",
    "state.apply",
];

fn all_decoders(bytes: &[u8], rng: &mut Rng) {
    let fun = FUNS[rng.below(FUNS.len())];
    let _ = decode::login(bytes);
    let _ = decode::local(fun, bytes);
    let _ = decode::local_async(bytes);
    let _ = decode::job(bytes);
    let _ = decode::runner(bytes);
    let _ = decode::manage_status(bytes);
    let _ = decode::envelope(bytes);
    let _ = decode::file_roots_write(bytes);
    let m = decode::error_message(bytes);
    assert!(m.chars().count() <= 201);
    for r in decode::sse_records(bytes) {
        let _ = decode::job_return_event(&r);
    }
    let rec = decode::SseRecord {
        tag: Some("salt/job/1/ret/web-01".into()),
        data: String::from_utf8_lossy(bytes).into_owned(),
        retry: None,
    };
    let _ = decode::job_return_event(&rec);
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        let _ = decode::minion_outcome(fun, &v, Some(rng.below(4) as i64), None);
    }
}

/// Random JSON of salt-like shapes (keys and strings salt uses), to reach deep into the decoders.
fn random_json(rng: &mut Rng, depth: usize) -> Value {
    const KEYS: [&str; 16] = [
        "return",
        "jid",
        "minions",
        "info",
        "Result",
        "Minions",
        "token",
        "expire",
        "start",
        "retcode",
        "success",
        "ret",
        "stdout",
        "stderr",
        "file_|-x_|-/y_|-managed",
        "result",
    ];
    const STRS: [&str; 6] = [
        "Minion did not return. [No response]",
        "'x.y' is not available.",
        "Traceback (most recent call last):\n  x\nValueError: boom",
        "ERROR: bad",
        "20261127071735747785",
        "web-01",
    ];
    match rng.below(if depth > 4 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => Value::from(rng.next() as i64 % 10),
        3 => Value::from(f64::from(rng.below(1_000_000) as u32) / 7.0),
        4 => Value::from(STRS[rng.below(STRS.len())]),
        5 | 6 => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.below(4) {
                m.insert(
                    KEYS[rng.below(KEYS.len())].into(),
                    random_json(rng, depth + 1),
                );
            }
            Value::Object(m)
        }
        _ => Value::Array(
            (0..rng.below(3))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
    }
}

#[test]
fn fuzz_decoders_never_panic() {
    let bases: Vec<Vec<u8>> = samples().into_iter().map(|s| s.raw).collect();
    let sse = std::fs::read(fixtures_dir().join("70-events-sse.txt")).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut cases = 0usize;
    for i in 0..12_000usize {
        let bytes: Vec<u8> = match i % 4 {
            // random bytes
            0 => (0..rng.below(256)).map(|_| rng.next() as u8).collect(),
            // a real body with a few bytes flipped, cut or inserted
            1 | 2 => {
                let mut b = if i % 16 == 1 {
                    sse.clone()
                } else {
                    bases[rng.below(bases.len())].clone()
                };
                for _ in 0..=rng.below(4) {
                    if b.is_empty() {
                        break;
                    }
                    let at = rng.below(b.len());
                    match rng.below(4) {
                        0 => b[at] = rng.next() as u8,
                        1 => b.truncate(at),
                        2 => b.insert(at, b"{}[]\":,\\\n"[rng.below(9)]),
                        _ => {
                            b.remove(at);
                        }
                    }
                }
                b
            }
            // well-formed JSON of salt-like but wrong shapes
            _ => {
                let v = serde_json::json!({ "return": [random_json(&mut rng, 0)], "info": [random_json(&mut rng, 0)] });
                serde_json::to_vec(&v).unwrap()
            }
        };
        all_decoders(&bytes, &mut rng);
        cases += 1;
    }
    // pathological nesting
    for depth in [100usize, 1000, 100_000] {
        let s = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        all_decoders(s.as_bytes(), &mut rng);
        cases += 1;
    }
    eprintln!("fuzz: {cases} cases through every decoder, no panic");
    assert_eq!(cases, 12_003);
}

#[test]
fn wheel_key_list_and_lookup_jid_samples() {
    let keys = decode::key_list_all(&sample("100-").raw).unwrap();
    assert_eq!(keys.minions, vec!["web-01", "web-02"]);
    assert!(keys.minions_pre.is_empty() && keys.minions_rejected.is_empty());
    let done = decode::lookup_jid("cmd.run", &sample("24-").raw).unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(done["web-01"], pushguide_core::Outcome::ok("done-async"));
    // a failed wheel call is an error carrying salt's message
    let failed = br#"{"return":[{"tag":"salt/wheel/1","data":{"return":"Exception: no such key","success":false}}]}"#;
    let err = decode::wheel(failed).unwrap_err().to_string();
    assert!(err.contains("no such key"), "{err}");
    assert!(decode::wheel(b"{\"return\":[]}").is_err());
    assert!(decode::key_list_all(b"not json").is_err());
}

// ------------------------------------------------------------------ the pushguide module

/// The steps of a `pushguide.steps` return, as `(fun, ok)` pairs.
fn steps_of(value: &Value) -> Vec<(String, bool)> {
    value["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["fun"].as_str().unwrap().to_owned(),
                s["ok"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// web-01 ran its six steps; web-02 stopped at its failing second step (the third is not listed).
fn assert_steps_returns(web01: &Outcome, web02: &Outcome) {
    let Outcome::Ok { value } = web01 else {
        panic!("web-01: {web01:?}")
    };
    assert_eq!(value["pushguide"], 1);
    assert_eq!(value["minion"], "web-01");
    assert!(value.get("error").is_none(), "{value}");
    assert_eq!(
        steps_of(value),
        [
            ("pushguide.free_space", true),
            ("file.makedirs", true),
            ("file.write", true),
            ("file.get_hash", true),
            ("file.symlink", true),
            ("file.readlink", true),
        ]
        .map(|(f, ok)| (f.to_owned(), ok))
    );
    let hash = &value["steps"][3];
    assert_eq!(
        hash["ret"],
        "4bf1be3c35663dba4318e41395975ec0d0cab8b868478d3de1c4804daa7d5344"
    );
    assert_eq!(hash["attempts"], 1);
    assert!(hash["ms"].as_f64().unwrap() >= 0.0);
    // a stopped plan is still the module's value: the failure is inside it, not salt's
    let Outcome::Ok { value } = web02 else {
        panic!("web-02: {web02:?}")
    };
    assert_eq!(value["minion"], "web-02");
    assert_eq!(
        steps_of(value),
        [("file.makedirs", true), ("cmd.run_all", false)].map(|(f, ok)| (f.to_owned(), ok))
    );
    let failed = &value["steps"][1];
    assert_eq!(failed["retcode"], 3);
    assert_eq!(failed["error"], "retcode 3: starting");
    assert_eq!(failed["ret"]["stderr"], "starting");
}

#[test]
fn pushguide_steps_job_decodes_to_the_module_value() {
    let s = sample("119-");
    let body = &s.request["body"][0];
    assert_eq!(body["client"], "local_async");
    assert_eq!(body["fun"], "pushguide.steps");
    assert_eq!(
        body["kwarg"]["hosts"],
        serde_json::json!({"web-01": 0, "web-02": 1})
    );
    let job = decode::local_async(&s.raw).unwrap().unwrap();
    assert_eq!(job.minions, ["web-01", "web-02"]);

    let done = decode::job(&sample("120-").raw).unwrap();
    assert_eq!(done.jid.as_deref(), Some(job.jid.as_str()));
    assert_eq!(done.function.as_deref(), Some("pushguide.steps"));
    assert_steps_returns(&done.returned["web-01"], &done.returned["web-02"]);

    let sse = std::fs::read(fixtures_dir().join("121-events-pushguide-steps-ret.txt")).unwrap();
    let mut rets = BTreeMap::new();
    for r in decode::sse_records(&sse) {
        if let Some(ev) = decode::job_return_event(&r).unwrap() {
            assert_eq!(ev.jid, job.jid);
            rets.insert(ev.minion, ev.outcome);
        }
    }
    assert_eq!(rets.len(), 2, "{rets:?}");
    assert_steps_returns(&rets["web-01"], &rets["web-02"]);
    // both paths give the same outcomes
    assert_eq!(rets["web-01"], done.returned["web-01"]);
    assert_eq!(rets["web-02"], done.returned["web-02"]);

    // the engine reads each minion's steps from them: web-01 ran its 6, web-02 stopped at the
    // failing start command, which is named with its retcode once
    let steps = |o: &Outcome, n: usize| match o {
        Outcome::Ok { value } => pushguide_core::decode_steps(value, n).unwrap(),
        other => panic!("{other:?}"),
    };
    let pushguide_core::HostSteps::Ran(one) = steps(&rets["web-01"], 6) else {
        panic!("web-01 ran nothing")
    };
    assert_eq!(one.len(), 6);
    assert!(one.iter().all(|s| s.outcome.is_ok() && !s.skipped));
    let pushguide_core::HostSteps::Ran(two) = steps(&rets["web-02"], 3) else {
        panic!("web-02 ran nothing")
    };
    assert_eq!(two.len(), 2);
    assert_eq!(
        two[1].outcome.reason().as_deref(),
        Some("retcode 3: starting")
    );
}

#[test]
fn module_install_answers() {
    use decode::FileRootsWrite;
    assert_eq!(
        decode::file_roots_write(&sample("114-").raw).unwrap(),
        FileRootsWrite::Written {
            path: "/tmp/pg-salt/srv/salt/_modules/pushguide.py".into()
        }
    );
    assert_eq!(
        decode::file_roots_write(&sample("115-").raw).unwrap(),
        FileRootsWrite::Refused {
            message: "Named environment nosuchenv is not present".into()
        }
    );
    assert_eq!(
        decode::file_roots_write(&sample("116-").raw).unwrap(),
        FileRootsWrite::Refused {
            message: "Invalid path: ../../etc/x.py".into()
        }
    );
    // an exception in the wheel function is success: false (the shape of 106)
    match decode::file_roots_write(&sample("106-").raw).unwrap() {
        FileRootsWrite::Refused { message } => {
            assert!(
                message.starts_with("Exception occurred in wheel"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        &b"{\"return\":[{}]}"[..],
        b"{\"return\":[]}",
        b"[]",
        b"not json",
    ] {
        assert!(decode::file_roots_write(bad).is_err(), "{bad:?}");
    }
    // "Wrote data to file" without a path is not a write
    assert!(matches!(
        decode::file_roots_write(
            br#"{"return":[{"data":{"return":"Wrote data to file ","success":true}}]}"#
        )
        .unwrap(),
        FileRootsWrite::Refused { .. }
    ));
    // saltutil.sync_modules: the synced modules, or [] when already in sync
    let first = local_of("117a-");
    assert_eq!(
        first["web-01"],
        Outcome::ok(serde_json::json!(["modules.pushguide"]))
    );
    assert_eq!(
        local_of("117b-")["web-02"],
        Outcome::ok(serde_json::json!([]))
    );
    let v = local_of("118-");
    assert_eq!(
        v["web-01"],
        Outcome::ok(serde_json::json!({"pushguide": 1}))
    );
    assert_eq!(
        v["web-02"],
        Outcome::ok(serde_json::json!({"pushguide": 1}))
    );
}
