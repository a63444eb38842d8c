//! Raw WebSocket dialects: each translates its frames to core calls and core events to its
//! frames, over the host in `transport::raw_ws`. Registering one is a line in [`mount`].

pub mod mrezhen;

use std::sync::Arc;

use axum::{extract::Request, http::header, middleware::Next, Router};

use crate::{app::AppState, transport::raw_ws};

/// Serves the raw WebSocket dialects on `router`: `mrezhen` at `/ws`, and on WebSocket
/// upgrades to `/` (its browser client opens the root path; a plain `GET /` still reaches
/// the demo page, and Socket.IO keeps `/socket.io/`).
pub fn mount(router: Router, app: &Arc<AppState>) -> Router {
    let (app, mrezhen) = (app.clone(), Arc::new(mrezhen::Mrezhen::new(&app.core, &app.config)));
    router.layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let (app, mrezhen) = (app.clone(), mrezhen.clone());
        async move {
            let path = req.uri().path();
            if path == "/ws" || (path == "/" && wants_websocket(&req)) {
                return raw_ws::accept(app, mrezhen, req, None).await;
            }
            next.run(req).await
        }
    }))
}

/// An HTTP/1.1 WebSocket upgrade request (`Upgrade: websocket`).
fn wants_websocket(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")))
}
