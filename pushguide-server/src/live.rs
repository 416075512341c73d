//! The live view of a deployment (`GET /deployments/{id}/events`): one [`Feed`] per deployment
//! folds its events into a [`Grid`] and renders each update ONCE into a [`Frame`] (the encoded
//! server-sent event, id = journal sequence) that every client of the deployment shares.
//!
//! - A deployment this service runs: its worker feeds the events of the engine's handle.
//! - A deployment another process runs on the same store (`pushguide deploy`, another
//!   `pushguide serve`): one poller per deployment reads the store's journal after the last
//!   sequence it folded, about every second ([`POLL`]), and ends the feed once the store records
//!   the deployment's end (or marks it interrupted).
//!
//! Frames go to the connected clients through a bounded broadcast channel and stay in a bounded
//! ring for `Last-Event-ID` replay. A client that reconnects after a frame that left the ring,
//! or that falls behind the channel, is sent one full-state frame (the whole grid and status,
//! with the current sequence as its id) and goes on from there: it never silently misses an
//! update, and it never slows the deployment (nothing waits for a client).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use pushguide_core::{Decision, Event};
use pushguide_store::{RecordStore, ServerStore};
use tokio::sync::broadcast;

use crate::grid::{
    batch_cells, batch_marker, batches_table, decision_name, host_cells, hosts_table, Change, Grid,
};
use crate::html::escape;
use crate::status::rfc3339;

/// Frames kept for `Last-Event-ID` replay, at most.
const RING_FRAMES: usize = 1024;
/// Bytes of frames kept for replay, at most (the newest frame is always kept).
const RING_BYTES: usize = 16 << 20;
/// Frames a client may fall behind before it is resynced with the full state.
const CHANNEL: usize = 256;
/// How often the journal of a deployment run elsewhere is read.
pub(crate) const POLL: Duration = Duration::from_secs(1);
/// How long a poller goes on without any client (a page view's client may connect late).
const IDLE: Duration = Duration::from_secs(30);
/// Journal rows read per query.
const ROWS: usize = 4096;
/// A comment line is sent after this long without a frame (proxies close silent connections).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What the status panel shows besides the grid.
#[derive(Clone, Debug, Default)]
pub(crate) struct Panel {
    /// This service runs the deployment: deployers get its decision and stop buttons.
    pub(crate) here: bool,
    /// The last decision taken through this service: who, what, when.
    pub(crate) decided: Option<(String, Decision, SystemTime)>,
}

/// The status panel: state, pause with its decisions, stop buttons (for `deployer`s of a
/// deployment this service runs). The buttons submit the page's `act` form (which carries the
/// session's CSRF token, outside the panel), so the panel is the same for every session.
pub(crate) fn status_panel(g: &Grid, panel: &Panel, deployer: bool) -> String {
    let mut out = format!(
        "<p>State: <strong class=\"state-{}\">{}</strong></p>",
        escape(&g.state.replace(' ', "-")),
        escape(&g.state)
    );
    if let Some((who, d, at)) = &panel.decided {
        let _ = write!(
            out,
            "<p>Decided by {}: {} at {}</p>",
            escape(who),
            decision_name(*d),
            rfc3339(*at)
        );
    }
    let url = format!("/deployments/{}", crate::html::path_segment(&g.id));
    let act = deployer && panel.here;
    if let Some(p) = &g.pause {
        let _ = write!(
            out,
            "<div role=\"alert\">{} host(s) failed {} in batch {}: {}. Over the failure budget.</div>",
            p.failed.len(),
            escape(&p.stage),
            p.batch + 1,
            escape(&p.failed.join(", "))
        );
        if act {
            for d in ["retry", "exclude", "rollback", "abort"] {
                let _ = write!(
                    out,
                    "<button type=\"submit\" form=\"act\" formaction=\"{url}/decide\" \
                     name=\"decision\" value=\"{d}\" class=\"decide\" id=\"decide-{d}\">{}</button>",
                    match d {
                        "retry" => "Retry",
                        "exclude" => "Exclude failed hosts",
                        "rollback" => "Roll back",
                        _ => "Abort",
                    }
                );
            }
        }
    }
    if act && g.outcome.is_none() {
        for (mode, label) in [("stop", "Stop"), ("rollback", "Stop and roll back")] {
            let _ = write!(
                out,
                "<button type=\"submit\" form=\"act\" formaction=\"{url}/stop\" name=\"mode\" \
                 value=\"{mode}\" class=\"stop\" id=\"stop-{mode}\">{label}</button>"
            );
        }
    }
    out
}

