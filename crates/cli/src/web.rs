//! The dashboard and service endpoints of `writeback run` (axum): server-rendered pages that
//! read the state store, `/metrics`, `/healthz`, `/readyz`, and "sync now" for the daemon.
//!
//! Pages work without JavaScript and load nothing from the network; every value is escaped
//! (maud). With `dashboard.token` set, every page, `/metrics` and every POST need the token:
//! `Authorization: Bearer …`, or the session cookie the login form sets (a random value of
//! this process, never the token). POSTs from another origin are refused (CSRF).

use crate::config::Config;
use crate::cycle::{CycleError, CycleReport};
use crate::metrics::{cycle_kind, Metrics, GOOD};
use crate::render::{action_lines, counts_line, decision_text, state_text};
use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use wb_model::{AdState, Decision, Fate, GroupOutcome, Plan};
use wb_store::{DriftRecord, RunRecord, RunStatus, Store, StoreError};

/// The session cookie set by the login form.
const COOKIE: &str = "writeback_session";
/// How many runs the overview lists.
const HISTORY: usize = 25;
/// How far back the overview and a group's page show drift.
const DRIFT_WINDOW: Duration = Duration::from_secs(24 * 3600);
const GROUP_DRIFT_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// The daemon's side of the dashboard: it reports each cycle here and wakes up when
/// "sync now" is pressed.
pub struct Dashboard {
    shared: Arc<Shared>,
    sync_rx: mpsc::Receiver<()>,
}

struct Shared {
    /// Set at start, and again by a configuration reload.
    mode: Mutex<Mode>,
    state: PathBuf,
    token: Option<String>,
    session: String,
    metrics: Metrics,
    live: Mutex<Live>,
    store: Mutex<Option<Store>>,
    sync_tx: mpsc::Sender<()>,
}

#[derive(Clone, Copy)]
struct Mode {
    staging: bool,
    interval: Duration,
}

/// What the daemon knows that the store does not.
#[derive(Default)]
struct Live {
    last_success: Option<OffsetDateTime>,
    last_cycle: Option<LastCycle>,
    next_cycle: Option<OffsetDateTime>,
    failures: u32,
    last_error: Option<String>,
    /// The full plan (every member's fate) of the latest cycle that planned: the store
    /// keeps plans slimmed. A quiet cycle changes nothing, so it keeps the one before.
    plan: Option<Arc<Plan>>,
}

struct LastCycle {
    run: Option<i64>,
    kind: &'static str,
    status: String,
    finished: OffsetDateTime,
    took: Duration,
}

