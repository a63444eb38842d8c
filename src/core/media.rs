//! What an upload really is, and images made fit to serve. The type of a file is sniffed from
//! its bytes (magic numbers), never taken from its name or the client's `Content-Type`; the
//! client's claim only has to agree with what was found. Images are decoded, turned upright
//! (EXIF orientation), scaled down to fit the configured box, re-encoded — which also strips
//! metadata such as GPS positions — and given a thumbnail. All of this is CPU work, meant to
//! run on the blocking pool.

use std::io::Cursor;

use image::{codecs::jpeg::JpegEncoder, DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use crate::error::{AppError, AppResult};

/// What kind of file an attachment is; decides how clients show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    File,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::File => "file",
        }
    }

    /// The kind a client asks for (`voice` is a recording, so audio).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "image" => Some(MediaKind::Image),
            "video" => Some(MediaKind::Video),
            "audio" | "voice" => Some(MediaKind::Audio),
            "file" => Some(MediaKind::File),
            _ => None,
        }
    }
}

/// The sniffed type of an upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sniffed {
    pub content_type: &'static str,
    pub kind: MediaKind,
    /// Set for images we decode and rescale.
    pub image: Option<ImageFormat>,
}

/// The allow-list: what sniffing may find, and what we then serve it as.
const ALLOWED: &[(&str, &str, MediaKind)] = &[
    ("image/png", "image/png", MediaKind::Image),
    ("image/jpeg", "image/jpeg", MediaKind::Image),
    ("image/gif", "image/gif", MediaKind::Image),
    ("image/webp", "image/webp", MediaKind::Image),
    ("video/mp4", "video/mp4", MediaKind::Video),
    ("video/webm", "video/webm", MediaKind::Video),
    ("video/quicktime", "video/quicktime", MediaKind::Video),
    ("audio/mpeg", "audio/mpeg", MediaKind::Audio),
    ("audio/m4a", "audio/mp4", MediaKind::Audio),
    ("audio/aac", "audio/aac", MediaKind::Audio),
    ("audio/ogg", "audio/ogg", MediaKind::Audio),
    ("audio/opus", "audio/ogg", MediaKind::Audio),
    ("audio/x-wav", "audio/wav", MediaKind::Audio),
    ("audio/x-flac", "audio/flac", MediaKind::Audio),
    ("application/pdf", "application/pdf", MediaKind::File),
    ("application/zip", "application/zip", MediaKind::File),
];

