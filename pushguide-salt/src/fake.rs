//! A fake salt-api (feature `fake`): an in-process HTTP/1.1 server on an ephemeral loopback port, in
//! front of a [`SimFleet`], speaking rest_cherrypy's wire format (as captured in the salt lab samples).
//!
//! * `POST /login` — eauth, user and password checked against the configured credentials; a token
//!   (`X-Auth-Token`) with the configured lifetime (or the `token_expire` asked for); 401 otherwise;
//! * `POST /` — lowstate chunks with `client` `local` (waits for the fleet), `local_async` (answers
//!   `{"jid","minions"}` at once and runs the job in the background) or `runner` (`manage.status`; any
//!   other runner answers 500 like salt); `tgt_type` `list` or `glob`;
//! * `GET /jobs/<jid>` — the job's info and the returns so far;
//! * `GET /events` — the shared server-sent-event stream: `salt/job/<jid>/new` and one
//!   `salt/job/<jid>/ret/<minion>` record per return;
//! * `GET /minions`, `GET /minions/<id>`, `GET /` (no token needed), `POST /logout`.
//!
//! A job runs its call through the fleet (so the fleet's rules, request log and latency apply; the
//! latency counts from when the request was read, as a server's would) and
//! publishes each minion's return as salt does: `Ok` → `{"return": value, "retcode": 0, "success":
//! true}`, `Failed` → `{"return": message, "retcode": rc, "success": false}`, `NoReturn` → nothing.
//! Faults are injected at run time through [`Faults`]; every request is counted per route
//! ([`FakeSaltApi::request_count`]). The server stops when the [`FakeSaltApi`] is dropped.
//!
//! ```
//! use std::sync::Arc;
//! use pushguide_core::{sim::SimFleet, MinionId, Outcome, SaltCall, Transport};
//! use pushguide_salt::{fake::FakeSaltApi, SaltApi};
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! # rt.block_on(async {
//! let fleet = Arc::new(
//!     SimFleet::new(["web-01", "web-02"]).unwrap()
//!         .on("web-02", "cmd.run", Outcome::failed(Some(3), "exit 3")),
//! );
//! let fake = FakeSaltApi::builder(fleet).start().await.unwrap();
//! let api = SaltApi::new(fake.settings()).unwrap();
//! let hosts = fake.fleet().minions().to_vec();
//! let mut r = api.call(&hosts, &SaltCall::mutate("cmd.run").arg("true")).await.unwrap();
//! assert!(r.take(&hosts[0]).is_ok());
//! assert_eq!(r.take(&hosts[1]), Outcome::failed(Some(3), "exit 3"));
//! assert_eq!(fake.request_count().get("POST /"), 1); // one request for both minions
//! # });
//! ```

mod compound;
mod faults;
mod http;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pushguide_core::sim::SimFleet;
use pushguide_core::{Effect, MinionId, Outcome, SaltCall, TargetExpr, TargetType, Transport};
use serde_json::{json, Map, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};

pub use faults::Faults;
use faults::Verdict;
use http::{Request, Response};

use crate::SaltApiSettings;

/// How many finished jobs `GET /jobs/<jid>` remembers.
const JOBS_KEPT: usize = 10_000;
/// Event records buffered per `/events` connection before a slow reader loses some.
const EVENTS_BUFFER: usize = 1 << 16;
/// Largest SSE chunk assembled from queued records.
const SSE_CHUNK: usize = 64 * 1024;

/// Requests counted per route, e.g. `"POST /"`, `"POST /login"`, `"GET /jobs/*"`, `"GET /events"`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Count per route (`METHOD path`, with `/jobs/<jid>` as `/jobs/*`, `/minions/<id>` as
    /// `/minions/*`).
    pub by_route: BTreeMap<String, u64>,
}

impl RequestCounts {
    /// The count of one route, e.g. `get("POST /")`; 0 when never requested.
    pub fn get(&self, route: &str) -> u64 {
        self.by_route.get(route).copied().unwrap_or(0)
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.by_route.values().sum()
    }
}

/// Configures and starts a [`FakeSaltApi`].
#[derive(Debug)]
pub struct FakeSaltApiBuilder {
    fleet: Arc<SimFleet>,
    user: String,
    password: String,
    eauth: String,
    token_lifetime: Duration,
}