impl Dashboard {
    /// Starts the server on `dashboard.listen` (none when the dashboard is off). Errors name
    /// the key.
    pub async fn start(cfg: &Config) -> Result<Dashboard, String> {
        let (sync_tx, sync_rx) = mpsc::channel(1);
        let metrics = Metrics::new();
        let mut live = Live::default();
        let store = match Store::open(&cfg.state) {
            Ok(s) => {
                if let Ok(Some(at)) = s.last_finished(&GOOD) {
                    metrics.succeeded_at(at);
                    live.last_success = Some(at);
                }
                Some(s)
            }
            Err(e) => {
                tracing::warn!(error = %e, "dashboard: cannot open the state store yet");
                None
            }
        };
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode {
                staging: cfg.staging,
                interval: cfg.interval,
            }),
            state: cfg.state.clone(),
            token: cfg.dashboard.token.as_ref().map(|t| t.expose().to_string()),
            session: random_hex(32),
            metrics,
            live: Mutex::new(live),
            store: Mutex::new(store),
            sync_tx,
        });
        if let Some(addr) = cfg.dashboard.listen {
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                // The default address may be another writeback's on this host: syncing
                // matters more than the dashboard. An address the file names must work.
                Err(e) if cfg.dashboard.listen_is_default => {
                    tracing::warn!(%addr, error = %e, "the dashboard's default address is taken: running without the dashboard (set dashboard.listen, or enabled = false)");
                    return Ok(Dashboard { shared, sync_rx });
                }
                Err(e) => return Err(format!("dashboard.listen: cannot listen on {addr}: {e}")),
            };
            let local = listener.local_addr().unwrap_or(addr);
            let app = router(shared.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "the dashboard server stopped");
                }
            });
            tracing::info!(
                url = %format!("http://{local}/"),
                token = shared.token.is_some(),
                "dashboard listening"
            );
        }
        Ok(Dashboard { shared, sync_rx })
    }

    /// The daemon reloaded its configuration: staging and interval as they now are.
    pub fn reconfigured(&self, cfg: &Config) {
        *lock(&self.shared.mode) = Mode {
            staging: cfg.staging,
            interval: cfg.interval,
        };
    }

    /// A cycle that ran: into the metrics and the overview.
    pub fn cycle_done(&self, report: CycleReport, took: Duration) {
        self.shared.metrics.cycle_done(&report, took);
        let kind = cycle_kind(&report);
        let now = OffsetDateTime::now_utc();
        let mut live = lock(&self.shared.live);
        if GOOD.contains(&report.status) {
            live.last_success = Some(now);
        }
        live.failures = 0;
        live.last_error = None;
        live.last_cycle = Some(LastCycle {
            run: report.run_id,
            kind,
            status: report.status.as_str().to_string(),
            finished: now,
            took,
        });
        if kind != "quiet" || live.plan.is_none() {
            live.plan = Some(report.plan);
        }
    }

    /// A cycle that could not run.
    pub fn cycle_failed(&self, e: &CycleError, took: Duration) {
        self.shared.metrics.cycle_failed(e, took);
        let mut live = lock(&self.shared.live);
        live.failures += 1;
        live.last_error = Some(e.to_string());
        live.last_cycle = Some(LastCycle {
            run: None,
            kind: "unknown",
            status: RunStatus::Failed.as_str().to_string(),
            finished: OffsetDateTime::now_utc(),
            took,
        });
    }

    /// When the daemon will start the next cycle.
    pub fn next_cycle_at(&self, at: tokio::time::Instant) {
        let wait = at.saturating_duration_since(tokio::time::Instant::now());
        lock(&self.shared.live).next_cycle = Some(OffsetDateTime::now_utc() + wait);
    }

    /// Resolves when "sync now" was pressed (at once if it was pressed during a cycle).
    pub async fn sync_requested(&mut self) {
        if self.sync_rx.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/runs/{id}", get(run_page))
        .route("/groups/{id}", get(group_page))
        .route("/sync", post(sync_now))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(shared)
}

// ---- access ----

/// Equal in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Shared {
    /// Whether the request carries the token (or the session of a login), when one is set.
    fn allowed(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        bearer.is_some_and(|b| same(b.trim(), token))
            || cookie(headers, COOKIE).is_some_and(|c| same(c, &self.session))
    }
}

/// A POST another site's page made the browser send (`Origin` or `Sec-Fetch-Site` say so).
fn cross_site(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| s == "cross-site" || s == "same-site")
    {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => false,
        Some(origin) => {
            let origin_host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            origin_host.is_none() || origin_host != host
        }
    }
}

fn login_required(shared: &Shared, problem: Option<&str>) -> Response {
    let body = page(
        "Sign in",
        shared,
        html! {
            h1 { "Sign in" }
            @if let Some(p) = problem { p.error { (p) } }
            p { "This dashboard is protected by the token of " code { "dashboard.token" } "." }
            form method="post" action="/login" {
                label for="token" { "Token " }
                input #token type="password" name="token" autocomplete="current-password" autofocus;
                " "
                button type="submit" { "Sign in" }
            }
        },
    );
    (StatusCode::UNAUTHORIZED, body).into_response()
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login_page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if shared.token.is_none() || shared.allowed(&headers) {
        return Redirect::to("/").into_response();
    }
    login_required(&shared, None)
}