/// Figures out what `bytes` are. `declared` is the client's `Content-Type` for the part and
/// `requested` the kind it says it is sending; both must agree with the bytes, so an upload
/// "as image" that is not one is refused.
pub fn sniff(bytes: &[u8], declared: Option<&str>, requested: Option<MediaKind>) -> AppResult<Sniffed> {
    let declared = declared.map(|d| d.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    let declared_kind = declared.as_deref().and_then(|d| match d.split('/').next() {
        Some("image") => Some(MediaKind::Image),
        Some("video") => Some(MediaKind::Video),
        Some("audio") => Some(MediaKind::Audio),
        _ => None,
    });
    let wanted = requested.or(declared_kind);
    let found = infer::get(bytes).map(|t| t.mime_type());
    let mut sniffed = match found.and_then(|mime| ALLOWED.iter().find(|(m, _, _)| *m == mime)) {
        Some((_, served, kind)) => Sniffed { content_type: served, kind: *kind, image: image_format(served) },
        // Text has no magic number: accept it when it says so and is UTF-8 without NULs.
        None if found.is_none()
            && declared.as_deref().is_some_and(|d| d == "text/plain")
            && !bytes.contains(&0)
            && std::str::from_utf8(bytes).is_ok() =>
        {
            Sniffed { content_type: "text/plain; charset=utf-8", kind: MediaKind::File, image: None }
        }
        None => {
            return Err(AppError::validation(format!(
                "file type {} is not allowed (images: png, jpeg, gif, webp; audio: mp3, m4a, aac, ogg, wav, \
                 flac; video: mp4, webm, mov; documents: pdf, zip, plain text)",
                found.unwrap_or("unknown")
            )))
        }
    };
    // A recording in a video container (a browser's audio/webm, an .m4a named mp4) is audio.
    if wanted == Some(MediaKind::Audio) && sniffed.kind == MediaKind::Video && sniffed.content_type != "video/quicktime"
    {
        sniffed.kind = MediaKind::Audio;
        sniffed.content_type = if sniffed.content_type == "video/webm" { "audio/webm" } else { "audio/mp4" };
    }
    if let Some(wanted) = wanted {
        if wanted != MediaKind::File && wanted != sniffed.kind {
            return Err(AppError::validation(format!(
                "the file is not {} {} (it is {})",
                if wanted == MediaKind::Image { "an" } else { "a" },
                wanted.as_str(),
                sniffed.content_type
            )));
        }
    }
    // After the kind: "not an image" says more than "declared image/png" when both fail.
    if let Some(declared) = declared.as_deref() {
        if !agrees(declared, &sniffed) {
            return Err(AppError::validation(format!(
                "the part is declared {declared} but the file is {}",
                sniffed.content_type
            )));
        }
    }
    Ok(sniffed)
}

/// Whether a part's declared `Content-Type` (lowercase, without parameters) agrees with what
/// its bytes are. A declaration that says nothing (none, `application/octet-stream`) agrees
/// with anything. An image must be declared as its own format (a JPEG sent as `image/png` is
/// refused: browsers and clients trust that label); audio and video only as their family,
/// since containers are named in many ways (`audio/x-m4a`, `video/webm` for a recording);
/// documents as themselves; any other declaration (`text/html`, `application/json`) names a
/// type that is not allowed, so it cannot agree.
fn agrees(declared: &str, sniffed: &Sniffed) -> bool {
    if matches!(declared, "" | "application/octet-stream" | "binary/octet-stream") {
        return true;
    }
    let served = sniffed.content_type.split(';').next().unwrap_or_default();
    let alias = match declared {
        "image/jpg" | "image/pjpeg" => "image/jpeg",
        "image/x-png" => "image/png",
        "application/x-zip-compressed" | "application/x-zip" => "application/zip",
        "application/x-pdf" => "application/pdf",
        other => other,
    };
    match alias.split_once('/') {
        Some(("image", _)) => alias == served,
        Some(("audio", _)) => sniffed.kind == MediaKind::Audio,
        Some(("video", _)) => matches!(sniffed.kind, MediaKind::Video | MediaKind::Audio),
        _ => alias == served,
    }
}

fn image_format(content_type: &str) -> Option<ImageFormat> {
    match content_type {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/gif" => Some(ImageFormat::Gif),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

/// An image ready to store.
pub struct Processed {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub thumbnail: Vec<u8>,
}

/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIZE: u32 = 320;
/// JPEG quality of re-encoded photos and thumbnails.
const JPEG_QUALITY: u8 = 85;
/// Longest side of any image decoded, in pixels, whatever the pixel budget: row buffers and
/// filters are sized by a side, not by the area.
const MAX_SIDE: u32 = 32_768;

/// What an uploaded image may cost, and the box it is scaled to fit.
#[derive(Clone, Copy, Debug)]
pub struct ImageLimits {
    /// `IMAGE_MAX_WIDTH` × `IMAGE_MAX_HEIGHT`: the box images are scaled down to fit.
    pub max_width: u32,
    pub max_height: u32,
    /// `IMAGE_MAX_PIXELS`: width × height from the header, checked before anything is decoded.
    pub max_pixels: u64,
    /// `IMAGE_DECODE_MAX_BYTES`: what the decode may allocate, pixel buffer included.
    pub decode_max_bytes: u64,
}

/// The content type of an attachment's thumbnail: JPEG for photos, PNG (keeps transparency)
/// for everything else.
pub fn thumbnail_type(content_type: &str) -> &'static str {
    if content_type == "image/jpeg" {
        "image/jpeg"
    } else {
        "image/png"
    }
}

/// Decodes an image, turns it upright, scales it to fit the box (never up) and re-encodes it
/// in its own format, and makes a thumbnail. A GIF that already fits is kept byte for byte, so
/// its animation survives; scaling keeps only its first frame.
///
/// A small file can declare a huge image (a "decompression bomb": a 62 KB PNG of 8000 × 8000
/// pixels). So the header is read first and the image refused, 413 `CONTENT_TOO_LONG`, when
/// its area is over `max_pixels` or a side over [`MAX_SIDE`]; then the pixel buffer is
/// reserved against `decode_max_bytes` (with a second buffer when turning it upright needs
/// one) before it is allocated. `image`'s `Limits` alone do not do this here: they bind the
/// decoder's own allocations, and only `ImageReader::decode` also counts the output buffer,
/// which the orientation-aware path below (`from_decoder`) does not. Scaling uses area
/// averaging (`thumbnail`), which writes the output directly, instead of a filtered resize,
/// which held a floating-point copy of the image (16 bytes a pixel) on the way.
pub fn process_image(bytes: &[u8], format: ImageFormat, limits: &ImageLimits) -> AppResult<Processed> {
    let unreadable = |e: image::ImageError| match e {
        image::ImageError::Limits(limit) => match limit.kind() {
            image::error::LimitErrorKind::DimensionError => {
                too_large(&format!("it declares a side longer than {MAX_SIDE} pixels"))
            }
            _ => too_large("it needs more memory to decode than IMAGE_DECODE_MAX_BYTES"),
        },
        other => AppError::validation(format!("the image could not be decoded: {other}")),
    };
    let mut budget = Limits::default();
    budget.max_image_width = Some(MAX_SIDE);
    budget.max_image_height = Some(MAX_SIDE);
    budget.max_alloc = Some(limits.decode_max_bytes);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(budget.clone());
    // Reads the header only: no pixel memory yet.
    let mut decoder = reader.into_decoder().map_err(unreadable)?;
    let (width, height) = decoder.dimensions();
    check_area(width, height, limits.max_pixels)?;
    let orientation = decoder.orientation().map_err(unreadable)?;
    let buffers = if orientation == image::metadata::Orientation::NoTransforms { 1 } else { 2 };
    for _ in 0..buffers {
        budget.reserve(decoder.total_bytes()).map_err(unreadable)?;
    }
    decoder.set_limits(budget).map_err(unreadable)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    img.apply_orientation(orientation);

    let (max_w, max_h) = (limits.max_width, limits.max_height);
    let fits = img.width() <= max_w && img.height() <= max_h;
    let bytes = if fits && format == ImageFormat::Gif {
        bytes.to_vec()
    } else {
        if !fits {
            img = img.thumbnail(max_w, max_h);
        }
        encode(&img, format)?
    };
    // `thumbnail` fits the box both ways; a small image stays as small as it is.
    let thumb = if img.width() > THUMBNAIL_SIZE || img.height() > THUMBNAIL_SIZE {
        img.thumbnail(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    } else {
        img.clone()
    };
    let thumbnail = encode(&thumb, if format == ImageFormat::Jpeg { ImageFormat::Jpeg } else { ImageFormat::Png })?;
    Ok(Processed { bytes, width: img.width(), height: img.height(), thumbnail })
}

/// Refuses an image whose header declares more than `max_pixels` pixels.
fn check_area(width: u32, height: u32, max_pixels: u64) -> AppResult<()> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(too_large(&format!(
            "it declares {width} × {height} pixels ({pixels}); at most {max_pixels} (IMAGE_MAX_PIXELS) are decoded"
        )));
    }
    Ok(())
}

fn too_large(why: &str) -> AppError {
    AppError::TooLarge(format!("the image is too large to process: {why}"))
}

fn encode(img: &DynamicImage, format: ImageFormat) -> AppResult<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    let failed = |e: image::ImageError| AppError::Internal(anyhow::anyhow!("encoding an image: {e}"));
    match format {
        ImageFormat::Jpeg => {
            let encoder = JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY);
            img.to_rgb8().write_with_encoder(encoder).map_err(failed)?;
        }
        // The WebP and GIF encoders take 8-bit RGBA; PNG takes what it is given.
        ImageFormat::WebP | ImageFormat::Gif => {
            DynamicImage::ImageRgba8(img.to_rgba8()).write_to(&mut out, format).map_err(failed)?
        }
        _ => img.write_to(&mut out, format).map_err(failed)?,
    }
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7])));
        encode(&img, ImageFormat::Png).expect("encode")
    }

    fn fit(max_width: u32, max_height: u32) -> ImageLimits {
        ImageLimits {
            max_width,
            max_height,
            max_pixels: crate::config::DEFAULT_IMAGE_MAX_PIXELS,
            decode_max_bytes: crate::config::DEFAULT_IMAGE_DECODE_MAX_BYTES,
        }
    }

    /// A PNG that is only a header declaring `w` × `h` pixels (and one empty data chunk): what
    /// a decompression bomb looks like before its pixels are inflated.
    pub(crate) fn png_header(w: u32, h: u32) -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let start = out.len();
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            let crc = crc32(&out[start..]);
            out.extend_from_slice(&crc.to_be_bytes());
        }
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        chunk(&mut out, b"IEND", &[]);
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn image_bombs_are_refused_from_their_header_before_any_pixel_is_allocated() {
        for (w, h) in [(8000, 8000), (24000, 24000), (40000, 40000), (65535, 2)] {
            let bomb = png_header(w, h);
            assert!(bomb.len() < 100, "a header, not an image");
            let err = process_image(&bomb, ImageFormat::Png, &fit(2048, 2048)).err().expect("refused");
            // Had it been decoded, the empty data would have failed as undecodable
            // (VALIDATION_FAILED); this refusal comes from the header alone.
            assert_eq!((err.http_status(), err.code()), (413, "CONTENT_TOO_LONG"), "{w}×{h}: {err}");
        }
        // A GIF declares its canvas in its first bytes too.
        // A 1 × 1 frame on a 65535 × 65535 canvas (two-colour table, one LZW block).
        let mut gif = b"GIF89a".to_vec();
        gif.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x80, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF]);
        gif.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3B]);
        let err = process_image(&gif, ImageFormat::Gif, &fit(2048, 2048)).err().expect("refused");
        assert_eq!(err.code(), "CONTENT_TOO_LONG", "{err}");
    }

    #[test]
    fn the_decode_budget_binds_the_pixel_buffer_itself() {
        // 1000 × 1000 RGB is 3 MB of pixels: within the area limit, over a 2 MB budget.
        let limits = ImageLimits { decode_max_bytes: 2_000_000, ..fit(2048, 2048) };
        let err = process_image(&png(1000, 1000), ImageFormat::Png, &limits).err().expect("refused");
        assert_eq!((err.http_status(), err.code()), (413, "CONTENT_TOO_LONG"), "{err}");
        let roomy = ImageLimits { decode_max_bytes: 8_000_000, ..fit(2048, 2048) };
        assert!(process_image(&png(1000, 1000), ImageFormat::Png, &roomy).is_ok());
    }

    #[test]
    fn the_declared_type_must_agree_with_the_bytes() {
        let png = png(4, 4);
        for declared in ["image/png", "image/x-png", "application/octet-stream", "IMAGE/PNG; charset=x"] {
            assert!(sniff(&png, Some(declared), None).is_ok(), "{declared}");
        }
        for declared in ["image/jpeg", "application/pdf", "text/plain", "text/html", "application/json", "video/mp4"] {
            let err = sniff(&png, Some(declared), None).expect_err(declared);
            assert_eq!(err.code(), "VALIDATION_FAILED");
        }
        let pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n";
        assert!(sniff(pdf, Some("application/zip"), None).is_err());
        assert!(sniff(pdf, Some("application/x-pdf"), None).is_ok());
    }

    #[test]
    fn sniffing_trusts_the_bytes_not_the_claim() {
        let bytes = png(4, 4);
        let found = sniff(&bytes, Some("application/octet-stream"), None).expect("png");
        assert_eq!(found.content_type, "image/png");
        assert_eq!(found.kind, MediaKind::Image);
        assert_eq!(found.image, Some(ImageFormat::Png));
        // A PDF posing as an image is refused, whether by content type or by requested kind.
        let pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n";
        assert!(sniff(pdf, Some("image/png"), None).is_err());
        assert!(sniff(pdf, None, Some(MediaKind::Image)).is_err());
        assert_eq!(sniff(pdf, Some("application/pdf"), None).expect("pdf").kind, MediaKind::File);
        // Unknown bytes are refused; text is only text when it says so.
        assert!(sniff(b"\x00\x01\x02\x03garbage", None, None).is_err());
        assert!(sniff(b"hello", None, None).is_err());
        assert_eq!(sniff(b"hello", Some("text/plain"), None).expect("text").kind, MediaKind::File);
    }

    #[test]
    fn large_images_are_scaled_to_fit_and_get_a_thumbnail() {
        let out = process_image(&png(400, 100), ImageFormat::Png, &fit(200, 200)).expect("process");
        assert_eq!((out.width, out.height), (200, 50));
        let thumb = image::load_from_memory(&out.thumbnail).expect("thumbnail decodes");
        assert!(thumb.width() <= THUMBNAIL_SIZE && thumb.height() <= THUMBNAIL_SIZE);
        let small = process_image(&png(30, 20), ImageFormat::Png, &fit(200, 200)).expect("process");
        assert_eq!((small.width, small.height), (30, 20), "never scaled up");
        let thumb = image::load_from_memory(&small.thumbnail).expect("thumbnail decodes");
        assert_eq!((thumb.width(), thumb.height()), (30, 20), "nor its thumbnail");
    }

    #[test]
    fn a_broken_image_is_a_validation_error() {
        let mut bytes = png(10, 10);
        bytes.truncate(40);
        let err = process_image(&bytes, ImageFormat::Png, &fit(100, 100)).err().expect("must fail");
        assert_eq!(err.code(), "VALIDATION_FAILED");
    }
}
