//! The REST routes of the foundation, over real HTTP, on every configured database.

mod common;

use common::{backends, spawn_app, user};
use serde_json::json;

#[tokio::test]
async fn direct_conversations_are_reused_for_the_same_pair() {
    for backend in backends() {
        let app = spawn_app(backend, &[]).await;
        let (alice, bob) = (user("alice"), user("bob"));
        let (status, first) =
            app.post(&alice, "/api/conversations", json!({ "type": "direct", "participantIds": [bob] })).await;
        assert_eq!(status, 201, "{backend}: {first}");
        assert_eq!(first["success"], true);
        assert_eq!(first["data"]["type"], "direct");
        let participants: Vec<&str> =
            first["data"]["participants"].as_array().unwrap().iter().map(|p| p["userId"].as_str().unwrap()).collect();
        assert!(participants.contains(&alice.as_str()) && participants.contains(&bob.as_str()));
        // The other side asking for the same pair gets the same conversation.
        let (status, again) =
            app.post(&bob, "/api/conversations", json!({ "type": "direct", "participantIds": [alice] })).await;
        assert_eq!(status, 200, "{backend}");
        assert_eq!(again["data"]["id"], first["data"]["id"]);
        app.stop().await;
    }
}

#[tokio::test]
async fn concurrent_creates_of_one_direct_pair_yield_one_conversation() {
    for backend in backends() {
        let app = std::sync::Arc::new(spawn_app(backend, &[]).await);
        let (alice, bob) = (user("alice"), user("bob"));
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (app, a, b) = (app.clone(), alice.clone(), bob.clone());
            tasks.push(tokio::spawn(async move {
                let (me, other) = if i % 2 == 0 { (a, b) } else { (b, a) };
                app.post(&me, "/api/conversations", json!({ "type": "direct", "participantIds": [other] })).await
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            let (status, body) = t.await.unwrap();
            assert!(status == 200 || status == 201, "{backend}: {status} {body}");
            ids.push(body["data"]["id"].as_str().unwrap().to_string());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "{backend}: {ids:?}");
        if let Ok(app) = std::sync::Arc::try_unwrap(app) {
            app.stop().await;
        }
    }
}

#[tokio::test]
async fn conversations_are_validated() {
    for backend in backends() {
        let app = spawn_app(backend, &[]).await;
        let alice = user("alice");
        for (body, code) in [
            (json!({ "type": "direct", "participantIds": [] }), "VALIDATION_FAILED"),
            (json!({ "type": "direct", "participantIds": ["a", "b"] }), "VALIDATION_FAILED"),
            (json!({ "type": "channel", "participantIds": [] }), "VALIDATION_FAILED"),
            (json!({ "type": "group", "participantIds": [""] }), "VALIDATION_FAILED"),
            (json!({ "type": "self", "participantIds": ["x"] }), "VALIDATION_FAILED"),
            (json!({ "participantIds": [] }), "VALIDATION_FAILED"),
            (json!("not an object"), "VALIDATION_FAILED"),
        ] {
            let (status, res) = app.post(&alice, "/api/conversations", body.clone()).await;
            assert_eq!(status, 422, "{backend}: {body} → {res}");
            assert_eq!(res["success"], false);
            assert_eq!(res["error"]["code"], code);
        }
        // A body that is not JSON at all gets the same envelope, as INVALID_JSON (400).
        let res = app
            .http
            .post(format!("{}/api/conversations", app.url))
            .bearer_auth(app.token(&alice))
            .header("content-type", "application/json")
            .body("{nope")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 400);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "INVALID_JSON");
        // Note to self is reused like a direct conversation.
        let one = app.chat(&alice, "self", &[]).await;
        let two = app.chat(&alice, "self", &[]).await;
        assert_eq!(one, two);
        app.stop().await;
    }
}

