//! The HTTP API (JSON, `/api/v1/...`): on the control socket (a Unix stream socket, as
//! `bootstorm leases`, `stats` and `sessions` use it) and optionally on TCP (`[api] address`).
//!
//! Read-only endpoints answer anyone on the Unix socket (its file mode is the gate) and, on TCP,
//! anyone when `[api] read_open = true`, else only with the bearer token. Anything that changes
//! state (releasing a lease, reloading the config) needs the token (`[api] token_file`); with no
//! token configured such requests are refused. [`openapi`] is the document the daemon serves at
//! `/api/v1/openapi.json`; a test walks it against the real endpoints.
//!
//! Built on axum (hyper, tokio) on its own thread with a single-threaded runtime, so the API never
//! shares a runtime or a core budget with the boot paths.

mod capped;

use crate::daemon::StatsSource;
use crate::serve::{ServerCell, fmt_hw};
use crate::sessions::Sessions;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bootstorm_time::Clock;
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// The API thread's nice value (the boot paths run at 0).
const API_NICE: i32 = -5;

/// What the API asks of the daemon's main loop (which owns reloading).
pub enum MainRequest {
    /// Re-read the config file and apply it; the answer is what the reload did or why it was
    /// refused.
    Reload(mpsc::SyncSender<Result<Value, String>>),
    /// Add a reservation (kept, then applied as a reload applies a file).
    AddReservation(
        crate::reservations::ApiReservation,
        mpsc::SyncSender<Result<Value, String>>,
    ),
    /// Remove a reservation added through the API.
    RemoveReservation(Ipv4Addr, mpsc::SyncSender<Result<Value, String>>),
}

/// The running configuration as the API shows it.
#[derive(Clone, Debug, Default)]
pub struct ConfigView {
    /// The file it came from (none in quick mode).
    pub path: Option<PathBuf>,
    /// Its text as loaded (the file may have changed since).
    pub text: Option<String>,
}

/// `[api]`, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiSettings {
    /// A TCP listener beside the control socket.
    pub address: Option<SocketAddr>,
    /// The bearer token (read from `token_file` at start).
    pub token: Option<String>,
    /// Reads on TCP need no token.
    pub read_open: bool,
}

/// Everything the handlers read.
pub struct ApiState {
    pub server: Arc<ServerCell>,
    pub sessions: Arc<Sessions>,
    pub clock: Clock,
    pub stats: StatsSource,
    pub journal: Option<Arc<bootstorm_journal::Journal>>,
    pub services: Vec<&'static str>,
    pub settings: ApiSettings,
    pub main: Mutex<mpsc::Sender<MainRequest>>,
    pub config: Arc<Mutex<ConfigView>>,
    /// Reservations added through the API.
    pub reservations: Arc<crate::reservations::Store>,
    /// What `/metrics` encodes.
    pub metrics: prometheus_client::registry::Registry,
    /// The storm view's history, sampled once a second.
    pub storm: crate::storm::Storm,
}

#[derive(Clone)]
struct Ctx {
    st: Arc<ApiState>,
    /// Arrived on TCP (not the Unix socket).
    tcp: bool,
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    json_body(status, format!("{v}\n"))
}

/// An answer whose JSON is already written (ending in a newline, as every answer does).
fn json_body(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    json_response(status, &json!({ "error": msg.into() }))
}

/// A refusal: its status and reason (answered as `{"error": reason}`).
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn fail(status: StatusCode, msg: impl Into<String>) -> ApiError {
    ApiError(status, msg.into())
}

fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, &v)
}

