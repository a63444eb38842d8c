//! Spark's attachments and device keys where a Rust client is the better tool: real JPEGs
//! (with an EXIF orientation) made by the `image` crate, and key ages moved in the database.

mod common;

use std::io::Cursor;

use chrono::{Duration, Utc};
use common::{backends, spawn_app, user};
use image::{codecs::jpeg::JpegEncoder, DynamicImage, ImageEncoder, RgbImage};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};

/// A `w`×`h` JPEG; with `orientation`, an EXIF block saying how to turn it upright.
fn jpeg(w: u32, h: u32, orientation: Option<u16>) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, 90]));
    let mut out = Cursor::new(Vec::new());
    let mut encoder = JpegEncoder::new_with_quality(&mut out, 90);
    if let Some(o) = orientation {
        // Big-endian TIFF with one IFD entry: Orientation (0x0112), SHORT, 1 value.
        let mut exif = vec![b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1];
        exif.extend_from_slice(&o.to_be_bytes());
        exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        encoder.set_exif_metadata(exif).expect("jpeg takes exif");
    }
    encoder.write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8).expect("encode jpeg");
    out.into_inner()
}

async fn upload(app: &common::TestApp, who: &str, bytes: Vec<u8>, mime: &str, name: &str) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()).mime_str(mime).expect("mime");
    let form = reqwest::multipart::Form::new().part("file", part);
    let res = app
        .http
        .post(format!("{}/api/attachments", app.url))
        .bearer_auth(app.token(who))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    (res.status().as_u16(), res.json().await.expect("json"))
}

async fn fetch_image(app: &common::TestApp, who: &str, path: &str) -> (String, DynamicImage) {
    let res = app.http.get(format!("{}{path}", app.url)).bearer_auth(app.token(who)).send().await.expect("download");
    assert_eq!(res.status().as_u16(), 200, "{path}");
    let kind = res.headers()["content-type"].to_str().expect("ascii").to_string();
    let bytes = res.bytes().await.expect("body");
    (kind, image::load_from_memory(&bytes).expect("decodes"))
}

#[tokio::test]
async fn a_large_jpeg_is_scaled_to_2048_and_gets_a_jpeg_thumbnail() {
    for backend in backends() {
        let app = spawn_app(backend, &[]).await;
        let alice = user("alice");
        let (status, body) = upload(&app, &alice, jpeg(3000, 1500, None), "image/jpeg", "photo.jpg").await;
        assert_eq!(status, 201, "{backend}: {body}");
        let a = &body["data"];
        assert_eq!(a["contentType"], "image/jpeg");
        assert_eq!((a["width"].as_u64(), a["height"].as_u64()), (Some(2048), Some(1024)));
        let (kind, full) = fetch_image(&app, &alice, a["url"].as_str().expect("url")).await;
        assert_eq!(kind, "image/jpeg");
        assert_eq!((full.width(), full.height()), (2048, 1024));
        let (kind, thumb) = fetch_image(&app, &alice, a["thumbnailUrl"].as_str().expect("thumbnail")).await;
        assert_eq!(kind, "image/jpeg");
        assert_eq!((thumb.width(), thumb.height()), (320, 160));
        app.stop().await;
    }
}

#[tokio::test]
async fn a_photo_is_turned_upright_and_loses_its_exif() {
    for backend in backends() {
        let app = spawn_app(backend, &[("IMAGE_MAX_WIDTH", "100"), ("IMAGE_MAX_HEIGHT", "100")]).await;
        let alice = user("alice");
        // Stored sideways (300×150) with "rotate 90° clockwise to view" (orientation 6).
        let (status, body) = upload(&app, &alice, jpeg(300, 150, Some(6)), "image/jpeg", "portrait.jpg").await;
        assert_eq!(status, 201, "{backend}: {body}");
        let a = &body["data"];
        assert_eq!((a["width"].as_u64(), a["height"].as_u64()), (Some(50), Some(100)), "upright, then fit 100×100");
        let res = app
            .http
            .get(format!("{}{}", app.url, a["url"].as_str().expect("url")))
            .bearer_auth(app.token(&alice))
            .send()
            .await
            .expect("download");
        let bytes = res.bytes().await.expect("body");
        assert!(!bytes.windows(6).any(|w| w == b"Exif\0\0"), "{backend}: metadata stripped");
        app.stop().await;
    }
}

#[tokio::test]
async fn keys_older_than_key_rotation_days_are_due() {
    for backend in backends() {
        let app = spawn_app(backend, &[("KEY_ROTATION_DAYS", "30")]).await;
        let alice = user("alice");
        let (status, body) =
            app.post(&alice, "/api/encryption/keys", json!({ "publicKey": "b2xkLWtleQ==", "deviceId": "d1" })).await;
        assert_eq!(status, 201, "{backend}: {body}");
        assert_eq!(body["data"]["rotationDue"], false);
        // Age the key by 31 days.
        entity::device_key::Entity::update_many()
            .col_expr(
                entity::device_key::Column::CreatedAt,
                sea_orm::sea_query::Expr::value(Utc::now() - Duration::days(31)),
            )
            .filter(entity::device_key::Column::UserId.eq(alice.as_str()))
            .exec(app.state.core.db())
            .await
            .expect("age the key");
        let (_, keys) = app.get(&alice, &format!("/api/encryption/keys/{alice}")).await;
        assert_eq!(keys["data"]["keys"][0]["rotationDue"], true, "{backend}: {keys}");
        // Uploading a new key rotates it: a fresh age, and due again only in 30 days.
        let (status, body) =
            app.post(&alice, "/api/encryption/keys", json!({ "publicKey": "bmV3LWtleQ==", "deviceId": "d1" })).await;
        assert_eq!(status, 201);
        assert_eq!(body["data"]["rotationDue"], false);
        app.stop().await;

        let app = spawn_app(backend, &[("KEY_ROTATION_DAYS", "0")]).await;
        let (_, body) =
            app.post(&alice, "/api/encryption/keys", json!({ "publicKey": "a2V5", "deviceId": "d1" })).await;
        assert_eq!(body["data"]["rotateAfter"], Value::Null, "{backend}: zero means never");
        assert_eq!(body["data"]["rotationDue"], false);
        app.stop().await;
    }
}