impl FakeSaltApiBuilder {
    /// The only user/password accepted by `/login` (default `pushguide` / `fake-password`).
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = user.into();
        self.password = password.into();
        self
    }

    /// The only eauth backend accepted (default `pam`, the client's default).
    pub fn eauth(mut self, eauth: impl Into<String>) -> Self {
        self.eauth = eauth.into();
        self
    }

    /// Lifetime of the tokens `/login` issues when the client does not ask for one (default 12 h, as
    /// salt's `token_expire`).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    pub async fn start(self) -> std::io::Result<FakeSaltApi> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let known: HashSet<MinionId> = self.fleet.minions().iter().cloned().collect();
        let state = Arc::new(State {
            fleet: self.fleet,
            known,
            user: self.user,
            password: self.password,
            eauth: self.eauth,
            token_lifetime: self.token_lifetime,
            faults: Faults::default(),
            tokens: Mutex::new(HashMap::new()),
            jobs: Mutex::new(Jobs::default()),
            counts: Mutex::new(RequestCounts::default()),
            events: broadcast::channel(EVENTS_BUFFER).0,
            last_jid: Mutex::new(0),
            token_seq: AtomicU64::new(1),
            shutdown: shutdown_rx,
        });
        let accept = tokio::spawn(accept_loop(Arc::clone(&state), listener));
        tracing::debug!(%addr, "fake salt-api listening");
        Ok(FakeSaltApi {
            addr,
            state,
            shutdown: shutdown_tx,
            accept,
        })
    }
}

/// An in-process salt-api in front of a [`SimFleet`]; see the [module documentation](self).
pub struct FakeSaltApi {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeSaltApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSaltApi")
            .field("addr", &self.addr)
            .field("user", &self.state.user)
            .field("eauth", &self.state.eauth)
            .finish_non_exhaustive()
    }
}

impl FakeSaltApi {
    /// A builder for a fake in front of `fleet`.
    pub fn builder(fleet: Arc<SimFleet>) -> FakeSaltApiBuilder {
        FakeSaltApiBuilder {
            fleet,
            user: "pushguide".to_owned(),
            password: "fake-password".to_owned(),
            eauth: "pam".to_owned(),
            token_lifetime: Duration::from_secs(12 * 3600),
        }
    }

    /// A fake with the default credentials, started on the current runtime.
    pub async fn start(fleet: Arc<SimFleet>) -> std::io::Result<Self> {
        Self::builder(fleet).start().await
    }

    /// The socket address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Client settings for this fake: its URL and credentials, defaults otherwise.
    pub fn settings(&self) -> SaltApiSettings {
        SaltApiSettings {
            endpoints: vec![self.url()],
            eauth: self.state.eauth.clone(),
            user: self.state.user.clone(),
            password: self.state.password.clone(),
            ..SaltApiSettings::default()
        }
    }

    /// The simulated fleet behind it (add rules at run time with [`SimFleet::add_rule`]).
    pub fn fleet(&self) -> &Arc<SimFleet> {
        &self.state.fleet
    }

    /// The fault handle.
    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }

    /// Requests received so far, per route.
    pub fn request_count(&self) -> RequestCounts {
        self.state.counts().clone()
    }

    /// Forgets the request counts.
    pub fn reset_request_count(&self) {
        *self.state.counts() = RequestCounts::default();
    }

    /// Stops accepting connections and closes every open one (also done on drop).
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
        self.accept.abort();
    }
}

impl Drop for FakeSaltApi {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// ------------------------------------------------------------------------------------------ state

struct TokenInfo {
    issued: Instant,
    valid_until: Instant,
}

struct Job {
    /// The function, or the list of a compound job's functions.
    fun: Value,
    args: Vec<Value>,
    tgt: Value,
    tgt_type: String,
    minions: Vec<String>,
    start: String,
    /// Each minion that returned, in order.
    result: Vec<JobReturn>,
}

/// One minion's return: `(minion, return, retcode, success)`; `retcode` and `success` are numbers
/// and booleans, or objects keyed by function for a compound job (`retcode` `null`: none).
type JobReturn = (MinionId, Value, Value, Value);

#[derive(Default)]
struct Jobs {
    by_jid: HashMap<String, Job>,
    order: VecDeque<String>,
}

struct State {
    fleet: Arc<SimFleet>,
    known: HashSet<MinionId>,
    user: String,
    password: String,
    eauth: String,
    token_lifetime: Duration,
    faults: Faults,
    tokens: Mutex<HashMap<String, TokenInfo>>,
    jobs: Mutex<Jobs>,
    counts: Mutex<RequestCounts>,
    /// Pre-formatted SSE records.
    events: broadcast::Sender<Arc<str>>,
    last_jid: Mutex<u128>,
    token_seq: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    fn counts(&self) -> MutexGuard<'_, RequestCounts> {
        lock(&self.counts)
    }

