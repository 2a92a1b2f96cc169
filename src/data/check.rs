//! `catdog data check`: decode every image of a data folder and report per class.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use super::decode::{self, DecodeLimits};
use super::folder::{split_dirs, ImageFolder};
use crate::error::Result;

/// Minimum, median and maximum of a size.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Stats {
    pub min: u32,
    pub median: u32,
    pub max: u32,
}

impl Stats {
    fn of(mut v: Vec<u32>) -> Self {
        if v.is_empty() {
            return Stats::default();
        }
        v.sort_unstable();
        Stats {
            min: v[0],
            median: v[v.len() / 2],
            max: v[v.len() - 1],
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BadFile {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassReport {
    pub class: String,
    /// Files with an image extension.
    pub files: usize,
    /// Of those, decoded fine.
    pub good: usize,
    pub bad: Vec<BadFile>,
    pub width: Stats,
    pub height: Stats,
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitReport {
    /// `train`, `test`, … or `.` when the folder is itself a class folder.
    pub split: String,
    pub root: PathBuf,
    pub classes: Vec<ClassReport>,
    /// Files skipped for their extension.
    pub skipped: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub splits: Vec<SplitReport>,
    pub images: usize,
    pub bad: usize,
}

/// Number of image files a check will decode (for the progress bar).
pub fn count(dir: &Path) -> Result<usize> {
    Ok(folders(dir)?.iter().map(|(_, f)| f.samples.len()).sum())
}

fn folders(dir: &Path) -> Result<Vec<(String, ImageFolder)>> {
    let parts = split_dirs(dir);
    if parts.is_empty() {
        Ok(vec![(".".into(), ImageFolder::scan_lenient(dir)?)])
    } else {
        parts
            .into_iter()
            .map(|(n, p)| Ok((n, ImageFolder::scan_lenient(&p)?)))
            .collect()
    }
}

/// Decodes every image under `dir` (the course layout with train/test, or a class folder) in parallel.
pub fn check(dir: &Path, limits: &DecodeLimits, on_image: &(dyn Fn() + Sync)) -> Result<CheckReport> {
    let mut splits = Vec::new();
    let (mut images, mut nbad) = (0, 0);
    for (name, folder) in folders(dir)? {
        let results: Vec<std::result::Result<(u32, u32), String>> = folder
            .samples
            .par_iter()
            .map(|s| {
                let r = decode::decode_rgb(&s.path, limits)
                    .map(|img| (img.width(), img.height()))
                    .map_err(|e| decode::decode_error_reason(&e));
                on_image();
                r
            })
            .collect();
        let mut classes = Vec::new();
        for (label, class) in folder.classes.iter().enumerate() {
            let (mut ws, mut hs, mut bad, mut files) = (Vec::new(), Vec::new(), Vec::new(), 0);
            for (s, r) in folder.samples.iter().zip(&results).filter(|(s, _)| s.label == label) {
                files += 1;
                match r {
                    Ok((w, h)) => {
                        ws.push(*w);
                        hs.push(*h);
                    }
                    Err(reason) => bad.push(BadFile {
                        path: s.path.clone(),
                        reason: reason.clone(),
                    }),
                }
            }
            images += files;
            nbad += bad.len();
            classes.push(ClassReport {
                class: class.clone(),
                files,
                good: files - bad.len(),
                bad,
                width: Stats::of(ws),
                height: Stats::of(hs),
            });
        }
        splits.push(SplitReport {
            split: name,
            root: folder.root.clone(),
            classes,
            skipped: folder.skipped.clone(),
        });
    }
    Ok(CheckReport {
        splits,
        images,
        bad: nbad,
    })
}
