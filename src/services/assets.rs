//! Asset bytes: decoding uploads (base64, optionally gzip with a cap on what it inflates
//! to), storing them content-addressed under `<data>/assets/<sha256>`, and analysing
//! images.
//!
//! A file is written to a temporary name, synced and renamed, before its record is
//! committed; a crash in between leaves an unreferenced file, never a record without its
//! bytes. Everything here blocks and runs on the blocking pool.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::services::DomainError;

/// Where asset files live, and how large one may be.
#[derive(Debug, Clone)]
pub struct AssetFiles {
    dir: PathBuf,
    max_bytes: usize,
}

impl AssetFiles {
    pub fn new(data_dir: &Path, max_bytes: usize) -> Self {
        Self {
            dir: data_dir.join("assets"),
            max_bytes,
        }
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The bytes of an upload: base64, and gzip when `compressed`. Refuses anything that
    /// is (or inflates to) more than the limit.
    pub fn decode(&self, data: &str, compressed: bool) -> Result<Vec<u8>, DomainError> {
        // base64 is 4 characters per 3 bytes: refuse oversized input before decoding it.
        if !compressed && data.len() / 4 * 3 > self.max_bytes + 3 {
            return Err(self.too_big());
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| DomainError::InvalidInput(format!("asset data is not base64: {e}")))?;
        if !compressed {
            return if raw.len() > self.max_bytes {
                Err(self.too_big())
            } else {
                Ok(raw)
            };
        }
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .take(self.max_bytes as u64 + 1)
            .read_to_end(&mut inflated)
            .map_err(|e| DomainError::InvalidInput(format!("compressed data is not gzip: {e}")))?;
        if inflated.len() > self.max_bytes {
            return Err(self.too_big());
        }
        Ok(inflated)
    }

    fn too_big(&self) -> DomainError {
        DomainError::InvalidInput(format!(
            "the asset is larger than the limit of {} bytes",
            self.max_bytes
        ))
    }

    /// Stores `bytes` (durably) and returns their sha256, the file's name.
    pub fn store(&self, bytes: &[u8]) -> std::io::Result<String> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let path = self.path(&sha256);
        if path.exists() {
            return Ok(sha256);
        }
        std::fs::create_dir_all(&self.dir)?;
        let staging = self
            .dir
            .join(format!(".{sha256}.{}.part", uuid::Uuid::new_v4().simple()));
        let mut file = std::fs::File::create(&staging)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&staging, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(sha256)
    }

    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }
}

/// The content type an asset is served with: from its format, else its name's extension.
pub fn content_type(name: &str, format: Option<&str>) -> String {
    let ext = format
        .map(str::to_ascii_lowercase)
        .or_else(|| {
            Path::new(name)
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
        })
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "wav" => "audio/wav",
        "ogg" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
    .to_owned()
}

/// What `analyze_asset` reports about an image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub size: u64,
    pub format: String,
    pub dimensions: String,
    pub color_space: String,
    /// 0..1: 0.7 × resolution relative to 1920×1080 (capped at 1) + 0.3 for a lossless
    /// format (0.15 for a lossy one), rounded to two decimals.
    pub quality_score: f64,
}

/// Decodes the image header and pixels; a clear error for anything that is not an image.
pub fn analyze(bytes: &[u8]) -> Result<Analysis, DomainError> {
    let not_image = |detail: String| {
        DomainError::InvalidInput(format!(
            "the asset is not an image this server can read: {detail}"
        ))
    };
    let format = image::guess_format(bytes).map_err(|e| not_image(e.to_string()))?;
    let decoded =
        image::load_from_memory_with_format(bytes, format).map_err(|e| not_image(e.to_string()))?;
    let (width, height) = (decoded.width(), decoded.height());
    use image::ColorType;
    let color_space = match decoded.color() {
        ColorType::L8 | ColorType::L16 => "Grayscale",
        ColorType::La8 | ColorType::La16 => "GrayscaleAlpha",
        ColorType::Rgb8 | ColorType::Rgb16 | ColorType::Rgb32F => "RGB",
        _ => "RGBA",
    };
    let lossless = matches!(
        format,
        image::ImageFormat::Png | image::ImageFormat::Bmp | image::ImageFormat::Gif
    );
    let resolution = (f64::from(width) * f64::from(height) / (1920.0 * 1080.0)).min(1.0);
    let score = 0.7 * resolution + if lossless { 0.3 } else { 0.15 };
    let name = format
        .extensions_str()
        .first()
        .copied()
        .unwrap_or("unknown")
        .to_ascii_uppercase();
    Ok(Analysis {
        size: bytes.len() as u64,
        format: if name == "JPG" { "JPEG".into() } else { name },
        dimensions: format!("{width}x{height}"),
        color_space: color_space.to_owned(),
        quality_score: (score * 100.0).round() / 100.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_pixel(width, height, image::Rgb([10, 20, 30]));
        let mut out = std::io::Cursor::new(Vec::new());
        image.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn a_png_is_analysed() {
        let bytes = png(64, 32);
        let a = analyze(&bytes).unwrap();
        assert_eq!(a.format, "PNG");
        assert_eq!(a.dimensions, "64x32");
        assert_eq!(a.color_space, "RGB");
        assert_eq!(a.size, bytes.len() as u64);
        assert!(
            (0.3..0.31).contains(&a.quality_score),
            "{}",
            a.quality_score
        );
    }

    #[test]
    fn text_is_not_an_image() {
        let e = analyze(b"hello, world").unwrap_err();
        assert!(e.to_string().contains("not an image"), "{e}");
    }

    #[test]
    fn gzip_inflates_only_up_to_the_cap() {
        let files = AssetFiles::new(Path::new("/nonexistent"), 1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[0u8; 5000]).unwrap();
        let packed = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        assert!(files.decode(&packed, true).is_err());
        let small = base64::engine::general_purpose::STANDARD.encode(b"abc");
        assert_eq!(files.decode(&small, false).unwrap(), b"abc");
        assert!(files.decode("###", false).is_err());
    }
}