async fn login(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if cross_site(&headers) {
        return forbidden("cross-site request refused");
    }
    let Some(token) = &shared.token else {
        return Redirect::to("/").into_response();
    };
    if !same(form.token.trim(), token) {
        tracing::warn!("dashboard: sign-in with a wrong token");
        return login_required(&shared, Some("That is not the token."));
    }
    let mut resp = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        shared.session
    )) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn logout(headers: HeaderMap) -> Response {
    if cross_site(&headers) {
        return forbidden("cross-site request refused");
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "writeback_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    resp
}

fn forbidden(why: &str) -> Response {
    (StatusCode::FORBIDDEN, format!("forbidden: {why}\n")).into_response()
}

// ---- service endpoints ----

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let (last, failures, error) = {
        let live = lock(&shared.live);
        (live.last_success, live.failures, live.last_error.clone())
    };
    // Cycles failing (the DC or Graph unreachable): not ready from the first failure, not
    // only once 3 intervals have passed — a check polling /readyz sees the outage at once.
    if failures > 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the last {failures} cycle(s) failed: {}\n",
                error.as_deref().unwrap_or("unknown error")
            ),
        )
            .into_response();
    }
    let limit = lock(&shared.mode).interval * 3;
    match last {
        Some(at) if OffsetDateTime::now_utc() - at <= limit => {
            (StatusCode::OK, "ready\n").into_response()
        }
        Some(at) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the last cycle that ran to its end finished at {} (more than 3 intervals ago)\n",
                fmt_time(at)
            ),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no cycle has run to its end yet\n",
        )
            .into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !shared.allowed(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "the dashboard token is required (Authorization: Bearer …)\n",
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
        .into_response()
}

async fn sync_now(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if cross_site(&headers) {
        return forbidden("cross-site request refused");
    }
    if !shared.allowed(&headers) {
        tracing::warn!("dashboard: sync now refused (no token)");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "the dashboard token is required\n",
        )
            .into_response();
    }
    // A full channel means a request is already waiting: one cycle serves both.
    let _ = shared.sync_tx.try_send(());
    tracing::info!("dashboard: sync now requested");
    Redirect::to("/?sync=requested").into_response()
}

async fn not_found(State(shared): State<Arc<Shared>>) -> Response {
    error_page(&shared, StatusCode::NOT_FOUND, "No such page.")
}

// ---- pages ----

/// Runs a read on the store (opened once, reopened after an error) off the async threads.
async fn read<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let mut slot = lock(&shared.store);
        if slot.is_none() {
            *slot = Some(Store::open(&shared.state).map_err(|e| e.to_string())?);
        }
        let Some(store) = slot.as_ref() else {
            return Err("state store not open".to_string());
        };
        let r = f(store).map_err(|e| e.to_string());
        if r.is_err() {
            *slot = None;
        }
        r
    })
    .await
    .map_err(|e| format!("the store read did not finish: {e}"))?
}

fn error_page(shared: &Shared, status: StatusCode, message: &str) -> Response {
    let body = page(
        "Error",
        shared,
        html! { h1 { (status.as_str()) } p.error { (message) } p { a href="/" { "Back to the overview" } } },
    );
    (status, body).into_response()
}

#[derive(serde::Deserialize, Default)]
struct OverviewQuery {
    sync: Option<String>,
}

/// What the overview reads from the store.
struct OverviewData {
    runs: Vec<RunRecord>,
    plan: Option<Plan>,
    drift: Vec<DriftRecord>,
}

async fn overview(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<OverviewQuery>,
) -> Response {
    if !shared.allowed(&headers) {
        return login_required(&shared, None);
    }
    let live_plan = lock(&shared.live).plan.clone();
    let want_plan = live_plan.is_none();
    let data = read(&shared, move |s| {
        Ok(OverviewData {
            runs: s.run_summaries(HISTORY)?,
            plan: if want_plan { s.last_outcomes()? } else { None },
            drift: s.drift_since(OffsetDateTime::now_utc() - DRIFT_WINDOW)?,
        })
    })
    .await;
    let data = match data {
        Ok(d) => d,
        Err(e) => {
            return error_page(
                &shared,
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("state store: {e}"),
            )
        }
    };
    let plan: Option<Arc<Plan>> = live_plan.or(data.plan.map(Arc::new));
    let mut drift_per_group: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &data.drift {
        *drift_per_group.entry(d.event.group.as_str()).or_default() += 1;
    }
    let body = html! {
        h1 { "writeback" }
        @if q.sync.as_deref() == Some("requested") {
            p.notice { "Sync requested: a cycle starts now (or right after the one running)." }
        }
        (state_section(&shared, data.runs.first()))
        section {
            h2 { "Groups" }
            @match &plan {
                None => p { "No plan yet: the first cycle has not finished." },
                Some(p) => (groups_table(p, &drift_per_group)),
            }
        }
        @if let Some(p) = &plan {
            (orphaned_and_foreign(p))
        }
        section {
            h2 { "Drift of the last 24 hours" }
            (drift_table(&data.drift, true))
        }
        section {
            h2 { "Run history" }
            (runs_table(&data.runs))
        }
    };
    page("Overview", &shared, body).into_response()
}

