//! Pure decoders of salt-api (rest_cherrypy, salt 3008) answers. No I/O.
//!
//! Every function here returns a [`SaltError::Protocol`] on input it cannot understand and never panics
//! (the tests feed them every captured sample and thousands of mutated and random bodies).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use pushguide_core::Outcome;
use serde_json::{Map, Value};

use crate::error::{snippet, SaltError};

/// Longest message kept in an [`Outcome::Failed`].
const MESSAGE_MAX: usize = 300;

/// A token from `POST /login`. The token itself never appears in `Debug` output.
#[derive(Clone, PartialEq)]
pub struct LoginToken {
    /// The token, sent back as `X-Auth-Token`.
    pub token: String,
    /// Server time (Unix seconds) the token was issued.
    pub start: f64,
    /// Server time (Unix seconds) the token expires.
    pub expire: f64,
}

impl LoginToken {
    /// How long the token lives, in seconds (never negative).
    pub fn lifetime_secs(&self) -> f64 {
        let l = self.expire - self.start;
        if l.is_finite() && l > 0.0 {
            l
        } else {
            0.0
        }
    }
}

impl fmt::Debug for LoginToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginToken")
            .field("token", &"<redacted>")
            .field("start", &self.start)
            .field("expire", &self.expire)
            .finish()
    }
}

/// A job started by `local_async`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsyncJob {
    /// Job id.
    pub jid: String,
    /// The minions the master expects to answer (unknown ids are left out).
    pub minions: Vec<String>,
}

/// The state of a job from `GET /jobs/<jid>`.
#[derive(Clone, Debug, PartialEq)]
pub struct JobStatus {
    /// Job id (if the answer carries it).
    pub jid: Option<String>,
    /// Execution function.
    pub function: Option<String>,
    /// The minions the job was sent to.
    pub minions: Vec<String>,
    /// Outcome of every minion that has returned so far.
    pub returned: BTreeMap<String, Outcome>,
}

/// Answer of the `manage.status` runner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManageStatus {
    /// Minions that answered.
    pub up: Vec<String>,
    /// Minions with an accepted key that did not answer.
    pub down: Vec<String>,
}

/// One record of the `/events` server-sent-event stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseRecord {
    /// The `tag:` line.
    pub tag: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// A `retry:` value in milliseconds.
    pub retry: Option<u64>,
}

/// A minion's return taken from a `salt/job/<jid>/ret/<id>` event.
#[derive(Clone, Debug, PartialEq)]
pub struct JobReturnEvent {
    /// Job id.
    pub jid: String,
    /// Minion id.
    pub minion: String,
    /// Its normalized outcome.
    pub outcome: Outcome,
}

fn parse_json(context: &str, body: &[u8]) -> Result<Value, SaltError> {
    serde_json::from_slice(body)
        .map_err(|e| SaltError::protocol(context, format!("not JSON: {e}"), body))
}

/// The list under `return` of a salt-api envelope `{"return": [...]}`.
fn return_list<'a>(context: &str, v: &'a Value, body: &[u8]) -> Result<&'a Vec<Value>, SaltError> {
    v.get("return")
        .and_then(Value::as_array)
        .ok_or_else(|| SaltError::protocol(context, "no `return` list", body))
}

/// The first element of `return`.
fn first_return<'a>(context: &str, v: &'a Value, body: &[u8]) -> Result<&'a Value, SaltError> {
    return_list(context, v, body)?
        .first()
        .ok_or_else(|| SaltError::protocol(context, "empty `return` list", body))
}

/// Decodes a `POST /login` answer (`{"return":[{"token","expire","start",…}]}`).
pub fn login(body: &[u8]) -> Result<LoginToken, SaltError> {
    const C: &str = "login";
    let v = parse_json(C, body)?;
    let r = first_return(C, &v, body)?;
    let token = r
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_graphic()))
        .ok_or_else(|| SaltError::protocol(C, "no usable `token`", b""))?;
    let expire = r
        .get("expire")
        .and_then(Value::as_f64)
        .ok_or_else(|| SaltError::protocol(C, "no numeric `expire`", b""))?;
    let start = r.get("start").and_then(Value::as_f64).unwrap_or(expire);
    Ok(LoginToken {
        token: token.to_owned(),
        start,
        expire,
    })
}