    fn count(&self, req: &Request) {
        let route = match req.path.as_str() {
            p if p.starts_with("/jobs/") => "/jobs/*",
            p if p.starts_with("/minions/") => "/minions/*",
            p => p,
        };
        *self
            .counts()
            .by_route
            .entry(format!("{} {route}", req.method))
            .or_insert(0) += 1;
    }

    fn new_jid(&self) -> String {
        let now = jid_now();
        let mut last = lock(&self.last_jid);
        *last = (*last + 1).max(now);
        last.to_string()
    }

    fn new_token(&self) -> String {
        let seq = self.token_seq.fetch_add(1, Ordering::Relaxed);
        let s = std::collections::hash_map::RandomState::new();
        let (a, b, c) = (s.hash_one(seq), s.hash_one(seq ^ 0x5a5a), s.hash_one(!seq));
        format!("{a:016x}{b:016x}{:08x}", c as u32)
    }

    fn publish(&self, tag: &str, data: &Value) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let mut rec = String::new();
        sse_record(&mut rec, tag, data);
        // no receiver between the check and the send is fine: nobody listens
        let _ = self.events.send(Arc::from(rec));
    }

    /// `Ok(())` when the request carries a live token, else the 401 to answer.
    fn check_token(&self, req: &Request) -> Result<(), Response> {
        let Some(token) = req.header("x-auth-token") else {
            return Err(Response::html_error(
                401,
                "No permission -- see authorization schemes",
            ));
        };
        let now = Instant::now();
        let tokens = lock(&self.tokens);
        match tokens.get(token) {
            Some(t) if now < t.valid_until && self.faults.token_alive(t.issued) => Ok(()),
            _ => Err(Response::html_error(401, "Authentication error occurred.")),
        }
    }
}

/// Appends one SSE record (`tag:` + `data:` lines, blank line) as salt-api writes it.
fn sse_record(out: &mut String, tag: &str, data: &Value) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        "tag: {tag}\ndata: {}\n\n",
        json!({"data": data, "tag": tag})
    );
}

// ------------------------------------------------------------------------------------------ serving

/// Resolves when the server shuts down (or its handle is gone).
async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

async fn accept_loop(state: Arc<State>, listener: TcpListener) {
    let shutdown = state.shutdown.clone();
    let app = axum::Router::new()
        .fallback(serve_request)
        .with_state(Arc::clone(&state));
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(app.clone(), stream, shutdown.clone()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "fake salt-api: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            () = stopped(shutdown.clone()) => return,
        }
    }
}

/// Serves one connection (HTTP/1.1, keep-alive) until the client closes it or the server stops; a
/// stop closes it at once, even in the middle of an answer.
async fn serve_connection(app: axum::Router, stream: TcpStream, shutdown: watch::Receiver<bool>) {
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::select! {
        r = conn => if let Err(e) = r {
            tracing::debug!(error = %e, "fake salt-api: connection ended with an error");
        },
        () = stopped(shutdown) => {}
    }
}

/// Every request, whatever its method and path: counted, delayed by the injected latency, then
/// answered.
async fn serve_request(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mut req = match Request::read(req).await {
        Ok(r) => r,
        Err(resp) => return resp.into_response(),
    };
    state.count(&req);
    let latency = state.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    req.received = std::time::Instant::now();
    if req.method == "GET" && req.path == "/events" {
        return serve_events(&state, &req);
    }
    handle(&state, &req).await.into_response()
}