fn state_section(shared: &Shared, last_run: Option<&RunRecord>) -> Markup {
    let mode = *lock(&shared.mode);
    let live = lock(&shared.live);
    let now = OffsetDateTime::now_utc();
    html! {
        section.state {
            h2 { "State" }
            table.kv {
                tr { th { "mode" } td {
                    @if mode.staging { span.badge.warn { "staging" } " imports and plans, writes nothing" }
                    @else { span.badge.ok { "active" } " writes to AD" }
                } }
                tr { th { "last cycle" } td {
                    @match (&live.last_cycle, last_run) {
                        (Some(c), _) => {
                            @if let Some(id) = c.run { a href=(format!("/runs/{id}")) { "run " (id) } " · " }
                            (status_badge(&c.status)) " " (c.kind) " cycle, finished "
                            (fmt_time(c.finished)) " (" (ago(now - c.finished)) "), took "
                            (format!("{:.1} s", c.took.as_secs_f64()))
                        }
                        (None, Some(r)) => {
                            a href=(format!("/runs/{}", r.id)) { "run " (r.id) } " · "
                            (status_badge(r.status.as_str())) " " (r.mode) ", finished " (fmt_time(r.finished_at))
                            " (before this daemon started)"
                        }
                        (None, None) => { "none yet" }
                    }
                } }
                tr { th { "next cycle" } td {
                    @match live.next_cycle {
                        Some(t) if t > now => { (fmt_time(t)) " (in " (secs(t - now)) ")" }
                        Some(_) => { "running now" }
                        None => { "running now (the first one)" }
                    }
                    " · every " (humantime::format_duration(mode.interval))
                } }
                tr { th { "lag" } td {
                    @match live.last_success {
                        Some(t) => { (secs(now - t)) " since the last cycle that ran to its end" }
                        None => { "no cycle has run to its end yet" }
                    }
                } }
                @if live.failures > 0 {
                    tr { th { "failing" } td.error {
                        (live.failures) " cycle(s) in a row failed"
                        @if let Some(e) = &live.last_error { ": " (e) }
                    } }
                }
            }
            form.sync method="post" action="/sync" {
                button type="submit" { "Sync now" }
                " runs a cycle at once"
            }
        }
    }
}

fn groups_table(p: &Plan, drift: &BTreeMap<&str, usize>) -> Markup {
    html! {
        table.list {
            thead { tr { th { "group" } th { "AD" } th.num { "members" } th.num { "drift (24h)" } th { "decision" } th.num { "errors" } } }
            tbody {
                @for g in &p.groups {
                    tr {
                        td { a href=(group_href(&g.id)) { (g.name) } }
                        td { (state_text(&g.ad_state)) }
                        td.num { @if g.decision.is_written() { (g.written_count) "/" (g.member_count) } @else { "-" } }
                        td.num { (drift.get(g.id.as_str()).copied().unwrap_or(0)) }
                        td { (decision_text(&g.decision)) }
                        td.num { @if g.errors.is_empty() { "0" } @else { span.error { (g.errors.len()) } } }
                    }
                }
            }
        }
    }
}