/// Decodes a `local_async` answer. `Ok(None)` when salt started no job (no minion matched: the answer
/// is `{"return":[{}]}` without a jid).
pub fn local_async(body: &[u8]) -> Result<Option<AsyncJob>, SaltError> {
    const C: &str = "local_async";
    let v = parse_json(C, body)?;
    let r = first_return(C, &v, body)?;
    let obj = r
        .as_object()
        .ok_or_else(|| SaltError::protocol(C, "`return[0]` is not an object", body))?;
    let Some(jid) = obj.get("jid") else {
        if obj.is_empty() {
            return Ok(None);
        }
        return Err(SaltError::protocol(C, "no `jid`", body));
    };
    let jid = jid
        .as_str()
        .filter(|j| !j.is_empty() && j.len() <= 64 && j.chars().all(|c| c.is_ascii_alphanumeric()))
        .ok_or_else(|| SaltError::protocol(C, "`jid` is not a job id", body))?;
    let minions = string_list(C, obj.get("minions").unwrap_or(&Value::Null), body)?;
    Ok(Some(AsyncJob {
        jid: jid.to_owned(),
        minions,
    }))
}

fn string_list(context: &str, v: &Value, body: &[u8]) -> Result<Vec<String>, SaltError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_owned).ok_or_else(|| {
                    SaltError::protocol(context, "a minion id is not a string", body)
                })
            })
            .collect(),
        _ => Err(SaltError::protocol(
            context,
            "expected a list of minion ids",
            body,
        )),
    }
}

/// Decodes a synchronous `local` (or `local_batch`) answer: every minion's normalized outcome.
/// `fun` is the execution function that was called (it decides how some returns read).
pub fn local(fun: &str, body: &[u8]) -> Result<BTreeMap<String, Outcome>, SaltError> {
    const C: &str = "local";
    let v = parse_json(C, body)?;
    let mut out = BTreeMap::new();
    for r in return_list(C, &v, body)? {
        let obj = r
            .as_object()
            .ok_or_else(|| SaltError::protocol(C, "a `return` element is not an object", body))?;
        for (minion, value) in obj {
            out.insert(minion.clone(), minion_outcome(fun, value, None, None));
        }
    }
    Ok(out)
}

/// Decodes `GET /jobs/<jid>`: `info[0].Result` holds `{"<id>": {"return","retcode","success"}}` for
/// each minion that has returned (empty while the job runs).
pub fn job(body: &[u8]) -> Result<JobStatus, SaltError> {
    const C: &str = "jobs";
    let v = parse_json(C, body)?;
    let info = v
        .get("info")
        .and_then(Value::as_array)
        .and_then(|i| i.first())
        .and_then(Value::as_object)
        .ok_or_else(|| SaltError::protocol(C, "no `info[0]` object", body))?;
    let function = info
        .get("Function")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let fun = function.as_deref().unwrap_or("");
    let minions = string_list(C, info.get("Minions").unwrap_or(&Value::Null), body)?;
    let mut returned = BTreeMap::new();
    match info.get("Result") {
        None | Some(Value::Null) => {}
        Some(Value::Object(result)) => {
            for (minion, entry) in result {
                returned.insert(minion.clone(), job_entry_outcome(fun, entry));
            }
        }
        Some(_) => return Err(SaltError::protocol(C, "`Result` is not an object", body)),
    }
    Ok(JobStatus {
        jid: info.get("jid").and_then(Value::as_str).map(str::to_owned),
        function,
        minions,
        returned,
    })
}

/// One `{"return","retcode","success"}` entry of a job (from `/jobs/<jid>` or an event's data).
fn job_entry_outcome(fun: &str, entry: &Value) -> Outcome {
    match entry.as_object() {
        Some(e) if e.contains_key("return") => {
            let retcode = e.get("retcode").and_then(Value::as_i64);
            let success = e.get("success").and_then(Value::as_bool);
            minion_outcome(
                fun,
                e.get("return").unwrap_or(&Value::Null),
                retcode,
                success,
            )
        }
        _ => minion_outcome(fun, entry, None, None),
    }
}