/// Answers one (non-streaming) request, with the injected faults applied.
async fn handle(state: &Arc<State>, req: &Request) -> Response {
    let public = matches!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/login") | ("GET", "/")
    );
    match state.faults.verdict(!public) {
        Verdict::Serve => {}
        Verdict::Fail(status) => {
            return Response::html_error(status, "Fault injected by the fake salt-api")
        }
        Verdict::Unauthorized => {
            return Response::html_error(401, "Authentication error occurred.")
        }
    }
    if !public {
        if let Err(resp) = state.check_token(req) {
            return resp;
        }
    }
    let mut resp = route(state, req).await;
    if resp.content_type == "application/json" && state.faults.take_malformed() {
        let keep = (resp.body.len() / 2).max(1).min(resp.body.len());
        resp.body.truncate(keep);
        resp.body.extend_from_slice(b"\x00,}");
    }
    resp
}

async fn route(state: &Arc<State>, req: &Request) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/") => Response::json(
            200,
            &json!({"return": "Welcome", "clients": ["local", "local_async", "runner"]}),
        ),
        ("POST", "/login") => login(state, req),
        ("POST", "/logout") => {
            if let Some(t) = req.header("x-auth-token") {
                lock(&state.tokens).remove(t);
            }
            Response::json(200, &json!({"return": "Your token has been cleared"}))
        }
        ("POST", "/") => lowstate(state, req).await,
        ("GET", p) if p.starts_with("/jobs/") => job_info(state, &p["/jobs/".len()..]),
        ("GET", "/minions") => minions(state, None),
        ("GET", p) if p.starts_with("/minions/") => minions(state, Some(&p["/minions/".len()..])),
        (_, "/" | "/login" | "/logout" | "/events" | "/minions") => {
            Response::html_error(405, "The method is not allowed for this resource.")
        }
        _ => Response::html_error(404, &format!("The path '{}' was not found.", req.path)),
    }
}

fn login(state: &State, req: &Request) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return Response::html_error(400, "Invalid JSON document");
    };
    let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
    if field("eauth") != state.eauth
        || field("username") != state.user
        || field("password") != state.password
    {
        return Response::html_error(401, "Could not authenticate using provided credentials");
    }
    let lifetime = body
        .get("token_expire")
        .and_then(Value::as_f64)
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(state.token_lifetime);
    let token = state.new_token();
    let issued = Instant::now();
    let server_life = state
        .faults
        .server_ttl()
        .map_or(lifetime, |ttl| ttl.min(lifetime));
    lock(&state.tokens).insert(
        token.clone(),
        TokenInfo {
            issued,
            valid_until: issued + server_life,
        },
    );
    let start = unix_now();
    let mut resp = Response::json(
        200,
        &json!({"return": [{
            "token": token,
            "expire": start + lifetime.as_secs_f64(),
            "start": start,
            "user": state.user,
            "eauth": state.eauth,
            "perms": [".*", "@jobs", "@runner", "@wheel"],
        }]}),
    );
    resp.headers.push(("X-Auth-Token", token));
    resp
}

/// `POST /`: one answer element per lowstate chunk.
async fn lowstate(state: &Arc<State>, req: &Request) -> Response {
    let chunks = match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Array(chunks)) => chunks,
        Ok(obj @ Value::Object(_)) => vec![obj],
        _ => return Response::html_error(400, "Invalid JSON document"),
    };
    let mut out = Vec::with_capacity(chunks.len());
    for low in &chunks {
        let Some(low) = low.as_object() else {
            return Response::html_error(400, "Lowstate must be a list of dictionaries");
        };
        let client = low.get("client").and_then(Value::as_str).unwrap_or("");
        let fun = low.get("fun").and_then(Value::as_str);
        let compound = low.get("fun").and_then(Value::as_array);
        let answer = match (client, fun) {
            ("local_async", None) if compound.is_some() => {
                compound::local_async(state, req, low).await
            }
            (_, None) => Err(server_error()),
            ("local", Some(fun)) => local(state, req, low, fun).await,
            ("local_async", Some(fun)) => local_async(state, req, low, fun).await,
            ("runner", Some("manage.status")) => manage_status(state, low).await,
            ("runner", Some(_)) => Err(server_error()),
            (other, _) => Err(Response::html_error(
                400,
                &format!("Invalid client specified: '{other}'"),
            )),
        };
        match answer {
            Ok(v) => out.push(v),
            Err(resp) => return resp,
        }
    }
    Response::json(200, &json!({ "return": out }))
}

