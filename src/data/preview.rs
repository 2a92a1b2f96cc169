//! Augmentation previews: each source image next to N augmented versions, labelled.

use std::path::{Path, PathBuf};

use image::RgbImage;
use rand::seq::IndexedRandom;
use rand::SeedableRng;

use super::augment::{AugmentConfig, Transform};
use super::decode::{self, DecodeLimits, Interpolation};
use super::folder::{split_dirs, ImageFolder};
use super::loader::mix;
use crate::error::{Error, Result};
use crate::plot::{self, Cell};

/// Picks `n` labelled images from a data folder (its train part when it has one), spread over the classes,
/// seeded.
pub fn pick_sources(dir: &Path, n: usize, seed: u64) -> Result<Vec<(PathBuf, String)>> {
    let root = split_dirs(dir)
        .into_iter()
        .find(|(name, _)| name == "train")
        .map(|(_, p)| p)
        .unwrap_or_else(|| dir.to_path_buf());
    let folder = ImageFolder::scan_lenient(&root)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let per_class: Vec<Vec<&PathBuf>> = (0..folder.classes.len())
        .map(|c| {
            folder
                .samples
                .iter()
                .filter(|s| s.label == c)
                .map(|s| &s.path)
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    let mut used = std::collections::HashSet::new();
    'outer: for _round in 0..n {
        for (c, paths) in per_class.iter().enumerate() {
            if out.len() == n {
                break 'outer;
            }
            let free: Vec<&&PathBuf> = paths.iter().filter(|p| !used.contains(**p)).collect();
            if let Some(p) = free.choose(&mut rng) {
                used.insert((**p).clone());
                out.push(((**p).clone(), folder.classes[c].clone()));
            }
        }
    }
    Ok(out)
}

fn to_rgb(px: &[f32], size: u32) -> RgbImage {
    let bytes = px.iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect();
    RgbImage::from_raw(size, size, bytes).expect("buffer of the right size")
}

/// Applies a transform to an 8-bit image and returns the 8-bit result.
pub fn apply_to_image(img: &RgbImage, t: &Transform) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src: Vec<f32> = img.as_raw().iter().map(|&v| v as f32).collect();
    let mut dst = vec![0f32; src.len()];
    t.apply(&src, h, w, &mut dst);
    let bytes = dst.iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect();
    RgbImage::from_raw(w as u32, h as u32, bytes).expect("buffer of the right size")
}

/// Builds the preview grid. Unreadable sources are skipped and returned with the reason.
pub fn preview(
    sources: &[(PathBuf, String)],
    aug: &AugmentConfig,
    n: usize,
    size: u32,
    interp: Interpolation,
    seed: u64,
) -> Result<(RgbImage, Vec<(PathBuf, String)>)> {
    aug.validate()?;
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    let s = size as usize;
    for (si, (path, class)) in sources.iter().enumerate() {
        let img = match decode::load_resized(path, (size, size), interp, &DecodeLimits::default()) {
            Ok(i) => i,
            Err(e) => {
                bad.push((path.clone(), decode::decode_error_reason(&e)));
                continue;
            }
        };
        let name = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut row = vec![Cell {
            image: img.clone(),
            caption: vec![format!("{class}: {name}"), "original".into()],
        }];
        let src: Vec<f32> = img.as_raw().iter().map(|&v| v as f32).collect();
        for k in 0..n {
            let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed ^ mix(si as u64 + 1)) ^ k as u64);
            let t = aug.sample(&mut rng, s, s);
            let mut dst = vec![0f32; src.len()];
            t.apply(&src, s, s, &mut dst);
            row.push(Cell {
                image: to_rgb(&dst, size),
                caption: plot::wrap(&t.label(), (size as usize / 6).max(12)),
            });
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(Error::Data(format!(
            "none of the {} source images could be read; first: {}",
            sources.len(),
            bad.first()
                .map(|(p, r)| format!("{}: {r}", p.display()))
                .unwrap_or_default()
        )));
    }
    let title = format!("augmentation preview: {} (seed {seed})", describe(aug));
    Ok((plot::image_grid(&rows, Some(&title))?, bad))
}

/// The ranges in words, for titles and summaries.
pub fn describe(a: &AugmentConfig) -> String {
    let mut p = Vec::new();
    if a.rotation != 0.0 {
        p.push(format!("rotation ±{}°", a.rotation));
    }
    if a.width_shift != 0.0 {
        p.push(format!("width shift ±{}", a.width_shift));
    }
    if a.height_shift != 0.0 {
        p.push(format!("height shift ±{}", a.height_shift));
    }
    if a.shear != 0.0 {
        p.push(format!("shear ±{}°", a.shear));
    }
    if a.zoom != (1.0, 1.0) {
        p.push(format!("zoom [{}, {}]", a.zoom.0, a.zoom.1));
    }
    if a.horizontal_flip {
        p.push("horizontal flip".into());
    }
    if a.vertical_flip {
        p.push("vertical flip".into());
    }
    if let Some((lo, hi)) = a.brightness {
        p.push(format!("brightness [{lo}, {hi}]"));
    }
    if a.channel_shift != 0.0 {
        p.push(format!("channel shift ±{}", a.channel_shift));
    }
    if p.is_empty() {
        return "no augmentation".into();
    }
    format!("{}, fill {:?}", p.join(", "), a.fill_mode).to_lowercase()
}
