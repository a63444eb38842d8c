//! The OpenAPI 3.1 description of Socialink's REST API, served at `/api/v1/openapi.json`
//! beside Spark's `/api/openapi.json`, without a token (as Spark's). Written from
//! protocols/socialink.md §3–§8; the test below keeps it covering every route.

use std::sync::Arc;

use axum::{http::header, routing::get, Router};

use crate::transport::AppState;

const OPENAPI: &str = include_str!("../../http/assets/socialink-openapi.json");

pub fn router(_app: &AppState) -> Router<Arc<AppState>> {
    Router::new().route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_every_socialink_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "/api/v1");
        let routes: &[(&str, &[&str])] = &[
            ("/keys/register/{user_id}", &["post"]),
            ("/keys/bundle/{user_id}", &["get"]),
            ("/keys/rotate/{user_id}/{device_id}", &["put"]),
            ("/keys/prekeys/{user_id}/{device_id}", &["post"]),
            ("/keys/deactivate/{user_id}/{device_id}", &["delete"]),
            ("/keys/devices/{user_id}", &["get"]),
            ("/keys/stats/{user_id}/{device_id}", &["get"]),
            ("/messages/send/{sender_id}", &["post"]),
            ("/messages/conversation/{user_id}", &["get"]),
            ("/messages/delivered/{user_id}/{message_id}", &["put"]),
            ("/messages/read/{user_id}/{message_id}", &["put"]),
            ("/messages/delete/{user_id}/{message_id}", &["delete"]),
            ("/messages/queue/{user_id}/{device_id}", &["get", "delete"]),
            ("/groups/create/{creator_id}", &["post"]),
            ("/groups/{group_id}/members/{added_by}", &["post"]),
            ("/groups/{group_id}/members/{user_id}/{removed_by}", &["delete"]),
            ("/groups/{group_id}/send/{sender_id}", &["post"]),
            ("/groups/{group_id}", &["get"]),
            ("/groups/{group_id}/members", &["get"]),
            ("/presence/online/{user_id}", &["put"]),
            ("/presence/offline/{user_id}", &["put"]),
            ("/presence/status/{user_id}", &["put"]),
            ("/presence/{user_id}", &["get"]),
            ("/presence/bulk", &["post"]),
            ("/presence/online-count", &["get"]),
            ("/typing/{conversation_id}/{user_id}", &["put", "delete"]),
            ("/typing/{conversation_id}", &["get"]),
            ("/calls/initiate/{caller_id}", &["post"]),
            ("/calls/{call_id}/answer/{user_id}", &["put"]),
            ("/calls/{call_id}/decline/{user_id}", &["put"]),
            ("/calls/{call_id}/end/{user_id}", &["put"]),
            ("/calls/{call_id}/ice/{user_id}", &["post"]),
            ("/calls/{call_id}/ice", &["get"]),
            ("/calls/history/{conversation_id}", &["get"]),
        ];
        let mut operations = 0;
        for (path, methods) in routes {
            for method in *methods {
                let op = &doc["paths"][path][method];
                assert!(op.is_object(), "{method} {path}");
                assert!(op["responses"].is_object(), "{method} {path} has responses");
                operations += 1;
            }
        }
        assert_eq!(operations, 36, "§3–§8 list 7 + 7 + 6 + 6 + 3 + 7 endpoints");
        let described: usize = doc["paths"]
            .as_object()
            .map(|p| p.values().map(|m| m.as_object().map_or(0, |m| m.len())).sum())
            .unwrap_or(0);
        assert_eq!(described, operations, "nothing described that the contract does not have");
        // Every $ref resolves.
        let text = OPENAPI;
        for piece in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap_or_default();
            assert!(doc["components"]["schemas"][name].is_object(), "schema {name}");
        }
    }
}