/// salt's answer to a runner that does not exist (or a lowstate without `fun`).
fn server_error() -> Response {
    Response::json(
        500,
        &json!({"status": 500, "return": "An unexpected error occurred"}),
    )
}

/// The known minions a lowstate chunk targets, in the order given.
async fn targets(state: &State, low: &Map<String, Value>) -> Result<Vec<MinionId>, Response> {
    let tgt_type = low
        .get("tgt_type")
        .and_then(Value::as_str)
        .unwrap_or("glob");
    let ids: Vec<String> = match (tgt_type, low.get("tgt")) {
        ("list", Some(Value::String(s))) => s.split(',').map(|t| t.trim().to_owned()).collect(),
        ("list", Some(Value::Array(items))) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        ("glob", Some(Value::String(g))) => {
            let expr = TargetExpr {
                expression: g.clone(),
                tgt_type: TargetType::Glob,
            };
            return Ok(state.fleet.resolve(&expr).await.unwrap_or_default());
        }
        (_, None) => return Err(Response::html_error(400, "No target (`tgt`) given")),
        (other, _) => {
            return Err(Response::html_error(
                400,
                &format!("tgt_type `{other}` is not supported by the fake salt-api"),
            ))
        }
    };
    let mut seen = HashSet::new();
    Ok(ids
        .iter()
        .filter_map(|id| MinionId::new(id).ok())
        .filter(|m| state.known.contains(m) && seen.insert(m.clone()))
        .collect())
}

/// The execution call a lowstate chunk describes. The effect is a guess from the function name (the
/// fleet only records it).
fn salt_call(low: &Map<String, Value>, fun: &str) -> SaltCall {
    const READ_ONLY: [&str; 8] = [
        "test.",
        "grains.",
        "pillar.item",
        "http.query",
        "file.file_exists",
        "file.directory_exists",
        "file.readlink",
        "cmd.which",
    ];
    let effect = if READ_ONLY.iter().any(|p| fun.starts_with(p)) {
        Effect::ReadOnly
    } else {
        Effect::Mutating
    };
    let mut call = SaltCall::new(fun, effect);
    match low.get("arg") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => call.arg.clone_from(a),
        Some(v) => call.arg.push(v.clone()),
    }
    if let Some(Value::Object(kw)) = low.get("kwarg") {
        for (k, v) in kw {
            call.kwarg.insert(k.clone(), v.clone());
        }
    }
    call
}

/// `client: local`: waits for the fleet; the answer maps each minion to its bare return value.
async fn local(
    state: &State,
    req: &Request,
    low: &Map<String, Value>,
    fun: &str,
) -> Result<Value, Response> {
    let minions = targets(state, low).await?;
    if minions.is_empty() {
        return Ok(json!({}));
    }
    let call = salt_call(low, fun);
    let mut returns = state
        .fleet
        .call_since(req.received, &minions, &call)
        .await
        .unwrap_or_default();
    let mut out = Map::new();
    for m in &minions {
        let v = match returns.take(m) {
            Outcome::Ok { value } => value,
            Outcome::Failed { message, .. } => Value::String(message),
            Outcome::NoReturn => Value::String(
                "Minion did not return. [No response]\nThe minions may not have all finished \
                 running and any remaining minions will return upon completion."
                    .to_owned(),
            ),
        };
        out.insert(m.to_string(), v);
    }
    Ok(Value::Object(out))
}