/// The form the status panel's buttons submit: the session's CSRF token (the buttons name the
/// action and its value).
pub(crate) fn act_form(g: &Grid, csrf: &str) -> String {
    format!(
        "<form id=\"act\" method=\"post\" action=\"/deployments/{}/stop\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\"></form>",
        crate::html::path_segment(&g.id),
        escape(csrf)
    )
}

/// One update of a deployment's live view, rendered once and shared by every client.
#[derive(Debug)]
pub(crate) struct Frame {
    /// The journal sequence of the last event it shows: the SSE event id.
    pub(crate) seq: u64,
    /// The encoded event for clients who may deploy the template.
    deployer: Bytes,
    /// The encoded event for the others (the same bytes unless the status panel is in it).
    viewer: Bytes,
}

impl Frame {
    /// The encoded server-sent event (`event: update`, `id`, `data` lines) for a client.
    pub(crate) fn bytes(&self, deployer: bool) -> &Bytes {
        if deployer {
            &self.deployer
        } else {
            &self.viewer
        }
    }

    fn new(seq: u64, deployer: String, viewer: Option<String>) -> Self {
        let deployer = encode(seq, &deployer);
        let viewer = viewer.map_or_else(|| deployer.clone(), |v| encode(seq, &v));
        Frame {
            seq,
            deployer,
            viewer,
        }
    }

    fn len(&self) -> usize {
        self.deployer.len()
            + if self.viewer.as_ptr() == self.deployer.as_ptr() {
                0
            } else {
                self.viewer.len()
            }
    }
}

/// One server-sent event: every line of `data` (split at CR and LF) as a `data:` line.
fn encode(seq: u64, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 40);
    let _ = write!(out, "event: update\nid: {seq}\n");
    for line in data.split(['\r', '\n']) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// The rendered rows and status of `changes`: the deployers' and (when it differs) the viewers'.
fn render(g: &Grid, changes: &[Change], panel: &Panel) -> (String, Option<String>) {
    let mut data = String::new();
    let mut status = false;
    let mut all = false;
    for c in changes {
        match c {
            Change::All => all = true,
            Change::Status => status = true,
            _ => {}
        }
    }
    if all {
        // whole tables in their wrappers first: a fragment that starts with a row would be
        // parsed in table context, where a nested table is dropped
        data.push_str(&batches_table(g, true));
        data.push_str(&hosts_table(g, true));
    } else {
        let mut seen = std::collections::HashSet::new();
        for c in changes {
            if !seen.insert(c) {
                continue;
            }
            match c {
                Change::Host(i) => {
                    let _ = write!(
                        data,
                        "<tr id=\"h-{i}\" hx-swap-oob=\"true\">{}</tr>",
                        host_cells(&g.hosts[*i])
                    );
                }
                Change::Batch(b) => {
                    let _ = write!(
                        data,
                        "<tr id=\"b-{b}\" hx-swap-oob=\"true\">{}</tr>{}",
                        batch_cells(&g.batches[*b]),
                        batch_marker(&g.batches[*b], true)
                    );
                }
                Change::Status | Change::All => {}
            }
        }
    }
    if !status {
        return (data, None);
    }
    let with = |deployer: bool| {
        format!(
            "{data}<div id=\"status\" hx-swap-oob=\"true\">{}</div>",
            status_panel(g, panel, deployer)
        )
    };
    if panel.here {
        (with(true), Some(with(false)))
    } else {
        (with(false), None)
    }
}

struct State {
    grid: Grid,
    panel: Panel,
    ring: VecDeque<Arc<Frame>>,
    ring_bytes: usize,
    /// Every frame after this sequence is in the ring.
    floor: u64,
    ended: bool,
    /// The full-state frame at the grid's sequence, once a client needed it.
    resync: Option<Arc<Frame>>,
}

