//! HTTP: the axum router with REST routes, health, metrics and static files. The Socket.IO
//! layer wraps it (see `lib.rs`).

use std::sync::Arc;

pub mod edges;

use axum::{
    extract::{DefaultBodyLimit, State},
    http::{header, HeaderValue, Method, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{dialects, transport::AppState};

/// The Socket.IO browser client, as the Node server serves it at `/socket.io/socket.io.js`
/// (socket.io-client 4.8.1, MIT licence, from its npm package).
const SOCKET_IO_JS: &str = include_str!("assets/socket.io.min.js");
const DEMO_PAGE: &str = include_str!("assets/demo.html");
/// OpenAPI 3.1 description of the Spark REST API, served at `/api/openapi.json`.
const OPENAPI: &str = include_str!("assets/openapi.json");

pub fn router(state: Arc<AppState>) -> Router {
    let router = Router::new()
        .route("/", get(|| async { Html(DEMO_PAGE) }))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }));
    let router = dialects::routes(router, &state)
        // Every route's JSON body is bounded (uploads set their own, larger limit).
        .layer(DefaultBodyLimit::max(state.config.rest_max_body_size))
        .fallback(edges::no_route)
        .method_not_allowed_fallback(edges::method_not_allowed)
        .layer(axum::middleware::from_fn(edges::check_uri))
        .with_state(state.clone());
    dialects::intercept(router, &state)
}

/// CORS from `CORS_ORIGIN`: `*` allows any origin (without credentials, as browsers
/// require); a list allows those origins with credentials. Preflights allow `Authorization`.
pub fn cors(origins: &[String]) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT]);
    if origins.iter().any(|o| o == "*") {
        base.allow_origin(AllowOrigin::any())
    } else {
        let list: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
        base.allow_origin(AllowOrigin::list(list)).allow_credentials(true)
    }
}

/// Serves `/socket.io/socket.io.js`. It must sit *outside* the Socket.IO layer, which
/// claims every path under `/socket.io/` for Engine.IO.
pub async fn socket_io_client(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path();
    if req.method() == Method::GET && (path == "/socket.io/socket.io.js" || path == "/socket.io/socket.io.min.js") {
        let headers = [
            (header::CONTENT_TYPE, "application/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ];
        return (headers, SOCKET_IO_JS).into_response();
    }
    next.run(req).await
}

/// `GET /health`: status, uptime, connection counts, event and error counts, database
/// reachability.
async fn health(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    let reachable = crate::store::ping(app.core.db()).await;
    let storage = app.core.storage_report();
    // Reads answering is not enough: a disk that refuses writes loses every new message.
    let db_ok = reachable && !storage.writes_failing;
    let redis_ok = match &app.redis {
        Some(pool) => Some(crate::store::redis::ping(pool).await),
        None => None,
    };
    let healthy = db_ok && redis_ok != Some(false);
    let status = if healthy { "healthy" } else { "degraded" };
    let counts = app.metrics.health_counts();
    // The e2e seed's health reports its sessions; a failed count shows as null.
    let sessions = app.core.session_count().await.ok();
    let body = json!({
        "status": status,
        "uptime": app.started.elapsed().as_millis() as u64,
        "timestamp": crate::dialects::iso(&chrono::Utc::now()),
        "connections": {
            "active": app.core.hub.connection_count(),
            "total": app.metrics.connections_total.get(),
            "peak": app.metrics.peak(),
            "refused": counts.refused_by_reason,
            "idleDisconnects": counts.idle_disconnects,
        },
        "events": { "total": counts.events_total, "byEvent": counts.events_by_name },
        "errors": { "total": counts.errors_total, "byCode": counts.errors_by_code },
        "database": {
            "ok": db_ok,
            "backend": if app.config.is_postgres() { "postgres" } else { "sqlite" },
            "reachable": reachable,
            "writes": if storage.writes_failing { "failing" } else { "ok" },
            "errorsTotal": storage.errors_total,
            "lastError": storage.last_error,
        },
        "redis": { "configured": redis_ok.is_some(), "ok": redis_ok },
        "instance": app.core.hub.instance(),
        "activeSessions": sessions,
        "sessions": { "active": sessions },
    });
    let code = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body))
}

async fn metrics(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    app.metrics.set_storage(&app.core.storage_report());
    let catchup = &app.core.catchup;
    app.metrics.set_catchups(
        catchup.recalled.load(std::sync::atomic::Ordering::Relaxed),
        catchup.queried.load(std::sync::atomic::Ordering::Relaxed),
    );
    app.metrics
        .slow_consumer_resyncs
        .set(app.core.hub.stats.slow_consumer_resyncs.load(std::sync::atomic::Ordering::Relaxed) as i64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.metrics.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_every_spark_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        for (path, methods) in [
            ("/api/conversations", &["get", "post"][..]),
            ("/api/conversations/{id}", &["get", "put", "patch", "delete"]),
            ("/api/conversations/{id}/members", &["post"]),
            ("/api/conversations/{id}/members/{userId}", &["delete"]),
            ("/api/conversations/{id}/messages", &["get", "post"]),
            ("/api/messages/{id}", &["put", "delete"]),
            ("/api/messages/{id}/edits", &["get"]),
            ("/api/messages/{id}/reactions", &["post"]),
            ("/api/messages/{id}/reactions/{emoji}", &["delete"]),
            ("/api/attachments", &["post"]),
            ("/api/attachments/{id}", &["get"]),
            ("/api/attachments/{id}/thumbnail", &["get"]),
            ("/api/encryption/keys", &["post"]),
            ("/api/encryption/keys/{userId}", &["get"]),
            ("/api/encryption/verify", &["post"]),
        ] {
            for method in methods {
                assert!(doc["paths"][path][method].is_object(), "{method} {path}");
            }
        }
    }
}