/// `client: local_async`: registers the job, answers `{"jid","minions"}` and runs it in the background.
async fn local_async(
    state: &Arc<State>,
    req: &Request,
    low: &Map<String, Value>,
    fun: &str,
) -> Result<Value, Response> {
    let minions = targets(state, low).await?;
    if minions.is_empty() {
        return Ok(json!({}));
    }
    let call = salt_call(low, fun);
    let jid = state.new_jid();
    let names: Vec<String> = minions.iter().map(ToString::to_string).collect();
    let tgt = low.get("tgt").cloned().unwrap_or(Value::Null);
    let tgt_type = low
        .get("tgt_type")
        .and_then(Value::as_str)
        .unwrap_or("glob")
        .to_owned();
    {
        let mut jobs = lock(&state.jobs);
        if jobs.order.len() >= JOBS_KEPT {
            if let Some(old) = jobs.order.pop_front() {
                jobs.by_jid.remove(&old);
            }
        }
        jobs.order.push_back(jid.clone());
        jobs.by_jid.insert(
            jid.clone(),
            Job {
                fun: fun.into(),
                args: call.arg.clone(),
                tgt: tgt.clone(),
                tgt_type: tgt_type.clone(),
                minions: names.clone(),
                start: salt_time(SystemTime::now(), false),
                result: Vec::new(),
            },
        );
    }
    state.publish(
        &format!("salt/job/{jid}/new"),
        &json!({
            "jid": jid, "tgt_type": tgt_type, "tgt": tgt, "user": state.user, "fun": fun,
            "arg": call.arg, "minions": names, "missing": [],
            "_stamp": salt_time(SystemTime::now(), true),
        }),
    );
    let st = Arc::clone(state);
    let j = jid.clone();
    let received = req.received;
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = run_job(&st, &j, received, minions, call) => {}
            () = stopped(shutdown.clone()) => {}
        }
    });
    Ok(json!({"jid": jid, "minions": names}))
}

async fn run_job(
    state: &State,
    jid: &str,
    received: std::time::Instant,
    minions: Vec<MinionId>,
    call: SaltCall,
) {
    let returns = match state.fleet.call_since(received, &minions, &call).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%jid, error = %e, "fake salt-api: the fleet failed the job");
            return;
        }
    };
    let mut entries: Vec<JobReturn> = Vec::with_capacity(minions.len());
    for m in &minions {
        match returns.minions.get(m) {
            None | Some(Outcome::NoReturn) => {}
            Some(Outcome::Ok { value }) => {
                entries.push((m.clone(), value.clone(), 0.into(), true.into()));
            }
            Some(Outcome::Failed { retcode, message }) => {
                let rc = retcode.map_or(Value::Null, Value::from);
                entries.push((m.clone(), Value::String(message.clone()), rc, false.into()));
            }
        }
    }
    // The returns are published first, in one broadcast message (readers write it as one chunk),
    // then kept as they are for `/jobs/<jid>` (its JSON is built when asked for); a poller in between
    // sees them on its next poll.
    let lost = !entries.is_empty() && state.faults.take_lost_returns();
    if state.events.receiver_count() > 0 && !entries.is_empty() && !lost {
        let stamp = salt_time(SystemTime::now(), true);
        let fun = Value::String(call.fun.clone());
        let fun_args = Value::Array(call.arg.clone());
        let records = return_records(jid, (&fun, &fun_args), &state.user, &stamp, &entries);
        let _ = state.events.send(Arc::from(records));
    }
    if let Some(job) = lock(&state.jobs).by_jid.get_mut(jid) {
        job.result.extend(entries);
    }
}

/// The SSE records of a job's returns (`(minion, return, retcode, success)` each), as the master
/// publishes them: `salt/job/<jid>/ret/<minion>` with `{"data": {…}, "tag"}`. The fields every
/// return of the job shares are encoded once; only the minion's own fields are encoded per record.
fn return_records(
    jid: &str,
    (fun, fun_args): (&Value, &Value),
    user: &str,
    stamp: &str,
    entries: &[JobReturn],
) -> String {
    let shared = json!({
        "_stamp": stamp, "cmd": "_return", "fun": fun, "fun_args": fun_args, "jid": jid,
        "user": user,
    })
    .to_string();
    // `{"_stamp":…,"user":"…"}` without its closing brace, to continue with the minion's fields
    let head = &shared[..shared.len() - 1];
    let mut out = Vec::with_capacity(entries.len() * (head.len() + 160));
    for (m, ret, retcode, success) in entries {
        let tag = format!("salt/job/{jid}/ret/{m}");
        out.extend_from_slice(b"tag: ");
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(b"\ndata: {\"data\": ");
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(b",\"id\":");
        json_into(&mut out, m.as_str());
        if !retcode.is_null() {
            out.extend_from_slice(b",\"retcode\":");
            json_into(&mut out, retcode);
        }
        out.extend_from_slice(b",\"return\":");
        json_into(&mut out, ret);
        out.extend_from_slice(b",\"success\":");
        json_into(&mut out, success);
        out.extend_from_slice(b"}, \"tag\": ");
        json_into(&mut out, &tag);
        out.extend_from_slice(b"}\n\n");
    }
    // only UTF-8 went in: serde_json's output and `str`s
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends `v` as JSON (serde_json cannot fail on strings and `Value`s).
fn json_into<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    let _ = serde_json::to_writer(&mut *out, v);
}