/// A deployment's live view: its grid, the frames of its updates and their clients.
pub(crate) struct Feed {
    state: Mutex<State>,
    tx: broadcast::Sender<Option<Arc<Frame>>>,
    renders: AtomicU64,
    /// When the last client left (a poller ends after [`IDLE`] without clients).
    idle_since: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("seq", &self.seq())
            .field("renders", &self.renders())
            .finish_non_exhaustive()
    }
}

impl Feed {
    /// A feed from `grid` on (its sequence is where replay can start).
    pub(crate) fn new(grid: Grid) -> Arc<Self> {
        let (tx, _) = broadcast::channel(CHANNEL);
        Arc::new(Feed {
            state: Mutex::new(State {
                floor: grid.seq,
                grid,
                panel: Panel::default(),
                ring: VecDeque::new(),
                ring_bytes: 0,
                ended: false,
                resync: None,
            }),
            tx,
            renders: AtomicU64::new(0),
            idle_since: Mutex::new(Some(Instant::now())),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Folds in the deployment's next event; renders the update it makes, if any, once.
    pub(crate) fn push(&self, e: &Event, panel: impl FnOnce() -> Panel) {
        let mut st = self.lock();
        let changes = st.grid.apply(e);
        self.publish(&mut st, &changes, panel);
    }

    /// Folds in event number `seq` of the journal (numbers skipped were events pages do not need).
    pub(crate) fn push_at(&self, seq: u64, e: &Event) {
        let mut st = self.lock();
        if seq <= st.grid.seq {
            return;
        }
        st.grid.seq = seq - 1;
        let changes = st.grid.apply(e);
        self.publish(&mut st, &changes, Panel::default);
    }

    fn publish(&self, st: &mut State, changes: &[Change], panel: impl FnOnce() -> Panel) {
        if changes.is_empty() {
            return;
        }
        st.resync = None;
        if changes.contains(&Change::Status) {
            st.panel = panel();
        }
        let (deployer, viewer) = render(&st.grid, changes, &st.panel);
        self.renders.fetch_add(1, Ordering::Relaxed);
        let frame = Arc::new(Frame::new(st.grid.seq, deployer, viewer));
        st.ring_bytes += frame.len();
        st.ring.push_back(frame.clone());
        while st.ring.len() > 1 && (st.ring.len() > RING_FRAMES || st.ring_bytes > RING_BYTES) {
            if let Some(old) = st.ring.pop_front() {
                st.ring_bytes -= old.len();
                st.floor = old.seq;
            }
        }
        // no client, or every client lagging: nothing waits
        let _ = self.tx.send(Some(frame));
    }

    /// The deployment ended (the events stopped): clients end their stream after the last frame.
    pub(crate) fn end(&self) {
        let mut st = self.lock();
        if !st.ended {
            st.ended = true;
            let _ = self.tx.send(None);
        }
    }

    /// The store says the deployment ended with `outcome` without its end in the journal (a
    /// process that died is marked interrupted): the status shows it, then the feed ends.
    fn end_with(&self, outcome: &str, seq: u64) {
        let mut st = self.lock();
        if st.grid.outcome.is_none() && !st.ended {
            st.grid.outcome = Some(outcome.to_owned());
            st.grid.state = outcome.to_owned();
            st.grid.pause = None;
            st.grid.seq = seq.max(st.grid.seq + 1);
            self.publish(&mut st, &[Change::Status], Panel::default);
        }
        drop(st);
        self.end();
    }

    /// The grid as folded so far.
    pub(crate) fn snapshot(&self) -> Grid {
        self.lock().grid.clone()
    }

    /// The journal sequence folded so far.
    pub(crate) fn seq(&self) -> u64 {
        self.lock().grid.seq
    }

    /// Whether the deployment ended.
    pub(crate) fn ended(&self) -> bool {
        self.lock().ended
    }

    /// How many frames were rendered (each once, whatever the number of clients; full-state
    /// frames for clients that fell behind are not counted).
    pub(crate) fn renders(&self) -> u64 {
        self.renders.load(Ordering::Relaxed)
    }

    /// The full-state frame at the current sequence (rendered once per sequence).
    fn resync(&self, st: &mut State) -> Arc<Frame> {
        if let Some(f) = &st.resync {
            return f.clone();
        }
        let (deployer, viewer) = render(&st.grid, &[Change::All, Change::Status], &st.panel);
        let f = Arc::new(Frame::new(st.grid.seq, deployer, viewer));
        st.resync = Some(f.clone());
        f
    }

    /// A client that saw every frame up to `last` (`Last-Event-ID`; 0: none): what it missed,
    /// then the live frames.
    pub(crate) fn subscribe(self: &Arc<Self>, last: u64, deployer: bool) -> Subscription {
        let mut st = self.lock();
        let rx = self.tx.subscribe();
        let mut pending = VecDeque::new();
        if last < st.grid.seq {
            if last >= st.floor {
                pending.extend(st.ring.iter().filter(|f| f.seq > last).cloned());
            } else {
                let f = self.resync(&mut st);
                pending.push_back(f);
            }
        }
        let done = st.ended;
        drop(st);
        *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        Subscription {
            feed: self.clone(),
            rx,
            last_sent: pending.back().map_or(last, |f| f.seq),
            pending,
            deployer,
            done,
        }
    }

    fn clients(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// One client's view of a [`Feed`].
pub(crate) struct Subscription {
    feed: Arc<Feed>,
    rx: broadcast::Receiver<Option<Arc<Frame>>>,
    pending: VecDeque<Arc<Frame>>,
    last_sent: u64,
    deployer: bool,
    done: bool,
}

impl Subscription {
    /// The next frame for this client; `None` once the deployment ended and every frame was
    /// given. Waits for the next update.
    pub(crate) async fn next(&mut self) -> Option<Arc<Frame>> {
        loop {
            if let Some(f) = self.pending.pop_front() {
                return Some(f);
            }
            if self.done {
                return None;
            }
            match self.rx.recv().await {
                Ok(Some(f)) if f.seq > self.last_sent => {
                    self.last_sent = f.seq;
                    return Some(f);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(broadcast::error::RecvError::Closed) => {
                    self.done = true;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let mut st = self.feed.lock();
                    tracing::debug!(skipped = n, "a live view client fell behind: resync");
                    let f = self.feed.resync(&mut st);
                    if st.ended {
                        self.done = true;
                    }
                    // the frames still queued are older than the full state: a fresh receiver
                    // (frames are sent under the same lock, so none falls between)
                    self.rx = self.feed.tx.subscribe();
                    drop(st);
                    if f.seq > self.last_sent {
                        self.last_sent = f.seq;
                        return Some(f);
                    }
                }
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // this receiver still counts while it is dropped
        if self.feed.clients() <= 1 {
            *self
                .feed
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
    }
}

/// A connected live view client, counted in the metrics while it lives.
struct SseClient(Arc<crate::Metrics>);

impl SseClient {
    fn new(metrics: Arc<crate::Metrics>) -> Self {
        metrics.sse_clients_inc();
        SseClient(metrics)
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        self.0.sse_clients_dec();
    }
}

/// The `text/event-stream` answer of one client: its frames' shared bytes, a comment line after
/// [`KEEP_ALIVE`] of silence, the end with the deployment's.
pub(crate) fn sse_response(sub: Subscription, metrics: Arc<crate::Metrics>) -> Response {
    let client = SseClient::new(metrics);
    let stream = futures_util::stream::unfold((sub, client), |(mut sub, client)| async move {
        let bytes = match tokio::time::timeout(KEEP_ALIVE, sub.next()).await {
            Ok(Some(f)) => f.bytes(sub.deployer).clone(),
            Ok(None) => return None,
            Err(_) => Bytes::from_static(b":\n\n"),
        };
        Some((Ok::<_, Infallible>(bytes), (sub, client)))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The feeds of deployments other processes run, followed by this service while clients watch.
#[derive(Default)]
pub(crate) struct Remote {
    feeds: Mutex<HashMap<String, Weak<Feed>>>,
}

impl Remote {
    /// The feed of deployment `id`, run by another process on `store`: the one already followed,
    /// or a new one (folded from the journal so far, followed by a poller task) — `None` when the
    /// store has no such deployment or it ended.
    pub(crate) async fn feed(
        self: &Arc<Self>,
        store: &Arc<dyn ServerStore>,
        id: &str,
    ) -> Result<Option<Arc<Feed>>, crate::Error> {
        if let Some(f) = self.get(id) {
            return Ok(Some(f));
        }
        let grid = start_grid(store.as_ref(), id).await?;
        let Some(grid) = grid else { return Ok(None) };
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = feeds.get(id).and_then(Weak::upgrade) {
            return Ok(Some(f));
        }
        let feed = Feed::new(grid);
        feeds.insert(id.to_owned(), Arc::downgrade(&feed));
        drop(feeds);
        tracing::debug!(deployment = id, "following a deployment run elsewhere");
        tokio::spawn(poll(
            self.clone(),
            store.clone(),
            id.to_owned(),
            feed.clone(),
        ));
        Ok(Some(feed))
    }

    fn get(&self, id: &str) -> Option<Arc<Feed>> {
        self.feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .and_then(Weak::upgrade)
            .filter(|f| !f.ended())
    }

    fn remove(&self, id: &str, feed: &Arc<Feed>) {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if feeds
            .get(id)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(feed)))
        {
            feeds.remove(id);
        }
    }
}

/// The grid of deployment `id` as the store's journal has it; `None` if it ended or is unknown.
async fn start_grid(store: &dyn RecordStore, id: &str) -> Result<Option<Grid>, crate::Error> {
    let Some(d) = store.deployment(id).await? else {
        return Ok(None);
    };
    if d.outcome.is_some() {
        return Ok(None);
    }
    let mut rows = store.journal_after(id, 0, usize::MAX).await?;
    let mut grid = if rows.first().is_some_and(|(seq, _)| *seq == 1) {
        Grid::new(id)
    } else {
        // journaled by a build that kept no events: the store's tables, then what follows
        let hosts = store.host_results(id).await?;
        let stages = store.host_stage_results(id).await?;
        let mut g = Grid::from_store(&d, &hosts, &stages);
        g.seq = d.events;
        rows.retain(|(seq, _)| *seq > d.events);
        g
    };
    for (seq, e) in &rows {
        grid.seq = seq - 1;
        grid.apply(e);
    }
    Ok(Some(grid))
}

/// Follows deployment `id` in the store's journal into `feed` until it ends, or nobody watched
/// it for [`IDLE`]. Between reads it waits for the store to say the journal may have grown
/// ([`RecordStore::wait_for_journal`]), [`POLL`] at the longest.
async fn poll(remote: Arc<Remote>, store: Arc<dyn ServerStore>, id: String, feed: Arc<Feed>) {
    loop {
        store.wait_for_journal(&id, POLL).await;
        let idle = *feed
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if feed.clients() == 0 && idle.is_some_and(|t| t.elapsed() >= IDLE) {
            tracing::debug!(deployment = id, "nobody watches a deployment run elsewhere");
            // a client that took this feed just now sees its end and reconnects to a new one
            feed.end();
            break;
        }
        loop {
            let after = feed.seq();
            let read = async {
                // the end first: once it is seen, the rows read after it are all there are
                let d = store.deployment(&id).await?;
                let rows = store.journal_after(&id, after, ROWS).await?;
                Ok::<_, pushguide_store::Error>((d, rows))
            }
            .await;
            let (d, rows) = match read {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(deployment = id, error = %e, "cannot read the journal");
                    break;
                }
            };
            let full = rows.len() == ROWS;
            for (seq, e) in &rows {
                feed.push_at(*seq, e);
            }
            if full {
                continue;
            }
            match d {
                None => {
                    feed.end();
                    remote.remove(&id, &feed);
                    return;
                }
                Some(d) => {
                    if let Some(outcome) = &d.outcome {
                        feed.end_with(outcome, d.events);
                        remote.remove(&id, &feed);
                        return;
                    }
                }
            }
            break;
        }
    }
    remote.remove(&id, &feed);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::SystemTime;

    use pushguide_core::{DeploymentOutcome, EventKind, MinionId, Stage};
    use pushguide_store::SqliteStore;

    use super::*;

    fn ev(kind: EventKind) -> Event {
        Event {
            at: SystemTime::now(),
            deployment: Arc::from("d1"),
            kind,
        }
    }

    fn m(i: usize) -> MinionId {
        MinionId::new(&format!("web-{i:04}")).unwrap()
    }

    /// A deployment of `hosts` hosts in one batch whose deploy stage fails on the first host.
    fn events(hosts: usize) -> Vec<Event> {
        let all: Vec<MinionId> = (0..hosts).map(m).collect();
        vec![
            ev(EventKind::DeploymentStarted {
                template: "shop".into(),
                version: "2.0".into(),
                user: "alice".into(),
                dry_run: false,
                rollback: false,
            }),
            ev(EventKind::Prepared {
                hosts,
                batches: 1,
                excluded: vec![],
                plan: vec![all.clone()],
                left_out: vec![],
            }),
            ev(EventKind::BatchStarted {
                batch: 0,
                hosts,
                minions: all.clone(),
            }),
            ev(EventKind::StageStarted {
                batch: Some(0),
                stage: Stage::Deploy,
                hosts,
            }),
            ev(EventKind::HostSucceeded { host: m(1) }),
            ev(EventKind::HostFailed {
                host: m(0),
                stage: Stage::Deploy,
                fun: Some("cmd.run".into()),
                reason: "exit 1\n<b>down</b>".into(),
            }),
            ev(EventKind::StageFinished {
                batch: Some(0),
                stage: Stage::Deploy,
                ok: hosts - 1,
                failed: 1,
            }),
            ev(EventKind::DecisionNeeded {
                batch: 0,
                stage: Stage::Deploy,
                failed: vec![m(0)],
            }),
            ev(EventKind::DecisionTaken {
                decision: Decision::Exclude,
            }),
            ev(EventKind::DeploymentFinished {
                outcome: DeploymentOutcome::PartiallyApplied,
            }),
        ]
    }

    fn here() -> Panel {
        Panel {
            here: true,
            decided: None,
        }
    }

    /// Every frame of `sub` to its end.
    async fn drain(mut sub: Subscription) -> Vec<Arc<Frame>> {
        let mut out = Vec::new();
        while let Some(f) = sub.next().await {
            out.push(f);
        }
        out
    }

    fn text(frames: &[Arc<Frame>], deployer: bool) -> String {
        frames
            .iter()
            .map(|f| std::str::from_utf8(f.bytes(deployer)).unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn every_client_shares_each_frame_rendered_once() {
        let mut renders = Vec::new();
        for clients in [0usize, 1, 50] {
            let feed = Feed::new(Grid::new("d1"));
            let subs: Vec<Subscription> = (0..clients)
                .map(|i| feed.subscribe(0, i % 2 == 0))
                .collect();
            for e in events(100) {
                feed.push(&e, here);
            }
            feed.end();
            renders.push(feed.renders());
            let mut seen: Vec<Vec<Arc<Frame>>> = Vec::new();
            for s in subs {
                seen.push(drain(s).await);
            }
            for (i, frames) in seen.iter().enumerate() {
                assert_eq!(frames.len() as u64, feed.renders());
                // the same frames, not copies
                for (a, b) in frames.iter().zip(&seen[0]) {
                    assert!(Arc::ptr_eq(a, b));
                }
                let deployer = i % 2 == 0;
                assert_eq!(text(frames, deployer), text(&seen[i % 2], deployer));
            }
            if clients >= 2 {
                let d = text(&seen[0], true);
                let v = text(&seen[1], false);
                assert!(d.contains("id=\"decide-exclude\""), "{d}");
                assert!(!v.contains("decide-"), "viewers get no buttons: {v}");
                assert!(!d.contains("csrf"), "no session's token in a shared frame");
                assert!(d.contains("&lt;b&gt;down"), "{d}");
                // a line break in a salt output stays inside the event's data
                assert!(d.contains("<small>exit 1\ndata: &lt;b&gt;down"), "{d}");
            }
        }
        // events that change the page: all but the host success
        assert_eq!(
            renders,
            [9, 9, 9],
            "one render per update, whatever the clients"
        );
    }

    #[tokio::test]
    async fn a_stage_of_a_whole_batch_is_one_swap_and_a_host_of_its_own_a_row() {
        let feed = Feed::new(Grid::new("d1"));
        let sub = feed.subscribe(0, true);
        for e in events(1000) {
            feed.push(&e, here);
        }
        feed.end();
        let frames = drain(sub).await;
        let t = |seq: u64| {
            let f = frames.iter().find(|f| f.seq == seq).unwrap();
            std::str::from_utf8(f.bytes(true)).unwrap().to_owned()
        };
        // 4: the deploy stage starts for the batch of 1,000 hosts
        let started = t(4);
        assert_eq!(started.matches("<tr id=\"h-").count(), 0, "{started}");
        assert!(
            started.contains(
                "<tr id=\"bm-0\" class=\"bm\" hidden data-s0=\"pending\" data-s1=\"running\""
            ),
            "{started}"
        );
        assert!(started.len() < 600, "{} bytes", started.len());
        // 6: web-0000 failed: its row
        let failed = t(6);
        assert_eq!(failed.matches("<tr id=\"h-").count(), 1, "{failed}");
        assert!(failed.contains("<tr id=\"h-0\" hx-swap-oob=\"true\"><td>web-0000</td><td>1</td><td class=\"state-pending\">pending</td><td class=\"state-failed\">failed</td>"), "{failed}");
        // 7: the stage ends: the batch's flow, no host row
        let ended = t(7);
        assert_eq!(ended.matches("<tr id=\"h-").count(), 0, "{ended}");
        assert!(ended.contains("data-s1=\"ok\""), "{ended}");
        // the grid itself (and the JSON twin) still has each host's state
        let g = feed.snapshot();
        assert_eq!(g.hosts[1].stages[1], "ok");
        assert_eq!(g.hosts[0].stages[1], "failed");
        // the full page: hosts that follow the flow show it through the marker
        let page = hosts_table(&g, false);
        assert!(page.contains("<tr id=\"h-1\"><td>web-0001</td><td>1</td><td class=\"s0 inh\"><i>pending</i><i>running</i><i>ok</i></td><td class=\"s1 inh\">"), "{}", &page[..600]);
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_gets_the_full_state_then_goes_on() {
        let feed = Feed::new(Grid::new("d1"));
        let mut slow = feed.subscribe(0, false);
        let all = events(10);
        for e in &all[..4] {
            feed.push(e, here);
        }
        // far more updates than the channel holds, none read
        for i in 0..CHANNEL + 10 {
            feed.push(
                &ev(EventKind::HostRollbackFailed {
                    host: m(i % 10),
                    reason: format!("attempt {i}"),
                }),
                here,
            );
        }
        let at = feed.seq();
        let first = slow.next().await.unwrap();
        assert_eq!(first.seq, at, "a full-state frame at the current sequence");
        let body = std::str::from_utf8(first.bytes(false)).unwrap();
        assert!(
            body.contains("<div id=\"hosts-wrap\" hx-swap-oob=\"true\"><table id=\"hosts\">"),
            "{body}"
        );
        assert!(
            body.contains("<div id=\"status\" hx-swap-oob=\"true\">"),
            "{body}"
        );
        assert!(
            body.contains(&format!("attempt {}", CHANNEL + 9)),
            "the latest state"
        );
        // then the next updates, in order, to the end
        for e in &all[4..] {
            feed.push(e, here);
        }
        feed.end();
        let rest = drain(slow).await;
        let seqs: Vec<u64> = rest.iter().map(|f| f.seq).collect();
        assert_eq!(seqs.first(), Some(&(at + 2)), "{seqs:?}");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert_eq!(seqs.last(), Some(&feed.seq()));
    }

    #[tokio::test]
    async fn a_reconnect_replays_exactly_what_was_missed_or_resyncs_past_the_ring() {
        let feed = Feed::new(Grid::new("d1"));
        let first = feed.subscribe(0, true);
        for e in events(20) {
            feed.push(&e, here);
        }
        feed.end();
        let frames = drain(first).await;
        // reconnect after the third frame: the others, the same bytes
        let again = drain(feed.subscribe(frames[2].seq, true)).await;
        assert_eq!(again.len(), frames.len() - 3);
        for (a, b) in again.iter().zip(&frames[3..]) {
            assert_eq!(a.bytes(true), b.bytes(true));
        }
        // up to date: nothing
        assert!(drain(feed.subscribe(feed.seq(), true)).await.is_empty());

        // a ring that forgot the frames after `last`: the full state instead
        let feed = Feed::new(Grid::new("d1"));
        for e in &events(20)[..4] {
            feed.push(e, here);
        }
        for i in 0..RING_FRAMES + 5 {
            feed.push(
                &ev(EventKind::HostRollbackFailed {
                    host: m(i % 20),
                    reason: format!("attempt {i}"),
                }),
                here,
            );
        }
        let mut late = feed.subscribe(2, true);
        let f = late.next().await.unwrap();
        assert_eq!(f.seq, feed.seq());
        assert!(std::str::from_utf8(f.bytes(true))
            .unwrap()
            .contains("<div id=\"hosts-wrap\" hx-swap-oob=\"true\"><table id=\"hosts\">"));
        // but one after the ring's start is replayed exactly
        let floor = feed.lock().floor;
        let mut near = feed.subscribe(floor, true);
        assert_eq!(near.next().await.unwrap().seq, floor + 1);
    }

    #[tokio::test]
    async fn a_journal_is_followed_by_sequence_and_an_interrupted_end_is_shown() {
        let feed = Feed::new(Grid::new("d1"));
        let sub = feed.subscribe(0, true);
        let all = events(5);
        // sequences as the store numbers them: the host success (5) is not in the journal
        for (i, e) in all.iter().enumerate().take(4) {
            feed.push_at(i as u64 + 1, e);
        }
        feed.push_at(6, &all[5]);
        feed.push_at(6, &all[5]);
        feed.end_with("interrupted", 9);
        let frames = drain(sub).await;
        let seqs: Vec<u64> = frames.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 6, 9]);
        let last = std::str::from_utf8(frames[5].bytes(true)).unwrap();
        assert!(last.contains("state-interrupted"), "{last}");
        assert!(
            !last.contains("stop-"),
            "no buttons for a deployment run elsewhere"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deployment_of_another_process_is_followed_in_the_store_until_it_is_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.db");
        let sqlite = Arc::new(SqliteStore::open(&db).unwrap());
        let store: Arc<dyn ServerStore> = sqlite.clone();
        let all = events(4);
        sqlite.append_events(&all[..3]).unwrap();
        let remote = Arc::new(Remote::default());
        let feed = remote.feed(&store, "d1").await.unwrap().unwrap();
        // one poller per deployment: a second page gets the same feed
        let same = remote.feed(&store, "d1").await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&feed, &same));
        assert_eq!(feed.seq(), 3, "folded from the journal so far");
        assert_eq!(feed.snapshot().hosts.len(), 4);
        let mut sub = feed.subscribe(3, true);
        // the other process goes on: the stage starts (4), a host succeeds (5, not journaled),
        // another fails (6)
        sqlite.append_events(&all[3..6]).unwrap();
        let f = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f.seq, 4);
        let f = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f.seq, 6);
        assert!(std::str::from_utf8(f.bytes(true))
            .unwrap()
            .contains("state-failed"));
        // the process died and the store marks it interrupted: the status shows it, the end
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute(
                "UPDATE deployments SET outcome = 'interrupted', ended_ms = 1 WHERE id = 'd1'",
                [],
            )
            .unwrap();
        let f = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert!(std::str::from_utf8(f.bytes(true))
            .unwrap()
            .contains("state-interrupted"));
        assert!(tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .is_none());
        assert!(feed.ended());
        // an ended deployment has no feed
        assert!(remote.feed(&store, "d1").await.unwrap().is_none());
    }

    /// The poller of a deployment run elsewhere reads the journal when the store says it grew
    /// (`wait_for_journal`), not on a sleep of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deployment_run_elsewhere_is_read_when_the_store_wakes_the_view() {
        let woken = Arc::new(crate::woken::Woken::new(
            SqliteStore::open_in_memory().unwrap(),
        ));
        let store: Arc<dyn ServerStore> = woken.clone();
        let all = events(4);
        woken.inner.append_events(&all[..3]).unwrap();
        let remote = Arc::new(Remote::default());
        let feed = remote.feed(&store, "d1").await.unwrap().unwrap();
        assert_eq!(feed.seq(), 3);
        let mut sub = feed.subscribe(3, true);
        woken.inner.append_events(&all[3..4]).unwrap();
        assert!(
            tokio::time::timeout(POLL * 2, sub.next()).await.is_err(),
            "read without a wake-up: the poller slept on its own"
        );
        woken.journal.notify_one();
        let f = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f.seq, 4);
    }
}
