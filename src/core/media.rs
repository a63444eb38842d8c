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
    Ok(sniffed)
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
/// Most memory one decode may take: a 10 MiB file can claim to be a gigapixel image (a
/// "decompression bomb"); past this it is refused instead of exhausting memory.
const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// The content type of an attachment's thumbnail: JPEG for photos, PNG (keeps transparency)
/// for everything else.
pub fn thumbnail_type(content_type: &str) -> &'static str {
    if content_type == "image/jpeg" {
        "image/jpeg"
    } else {
        "image/png"
    }
}

/// Decodes an image, turns it upright, scales it to fit `max_w`×`max_h` (never up) and
/// re-encodes it in its own format, and makes a thumbnail. A GIF that already fits is kept
/// byte for byte, so its animation survives; scaling keeps only its first frame.
pub fn process_image(bytes: &[u8], format: ImageFormat, max_w: u32, max_h: u32) -> AppResult<Processed> {
    let unreadable = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => AppError::validation("the image is too large to process"),
        other => AppError::validation(format!("the image could not be decoded: {other}")),
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(unreadable)?;
    let orientation = decoder.orientation().map_err(unreadable)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    img.apply_orientation(orientation);

    let fits = img.width() <= max_w && img.height() <= max_h;
    let bytes = if fits && format == ImageFormat::Gif {
        bytes.to_vec()
    } else {
        if !fits {
            img = img.resize(max_w, max_h, image::imageops::FilterType::CatmullRom);
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
        let out = process_image(&png(400, 100), ImageFormat::Png, 200, 200).expect("process");
        assert_eq!((out.width, out.height), (200, 50));
        let thumb = image::load_from_memory(&out.thumbnail).expect("thumbnail decodes");
        assert!(thumb.width() <= THUMBNAIL_SIZE && thumb.height() <= THUMBNAIL_SIZE);
        let small = process_image(&png(30, 20), ImageFormat::Png, 200, 200).expect("process");
        assert_eq!((small.width, small.height), (30, 20), "never scaled up");
        let thumb = image::load_from_memory(&small.thumbnail).expect("thumbnail decodes");
        assert_eq!((thumb.width(), thumb.height()), (30, 20), "nor its thumbnail");
    }

    #[test]
    fn a_broken_image_is_a_validation_error() {
        let mut bytes = png(10, 10);
        bytes.truncate(40);
        let err = process_image(&bytes, ImageFormat::Png, 100, 100).err().expect("must fail");
        assert_eq!(err.code(), "VALIDATION_FAILED");
    }
}