/// `runner` `manage.status`: the fleet's minions (or the `tgt` given) pinged through the fleet, as salt
/// does; those that answer are `up`.
async fn manage_status(state: &State, low: &Map<String, Value>) -> Result<Value, Response> {
    let minions = if low.contains_key("tgt") {
        targets(state, low).await?
    } else {
        state.fleet.minions().to_vec()
    };
    let returns = state
        .fleet
        .call(&minions, &SaltCall::read("test.ping"))
        .await
        .unwrap_or_default();
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for m in &minions {
        match returns.minions.get(m) {
            Some(o) if *o != Outcome::NoReturn => up.push(m.to_string()),
            _ => down.push(m.to_string()),
        }
    }
    up.sort();
    down.sort();
    Ok(json!({"up": up, "down": down}))
}

fn job_info(state: &State, jid: &str) -> Response {
    let jobs = lock(&state.jobs);
    let Some(job) = jobs.by_jid.get(jid) else {
        return Response::json(
            200,
            &json!({"info": [{"jid": jid, "Minions": [], "Result": {}}], "return": [{}]}),
        );
    };
    let mut result = Map::new();
    let mut bare = Map::new();
    for (m, ret, retcode, success) in &job.result {
        let mut e = Map::new();
        e.insert("return".into(), ret.clone());
        if !retcode.is_null() {
            e.insert("retcode".into(), retcode.clone());
        }
        e.insert("success".into(), success.clone());
        result.insert(m.to_string(), Value::Object(e));
        bare.insert(m.to_string(), ret.clone());
    }
    Response::json(
        200,
        &json!({
            "info": [{
                "jid": jid,
                "Function": job.fun,
                "Arguments": job.args,
                "Target": job.tgt,
                "Target-type": job.tgt_type,
                "User": state.user,
                "Minions": job.minions,
                "StartTime": job.start,
                "Result": result,
            }],
            "return": [bare],
        }),
    )
}

fn minions(state: &State, one: Option<&str>) -> Response {
    let grains = |m: &MinionId| json!({"id": m.as_str(), "kernel": "Linux", "fake": true});
    let map: Map<String, Value> = state
        .fleet
        .minions()
        .iter()
        .filter(|m| one.is_none_or(|id| id == m.as_str()))
        .map(|m| (m.to_string(), grains(m)))
        .collect();
    Response::json(200, &json!({ "return": [map] }))
}

/// `GET /events`: the shared stream, from the moment of the request on.
fn serve_events(state: &State, req: &Request) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if let Err(resp) = state.check_token(req) {
        return resp.into_response();
    }
    if state.faults.refuses_events() {
        return Response::html_error(503, "Event stream refused (fault injected)").into_response();
    }
    // subscribe before the client can see the stream, so no return published after is missed
    let rx = state.events.subscribe();
    let mut drops = state.faults.stream_drops();
    drops.borrow_and_update();
    let feed = EventFeed {
        rx,
        drops,
        started: false,
        ended: false,
    };
    let chunks = futures_util::stream::unfold(feed, |mut feed| async move {
        let chunk = feed.next_chunk().await?;
        Some((chunk, feed))
    });
    http::event_stream(axum::body::Body::from_stream(chunks))
}

/// One `/events` reader's side of the broadcast.
struct EventFeed {
    rx: broadcast::Receiver<Arc<str>>,
    drops: watch::Receiver<u64>,
    /// Whether the `retry:` record went out.
    started: bool,
    /// Whether the stream was dropped (nothing follows the error).
    ended: bool,
}

