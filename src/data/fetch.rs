//! `catdog data fetch`: Dogs-vs-Cats (or any image-classification data set stored as parquet on the Hugging Face
//! Hub) written out as the folder layout `catdog finetune` reads: `OUT/train/<class>/…`, `OUT/test/<class>/…`.
//!
//! The parquet shards come through `crate::hub` and the standard cache. Each row's image is a struct of
//! `bytes`/`path` (the `datasets` Image feature) and its label an integer column; class names come from the
//! `huggingface` metadata that `datasets` stores in every parquet file (a ClassLabel feature). Without a test
//! split in the repository a stratified one is drawn with the seed. Images are checked by decoding them; ones
//! that do not decode are reported and not written. Files are written atomically and existing ones are skipped,
//! so an interrupted run resumes where it stopped.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::decode::{decode_rgb_bytes, DecodeLimits};
use crate::error::{Error, Result};
use crate::hub::{self, HubOptions, RepoKind};

/// The default repository: the Asirra photos of the Kaggle competition (23,410 images after the 1,738 corrupt
/// ones were dropped; one `train` split).
pub const DEFAULT_REPO: &str = "microsoft/cats_vs_dogs";

/// Splits named by parquet paths (`data/train-00000-of-00002.parquet`, `plain_text/test/0000.parquet`, …).
pub fn split_of(file: &str) -> Option<&'static str> {
    let lower = file.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    let parts: Vec<&str> = lower.split('/').collect();
    for (split, keys) in [
        ("train", ["train"].as_slice()),
        ("test", &["test"]),
        ("validation", &["validation", "valid", "val"]),
    ] {
        for k in keys {
            if name.starts_with(&format!("{k}-"))
                || name.starts_with(&format!("{k}."))
                || parts.iter().rev().skip(1).any(|p| p == k)
            {
                return Some(split);
            }
        }
    }
    None
}

/// Parquet shards as (split, local path), and the repository commit when the hub (or the cache) says which.
pub type Shards = (Vec<(String, PathBuf)>, Option<String>);

/// The parquet shards of a repository with their split, downloaded (or found in the cache), and its commit.
pub fn download_shards(repo: &str, revision: Option<&str>, opts: &HubOptions) -> Result<Shards> {
    let (files, commit) = hub::list_files(RepoKind::Dataset, repo, revision, opts)?;
    let mut shards: Vec<(String, String)> = files
        .iter()
        .filter(|f| f.ends_with(".parquet"))
        .filter_map(|f| split_of(f).map(|s| (s.to_string(), f.clone())))
        .collect();
    shards.sort();
    if shards.is_empty() {
        return Err(Error::Hub {
            model_id: repo.to_string(),
            message: format!(
                "no parquet files of a train/test split in the repository ({} files); give a data set stored as parquet \
                 (e.g. {DEFAULT_REPO})",
                files.len()
            ),
        });
    }
    let paths = shards
        .into_iter()
        .map(|(split, f)| Ok((split, hub::hub_file(RepoKind::Dataset, repo, revision, &f, opts)?.0)))
        .collect::<Result<Vec<_>>>()?;
    Ok((paths, commit))
}

/// Which rows become files, and how they split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// Fraction of each class held out as the test split when the repository has none.
    pub test_split: f64,
    /// Seed of the subset and of the test split.
    pub seed: u64,
    /// At most this many images per class from the training rows (a stratified, seeded subset, drawn before the
    /// test split; the course's classic is 1,000); `None` for all.
    pub per_class: Option<usize>,
}

/// What the fetch did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FetchReport {
    pub classes: Vec<String>,
    /// split → class → images in the output folder.
    pub counts: BTreeMap<String, BTreeMap<String, usize>>,
    pub written: usize,
    /// Files already there from an earlier run.
    pub kept: usize,
    /// Rows whose image did not decode (shard file, row, reason).
    pub bad: Vec<(String, usize, String)>,
    /// How the test split was made.
    pub test_source: String,
    /// The files in the output folder, relative to it (for the manifest).
    #[serde(skip)]
    pub files: Vec<String>,
    /// The fetch was already complete (its manifest matched and every file was there): nothing was read.
    pub already_complete: bool,
}