/// Decodes a `runner` answer: the runner's return value (`return[0]`).
pub fn runner(body: &[u8]) -> Result<Value, SaltError> {
    let v = parse_json("runner", body)?;
    Ok(first_return("runner", &v, body)?.clone())
}

/// Decodes a `wheel` answer (`{"return":[{"tag","data":{"return",…,"success"}}]}`) into the function's
/// return value; `success: false` is an error with salt's message.
pub fn wheel(body: &[u8]) -> Result<Value, SaltError> {
    const C: &str = "wheel";
    let v = parse_json(C, body)?;
    let data = first_return(C, &v, body)?
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| SaltError::protocol(C, "`return[0]` has no `data` object", body))?;
    let ret = data.get("return").cloned().unwrap_or(Value::Null);
    if data.get("success").and_then(Value::as_bool) == Some(false) {
        let msg = ret.as_str().map_or_else(|| ret.to_string(), str::to_owned);
        return Err(SaltError::protocol(
            C,
            format!("wheel function failed: {msg}"),
            body,
        ));
    }
    Ok(ret)
}

/// What the master answered to the wheel `file_roots.write`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileRootsWrite {
    /// The file was written; the absolute path on the master (from `Wrote data to file <path>`).
    Written {
        /// Where the master wrote it.
        path: String,
    },
    /// The master did not write it: its message (`Named environment base is not present`,
    /// `Invalid path: …`, or the exception of a failed write such as a permission error).
    Refused {
        /// What salt said.
        message: String,
    },
}

/// Decodes the wheel `file_roots.write` answer. salt answers a string either way (with
/// `success: true`): `Wrote data to file <path>` when it wrote, a reason when it did not; an exception
/// (e.g. permission denied) is `success: false` with its text. Only an answer that is not a wheel
/// answer is an error.
pub fn file_roots_write(body: &[u8]) -> Result<FileRootsWrite, SaltError> {
    const C: &str = "file_roots.write";
    let v = parse_json(C, body)?;
    let data = first_return(C, &v, body)?
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| SaltError::protocol(C, "`return[0]` has no `data` object", body))?;
    let ret = data.get("return").unwrap_or(&Value::Null);
    let text = ret.as_str().map_or_else(|| ret.to_string(), str::to_owned);
    if data.get("success").and_then(Value::as_bool) != Some(false) {
        if let Some(path) = text.strip_prefix("Wrote data to file ") {
            let path = path.trim();
            if !path.is_empty() {
                return Ok(FileRootsWrite::Written {
                    path: path.to_owned(),
                });
            }
        }
    }
    Ok(FileRootsWrite::Refused {
        message: short(&text),
    })
}

/// Accepted, pending, rejected and denied minion keys (`key.list_all`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyList {
    /// Accepted keys.
    pub minions: Vec<String>,
    /// Pending keys.
    pub minions_pre: Vec<String>,
    /// Rejected keys.
    pub minions_rejected: Vec<String>,
    /// Denied keys.
    pub minions_denied: Vec<String>,
}

/// Decodes the wheel `key.list_all` answer.
pub fn key_list_all(body: &[u8]) -> Result<KeyList, SaltError> {
    let v = wheel(body)?;
    let list = |k: &str| -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    if !v.is_object() {
        return Err(SaltError::protocol(
            "key.list_all",
            "the return is not an object",
            body,
        ));
    }
    Ok(KeyList {
        minions: list("minions"),
        minions_pre: list("minions_pre"),
        minions_rejected: list("minions_rejected"),
        minions_denied: list("minions_denied"),
    })
}

/// Decodes the `jobs.lookup_jid` runner answer (`{"return":[{"<minion>": <return>, …}]}`) into each
/// minion's normalized outcome.
pub fn lookup_jid(fun: &str, body: &[u8]) -> Result<BTreeMap<String, Outcome>, SaltError> {
    const C: &str = "jobs.lookup_jid";
    let v = parse_json(C, body)?;
    let r = first_return(C, &v, body)?
        .as_object()
        .ok_or_else(|| SaltError::protocol(C, "`return[0]` is not an object", body))?;
    Ok(r.iter()
        .map(|(m, ret)| (m.clone(), minion_outcome(fun, ret, None, None)))
        .collect())
}