fn orphaned_and_foreign(p: &Plan) -> Markup {
    let orphaned: Vec<&GroupOutcome> = p
        .groups
        .iter()
        .filter(|g| g.ad_state == AdState::Orphaned)
        .collect();
    html! {
        section {
            h2 { "Orphaned" }
            p.hint { "Kept in AD, no longer updated (writeback is off for the group, or it left scope)." }
            @if orphaned.is_empty() { p { "None." } } @else {
                ul { @for g in &orphaned { li { a href=(group_href(&g.id)) { (g.name) } " — " code { (g.ad_dn.as_deref().unwrap_or("")) } } } }
            }
            h2 { "Foreign objects" }
            p.hint { "In the managed OUs, not writeback's: never touched." }
            @if p.foreign.is_empty() { p { "None." } } @else {
                ul { @for f in &p.foreign { li { code { (f.dn) } " — " (f.reason) } } }
            }
        }
    }
}

fn drift_table(records: &[DriftRecord], with_group: bool) -> Markup {
    if records.is_empty() {
        return html! { p { "None: AD holds what writeback wrote." } };
    }
    html! {
        table.list {
            thead { tr { th { "time" } th { "run" } @if with_group { th { "group" } } th { "kind" } th { "detail" } } }
            tbody {
                @for r in records {
                    tr {
                        td { (fmt_time(r.at)) }
                        td { a href=(format!("/runs/{}", r.run)) { (r.run) } }
                        @if with_group { td { a href=(group_href(&r.event.group)) { (r.event.name) } } }
                        td { span.badge.warn { (r.event.kind.as_str()) } }
                        td { (r.event.detail()) }
                    }
                }
            }
        }
    }
}

fn runs_table(runs: &[RunRecord]) -> Markup {
    if runs.is_empty() {
        return html! { p { "No run yet." } };
    }
    html! {
        table.list {
            thead { tr { th { "run" } th { "started" } th { "mode" } th { "status" } th { "counts" } th.num { "Graph requests" } th.num { "LDAP writes" } th.num { "errors" } } }
            tbody {
                @for r in runs {
                    tr {
                        td { a href=(format!("/runs/{}", r.id)) { (r.id) } }
                        td { (fmt_time(r.started_at)) }
                        td { (r.mode) @if r.staging { " (staging)" } }
                        td { (status_badge(r.status.as_str())) }
                        td { (counts_line(&r.counts)) }
                        td.num { (r.graph_requests) }
                        td.num { (r.ldap_writes) }
                        td.num { @if r.errors.is_empty() { "0" } @else { span.error { (r.errors.len()) } } }
                    }
                }
            }
        }
    }
}

async fn run_page(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if !shared.allowed(&headers) {
        return login_required(&shared, None);
    }
    let Ok(id) = id.parse::<i64>() else {
        return error_page(
            &shared,
            StatusCode::NOT_FOUND,
            "A run is named by its number.",
        );
    };
    let data = read(&shared, move |s| {
        let Some(run) = s.run(id)? else {
            return Ok(None);
        };
        let drift: Vec<DriftRecord> = s
            .drift_since(run.started_at - time::Duration::seconds(1))?
            .into_iter()
            .filter(|d| d.run == id)
            .collect();
        Ok(Some((run, drift)))
    })
    .await;
    let (r, drift) = match data {
        Ok(Some(x)) => x,
        Ok(None) => return error_page(&shared, StatusCode::NOT_FOUND, &format!("No run {id}.")),
        Err(e) => {
            return error_page(
                &shared,
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("state store: {e}"),
            )
        }
    };
    let body = html! {
        p.crumbs { a href="/" { "Overview" } " › run " (r.id) }
        h1 { "Run " (r.id) " " (status_badge(r.status.as_str())) }
        table.kv {
            tr { th { "started" } td { (fmt_time(r.started_at)) } }
            tr { th { "finished" } td { (fmt_time(r.finished_at)) " (" (secs(r.finished_at - r.started_at)) ")" } }
            tr { th { "mode" } td { (r.mode) @if r.staging { " — staging: nothing was written" } } }
            tr { th { "counts" } td { (counts_line(&r.counts)) } }
            tr { th { "Graph requests" } td { (r.graph_requests) } }
            tr { th { "LDAP writes" } td { (r.ldap_writes) " acknowledged by the DC" } }
            @if let Some(m) = &r.message { tr { th { "message" } td { (m) } } }
        }
        section {
            h2 { "Errors" }
            @if r.errors.is_empty() { p { "None." } } @else {
                table.list {
                    thead { tr { th { "group" } th { "DN" } th { "operation" } th { "what the server said" } } }
                    tbody { @for e in &r.errors { tr {
                        td { @match (&e.group, &e.name) {
                            (Some(g), n) => a href=(group_href(g)) { (n.as_deref().unwrap_or(g)) },
                            (None, n) => (n.as_deref().unwrap_or("-")),
                        } }
                        td { code { (e.dn.as_deref().unwrap_or("-")) } }
                        td { (e.operation) }
                        td.error { (e.message) }
                    } } }
                }
            }
        }
        section {
            h2 { "Drift found" }
            (drift_table(&drift, true))
        }
        section {
            @match &r.plan {
                None => { h2 { "Operations" } p { "Not kept for this run (a quiet cycle, a failed one, or older than the runs whose plans are kept)." } }
                Some(p) => {
                    h2 { @if r.staging { "Would have exported" } @else { "Operations" } }
                    (operations(p, None))
                    @for n in &p.notices { p.notice { (n) } }
                }
            }
        }
    };
    page(&format!("Run {}", r.id), &shared, body).into_response()
}

