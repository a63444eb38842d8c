//! Issue #17's HTTP-only findings, each against a real server with a real HTTP client: image
//! bombs, the declared type of an upload, the edges of the REST surface (404, 405, 414, paths
//! that are not UTF-8, bodies over the limit, arrays where an object belongs), and token
//! subjects that are not printable ids.

mod common;

use std::io::Cursor;

use common::{backends, spawn_app, user, TestApp};
use image::{DynamicImage, ImageFormat, RgbImage};
use serde_json::{json, Value};

/// A real PNG of `w` × `h` pixels.
fn png(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, 7]));
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img).write_to(&mut out, ImageFormat::Png).expect("encode png");
    out.into_inner()
}

/// A PNG that is only its header, declaring `w` × `h` pixels, and one empty data chunk: the
/// first bytes of a decompression bomb. Had the server started decoding it, the missing
/// pixels would be `VALIDATION_FAILED` ("could not be decoded"); a refusal from the header
/// alone is 413 `CONTENT_TOO_LONG` naming the declared size.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = 0xFFFF_FFFFu32;
        for &b in &out[start..] {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        out.extend_from_slice(&(!crc).to_be_bytes());
    }
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut out, b"IEND", &[]);
    out
}

async fn upload(app: &TestApp, who: &str, bytes: Vec<u8>, mime: &str) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name("f.bin").mime_str(mime).expect("mime");
    let res = app
        .http
        .post(format!("{}/api/attachments", app.url))
        .bearer_auth(app.token(who))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    (res.status().as_u16(), res.json().await.expect("an envelope"))
}