/// Decodes the answer of the `manage.status` runner (`{"return":[{"up":[…],"down":[…]}]}`).
pub fn manage_status(body: &[u8]) -> Result<ManageStatus, SaltError> {
    const C: &str = "manage.status";
    let v = parse_json(C, body)?;
    let r = first_return(C, &v, body)?;
    let obj = r
        .as_object()
        .ok_or_else(|| SaltError::protocol(C, "`return[0]` is not an object", body))?;
    let list = |k: &str| -> Result<Vec<String>, SaltError> {
        match obj.get(k) {
            Some(v) => string_list(C, v, body),
            None => Err(SaltError::protocol(C, format!("no `{k}` list"), body)),
        }
    };
    Ok(ManageStatus {
        up: list("up")?,
        down: list("down")?,
    })
}

/// Decodes any other JSON answer carrying a `return` key (`/minions`, `/keys`, `/`, `/logout`, wheel…).
pub fn envelope(body: &[u8]) -> Result<Value, SaltError> {
    let v = parse_json("envelope", body)?;
    match v.get("return") {
        Some(r) => Ok(r.clone()),
        None => Err(SaltError::protocol("envelope", "no `return` key", body)),
    }
}

/// The human-readable message of an error answer: the `<p>` of CherryPy's HTML page, the `return` of
/// salt's JSON error body, or the start of the text. At most 200 characters; never fails.
pub fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        match v.get("return") {
            Some(Value::String(s)) => return snippet(s),
            Some(other) => return snippet(&other.to_string()),
            None => {}
        }
    }
    if let Some(start) = text.find("<p>") {
        let rest = &text[start + 3..];
        let end = rest.find("</p>").unwrap_or(rest.len());
        return snippet(&rest[..end]);
    }
    if let Some(start) = text.find("<title>") {
        let rest = &text[start + 7..];
        let end = rest.find("</title>").unwrap_or(rest.len());
        return snippet(&rest[..end]);
    }
    snippet(&text)
}

/// Splits a server-sent-event stream into records; feed it chunks as they arrive.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// A parser with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `chunk` and returns every record it completed (records end with a blank line).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseRecord> {
        let mut out = Vec::new();
        self.push_each(chunk, |r| out.push(r.into_owned()));
        out
    }

    /// Adds `chunk` and hands every record it completed to `each`, borrowed from the parser's buffer
    /// (no copy of a record with one `data:` line).
    pub fn push_each(&mut self, chunk: &[u8], mut each: impl FnMut(SseRecordRef<'_>)) {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        // one pass over the buffer, one drain at the end: linear in the chunk's size
        while let Some((end, sep)) = find_blank_line(&self.buf[start..]) {
            let text = String::from_utf8_lossy(&self.buf[start..start + end]);
            if let Some(r) = parse_record(&text) {
                each(r);
            }
            start += end + sep;
        }
        self.buf.drain(..start);
    }
}

/// An [`SseRecord`] borrowed from the text it was read from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseRecordRef<'a> {
    /// The `tag:` line.
    pub tag: Option<&'a str>,
    /// The `data:` lines, joined with `\n`.
    pub data: Cow<'a, str>,
    /// A `retry:` value in milliseconds.
    pub retry: Option<u64>,
}

impl SseRecordRef<'_> {
    /// The owned record.
    pub fn into_owned(self) -> SseRecord {
        SseRecord {
            tag: self.tag.map(str::to_owned),
            data: self.data.into_owned(),
            retry: self.retry,
        }
    }
}

/// The first record separator (`\n\n` or `\r\n\r\n`): its offset and length.
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\n', &buf[i..]) {
        let at = i + p;
        match buf.get(at + 1) {
            Some(b'\n') => return Some((at, 2)),
            Some(b'\r') if at >= 1 && buf[at - 1] == b'\r' && buf.get(at + 2) == Some(&b'\n') => {
                return Some((at - 1, 4))
            }
            _ => {}
        }
        i = at + 1;
    }
    None
}