#[tokio::test]
async fn only_members_read_a_conversation() {
    for backend in backends() {
        let app = spawn_app(backend, &[]).await;
        let (alice, bob, eve) = (user("alice"), user("bob"), user("eve"));
        let chat = app.chat(&alice, "group", &[&bob]).await;
        let (status, body) = app.get(&bob, &format!("/api/conversations/{chat}")).await;
        assert_eq!(status, 200, "{backend}");
        assert_eq!(body["data"]["id"], chat.as_str());
        let (status, body) = app.get(&eve, &format!("/api/conversations/{chat}")).await;
        assert_eq!(status, 403, "{backend}");
        assert_eq!(body["error"]["code"], "FORBIDDEN");
        let (status, body) = app.get(&eve, "/api/conversations/does-not-exist").await;
        assert_eq!(status, 404, "{backend}");
        assert_eq!(body["error"]["code"], "NOT_FOUND");
        app.stop().await;
    }
}

#[tokio::test]
async fn group_members_are_managed_by_owners_within_the_size_limit() {
    for backend in backends() {
        let app = spawn_app(backend, &[("MAX_GROUP_SIZE", "3")]).await;
        let (owner, m1, m2, m3) = (user("owner"), user("m1"), user("m2"), user("m3"));
        let chat = app.chat(&owner, "group", &[&m1]).await;
        let path = format!("/api/conversations/{chat}/members");
        // A plain member may not add people.
        let (status, body) = app.post(&m1, &path, json!({ "userId": m2 })).await;
        assert_eq!(status, 403, "{backend}: {body}");
        let (status, body) = app.post(&owner, &path, json!({ "userId": m2, "role": "admin" })).await;
        assert_eq!(status, 201, "{backend}: {body}");
        let added =
            body["data"]["participants"].as_array().unwrap().iter().find(|p| p["userId"] == m2.as_str()).cloned();
        assert_eq!(added.unwrap()["role"], "admin");
        let (status, body) = app.post(&owner, &path, json!({ "userId": m2 })).await;
        assert_eq!(status, 409, "{backend}");
        assert_eq!(body["error"]["code"], "CONFLICT");
        // Three members is the limit here.
        let (status, body) = app.post(&m2, &path, json!({ "userId": m3 })).await;
        assert_eq!(status, 409, "{backend}: {body}");
        assert_eq!(body["error"]["code"], "GROUP_FULL");
        // Creating an oversize group is refused the same way.
        let (status, body) =
            app.post(&owner, "/api/conversations", json!({ "type": "group", "participantIds": [m1, m2, m3] })).await;
        assert_eq!(status, 409, "{backend}");
        assert_eq!(body["error"]["code"], "GROUP_FULL");
        // Direct conversations take no extra members.
        let direct = app.chat(&owner, "direct", &[&m1]).await;
        let (status, _) =
            app.post(&owner, &format!("/api/conversations/{direct}/members"), json!({ "userId": m3 })).await;
        assert_eq!(status, 422, "{backend}");
        app.stop().await;
    }
}

#[tokio::test]
async fn health_reports_the_database() {
    for backend in backends() {
        let app = spawn_app(backend, &[]).await;
        let body: serde_json::Value = reqwest::get(format!("{}/health", app.url)).await.unwrap().json().await.unwrap();
        assert_eq!(body["status"], "healthy");
        assert_eq!(body["database"]["ok"], true);
        assert_eq!(body["database"]["backend"], if backend == "sqlite" { "sqlite" } else { "postgres" });
        app.stop().await;
    }
}

/// `DEFAULT_PROFILE` names a Socket.IO dialect of the registry; anything else stops the start
/// with a message naming the setting (a raw WebSocket dialect cannot serve the namespace `/`).
#[tokio::test]
async fn a_default_profile_that_is_no_socket_io_dialect_stops_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    for (name, ok) in [("spark", true), ("SUP", true), ("mrezhen", false), ("nope", false)] {
        let vars = [
            ("DATABASE_URL", url.as_str()),
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("JWT_SECRET", "s"),
            ("DEFAULT_PROFILE", name),
        ];
        let config =
            switchboard::config::Config::from_vars(vars.map(|(k, v)| (k.to_string(), v.to_string()))).expect("config");
        match switchboard::Application::build(config).await {
            Ok(app) => {
                assert!(ok, "{name} was accepted");
                app.state().core.stop_background();
            }
            Err(e) => {
                assert!(!ok, "{name}: {e}");
                let text = e.to_string();
                assert!(text.contains("DEFAULT_PROFILE") && text.contains("sup, spark"), "{text}");
            }
        }
    }
}