struct Layout {
    image_col: String,
    label_col: String,
    names: Vec<String>,
}

fn err(path: &Path, m: impl std::fmt::Display) -> Error {
    Error::Data(format!("{}: {m}", path.display()))
}

/// Finds the image and label columns and the class names from the `huggingface` metadata (or by name).
fn layout(reader: &SerializedFileReader<File>, path: &Path) -> Result<Layout> {
    let meta = reader.metadata().file_metadata();
    let mut image_col = None;
    let mut label_col = None;
    let mut names = Vec::new();
    if let Some(kv) = meta.key_value_metadata() {
        if let Some(hf) = kv
            .iter()
            .find(|k| k.key == "huggingface")
            .and_then(|k| k.value.as_ref())
        {
            let j: serde_json::Value =
                serde_json::from_str(hf).map_err(|e| err(path, format!("bad 'huggingface' metadata: {e}")))?;
            if let Some(features) = j.pointer("/info/features").and_then(|f| f.as_object()) {
                for (col, f) in features {
                    match f.get("_type").and_then(|t| t.as_str()) {
                        Some("Image") => image_col = Some(col.clone()),
                        Some("ClassLabel") => {
                            label_col = Some(col.clone());
                            names = f
                                .get("names")
                                .and_then(|n| n.as_array())
                                .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                                .unwrap_or_default();
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    let schema = meta.schema_descr();
    let top: Vec<String> = schema
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    let pick = |want: &[&str]| top.iter().find(|c| want.contains(&c.as_str())).cloned();
    let image_col = image_col
        .or_else(|| pick(&["image", "img", "picture"]))
        .ok_or_else(|| {
            err(
                path,
                format!(
                    "no image column (an Image feature, or a column named image/img); columns: {}",
                    top.join(", ")
                ),
            )
        })?;
    let label_col = label_col
        .or_else(|| pick(&["labels", "label", "class"]))
        .ok_or_else(|| {
            err(
                path,
                format!(
                    "no label column (a ClassLabel feature, or labels/label); columns: {}",
                    top.join(", ")
                ),
            )
        })?;
    Ok(Layout {
        image_col,
        label_col,
        names,
    })
}

fn label_of(row: &Row, col: &str) -> Option<i64> {
    row.get_column_iter()
        .find(|(n, _)| n.as_str() == col)
        .and_then(|(_, f)| match f {
            Field::Long(v) => Some(*v),
            Field::Int(v) => Some(*v as i64),
            Field::Short(v) => Some(*v as i64),
            Field::Byte(v) => Some(*v as i64),
            Field::UInt(v) => Some(*v as i64),
            Field::ULong(v) => Some(*v as i64),
            _ => None,
        })
}

fn image_bytes(row: &Row, col: &str) -> Option<Vec<u8>> {
    row.get_column_iter()
        .find(|(n, _)| n.as_str() == col)
        .and_then(|(_, f)| match f {
            Field::Bytes(b) => Some(b.data().to_vec()),
            Field::Group(g) => g
                .get_column_iter()
                .find(|(n, _)| n.as_str() == "bytes")
                .and_then(|(_, b)| match b {
                    Field::Bytes(b) => Some(b.data().to_vec()),
                    _ => None,
                }),
            _ => None,
        })
}

/// Folder name of a class: the course's plural form (`cat` → `cats`).
pub fn folder_name(class: &str) -> String {
    let c = class.trim().replace(['/', '\\'], "_");
    if c.ends_with('s') || c.is_empty() {
        c
    } else {
        format!("{c}s")
    }
}

fn extension(bytes: &[u8]) -> &'static str {
    match image::guess_format(bytes) {
        Ok(image::ImageFormat::Png) => "png",
        Ok(image::ImageFormat::Bmp) => "bmp",
        Ok(image::ImageFormat::Tiff) => "tif",
        Ok(image::ImageFormat::Pnm) => "ppm",
        _ => "jpg",
    }
}

/// A row after pass 1: label, file extension, and whether the image decoded (else the reason).
type Checked = (usize, &'static str, std::result::Result<(), String>);

/// Calls `f(row index, row)` for blocks of up to 256 rows of a shard.
fn for_blocks(path: &Path, mut f: impl FnMut(Vec<(usize, Row)>) -> Result<()>) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| err(path, format!("not a readable parquet file: {e}")))?;
    let mut rows = reader.get_row_iter(None).map_err(|e| err(path, e))?;
    let mut ri = 0;
    loop {
        let mut block = Vec::with_capacity(256);
        for row in rows.by_ref().take(256) {
            block.push((ri, row.map_err(|e| err(path, format!("row {ri}: {e}")))?));
            ri += 1;
        }
        if block.is_empty() {
            return Ok(());
        }
        f(block)?;
    }
}

/// Writes the images of parquet shards as `out/<split>/<class>/<name>.<index>.<ext>`; the core of
/// `catdog data fetch`, usable on local files. Pass 1 reads the labels and checks every image by decoding it (in
/// parallel); the stratified test split is drawn among the good rows; pass 2 writes them.
pub fn extract_parquet(
    shards: &[(String, PathBuf)],
    out: &Path,
    sel: &Selection,
    on_rows: &(dyn Fn(usize) + Sync),
) -> Result<FetchReport> {
    let (test_split, seed) = (sel.test_split, sel.seed);
    if !(0.0..1.0).contains(&test_split) {
        return Err(Error::invalid(format!(
            "--test-split must be in [0, 1), got {test_split}"
        )));
    }
    if sel.per_class == Some(0) {
        return Err(Error::invalid("--per-class must be at least 1"));
    }
    struct Entry {
        shard: usize,
        split: String,
        label: usize,
        ext: &'static str,
        /// Decodes, and (with --per-class) is in the subset.
        good: bool,
    }
    let limits = DecodeLimits::default();
    let mut entries: Vec<Entry> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut layouts = Vec::new();
    let mut report = FetchReport::default();
    for (si, (split, path)) in shards.iter().enumerate() {
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        let reader =
            SerializedFileReader::new(f).map_err(|e| err(path, format!("not a readable parquet file: {e}")))?;
        let l = layout(&reader, path)?;
        if names.is_empty() {
            names = l.names.clone();
        }
        for_blocks(path, |block| {
            let checked: Vec<Result<Checked>> = block
                .par_iter()
                .map(|(ri, row)| {
                    let label = label_of(row, &l.label_col)
                        .filter(|&v| v >= 0)
                        .ok_or_else(|| err(path, format!("row {ri}: no integer label in column '{}'", l.label_col)))?
                        as usize;
                    Ok(match image_bytes(row, &l.image_col) {
                        None => (label, "jpg", Err("no image bytes in the row".to_string())),
                        Some(b) => (label, extension(&b), decode_rgb_bytes(&b, &limits).map(|_| ())),
                    })
                })
                .collect();
            for ((ri, _), c) in block.iter().zip(checked) {
                let (label, ext, ok) = c?;
                if let Err(reason) = &ok {
                    report.bad.push((path.display().to_string(), *ri, reason.clone()));
                }
                entries.push(Entry {
                    shard: si,
                    split: split.clone(),
                    label,
                    ext,
                    good: ok.is_ok(),
                });
            }
            on_rows(block.len());
            Ok(())
        })?;
        layouts.push(l);
    }
    let n_classes = entries.iter().map(|e| e.label + 1).max().unwrap_or(0).max(names.len());
    if n_classes < 2 {
        return Err(Error::Data("the data set has fewer than two classes".into()));
    }
    while names.len() < n_classes {
        names.push(format!("class{}", names.len()));
    }
    report.classes = names.iter().map(|n| folder_name(n)).collect();
    // --per-class: a seeded, stratified subset of the training rows (the repository's test rows stay whole).
    if let Some(n) = sel.per_class {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5EB5E7);
        for c in 0..n_classes {
            let mut idx: Vec<usize> = (0..entries.len())
                .filter(|&i| entries[i].label == c && entries[i].good && entries[i].split == "train")
                .collect();
            idx.shuffle(&mut rng);
            for &i in idx.iter().skip(n) {
                entries[i].good = false;
            }
        }
    }
    // Splits: the repository's test (or validation) split when there is one, else a stratified draw from train.
    if entries.iter().any(|e| e.split == "test") {
        report.test_source = "the repository's test split".into();
        for e in entries.iter_mut().filter(|e| e.split == "validation") {
            e.split = "test".into();
        }
    } else {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for c in 0..n_classes {
            let mut idx: Vec<usize> = (0..entries.len())
                .filter(|&i| entries[i].label == c && entries[i].good && entries[i].split == "train")
                .collect();
            idx.shuffle(&mut rng);
            let k = (idx.len() as f64 * test_split).round() as usize;
            for &i in &idx[..k] {
                entries[i].split = "test".into();
            }
        }
        report.test_source = format!("{:.0}% of train, stratified, seed {seed}", test_split * 100.0);
    }
    let singular: Vec<String> = names.iter().map(|n| n.trim().replace(['/', '\\', ' '], "_")).collect();
    // Pass 2: write the good rows; files already there (an earlier, perhaps interrupted, run) are kept.
    let mut first = 0usize;
    for (si, (_, path)) in shards.iter().enumerate() {
        let l = &layouts[si];
        let count = entries.iter().filter(|e| e.shard == si).count();
        let mine = &entries[first..first + count];
        let classes = &report.classes;
        let mut done: Vec<(usize, bool)> = Vec::new();
        for_blocks(path, |block| {
            let r: Vec<Result<Option<(usize, bool)>>> = block
                .par_iter()
                .map(|(ri, row)| {
                    let e = &mine[*ri];
                    if !e.good {
                        return Ok(None);
                    }
                    let name = format!("{}.{}.{}", singular[e.label], first + ri, e.ext);
                    let dest = out.join(&e.split).join(&classes[e.label]).join(name);
                    if dest.metadata().map(|m| m.is_file() && m.len() > 0).unwrap_or(false) {
                        return Ok(Some((*ri, true)));
                    }
                    let bytes = image_bytes(row, &l.image_col).expect("checked in pass 1");
                    crate::io::atomic_write(&dest, &bytes)?;
                    Ok(Some((*ri, false)))
                })
                .collect();
            for x in r {
                done.extend(x?);
            }
            on_rows(block.len());
            Ok(())
        })?;
        for (ri, kept) in done {
            let e = &mine[ri];
            let name = format!("{}.{}.{}", singular[e.label], first + ri, e.ext);
            report
                .files
                .push(format!("{}/{}/{name}", e.split, report.classes[e.label]));
            *report
                .counts
                .entry(e.split.clone())
                .or_default()
                .entry(report.classes[e.label].clone())
                .or_default() += 1;
            if kept {
                report.kept += 1;
            } else {
                report.written += 1;
            }
        }
        first += count;
    }
    Ok(report)
}

/// Options of [`fetch`].
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// `org/name[@revision]`.
    pub repo: String,
    pub out: PathBuf,
    pub selection: Selection,
    pub hub: HubOptions,
}

/// The file a complete fetch leaves in its output folder.
pub const MANIFEST: &str = "catdog-manifest.json";
/// The file a fetch in progress leaves in its output folder until its manifest is written.
pub const IN_PROGRESS: &str = "catdog-fetch.partial";

/// What a complete fetch wrote (`OUT/catdog-manifest.json`): a re-run with the same settings trusts it instead of
/// downloading and decoding again, as long as every listed file is there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub repo: String,
    /// The repository commit the shards came from, when the hub said.
    pub revision: Option<String>,
    pub selection: Selection,
    pub test_source: String,
    pub classes: Vec<String>,
    pub counts: BTreeMap<String, BTreeMap<String, usize>>,
    /// Every image file, relative to the folder.
    pub files: Vec<String>,
}

impl Manifest {
    /// The manifest of `out` when it describes a complete fetch of `repo` with `selection`.
    pub fn complete(out: &Path, repo: &str, selection: &Selection) -> Option<Manifest> {
        let text = std::fs::read_to_string(out.join(MANIFEST)).ok()?;
        let m: Manifest = serde_json::from_str(&text).ok()?;
        let same = m.repo == repo && m.selection == *selection && !out.join(IN_PROGRESS).exists();
        let whole = m.files.iter().all(|f| {
            out.join(f)
                .metadata()
                .map(|md| md.is_file() && md.len() > 0)
                .unwrap_or(false)
        });
        (same && whole).then_some(m)
    }
}

/// Whether `out` holds a fetch that was started and not finished.
pub fn unfinished(out: &Path) -> bool {
    out.join(IN_PROGRESS).exists()
}

/// Downloads (or finds in the cache) the parquet shards of `opts.repo` and writes the image folders, then the
/// manifest. A folder whose manifest matches the request and whose files are all there is left as it is, without
/// touching the network or decoding an image.
pub fn fetch(opts: &FetchOptions, on_rows: &(dyn Fn(usize) + Sync), log: &mut dyn FnMut(&str)) -> Result<FetchReport> {
    if let Some(m) = Manifest::complete(&opts.out, &opts.repo, &opts.selection) {
        log(&format!(
            "{} already holds {} images of {} ({}): nothing to do",
            opts.out.display(),
            m.files.len(),
            m.repo,
            MANIFEST
        ));
        return Ok(FetchReport {
            classes: m.classes,
            counts: m.counts,
            kept: m.files.len(),
            test_source: m.test_source,
            files: m.files,
            already_complete: true,
            ..FetchReport::default()
        });
    }
    let (repo, revision) = match opts.repo.split_once('@') {
        Some((r, v)) => (r, Some(v)),
        None => (opts.repo.as_str(), None),
    };
    log(&format!(
        "getting the parquet files of {} (Hugging Face cache: {})",
        opts.repo,
        hub::hf_cache_dir().display()
    ));
    let (shards, commit) = download_shards(repo, revision, &opts.hub)?;
    log(&format!(
        "writing images to {} from {} parquet files ({})",
        opts.out.display(),
        shards.len(),
        shards
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let marker = opts.out.join(IN_PROGRESS);
    crate::io::atomic_write(&marker, opts.repo.as_bytes())?;
    let report = extract_parquet(&shards, &opts.out, &opts.selection, on_rows)?;
    let manifest = Manifest {
        repo: opts.repo.clone(),
        revision: commit,
        selection: opts.selection,
        test_source: report.test_source.clone(),
        classes: report.classes.clone(),
        counts: report.counts.clone(),
        files: report.files.clone(),
    };
    crate::io::write_json(&opts.out.join(MANIFEST), &manifest)?;
    std::fs::remove_file(&marker).map_err(|e| Error::io(&marker, e))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_come_from_parquet_paths() {
        assert_eq!(split_of("data/train-00000-of-00002.parquet"), Some("train"));
        assert_eq!(split_of("data/test-00000-of-00001.parquet"), Some("test"));
        assert_eq!(split_of("plain_text/train/0000.parquet"), Some("train"));
        assert_eq!(split_of("default/validation/0000.parquet"), Some("validation"));
        assert_eq!(split_of("data/extra.parquet"), None);
        assert_eq!(folder_name("cat"), "cats");
        assert_eq!(folder_name("dogs"), "dogs");
    }
}