fn parse_record(text: &str) -> Option<SseRecordRef<'_>> {
    let mut r = SseRecordRef::default();
    let mut any = false;
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "tag" | "event" => {
                r.tag = Some(value);
                any = true;
            }
            "data" => {
                if r.data.is_empty() {
                    r.data = Cow::Borrowed(value);
                } else {
                    let joined = r.data.to_mut();
                    joined.push('\n');
                    joined.push_str(value);
                }
                any = true;
            }
            "retry" => {
                r.retry = value.trim().parse().ok();
                any = true;
            }
            _ => {}
        }
    }
    any.then_some(r)
}

/// Parses a whole captured SSE text into records.
pub fn sse_records(text: &[u8]) -> Vec<SseRecord> {
    let mut p = SseParser::new();
    let mut out = p.push(text);
    out.extend(p.push(b"\n\n"));
    out
}

/// Reads a job return from an event record. `Ok(None)` for every other event (`new`, `publish`,
/// non-job tags, the `retry:` record); an error when a return event's data cannot be read.
pub fn job_return_event(record: &SseRecord) -> Result<Option<JobReturnEvent>, SaltError> {
    return_event_of(record.tag.as_deref(), &record.data)
}

/// [`job_return_event`] for a borrowed record.
pub fn job_return_event_ref(
    record: &SseRecordRef<'_>,
) -> Result<Option<JobReturnEvent>, SaltError> {
    return_event_of(record.tag, &record.data)
}

fn return_event_of(tag: Option<&str>, data: &str) -> Result<Option<JobReturnEvent>, SaltError> {
    let Some(tag) = tag else {
        return Ok(None);
    };
    let mut parts = tag.split('/');
    let (Some("salt"), Some("job"), Some(jid), Some("ret"), Some(minion), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Ok(None);
    };
    let outcome = match return_outcome_fast(data) {
        Some(o) => o,
        None => return_outcome_general(data)?,
    };
    Ok(Some(JobReturnEvent {
        jid: jid.to_owned(),
        minion: minion.to_owned(),
        outcome,
    }))
}

/// The outcome of a return event's `data:` in the shape salt publishes, read without building the
/// whole event as a `Value`; `None` for anything else (no `return`, odd types, duplicate keys, bad
/// JSON), which [`return_outcome_general`] decides and words the errors of.
fn return_outcome_fast(data: &str) -> Option<Outcome> {
    let ev = serde_json::from_str::<ReturnEventWire<'_>>(data).ok()?;
    let ret = ev.data.ret?;
    let fun = ev.data.fun.as_deref().unwrap_or("");
    let retcode = ev.data.retcode.as_ref().and_then(Value::as_i64);
    let success = ev.data.success.as_ref().and_then(Value::as_bool);
    Some(minion_outcome(fun, &ret, retcode, success))
}

/// The outcome of any return event's `data:`.
fn return_outcome_general(data: &str) -> Result<Outcome, SaltError> {
    const C: &str = "events";
    let v: Value = serde_json::from_str(data).map_err(|e| {
        SaltError::protocol(C, format!("event data is not JSON: {e}"), data.as_bytes())
    })?;
    let data_obj = v
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| SaltError::protocol(C, "event without a `data` object", data.as_bytes()))?;
    let fun = data_obj.get("fun").and_then(Value::as_str).unwrap_or("");
    Ok(job_entry_outcome(fun, data_obj))
}

/// The fields of a return event the client reads; the others are skipped unparsed.
#[derive(serde::Deserialize)]
struct ReturnEventWire<'a> {
    #[serde(borrow)]
    data: ReturnDataWire<'a>,
}

/// `data` of a [`ReturnEventWire`]; a field of the wrong type fails the fast path.
#[derive(serde::Deserialize)]
struct ReturnDataWire<'a> {
    #[serde(default, borrow)]
    fun: Option<Cow<'a, str>>,
    /// `Some` whenever the key is there, `null` included.
    #[serde(default, rename = "return", deserialize_with = "present")]
    ret: Option<Value>,
    #[serde(default)]
    retcode: Option<Value>,
    #[serde(default)]
    success: Option<Value>,
}

