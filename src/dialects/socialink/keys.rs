//! Socialink's keys (protocols/socialink.md). To be written on its branch.

use std::sync::Arc;

use axum::Router;

use crate::transport::AppState;

pub fn router(_app: &AppState) -> Router<Arc<AppState>> {
    Router::new()
}