fn operations(p: &Plan, only: Option<&str>) -> Markup {
    let ops: Vec<_> = p
        .operations
        .iter()
        .filter(|o| only.is_none_or(|g| o.group == g))
        .collect();
    if ops.is_empty() {
        return html! { p { "No changes: AD matched the cloud." } };
    }
    html! {
        p { (ops.len()) " operation(s)" @if only.is_none() { ": " (counts_line(&p.counts())) } }
        @for op in ops {
            div.op {
                pre { @for l in action_lines(&op.action) { (l) "\n" } }
                p.hint { "group " a href=(group_href(&op.group)) { (op.name) } " · reason: " (op.reason) }
            }
        }
    }
}

/// What a group's page reads from the store.
struct GroupData {
    stored: Option<GroupOutcome>,
    drift: Vec<DriftRecord>,
    last_errors: Vec<wb_store::ObjectError>,
    last_run: Option<i64>,
    history: crate::render::GroupHistory,
}

async fn group_page(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if !shared.allowed(&headers) {
        return login_required(&shared, None);
    }
    let live_plan = lock(&shared.live).plan.clone();
    let live = live_plan
        .as_ref()
        .and_then(|p| p.groups.iter().find(|g| g.id == id).cloned());
    let want_stored = live.is_none();
    let key = id.clone();
    let state = shared.state.clone();
    let data = read(&shared, move |s| {
        let stored = if want_stored {
            s.last_outcomes()?
                .and_then(|p| p.groups.into_iter().find(|g| g.id == key))
        } else {
            None
        };
        let drift = s
            .drift_since(OffsetDateTime::now_utc() - GROUP_DRIFT_WINDOW)?
            .into_iter()
            .filter(|d| d.event.group == key)
            .collect();
        let last = s.run_summaries(1)?.pop();
        let last_run = last.as_ref().map(|r| r.id);
        let last_errors = last
            .map(|r| {
                r.errors
                    .into_iter()
                    .filter(|e| e.group.as_deref() == Some(key.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(GroupData {
            stored,
            drift,
            last_errors,
            last_run,
            history: crate::render::group_history(&state, &key),
        })
    })
    .await;
    let data = match data {
        Ok(d) => d,
        Err(e) => {
            return error_page(
                &shared,
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("state store: {e}"),
            )
        }
    };
    let from_memory = live.is_some();
    let Some(g) = live.or(data.stored) else {
        return error_page(
            &shared,
            StatusCode::NOT_FOUND,
            &format!("No group {id} in the latest plan."),
        );
    };
    let body = html! {
        p.crumbs { a href="/" { "Overview" } " › " (g.name) }
        h1 { (g.name) }
        table.kv {
            tr { th { "object id" } td { code { (g.id) } } }
            tr { th { "kind" } td { (g.kind.as_str()) } }
            tr { th { "decision" } td { (decision_text(&g.decision)) } }
            tr { th { "because" } td { (because(&g.decision)) } }
            @if let Decision::Written { ou, .. } = &g.decision { tr { th { "target OU" } td { code { (ou) } } } }
            tr { th { "AD" } td { (state_text(&g.ad_state)) } }
            tr { th { "AD DN" } td { @match &g.ad_dn { Some(dn) => code { (dn) }, None => "none" } } }
            @if g.decision.is_written() { tr { th { "members" } td { (g.written_count) " of " (g.member_count) " written" } } }
        }
        section {
            h2 { "Errors" }
            @if g.errors.is_empty() && data.last_errors.is_empty() { p { "None." } }
            ul {
                @for e in &g.errors { li.error { (e) } }
                @for e in &data.last_errors {
                    li.error { "in run " @if let Some(r) = data.last_run { a href=(format!("/runs/{r}")) { (r) } } ": " (e.operation) ": " (e.message) }
                }
            }
        }
        section {
            h2 { "Members and their fates" }
            @if g.members.is_empty() {
                p { @if g.decision.is_written() && g.member_count > 0 { "Every member is written." } @else { "No member to show." } }
            } @else {
                @if !from_memory && g.written_count > 0 {
                    p.hint { "The state file keeps only the members that are not written; the "
                        (g.written_count) " written ones are listed once this daemon has planned a cycle." }
                }
                table.list {
                    thead { tr { th { "member" } th { "type" } th { "fate" } th { "AD object" } } }
                    tbody { @for m in &g.members { tr {
                        td { (m.name.as_deref().unwrap_or(&m.member.id)) br; small { code { (m.member.id) } } }
                        td { (format!("{:?}", m.member.kind).to_lowercase()) }
                        @match &m.fate {
                            Fate::Written { dn, by } => { td { span.badge.ok { "written" } " found by " (by) } td { code { (dn) } } }
                            other => { td { span.badge.warn { "not written" } " " (other.text()) } td { (fate_dn(other)) } }
                        }
                    } } }
                }
            }
        }
        section {
            h2 { "Drift (7 days)" }
            @if !g.drift.is_empty() {
                p { "Put back by the latest cycle:" }
                ul { @for d in &g.drift { li { (d) } } }
            }
            (drift_table(&data.drift, false))
        }
        section {
            h2 { "Last export" }
            @match &data.history.last_export {
                None => p { "None in the runs kept." },
                Some((run, at, ops)) => {
                    p { a href=(format!("/runs/{run}")) { "run " (run) } " at " (at) }
                    pre { @for o in ops { (o) "\n" } }
                }
            }
            @if let Some(p) = &live_plan {
                @if p.operations.iter().any(|o| o.group == g.id) {
                    h2 { "In the latest cycle" }
                    (operations(p, Some(&g.id)))
                }
            }
        }
    };
    page(&g.name, &shared, body).into_response()
}

/// The setting or rule behind a decision.
fn because(d: &Decision) -> String {
    match d {
        Decision::Written { because, .. } => because.to_string(),
        Decision::NotEnabled { because }
        | Decision::Unsupported { because }
        | Decision::Invalid { because } => because.clone(),
        Decision::SyncedFromAd => "onPremisesSyncEnabled: the group is mastered in AD".into(),
        Decision::OverLimit { count, limit } => format!("{count} members, limit {limit}"),
        Decision::SoftDeleted => "deleted in the cloud (soft-deleted, restorable)".into(),
    }
}

fn fate_dn(f: &Fate) -> Markup {
    match f {
        Fate::DomainLocalGroup { dn } => html! { code { (dn) } },
        Fate::ClassMismatch(m) => html! { code { (m.dn) } },
        _ => html! { "-" },
    }
}

fn group_href(id: &str) -> String {
    let mut out = String::from("/groups/");
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn status_badge(status: &str) -> Markup {
    let class = match status {
        "success" => "badge ok",
        "staging" | "running" | "completed-with-errors" => "badge warn",
        _ => "badge bad",
    };
    html! { span class=(class) { (status) } }
}

fn fmt_time(t: OffsetDateTime) -> String {
    t.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
    ))
    .unwrap_or_default()
}

fn secs(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

fn ago(d: time::Duration) -> String {
    format!("{} ago", secs(d))
}

const CSS: &str = r#"
:root { --fg:#1d2330; --muted:#5c6577; --line:#dde2ea; --bg:#f6f7f9; --ok:#1a7f37; --warn:#9a6700; --bad:#cf222e; --link:#0b5cad; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color:var(--fg); background:var(--bg); }
header { background:#1f2a44; color:#fff; padding:10px 24px; display:flex; gap:24px; align-items:center; }
header a { color:#fff; text-decoration:none; font-weight:600; }
header nav a { font-weight:400; margin-right:16px; opacity:.9; }
header form { margin-left:auto; }
main { max-width:1200px; margin:0 auto; padding:8px 24px 40px; }
section { background:#fff; border:1px solid var(--line); border-radius:6px; padding:4px 16px 12px; margin:16px 0; }
h1 { font-size:22px; margin:18px 0 8px; } h2 { font-size:16px; margin:14px 0 8px; }
a { color:var(--link); }
table { border-collapse:collapse; width:100%; }
table.list th, table.list td { border-bottom:1px solid var(--line); padding:5px 8px; text-align:left; vertical-align:top; }
table.list thead th { color:var(--muted); font-weight:600; font-size:12px; text-transform:uppercase; letter-spacing:.03em; }
table.kv th { text-align:left; color:var(--muted); font-weight:600; width:150px; padding:3px 8px 3px 0; vertical-align:top; }
table.kv td { padding:3px 0; }
.num { text-align:right !important; font-variant-numeric:tabular-nums; }
code, pre { font: 12.5px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; word-break:break-all; }
pre { background:var(--bg); border:1px solid var(--line); border-radius:4px; padding:8px; white-space:pre-wrap; margin:6px 0 2px; }
.badge { display:inline-block; border-radius:10px; padding:0 8px; font-size:12px; font-weight:600; border:1px solid; }
.ok { color:var(--ok); } .warn { color:var(--warn); } .bad, .error { color:var(--bad); }
.badge.ok { background:#dafbe1; } .badge.warn { background:#fff8c5; } .badge.bad { background:#ffebe9; }
.notice { background:#ddf4ff; border:1px solid #54aeff; border-radius:4px; padding:6px 10px; }
.hint, .crumbs, small { color:var(--muted); }
form.sync { margin:10px 0 4px; color:var(--muted); }
button { font:inherit; padding:5px 14px; border-radius:5px; border:1px solid #1f6feb; background:#1f6feb; color:#fff; cursor:pointer; }
header button { background:transparent; border-color:#8fa3c8; padding:2px 10px; }
input { font:inherit; padding:4px 8px; border:1px solid var(--line); border-radius:4px; }
"#;

fn page(title: &str, shared: &Shared, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · writeback" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    a href="/" { "writeback" }
                    nav { a href="/" { "Overview" } a href="/metrics" { "Metrics" } }
                    @if shared.token.is_some() {
                        form method="post" action="/logout" { button type="submit" { "Sign out" } }
                    }
                }
                main { (body) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_links_encode_what_is_not_a_plain_id() {
        assert_eq!(group_href("0f3c-AB_9.x"), "/groups/0f3c-AB_9.x".to_string());
        assert_eq!(group_href("a/b?c#\"<"), "/groups/a%2Fb%3Fc%23%22%3C");
    }

    #[test]
    fn tokens_compare_in_full() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }

    #[test]
    fn a_post_from_another_origin_is_cross_site() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(cross_site(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h));
    }

    #[test]
    fn names_are_escaped_in_pages() {
        let m = html! { td { ("<script>&\"x\" 🎉") } };
        assert_eq!(
            m.into_string(),
            "<td>&lt;script&gt;&amp;&quot;x&quot; 🎉</td>"
        );
    }
}