/// Deserializes a field that is present (even as `null`) into `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

/// Normalizes one minion's return into an [`Outcome`].
///
/// `retcode` and `success` come from a job envelope (`/jobs/<jid>`, events) where there is one.
/// Recognized failures: `cmd.run_all` dicts with a non-zero `retcode`; `full_return` wrappers
/// (`{"ret","retcode"}`); state returns with a `result: false`; a list of strings from a `state.*`
/// function (missing SLS, render errors); the strings salt uses for unknown functions, exceptions and
/// tracebacks; a non-zero job `retcode` or `success: false`. `"Minion did not return…"` is `NoReturn`.
pub fn minion_outcome(
    fun: &str,
    value: &Value,
    retcode: Option<i64>,
    success: Option<bool>,
) -> Outcome {
    // full_return wrapper: {"ret": …, "retcode": n, "jid": …}
    if let Some(obj) = value.as_object() {
        if obj.contains_key("ret") && obj.get("retcode").is_some_and(Value::is_i64) {
            let inner_rc = obj.get("retcode").and_then(Value::as_i64);
            let inner = obj.get("ret").unwrap_or(&Value::Null);
            let inner_ok = obj.get("success").and_then(Value::as_bool).or(success);
            // a full_return wrapper never wraps another one
            return plain_outcome(fun, inner, inner_rc.or(retcode), inner_ok);
        }
    }
    plain_outcome(fun, value, retcode, success)
}

fn plain_outcome(fun: &str, value: &Value, retcode: Option<i64>, success: Option<bool>) -> Outcome {
    match value {
        Value::String(s) => {
            if let Some(o) = string_failure(s, retcode) {
                return o;
            }
        }
        Value::Object(obj) => {
            if let Some(o) = state_failure(obj, retcode) {
                return o;
            }
            if let Some(o) = cmd_failure(obj) {
                return o;
            }
        }
        Value::Array(items)
            if fun.starts_with("state.")
                && !items.is_empty()
                && items.iter().all(Value::is_string) =>
        {
            let msg: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            return Outcome::failed(
                retcode.filter(|rc| *rc != 0).or(Some(1)),
                short(&msg.join("; ")),
            );
        }
        _ => {}
    }
    let rc_failed = retcode.is_some_and(|rc| rc != 0);
    if success == Some(false) || rc_failed {
        return Outcome::failed(retcode, short(&value_text(value)));
    }
    Outcome::ok(value.clone())
}

/// The strings salt returns in place of a value when something went wrong.
fn string_failure(s: &str, retcode: Option<i64>) -> Option<Outcome> {
    let t = s.trim_start();
    if t.starts_with("Minion did not return") {
        return Some(Outcome::NoReturn);
    }
    if t.starts_with('\'') && t.trim_end().ends_with("' is not available.") {
        return Some(Outcome::failed(retcode.filter(|rc| *rc != 0), short(t)));
    }
    let exception = t.starts_with("The minion function caused an exception")
        || t.starts_with("Traceback")
        || t.starts_with("Exception occurred in")
        || t.starts_with("ERROR");
    if exception {
        return Some(Outcome::failed(
            retcode.filter(|rc| *rc != 0),
            short(&exception_summary(t)),
        ));
    }
    None
}

/// For a traceback: its first line plus its last non-empty line (the exception itself).
fn exception_summary(t: &str) -> String {
    if !t.contains("Traceback") {
        return t.to_owned();
    }
    let first = t.lines().next().unwrap_or("").trim();
    let last = t
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let head = first.split("Traceback").next().unwrap_or("").trim();
    if head.is_empty() {
        format!("exception: {last}")
    } else {
        format!("{head} {last}")
    }
}

