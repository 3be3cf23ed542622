//! graph-sim: a Microsoft Graph tenant simulator that speaks Graph's documented wire format
//! (users, groups, devices, delta, deletedItems, group settings, `$batch`, Group Source of
//! Authority's `onPremisesSyncBehavior`) for tests, demo and benchmarks.
//!
//! The code map: `tenant` holds state and the change log, `delta` turns the log into delta
//! pages, `collection`/`links`/`deleted`/`settings`/`batch` are the Graph endpoints, `auth`
//! is the token endpoint and Bearer check, `faults` the gate with fault injection, `admin`
//! the simulator's own `/_sim` endpoints.

pub mod admin;
pub mod auth;
pub mod batch;
pub mod clock;
pub mod collection;
pub mod deleted;
pub mod delta;
pub mod devices;
pub mod error;
pub mod faults;
pub mod links;
pub mod odata;
pub mod render;
pub mod request;
pub mod schema;
pub mod settings;
pub mod tenant;

use axum::routing::{delete, get, post};
use axum::Router;
pub use error::{GraphError, SimError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tenant::Tenant;

/// Everything the simulator is started with.
pub struct SimConfig {
    pub listen: SocketAddr,
    pub tenant_file: Option<PathBuf>,
    pub save_file: Option<PathBuf>,
    pub auth: auth::AuthConfig,
    pub faults: faults::Faults,
    /// Member entries per delta page (a larger group continues on the next page).
    pub member_chunk: usize,
    /// Status of the `syncStateNotFound` answer to an expired delta token (410 or 400).
    pub expired_delta_status: axum::http::StatusCode,
    /// Domain for `mail` of new mail-enabled groups.
    pub domain: String,
}

/// Shared state of a running simulator.
pub struct AppState {
    tenant: RwLock<Tenant>,
    pub auth: auth::AuthState,
    pub faults: RwLock<faults::Faults>,
    pub stats: Mutex<faults::Stats>,
    pub epoch: AtomicU64,
    pub expired_delta_status: axum::http::StatusCode,
    pub member_chunk: usize,
    pub save_file: Option<PathBuf>,
    /// The router itself, for `$batch` to dispatch inner requests.
    pub router: OnceLock<Router>,
}

impl AppState {
    pub fn read_tenant(&self) -> RwLockReadGuard<'_, Tenant> {
        self.tenant.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write_tenant(&self) -> RwLockWriteGuard<'_, Tenant> {
        self.tenant.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn delta_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Writes the tenant to the `--save` file; `Ok(None)` when there is none.
    pub fn save(&self) -> Result<Option<String>, SimError> {
        let Some(path) = &self.save_file else {
            return Ok(None);
        };
        let doc = tenant::to_file(&self.read_tenant());
        let text = serde_json::to_vec_pretty(&doc).unwrap_or_default();
        let shown = path.display().to_string();
        std::fs::write(path, text).map_err(|source| SimError::TenantWrite {
            path: shown.clone(),
            source,
        })?;
        Ok(Some(shown))
    }
}

/// Builds the state (loading the tenant file) without binding a socket.
pub fn build_state(cfg: SimConfig) -> Result<Arc<AppState>, SimError> {
    let tenant = match &cfg.tenant_file {
        Some(path) => {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| SimError::TenantRead {
                path: shown.clone(),
                source,
            })?;
            tenant::load(&shown, &text, &cfg.domain)?
        }
        None => Tenant::empty(&cfg.domain),
    };
    let state = Arc::new(AppState {
        tenant: RwLock::new(tenant),
        auth: auth::AuthState::new(cfg.auth),
        faults: RwLock::new(cfg.faults),
        stats: Mutex::new(faults::Stats::default()),
        epoch: AtomicU64::new(0),
        expired_delta_status: cfg.expired_delta_status,
        member_chunk: cfg.member_chunk.max(1),
        save_file: cfg.save_file,
        router: OnceLock::new(),
    });
    let router = router(state.clone());
    let _ = state.router.set(router);
    Ok(state)
}