/// Checks the bearer token: writes always need it, reads on TCP unless `read_open`.
fn authorize(ctx: &Ctx, headers: &HeaderMap, write: bool) -> Result<(), ApiError> {
    if !write && (!ctx.tcp || ctx.st.settings.read_open) {
        return Ok(());
    }
    let Some(token) = &ctx.st.settings.token else {
        return Err(fail(
            StatusCode::FORBIDDEN,
            "no [api] token_file is configured: this endpoint is refused",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(fail(StatusCode::UNAUTHORIZED, "wrong bearer token")),
        None => Err(fail(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs 'Authorization: Bearer <token>'",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `k=v&k=v` of a URI, percent-decoded.
fn query(uri: &Uri) -> Vec<(String, String)> {
    let dec = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

/// Every request but health, readiness and the OpenAPI document passes [`authorize`]: anything
/// but a GET changes state (but validating a candidate config).
async fn guard(
    State(ctx): State<Ctx>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    // The dashboard's page and bundle are open: its requests to the API carry the token.
    let open = matches!(
        path,
        "/api/v1/health" | "/api/v1/ready" | "/api/v1/openapi.json" | "/"
    ) || path.starts_with("/ui/");
    let write = req.method() != Method::GET && path != "/api/v1/config/validate";
    if !open && let Err(r) = authorize(&ctx, req.headers(), write) {
        return r.into_response();
    }
    next.run(req).await
}

async fn health() -> Response {
    ok(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn ready(State(ctx): State<Ctx>) -> Response {
    ok(json!({ "ready": true, "services": ctx.st.services }))
}

async fn stats(State(ctx): State<Ctx>) -> Response {
    ok((ctx.st.stats)())
}

/// `GET /api/v1/leases?state=&subnet=&mac=&hostname=`: filtered before formatting, off the
/// API's thread (it walks every lease).
async fn leases(State(ctx): State<Ctx>, uri: Uri) -> Response {
    let filter = match crate::control::LeaseFilter::parse(&query(&uri)) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let st = ctx.st.clone();
    let body = move || crate::control::leases_body(&st.server.get(), &st.clock, &filter);
    match tokio::task::spawn_blocking(body).await {
        Ok(b) => json_body(StatusCode::OK, b),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn parse_ip(s: &str) -> Result<Ipv4Addr, ApiError> {
    s.parse().map_err(|_| {
        fail(
            StatusCode::BAD_REQUEST,
            format!("'{s}' is not an IPv4 address"),
        )
    })
}

async fn lease_show(State(ctx): State<Ctx>, UrlPath(ip): UrlPath<String>) -> Response {
    let ip = match parse_ip(&ip) {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    let server = ctx.st.server.get();
    let now = ctx.st.clock.now();
    let wall = bootstorm_journal::WallClock::new(ctx.st.clock);
    // The first record naming it, as the full listing would show it first.
    match server.leases().records_at(now, ip).into_iter().next() {
        Some(l) => ok(
            serde_json::to_value(crate::control::lease_json(&server, &wall, now, l))
                .unwrap_or(Value::Null),
        ),
        None => error(StatusCode::NOT_FOUND, format!("no lease of {ip}")),
    }
}

/// `DELETE /api/v1/leases/{ip}`: the lease is released as if its client sent DHCPRELEASE, and
/// the answer comes once the journal holds the release.
async fn lease_release(State(ctx): State<Ctx>, UrlPath(ip): UrlPath<String>) -> Response {
    let ip = match parse_ip(&ip) {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    let st = ctx.st.clone();
    let done = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let server = st.server.get();
        let now = st.clock.now();
        let held = server.leases().records_at(now, ip).into_iter().find(|l| {
            matches!(
                l.state,
                bootstorm_lease::LeaseState::Bound | bootstorm_lease::LeaseState::Offered
            )
        });
        let Some(l) = held else {
            return Err(fail(
                StatusCode::NOT_FOUND,
                format!("{ip} is not offered or bound to anyone"),
            ));
        };
        let Some(b) = server.leases().release(now, &l.key, ip) else {
            return Err(fail(
                StatusCode::CONFLICT,
                format!("{ip} changed hands while being released; ask again"),
            ));
        };
        if let Some(j) = &st.journal {
            j.wait(b.commit).map_err(|e| {
                fail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the release is not durable: {e}"),
                )
            })?;
        }
        st.sessions.forget(ip, &l.hwaddr);
        // The machine's session shows the release, as if the machine had sent it.
        if st.sessions.recording {
            st.sessions
                .boots
                .step(now, &l.hwaddr, crate::boots::Step::Release);
        }
        let mac = fmt_hw(&l.hwaddr);
        tracing::info!(target: "bootstorm::lease", event = "release", %ip, %mac, by = "api", "lease");
        Ok(json!({ "released": ip.to_string(), "mac": mac }))
    })
    .await;
    match done {
        Ok(Ok(v)) => ok(v),
        Ok(Err(r)) => r.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/v1/sessions?mac=&phase=&failed&limit=&offset=`.
async fn sessions(State(ctx): State<Ctx>, uri: Uri) -> Response {
    let args: Vec<String> = query(&uri)
        .into_iter()
        .map(|(k, v)| {
            if v.is_empty() && k == "failed" {
                k
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sessions_answer(&ctx, &args)
}

async fn session_show(State(ctx): State<Ctx>, UrlPath(mac): UrlPath<String>) -> Response {
    sessions_answer(&ctx, &[format!("mac={mac}").as_str()])
}

/// What [`crate::control::sessions_json`] says for `args`, its error as 404 (no such session)
/// or 400 (a bad filter).
fn sessions_answer(ctx: &Ctx, args: &[&str]) -> Response {
    use crate::control::SessionsAnswer;
    match crate::control::sessions_json(&ctx.st.sessions, &ctx.st.clock, args) {
        SessionsAnswer::Body(mut body) => {
            body.push('\n');
            json_body(StatusCode::OK, body)
        }
        SessionsAnswer::NotFound(e) => error(StatusCode::NOT_FOUND, e),
        SessionsAnswer::Bad(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// Per subnet: addresses in its pools and how many are bound, offered, declined and free.
/// One walk of the lease table, no record copied (a scrape of `/metrics` runs it too).
pub fn pools_json(server: &bootstorm_dhcp::Server, clock: &Clock) -> Value {
    use bootstorm_lease::LeaseState;
    let cfg = server.config();
    let in_ranges = |ranges: &[(Ipv4Addr, Ipv4Addr)], a: Ipv4Addr| {
        ranges
            .iter()
            .any(|(f, l)| (u32::from(*f)..=u32::from(*l)).contains(&u32::from(a)))
    };
    // Per subnet: bound, offered, declined (in its pools, not reserved), reserved leases.
    let mut counts = vec![[0u64; 4]; cfg.subnets.len()];
    server.leases().each_record(clock.now(), |l, state| {
        let i = l.subnet as usize;
        let Some(s) = cfg.subnets.get(i) else {
            return;
        };
        if l.reserved {
            counts[i][3] += 1;
        } else if in_ranges(&s.ranges, l.addr) {
            match state {
                LeaseState::Bound => counts[i][0] += 1,
                LeaseState::Offered => counts[i][1] += 1,
                LeaseState::Declined => counts[i][2] += 1,
                _ => {}
            }
        }
    });
    let out: Vec<Value> = cfg
        .subnets
        .iter()
        .zip(counts)
        .map(|(s, [bound, offered, declined, reserved])| {
            let size: u64 = s
                .ranges
                .iter()
                .map(|(f, l)| u64::from(u32::from(*l) - u32::from(*f)) + 1)
                .sum();
            json!({
                "subnet": format!("{}/{}", s.network, s.prefix),
                "pools": s.ranges.iter().map(|(f, l)| format!("{f}-{l}")).collect::<Vec<_>>(),
                "size": size,
                "bound": bound,
                "offered": offered,
                "declined": declined,
                "free": size.saturating_sub(bound + offered + declined),
                "reserved_leases": reserved,
            })
        })
        .collect();
    Value::Array(out)
}

async fn pools(State(ctx): State<Ctx>) -> Response {
    let st = ctx.st.clone();
    match tokio::task::spawn_blocking(move || pools_json(&st.server.get(), &st.clock)).await {
        Ok(v) => ok(v),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn summary(c: &bootstorm_dhcp::ServerConfig) -> Value {
    json!({
        "subnets": c.subnets.len(),
        "pools": c.subnets.iter().map(|s| s.ranges.len()).sum::<usize>(),
        "reservations": c.reservations.len(),
        "boot_rules": c.boot_rules.len(),
        "classes": c.classes.len(),
    })
}

async fn config_show(State(ctx): State<Ctx>) -> Response {
    let view = ctx.st.config.lock().map(|v| v.clone()).unwrap_or_default();
    let server = ctx.st.server.get();
    ok(json!({
        "path": view.path.map(|p| p.display().to_string()),
        "text": view.text,
        "running": summary(server.config()),
    }))
}

/// `POST /api/v1/config/validate` with a config file as the body: checked as `bootstorm
/// check-config` checks one, nothing applied.
async fn config_validate(State(ctx): State<Ctx>, body: String) -> Response {
    let name = ctx
        .st
        .config
        .lock()
        .ok()
        .and_then(|v| v.path.clone())
        .unwrap_or_else(|| PathBuf::from("candidate.toml"));
    match crate::config::parse(&name, &body) {
        Ok(s) => ok(json!({
            "valid": true,
            "summary": summary(&s.dhcp),
            "warnings": s.warnings,
        })),
        Err(e) => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({ "valid": false, "error": e.to_string() }),
        ),
    }
}

/// `POST /api/v1/config/reload`: the main loop re-reads the config file (as on SIGHUP); a
/// refused config keeps the running one, and the answer says why.
async fn config_reload(State(ctx): State<Ctx>) -> Response {
    match ask_main(&ctx, MainRequest::Reload).await {
        Ok(Ok(v)) => ok(v),
        Ok(Err(e)) => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({ "reloaded": false, "error": e }),
        ),
        Err(r) => r.into_response(),
    }
}

type Reply = mpsc::SyncSender<Result<Value, String>>;

/// Hands a request to the daemon's main loop and waits (30 s at most) for its answer.
async fn ask_main(
    ctx: &Ctx,
    make: impl FnOnce(Reply) -> MainRequest,
) -> Result<Result<Value, String>, ApiError> {
    let (tx, rx) = mpsc::sync_channel(1);
    let sent = ctx
        .st
        .main
        .lock()
        .map(|m| m.send(make(tx)).is_ok())
        .unwrap_or(false);
    if !sent {
        return Err(fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is stopping",
        ));
    }
    match tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30))).await {
        Ok(Ok(answer)) => Ok(answer),
        _ => Err(fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server's main loop did not answer within 30 s",
        )),
    }
}

/// `GET /api/v1/reservations`: the config file's and the API's, each with its source.
async fn reservations(State(ctx): State<Ctx>) -> Response {
    let server = ctx.st.server.get();
    let added = ctx.st.reservations.list();
    let out: Vec<Value> = server
        .config()
        .reservations
        .iter()
        .map(|r| {
            let api = added.iter().any(|a| a.address == r.addr);
            json!({
                "address": r.addr.to_string(),
                "mac": r.hwaddr.map(|m| fmt_hw(&m)),
                "client_id": r.client_id.as_deref().map(fmt_hw),
                "hostname": r.hostname,
                "source": if api { "api" } else { "config" },
            })
        })
        .collect();
    ok(Value::Array(out))
}

/// `POST /api/v1/reservations` with `{"address", "mac" or "client_id", "hostname"}`.
async fn reservation_add(State(ctx): State<Ctx>, body: String) -> Response {
    let r: crate::reservations::ApiReservation = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"address\", \"mac\" or \"client_id\", \"hostname\"}}: {e}"),
            );
        }
    };
    match ask_main(&ctx, |tx| MainRequest::AddReservation(r, tx)).await {
        Ok(Ok(v)) => ok(v),
        Ok(Err(e)) => error(StatusCode::CONFLICT, e),
        Err(r) => r.into_response(),
    }
}

/// `DELETE /api/v1/reservations/{ip}`: one added through the API (the config file's stay
/// until the file changes).
async fn reservation_remove(State(ctx): State<Ctx>, UrlPath(ip): UrlPath<String>) -> Response {
    let ip = match parse_ip(&ip) {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    if !ctx.st.reservations.list().iter().any(|r| r.address == ip) {
        let in_file = ctx
            .st
            .server
            .get()
            .config()
            .reservations
            .iter()
            .any(|r| r.addr == ip);
        return if in_file {
            error(
                StatusCode::CONFLICT,
                format!("the reservation of {ip} is in the config file: edit the file and reload"),
            )
        } else {
            error(StatusCode::NOT_FOUND, format!("no reservation of {ip}"))
        };
    }
    match ask_main(&ctx, |tx| MainRequest::RemoveReservation(ip, tx)).await {
        Ok(Ok(v)) => ok(v),
        Ok(Err(e)) => error(StatusCode::CONFLICT, e),
        Err(r) => r.into_response(),
    }
}

/// `GET /metrics`: Prometheus (OpenMetrics text), computed at the scrape.
async fn metrics(State(ctx): State<Ctx>) -> Response {
    let st = ctx.st.clone();
    match tokio::task::spawn_blocking(move || crate::metrics::render(&st.metrics)).await {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/v1/storm?since=<unix ms>`: the storm view's samples after `since`.
async fn storm(State(ctx): State<Ctx>, uri: Uri) -> Response {
    let mut since = None;
    for (k, v) in query(&uri) {
        match (k.as_str(), v.parse::<u64>()) {
            ("since", Ok(t)) => since = Some(t),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("'{k}={v}': expected since=<unix milliseconds>"),
                );
            }
        }
    }
    ok(ctx.st.storm.json(since))
}

/// The dashboard's files (built from `dashboard/` by Vite, embedded at build time).
async fn ui(UrlPath(file): UrlPath<String>) -> Response {
    match crate::dashboard::file(&file) {
        Some((kind, bytes)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no dashboard file '{file}'")),
    }
}

async fn ui_index() -> Response {
    ui(UrlPath("index.html".to_string())).await
}

async fn ui_root() -> Response {
    (StatusCode::FOUND, [(header::LOCATION, "/ui/")]).into_response()
}

async fn openapi_doc() -> Response {
    ok(openapi())
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint {method} {} (see /api/v1/openapi.json)",
            uri.path()
        ),
    )
}

fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/ready", get(ready))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/leases", get(leases))
        .route("/api/v1/leases/{ip}", get(lease_show).delete(lease_release))
        .route("/api/v1/sessions", get(sessions))
        .route("/api/v1/sessions/{mac}", get(session_show))
        .route("/api/v1/pools", get(pools))
        .route(
            "/api/v1/reservations",
            get(reservations).post(reservation_add),
        )
        .route(
            "/api/v1/reservations/{ip}",
            axum::routing::delete(reservation_remove),
        )
        .route("/api/v1/config", get(config_show))
        .route("/api/v1/config/validate", post(config_validate))
        .route("/api/v1/config/reload", post(config_reload))
        .route("/api/v1/openapi.json", get(openapi_doc))
        .route("/api/v1/storm", get(storm))
        .route("/metrics", get(metrics))
        .route("/", get(ui_root))
        .route("/ui/", get(ui_index))
        .route("/ui/{file}", get(ui))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), guard))
        .with_state(ctx)
}

/// The OpenAPI 3.0 document of these endpoints.
pub fn openapi() -> Value {
    let resp = |codes: &[(u16, &str)]| -> Value {
        let mut m = serde_json::Map::new();
        for (c, d) in codes {
            m.insert(
                c.to_string(),
                json!({ "description": d, "content": { "application/json": {} } }),
            );
        }
        Value::Object(m)
    };
    let read = |summary: &str, extra: &[(u16, &str)]| {
        let mut codes = vec![(200, "OK"), (401, "token needed (TCP without read_open)")];
        codes.extend_from_slice(extra);
        json!({ "summary": summary, "responses": resp(&codes) })
    };
    let write = |summary: &str, extra: &[(u16, &str)]| {
        let mut codes = vec![
            (200, "done"),
            (401, "missing or wrong bearer token"),
            (403, "no token configured"),
        ];
        codes.extend_from_slice(extra);
        json!({ "summary": summary, "security": [{ "bearer": [] }], "responses": resp(&codes) })
    };
    let param = |name: &str, loc: &str| json!({ "name": name, "in": loc, "required": loc == "path", "schema": { "type": "string" } });
    let mut lease_read = read("one lease", &[(400, "not an address"), (404, "no lease")]);
    lease_read["parameters"] = json!([param("ip", "path")]);
    let mut lease_del = write(
        "release a lease (as DHCPRELEASE; answered once durable)",
        &[
            (400, "not an address"),
            (404, "not held"),
            (409, "changed hands"),
            (503, "journal failed"),
        ],
    );
    lease_del["parameters"] = json!([param("ip", "path")]);
    let mut leases = read("leases, filtered", &[(400, "unknown filter")]);
    leases["parameters"] = json!(["state", "subnet", "mac", "hostname"].map(|n| param(n, "query")));
    let mut sessions = read(
        "boot sessions (live first, newest first)",
        &[(400, "bad filter")],
    );
    sessions["parameters"] =
        json!(["mac", "q", "phase", "failed", "limit", "offset"].map(|n| param(n, "query")));
    let mut session = read(
        "one machine's session with its timeline",
        &[(400, "not a MAC"), (404, "no session")],
    );
    session["parameters"] = json!([param("mac", "path")]);
    let mut storm = read(
        "the storm view: one sample a second (machines per phase, totals, lap percentiles of that second), the last ten minutes",
        &[(400, "bad query")],
    );
    storm["parameters"] = json!([param("since", "query")]);
    let mut resv_add = write(
        "add a reservation (kept in the lease directory, applied at once)",
        &[
            (400, "not a reservation"),
            (409, "conflicts, or no [leases] dir"),
            (503, "not answered"),
        ],
    );
    resv_add["requestBody"] = json!({ "content": { "application/json": { "schema": {
        "type": "object", "required": ["address"],
        "properties": { "address": {"type": "string"}, "mac": {"type": "string"}, "client_id": {"type": "string"}, "hostname": {"type": "string"} }
    } } } });
    let mut resv_del = write(
        "remove a reservation added through the API",
        &[
            (400, "not an address"),
            (404, "no reservation"),
            (409, "in the config file"),
            (503, "not answered"),
        ],
    );
    resv_del["parameters"] = json!([param("ip", "path")]);
    let mut validate = read(
        "check a candidate config (the body), nothing applied",
        &[(422, "refused, with file:line: reason")],
    );
    validate["requestBody"] = json!({ "content": { "application/toml": {} } });
    json!({
        "openapi": "3.0.3",
        "info": { "title": "bootstorm", "version": env!("CARGO_PKG_VERSION") },
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } } },
        "paths": {
            "/api/v1/health": { "get": { "summary": "the process answers", "responses": resp(&[(200, "OK")]) } },
            "/api/v1/ready": { "get": { "summary": "every service started", "responses": resp(&[(200, "ready")]) } },
            "/api/v1/stats": { "get": read("counters of every service", &[]) },
            "/api/v1/leases": { "get": leases },
            "/api/v1/leases/{ip}": { "get": lease_read, "delete": lease_del },
            "/api/v1/sessions": { "get": sessions },
            "/api/v1/sessions/{mac}": { "get": session },
            "/api/v1/reservations": { "get": read("reservations: the config file's and the API's", &[]), "post": resv_add },
            "/api/v1/reservations/{ip}": { "delete": resv_del },
            "/api/v1/storm": { "get": storm },
            "/api/v1/pools": { "get": read("per subnet: size, bound, offered, declined, free", &[]) },
            "/api/v1/config": { "get": read("the running config file and what it holds", &[]) },
            "/api/v1/config/validate": { "post": validate },
            "/api/v1/config/reload": { "post": write("re-read the config file and apply it", &[(422, "refused; the running config stays"), (503, "not answered")]) },
            "/api/v1/openapi.json": { "get": { "summary": "this document", "responses": resp(&[(200, "OK")]) } },
            "/metrics": { "get": { "summary": "Prometheus metrics (OpenMetrics text)", "responses": {
                "200": { "description": "OK", "content": { "application/openmetrics-text": {} } },
                "401": { "description": "token needed (TCP without read_open)", "content": { "application/json": {} } },
            } } },
        }
    })
}

/// The API's listeners.
pub struct Api {
    path: PathBuf,
    tcp: Option<SocketAddr>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Told when the API is dropped (or the channel closes): the listeners stop then, waiting
    /// on it instead of looking at the shutdown flag every few milliseconds.
    stop: Option<tokio::sync::watch::Sender<bool>>,
}

impl Api {
    /// Binds the control socket at `path` (replacing a stale socket file) and, when configured,
    /// the TCP address; serves until it is dropped (the daemon stops it after setting
    /// `shutdown`, which the storm view's sampler watches).
    pub fn start(path: &Path, state: ApiState, shutdown: Arc<AtomicBool>) -> anyhow::Result<Api> {
        use anyhow::Context;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!("{} is in use by a running server", path.display());
            }
            std::fs::remove_file(path)?;
        }
        let unix = std::os::unix::net::UnixListener::bind(path)?;
        unix.set_nonblocking(true)?;
        let tcp = match state.settings.address {
            Some(a) => {
                let l =
                    std::net::TcpListener::bind(a).with_context(|| format!("[api] address {a}"))?;
                l.set_nonblocking(true)?;
                Some(l)
            }
            None => None,
        };
        let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
        let st = Arc::new(state);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("api".into())
            .spawn(move || {
                // The operator's view of a storm must not wait behind the storm: the API's work is
                // small and bounded (capped connections, pages of at most 10,000), so its thread
                // runs ahead of the boot paths when both want a core.
                if let Err(e) = bootstorm_xdp::set_current_thread_nice(API_NICE) {
                    tracing::debug!(error = %e, "the API thread keeps the default priority");
                }
                rt.block_on(async move {
                    // Each listener's graceful stop: the API dropped (a send or a closed channel).
                    let stop = move || {
                        let mut rx = stop_rx.clone();
                        async move {
                            let _ = rx.wait_for(|stopped| *stopped).await;
                        }
                    };
                    if st.sessions.recording {
                        let (st, shutdown) = (st.clone(), shutdown.clone());
                        tokio::spawn(async move {
                            let wall = bootstorm_journal::WallClock::new(st.clock);
                            let mut tick = tokio::time::interval(Duration::from_secs(1));
                            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            while !shutdown.load(Ordering::Relaxed) {
                                tick.tick().await;
                                let at = wall.to_unix_ms(st.clock.now());
                                st.storm.sample(&st.sessions.boots, at);
                            }
                        });
                    }
                    let unix = match tokio::net::UnixListener::from_std(unix) {
                        Ok(u) => u,
                        Err(e) => {
                            tracing::error!(error = %e, "control socket");
                            return;
                        }
                    };
                    let unix = capped::Capped::new(unix, capped::MAX_CONNECTIONS, capped::IDLE);
                    let on_unix = axum::serve(
                        unix,
                        router(Ctx {
                            st: st.clone(),
                            tcp: false,
                        }),
                    )
                    .with_graceful_shutdown(stop());
                    match tcp.map(tokio::net::TcpListener::from_std) {
                        Some(Ok(t)) => {
                            let t = capped::Capped::new(t, capped::MAX_CONNECTIONS, capped::IDLE);
                            let on_tcp = axum::serve(t, router(Ctx { st, tcp: true }))
                                .with_graceful_shutdown(stop());
                            let _ = tokio::join!(on_unix, on_tcp);
                        }
                        Some(Err(e)) => tracing::error!(error = %e, "[api] address"),
                        None => {
                            let _ = on_unix.await;
                        }
                    }
                })
            })?;
        Ok(Api {
            path: path.to_path_buf(),
            tcp: tcp_addr,
            thread: Some(thread),
            stop: Some(stop_tx),
        })
    }

    /// The TCP listener's address, if the API listens on TCP.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A blocking HTTP/1.1 request to the API on a Unix socket: (status, body). For the CLI and
/// tests; hyper's client over a Unix stream on a current-thread runtime.
pub fn call_unix(
    path: &Path,
    method: &str,
    target: &str,
    token: Option<&str>,
    body: Option<String>,
) -> std::io::Result<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let io = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(path).await?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| io(&e))?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(target)
            .header(header::HOST, "bootstorm");
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Body::from(body.unwrap_or_default()))
            .map_err(|e| io(&e))?;
        let resp = tokio::time::timeout(Duration::from_secs(60), send.send_request(req))
            .await
            .map_err(|e| io(&e))?
            .map_err(|e| io(&e))?;
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(Body::new(resp.into_body()), 64 << 20)
            .await
            .map_err(|e| io(&e))?;
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    })
}