/// A state return: every key looks like `<mod>_|-<id>_|-<name>_|-<fun>` and maps to an object with
/// `result`. `None` when `obj` is not a state return or nothing failed.
fn state_failure(obj: &Map<String, Value>, retcode: Option<i64>) -> Option<Outcome> {
    if obj.is_empty() || !obj.iter().all(|(k, v)| k.contains("_|-") && v.is_object()) {
        return None;
    }
    let mut failed = Vec::new();
    for (key, st) in obj {
        if st.get("result") == Some(&Value::Bool(false)) {
            let id = st
                .get("__id__")
                .and_then(Value::as_str)
                .unwrap_or_else(|| key.split("_|-").nth(1).unwrap_or(key));
            let comment = st.get("comment").map(value_text).unwrap_or_default();
            failed.push(format!("{id}: {comment}"));
        }
    }
    if failed.is_empty() {
        return None;
    }
    Some(Outcome::failed(
        retcode.filter(|rc| *rc != 0).or(Some(2)),
        short(&failed.join("; ")),
    ))
}

/// A `cmd.run_all`-style dict: `retcode` plus `stdout`/`stderr`.
fn cmd_failure(obj: &Map<String, Value>) -> Option<Outcome> {
    let rc = obj.get("retcode")?.as_i64()?;
    if !(obj.contains_key("stdout") || obj.contains_key("stderr")) || rc == 0 {
        return None;
    }
    let text = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    let stderr = text("stderr");
    let msg = if stderr.is_empty() {
        text("stdout")
    } else {
        stderr
    };
    let msg = if msg.is_empty() {
        format!("command exited with {rc}")
    } else {
        msg
    };
    Some(Outcome::failed(Some(rc), short(&msg)))
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn short(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MESSAGE_MAX) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the fast path answers, it answers what the general path does; where it declines, the
    /// general path decides.
    #[test]
    fn fast_return_event_path_agrees_with_the_general_one() {
        let datas = [
            r#"{"data":{"cmd":"_return","id":"w","jid":"1","fun":"test.ping","fun_args":[],"return":true,"retcode":0,"success":true,"_stamp":"x"},"tag":"t"}"#,
            r#"{"data":{"fun":"cmd.run_all","return":{"pid":1,"retcode":2,"stdout":"","stderr":"no"},"retcode":2,"success":false}}"#,
            r#"{"data":{"fun":"cmd.run","return":"ERROR: boom","retcode":1,"success":false}}"#,
            r#"{"data":{"fun":"state.apply","return":{"f_|-a_|-b_|-c":{"result":false,"comment":"bad"}},"retcode":2}}"#,
            r#"{"data":{"fun":"state.apply","return":["Rendering SLS failed"],"retcode":1}}"#,
            r#"{"data":{"fun":"test.ping","return":{"ret":true,"retcode":3,"jid":"1"}}}"#,
            r#"{"data":{"fun":"x.y","return":"'x.y' is not available."}}"#,
            r#"{"data":{"fun":"test.ping","return":null}}"#,
            r#"{"data":{"return":true}}"#,
            r#"{"data":{"fun":"te\u0073t.ping","return":true,"retcode":"0","success":"yes"}}"#,
            r#"{"data":{"fun":"test.ping","return":true,"retcode":1.5,"success":true}}"#,
            r#"{"data":{"fun":7,"return":true}}"#,
            r#"{"data":{"fun":"test.ping","return":true,"return":false}}"#,
            r#"{"data":{"fun":"test.ping","retcode":0}}"#,
            r#"{"data":{"fun":"test.ping","ret":true,"retcode":4}}"#,
            r#"{"data":[1,2]}"#,
            r#"{"tag":"only"}"#,
            r#"[]"#,
            r#"{"data":{"fun":"test.ping","return":tru"#,
            "",
        ];
        let mut fast_answers = 0;
        for data in datas {
            let general = return_outcome_general(data);
            // where the fast path declines, the general path decides (the sample and fuzz tests)
            if let Some(fast) = return_outcome_fast(data) {
                fast_answers += 1;
                assert_eq!(general.ok(), Some(fast), "{data}");
            }
        }
        assert_eq!(
            fast_answers, 11,
            "the fast path takes the shapes salt publishes"
        );
    }
}
