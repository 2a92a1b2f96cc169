//! Decoding with limits, conversion to RGB, and resizing by squashing to the target size (as Keras' `load_img`
//! with `target_size`, which uses PIL).

use std::io::Cursor;
use std::path::Path;

use image::{ImageFormat, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Bounds on what a decode may cost, so that a decompression bomb is an error and not an out-of-memory kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeLimits {
    /// Largest width × height accepted.
    pub max_pixels: u64,
    /// Largest allocation the decoder may make, in bytes.
    pub max_alloc: u64,
    /// Largest file read, in bytes.
    pub max_file_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            // PIL raises DecompressionBombError above 2 × 89,478,485 pixels; stay below that.
            max_pixels: 100_000_000,
            max_alloc: 512 * 1024 * 1024,
            max_file_bytes: 256 * 1024 * 1024,
        }
    }
}

/// How to resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Nearest neighbour (Keras' `load_img` default).
    #[default]
    Nearest,
    /// Bilinear with antialiasing on downscale (PIL's BILINEAR).
    Bilinear,
}

/// The reason an image file was rejected, as a short phrase.
pub fn decode_error_reason(e: &Error) -> String {
    match e {
        Error::BadImage { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Reads and decodes an image file to 8-bit RGB (grayscale, palette, alpha, CMYK and 16-bit are converted; alpha
/// is dropped).
pub fn decode_rgb(path: &Path, limits: &DecodeLimits) -> Result<RgbImage> {
    let bad = |reason: String| Error::BadImage {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    if meta.len() == 0 {
        return Err(bad("empty file (0 bytes)".into()));
    }
    if meta.len() > limits.max_file_bytes {
        return Err(bad(format!(
            "file of {} bytes is over the limit of {} bytes",
            meta.len(),
            limits.max_file_bytes
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    decode_rgb_bytes(&bytes, limits).map_err(bad)
}

/// Decodes image bytes (format guessed from the content) to RGB. The error is the reason as a phrase, on one
/// line (decoders' messages can span several).
pub fn decode_rgb_bytes(bytes: &[u8], limits: &DecodeLimits) -> std::result::Result<RgbImage, String> {
    decode_inner(bytes, limits).map_err(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn decode_inner(bytes: &[u8], limits: &DecodeLimits) -> std::result::Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty file (0 bytes)".into());
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    let format = reader
        .format()
        .ok_or_else(|| "not an image (unrecognised content)".to_string())?;
    if !matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Bmp | ImageFormat::Tiff | ImageFormat::Pnm
    ) {
        return Err(format!(
            "unsupported image format {format:?} (supported: JPEG, PNG, BMP, TIFF, PPM/PNM)"
        ));
    }
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes)?;
    }
    let (w, h) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| format!("corrupt or truncated {format:?}: {e}"))?;
    let pixels = w as u64 * h as u64;
    if pixels == 0 {
        return Err(format!("image has no pixels ({w}×{h})"));
    }
    if pixels > limits.max_pixels {
        return Err(format!(
            "{w}×{h} = {pixels} pixels is over the decoding limit of {} pixels (possible decompression bomb)",
            limits.max_pixels
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut l = image::Limits::default();
    l.max_alloc = Some(limits.max_alloc);
    reader.limits(l);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => format!("over the decoding limit: {l}"),
        image::ImageError::Unsupported(u) => format!("unsupported {format:?} variant: {u}"),
        other => format!("corrupt or truncated {format:?}: {other}"),
    })?;
    Ok(img.to_rgb8())
}

/// Refuses a JPEG whose compressed data stops before its end-of-image marker. The decoder fills the missing part
/// with grey and reports success; PIL ("image file is truncated") and TensorFlow refuse such files, so we do too.
/// Walks the marker segments to the first start-of-scan, then looks for EOI (`FF D9`) after it: inside
/// entropy-coded data `FF` is always followed by `00` or a restart marker, so `FF D9` there is the real end.
/// (Segments before the scan, such as an EXIF thumbnail with its own EOI, are skipped by their lengths.)
fn check_jpeg_complete(bytes: &[u8]) -> std::result::Result<(), String> {
    let truncated = || "corrupt or truncated Jpeg: the data ends before the end-of-image marker".to_string();
    let mut i = 2; // after SOI
    loop {
        // Markers may be padded with extra FF bytes.
        while bytes.get(i) == Some(&0xFF) && bytes.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        match (bytes.get(i), bytes.get(i + 1)) {
            (Some(0xFF), Some(0xDA)) => break,
            (Some(0xFF), Some(0xD9)) => return Err("JPEG without image data (end marker before any scan)".into()),
            (Some(0xFF), Some(_)) => {
                let len = match (bytes.get(i + 2), bytes.get(i + 3)) {
                    (Some(&hi), Some(&lo)) => u16::from_be_bytes([hi, lo]) as usize,
                    _ => return Err(truncated()),
                };
                i += 2 + len;
            }
            (Some(_), Some(_)) => return Ok(()), // not a marker where one belongs: leave it to the decoder
            _ => return Err(truncated()),
        }
    }
    if bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err(truncated())
    }
}

/// Resizes by squashing to `width × height` (aspect ratio not kept, as Keras).
pub fn resize(img: &RgbImage, width: u32, height: u32, interp: Interpolation) -> RgbImage {
    if img.width() == width && img.height() == height {
        return img.clone();
    }
    match interp {
        Interpolation::Nearest => resize_nearest(img, width, height),
        Interpolation::Bilinear => resize_bilinear(img, width, height),
    }
}

/// PIL's NEAREST: output pixel `x` samples input `floor((x + 0.5) · in / out)`.
fn resize_nearest(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = (width as usize, height as usize);
    let src = img.as_raw();
    let xs: Vec<usize> = (0..ow)
        .map(|x| (((x as f64 + 0.5) * iw as f64 / ow as f64) as usize).min(iw - 1))
        .collect();
    let mut out = vec![0u8; ow * oh * 3];
    for y in 0..oh {
        let sy = (((y as f64 + 0.5) * ih as f64 / oh as f64) as usize).min(ih - 1);
        let row = &src[sy * iw * 3..(sy + 1) * iw * 3];
        let dst = &mut out[y * ow * 3..(y + 1) * ow * 3];
        for (x, &sx) in xs.iter().enumerate() {
            dst[x * 3..x * 3 + 3].copy_from_slice(&row[sx * 3..sx * 3 + 3]);
        }
    }
    RgbImage::from_raw(width, height, out).expect("buffer of the right size")
}

fn resize_bilinear(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    use fast_image_resize as fr;
    let src = fr::images::ImageRef::new(img.width(), img.height(), img.as_raw(), fr::PixelType::U8x3)
        .expect("RGB buffer of the right size");
    let mut dst = fr::images::Image::new(width, height, fr::PixelType::U8x3);
    let opts = fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
    fr::Resizer::new()
        .resize(&src, &mut dst, &opts)
        .expect("same pixel type on both sides");
    RgbImage::from_raw(width, height, dst.into_vec()).expect("buffer of the right size")
}

/// Decodes and resizes in one step.
pub fn load_resized(path: &Path, size: (u32, u32), interp: Interpolation, limits: &DecodeLimits) -> Result<RgbImage> {
    let img = decode_rgb(path, limits)?;
    Ok(resize(&img, size.0, size.1, interp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_picks_pixel_centres_like_pil() {
        // 4×1 → 2×1: PIL NEAREST takes input columns 1 and 3.
        let img = RgbImage::from_raw(4, 1, vec![0, 0, 0, 10, 10, 10, 20, 20, 20, 30, 30, 30]).unwrap();
        let out = resize(&img, 2, 1, Interpolation::Nearest);
        assert_eq!(out.as_raw(), &vec![10, 10, 10, 30, 30, 30]);
    }

    #[test]
    fn garbage_and_empty_bytes_are_reasons_not_panics() {
        let l = DecodeLimits::default();
        assert!(decode_rgb_bytes(&[], &l).unwrap_err().contains("empty"));
        assert!(decode_rgb_bytes(b"hello world, not an image", &l)
            .unwrap_err()
            .contains("not an image"));
    }

    #[test]
    fn pixel_limit_rejects_large_images() {
        let img = RgbImage::new(100, 100);
        let mut buf = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut buf), ImageFormat::Png)
            .unwrap();
        let l = DecodeLimits {
            max_pixels: 5_000,
            ..Default::default()
        };
        assert!(decode_rgb_bytes(&buf, &l).unwrap_err().contains("decoding limit"));
        assert!(decode_rgb_bytes(&buf, &DecodeLimits::default()).is_ok());
    }
}