/// `{ success: false, error: { code } }` with a message, or a panic saying what came instead.
fn code_of(status: u16, body: &Value) -> (u16, &str) {
    assert_eq!(body["success"], false, "{status}: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    (status, body["error"]["code"].as_str().unwrap_or("<none>"))
}

#[tokio::test]
async fn image_bombs_are_refused_from_their_header_with_413() {
    for backend in backends() {
        let app = spawn_app(backend, &[]).await;
        let alice = user("alice");
        for (w, h) in [(8000, 8000), (24000, 24000), (40000, 40000)] {
            let (status, body) = upload(&app, &alice, png_header(w, h), "image/png").await;
            assert_eq!(code_of(status, &body), (413, "CONTENT_TOO_LONG"), "{backend} {w}×{h}: {body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("declares"), "the refusal comes from the declared size: {message}");
        }
        // Nothing was stored for them.
        let files = std::fs::read_dir(app.media.path()).map(|d| d.count()).unwrap_or(0);
        assert_eq!(files, 0, "{backend}: no file written for a refused image");
        app.stop().await;
    }
}

#[tokio::test]
async fn image_max_pixels_binds_a_real_image_and_images_within_it_pass() {
    for backend in backends() {
        let app = spawn_app(backend, &[("IMAGE_MAX_PIXELS", "1000000")]).await;
        let alice = user("alice");
        let (status, body) = upload(&app, &alice, png(1250, 1000), "image/png").await;
        assert_eq!(code_of(status, &body), (413, "CONTENT_TOO_LONG"), "{backend}: {body}");
        let (status, body) = upload(&app, &alice, png(1000, 1000), "image/png").await;
        assert_eq!(status, 201, "{backend}: {body}");
        assert_eq!((body["data"]["width"].as_u64(), body["data"]["height"].as_u64()), (Some(1000), Some(1000)));
        app.stop().await;
    }
}

#[tokio::test]
async fn the_declared_type_of_an_upload_must_agree_with_its_bytes() {
    for backend in backends() {
        let app = spawn_app(backend, &[]).await;
        let alice = user("alice");
        let pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n".to_vec();
        for (bytes, declared) in [
            (png(8, 8), "application/pdf"),
            (png(8, 8), "image/jpeg"),
            (png(8, 8), "text/html"),
            (pdf.clone(), "application/zip"),
            (pdf.clone(), "text/plain"),
        ] {
            let (status, body) = upload(&app, &alice, bytes, declared).await;
            assert_eq!(code_of(status, &body), (422, "VALIDATION_FAILED"), "{backend} as {declared}: {body}");
        }
        for (bytes, declared) in
            [(png(8, 8), "image/png"), (pdf, "application/pdf"), (png(8, 8), "application/octet-stream")]
        {
            let (status, body) = upload(&app, &alice, bytes, declared).await;
            assert_eq!(status, 201, "{backend} as {declared}: {body}");
        }
        app.stop().await;
    }
}

/// A request with a body, answered as `(status, parsed JSON or Null, content type)`.
async fn send(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> (u16, Value, String) {
    let mut req = app.http.request(method, format!("{}{path}", app.url)).bearer_auth(app.token(&user("u")));
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let kind = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), kind)
}

#[tokio::test]
async fn every_edge_of_the_rest_surface_answers_in_the_envelope() {
    let app = spawn_app("sqlite", &[]).await;
    let get = reqwest::Method::GET;
    let cases: Vec<EdgeCase> = vec![
        ("a path that is not UTF-8", get.clone(), "/api/conversations/%FF".into(), None, 400, "VALIDATION_FAILED"),
        ("an unknown route", get.clone(), "/api/nothing-here".into(), None, 404, "NOT_FOUND"),
        ("a route without this method", reqwest::Method::PATCH, "/api/attachments".into(), None, 405, "NOT_FOUND"),
        (
            "a URI over the limit",
            get.clone(),
            format!("/api/conversations/{}", "a".repeat(9000)),
            None,
            414,
            "VALIDATION_FAILED",
        ),
        (
            "a body over the limit",
            reqwest::Method::POST,
            "/api/conversations".into(),
            Some(big_json(2 << 20)),
            413,
            "CONTENT_TOO_LONG",
        ),
        (
            "a body that is not JSON",
            reqwest::Method::POST,
            "/api/conversations".into(),
            Some(b"{nope".to_vec()),
            400,
            "INVALID_JSON",
        ),
        (
            "an array body",
            reqwest::Method::POST,
            "/api/conversations".into(),
            Some(br#"["direct", ["bob"]]"#.to_vec()),
            422,
            "VALIDATION_FAILED",
        ),
    ];
    for (what, method, path, body, status, code) in cases {
        let (got, body, kind) = send(&app, method, &path, body).await;
        assert!(kind.starts_with("application/json"), "{what}: content type {kind}");
        assert_eq!(code_of(got, &body), (status, code), "{what}: {body}");
    }
    app.stop().await;
}

/// What is sent (what, method, path, body) and the status and code expected.
type EdgeCase = (&'static str, reqwest::Method, String, Option<Vec<u8>>, u16, &'static str);

/// A JSON object of about `size` bytes.
fn big_json(size: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({ "type": "group", "name": "x".repeat(size), "participantIds": [] })).expect("json")
}

#[tokio::test]
async fn an_array_body_never_stores_a_message() {
    for backend in backends() {
        let app = spawn_app(backend, &[]).await;
        let (alice, bob) = (user("alice"), user("bob"));
        let chat = app.chat(&alice, "direct", &[&bob]).await;
        let path = format!("/api/conversations/{chat}/messages");
        // The fields of a send, by position: what serde reads when nothing stops it.
        let res = app
            .http
            .post(format!("{}{path}", app.url))
            .bearer_auth(app.token(&alice))
            .json(&json!([chat, "by position", false, null, [], "t-1", "text"]))
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        let body: Value = res.json().await.expect("json");
        assert_eq!(code_of(status, &body), (422, "VALIDATION_FAILED"), "{backend}: {body}");
        // A nested array where an object belongs (a location) is refused the same way.
        let (status, body) = app.post(&alice, &path, json!({ "type": "location", "location": [48.85, 2.35] })).await;
        assert_eq!(code_of(status, &body), (422, "VALIDATION_FAILED"), "{backend}: {body}");
        let (_, page) = app.get(&alice, &path).await;
        assert_eq!(page["data"]["messages"].as_array().map(Vec::len), Some(0), "{backend}: nothing stored: {page}");
        app.stop().await;
    }
}

#[tokio::test]
async fn token_subjects_must_be_printable_trimmed_ids() {
    let app = spawn_app("sqlite", &[]).await;
    for bad in ["a\u{0}b", "two\nlines", "   ", " padded", "evil\u{202E}nimda", "zero\u{200B}width"] {
        let token = switchboard::auth::mint(common::SECRET, None, bad, None, std::time::Duration::from_secs(600))
            .expect("mint");
        let res =
            app.http.get(format!("{}/api/conversations", app.url)).bearer_auth(token).send().await.expect("request");
        let status = res.status().as_u16();
        let body: Value = res.json().await.expect("json");
        assert_eq!(code_of(status, &body), (401, "UNAUTHORIZED"), "{bad:?}: {body}");
        assert!(body["error"]["message"].as_str().unwrap_or_default().starts_with("token subject"), "{body}");
    }
    app.stop().await;
}