impl EventFeed {
    /// The next chunk of the body: the `retry:` record first, then the records queued so far (up to
    /// [`SSE_CHUNK`] bytes) as one chunk; an error when a fault drops the stream; `None` at its end.
    async fn next_chunk(&mut self) -> Option<std::io::Result<String>> {
        if self.ended {
            return None;
        }
        if !self.started {
            self.started = true;
            return Some(Ok("retry: 400\n\n".to_owned()));
        }
        loop {
            tokio::select! {
                r = self.rx.recv() => match r {
                    Ok(rec) => {
                        let mut buf = String::from(&*rec);
                        while buf.len() < SSE_CHUNK {
                            match self.rx.try_recv() {
                                Ok(more) => buf.push_str(&more),
                                Err(_) => break,
                            }
                        }
                        return Some(Ok(buf));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(lost = n, "fake salt-api: a slow /events reader lost records");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.drops.changed() => {
                    tracing::debug!("fake salt-api: dropping an /events stream (fault)");
                    self.ended = true;
                    return Some(Err(http::stream_dropped()));
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------ time

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Civil date (y, m, d) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn parts(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (
        y,
        m,
        day,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros(),
    )
}

/// `2026-11-27T07:18:36.090978+00:00` (`iso`) or salt's job `StartTime` `2026, Nov 27 07:17:35.747785`.
fn salt_time(t: SystemTime, iso: bool) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, ss, us) = parts(t);
    if iso {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{us:06}+00:00")
    } else {
        let mon = MONTHS[(m as usize).saturating_sub(1) % 12];
        format!("{y:04}, {mon} {d:02} {hh:02}:{mm:02}:{ss:02}.{us:06}")
    }
}

/// A salt job id for now: `YYYYMMDDhhmmssffffff`.
fn jid_now() -> u128 {
    let (y, m, d, hh, mm, ss, us) = parts(SystemTime::now());
    let ymd = y.max(0) as u128 * 10_000 + u128::from(m) * 100 + u128::from(d);
    let hms = u128::from(hh) * 10_000 + u128::from(mm) * 100 + u128::from(ss);
    (ymd * 1_000_000 + hms) * 1_000_000 + u128::from(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salt_times_and_jids_look_like_salts() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_763_855_747_785);
        assert_eq!(salt_time(t, false), "2026, Nov 27 07:17:35.747785");
        assert_eq!(salt_time(t, true), "2026-11-27T07:17:35.747785+00:00");
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        let j = jid_now().to_string();
        assert_eq!(j.len(), 20, "{j}");
    }

    /// The hand-assembled return records are exactly the events salt publishes, and read back.
    #[test]
    fn return_records_are_salts_events() {
        let (a, b) = (
            MinionId::new("web-01").unwrap(),
            MinionId::new("db-\"x").ok(),
        );
        assert!(b.is_none(), "minion ids never need escaping in a tag");
        let b = MinionId::new("db_02.example").unwrap();
        let call = SaltCall::mutate("cmd.run_all").arg("echo \"hi\"\n").arg(3);
        let entries = vec![
            (
                a,
                json!({"pid": 7, "retcode": 0, "stdout": "hi\n"}),
                json!(0),
                json!(true),
            ),
            (
                b,
                Value::String("ERROR: \u{e9}chec".into()),
                Value::Null,
                json!(false),
            ),
        ];
        let (fun, fun_args) = (json!(call.fun), json!(call.arg));
        let text = return_records(
            "20261127071735747785",
            (&fun, &fun_args),
            "pg",
            "2026-11-27T07:17:35+00:00",
            &entries,
        );
        let records = crate::decode::sse_records(text.as_bytes());
        assert_eq!(records.len(), 2);
        for (rec, (m, ret, rc, ok)) in records.iter().zip(&entries) {
            let tag = format!("salt/job/20261127071735747785/ret/{m}");
            assert_eq!(rec.tag.as_deref(), Some(tag.as_str()));
            let mut data = json!({
                "_stamp": "2026-11-27T07:17:35+00:00", "cmd": "_return", "fun": "cmd.run_all",
                "fun_args": ["echo \"hi\"\n", 3], "id": m.as_str(), "jid": "20261127071735747785",
                "return": ret, "success": ok, "user": "pg",
            });
            if !rc.is_null() {
                data["retcode"] = rc.clone();
            }
            let got: Value = serde_json::from_str(&rec.data).unwrap();
            assert_eq!(got, json!({"data": data, "tag": tag}));
            let ev = crate::decode::job_return_event(rec).unwrap().unwrap();
            assert_eq!(ev.minion, m.as_str());
        }
    }
}