/// The full HTTP surface: token endpoint, Graph under `/v1.0` and `/beta`, and `/_sim`.
pub fn router(state: Arc<AppState>) -> Router {
    use collection as c;
    let graph = Router::new()
        .route("/{version}/users", get(c::list_users).post(c::create_user))
        .route("/{version}/users/$count", get(c::count_users))
        .route("/{version}/users/delta", get(links::users_delta))
        .route(
            "/{version}/users/{id}",
            get(c::get_user).patch(c::patch_user).delete(c::delete_user),
        )
        .route(
            "/{version}/groups",
            get(c::list_groups).post(c::create_group),
        )
        .route("/{version}/groups/$count", get(c::count_groups))
        .route("/{version}/groups/delta", get(links::groups_delta))
        .route(
            "/{version}/groups/{id}",
            get(c::get_group)
                .patch(c::patch_group)
                .delete(c::delete_group),
        )
        .route(
            "/{version}/groups/{id}/onPremisesSyncBehavior",
            get(devices::get_sync_behavior).patch(devices::patch_sync_behavior),
        )
        .route(
            "/{version}/devices",
            get(devices::list_devices).post(devices::create_device),
        )
        .route("/{version}/devices/delta", get(links::devices_delta))
        .route("/{version}/devices/{id}", get(devices::get_device))
        .route("/{version}/groups/{id}/members", get(links::list_members))
        .route(
            "/{version}/groups/{id}/members/$ref",
            post(links::add_member),
        )
        .route(
            "/{version}/groups/{id}/members/{member}/$ref",
            delete(links::remove_member),
        )
        .route("/{version}/groups/{id}/owners", get(links::list_owners))
        .route("/{version}/groups/{id}/owners/$ref", post(links::add_owner))
        .route(
            "/{version}/groups/{id}/owners/{owner}/$ref",
            delete(links::remove_owner),
        )
        .route(
            "/{version}/directory/deletedItems/{item}",
            get(deleted::get).delete(deleted::purge),
        )
        .route(
            "/{version}/directory/deletedItems/{id}/restore",
            post(deleted::restore),
        )
        .route(
            "/{version}/groupSettings",
            get(settings::collection).post(settings::collection),
        )
        .route(
            "/{version}/settings",
            get(settings::collection).post(settings::collection),
        )
        .route(
            "/{version}/groupSettings/{id}",
            get(settings::item)
                .patch(settings::item)
                .delete(settings::item),
        )
        .route(
            "/{version}/settings/{id}",
            get(settings::item)
                .patch(settings::item)
                .delete(settings::item),
        )
        .route("/{version}/groupSettingTemplates", get(settings::templates))
        .route(
            "/{version}/groupSettingTemplates/{id}",
            get(settings::templates),
        )
        .route(
            "/{version}/directorySettingTemplates",
            get(settings::templates),
        )
        .route(
            "/{version}/directorySettingTemplates/{id}",
            get(settings::templates),
        )
        .route("/{version}/$batch", post(batch::batch))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            faults::graph_gate,
        ));
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(auth::token))
        .route(
            "/_sim/faults",
            get(admin::get_faults).post(admin::set_faults),
        )
        .route(
            "/_sim/expire-delta-tokens",
            post(admin::expire_delta_tokens),
        )
        .route("/_sim/stats", get(admin::stats).delete(admin::reset_stats))
        .route("/_sim/requests", get(admin::requests))
        .route("/_sim/save", post(admin::save))
        .merge(graph)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> GraphError {
    GraphError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "BadRequest",
        format!("Resource not found for the segment in '{}'.", uri.path()),
    )
}

/// A simulator bound to its socket, ready to serve.
pub struct Bound {
    pub addr: SocketAddr,
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
}

/// Loads the tenant and binds the listening socket (port 0 picks a free one).
pub async fn bind(cfg: SimConfig) -> Result<Bound, SimError> {
    let listen = cfg.listen;
    let state = build_state(cfg)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: listen.to_string(),
        source,
    })?;
    Ok(Bound {
        addr,
        listener,
        state,
    })
}

impl Bound {
    /// Serves until `shutdown` resolves, then saves the tenant if `--save` was given.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), SimError> {
        let router = self
            .state
            .router
            .get()
            .cloned()
            .unwrap_or_else(|| router(self.state.clone()));
        axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(SimError::Serve)?;
        self.state.save()?;
        Ok(())
    }
}

/// Binds, prints `listening on http://ADDR` (one line, flushed) and serves until Ctrl-C/SIGTERM.
pub async fn serve(cfg: SimConfig) -> Result<(), SimError> {
    use std::io::Write;
    let bound = bind(cfg).await?;
    println!("listening on http://{}", bound.addr);
    let _ = std::io::stdout().flush();
    bound.serve(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
