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

/// Where `data fetch` writes, and where `finetune` and `evaluate` look, unless told otherwise.
pub const DEFAULT_FOLDER: &str = "data/dogs-vs-cats";

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

/// Most classes a data set may have when its metadata names none (a label is an index into them).
const MAX_UNNAMED_CLASSES: usize = 10_000;

/// A class name as it may stand in a file name: trimmed, `/`, `\`, `:` and control characters replaced by `_`,
/// leading dots dropped (no hidden files, no `..`); `None` when nothing is left.
fn plain_name(class: &str) -> Option<String> {
    let c: String = class
        .trim()
        .chars()
        .map(|ch| {
            if ch.is_control() || "/\\:".contains(ch) {
                '_'
            } else {
                ch
            }
        })
        .collect();
    let c = c.trim_start_matches('.').trim();
    (!c.is_empty()).then(|| c.chars().take(100).collect())
}

/// Folder name of a class: the course's plural form (`cat` → `cats`); a name with nothing usable in it (empty,
/// only dots) becomes `class<index>`.
pub fn folder_name(class: &str, index: usize) -> String {
    let c = file_prefix(class, index);
    if c.ends_with('s') {
        c
    } else {
        format!("{c}s")
    }
}

/// The start of an image's file name: the class name made plain, `class<index>` when nothing usable is left.
fn file_prefix(class: &str, index: usize) -> String {
    plain_name(class).map_or_else(|| format!("class{index}"), |c| c.replace(' ', "_"))
}

/// The folder of each class; two classes whose names end up in the same folder are an error (their images would
/// mix).
fn class_folders(names: &[String]) -> Result<Vec<String>> {
    let folders: Vec<String> = names.iter().enumerate().map(|(i, n)| folder_name(n, i)).collect();
    for (i, f) in folders.iter().enumerate() {
        if let Some(j) = folders[..i].iter().position(|g| g == f) {
            return Err(Error::Data(format!(
                "the classes '{}' and '{}' would share the folder '{f}'; the data set's class names cannot be \
                 written as folders",
                names[j].escape_debug(),
                names[i].escape_debug()
            )));
        }
    }
    Ok(folders)
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

/// A row of a shard after pass 1.
struct Entry {
    shard: usize,
    split: String,
    label: usize,
    ext: &'static str,
    /// Decodes, and (with --per-class) is in the subset.
    good: bool,
}

/// What pass 1 found: every row, the class names of the metadata, each shard's layout.
struct Checked1 {
    entries: Vec<Entry>,
    names: Vec<String>,
    layouts: Vec<Layout>,
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
    if !(0.0..1.0).contains(&sel.test_split) {
        return Err(Error::invalid(format!(
            "--test-split must be in [0, 1), got {}",
            sel.test_split
        )));
    }
    if sel.per_class == Some(0) {
        return Err(Error::invalid("--per-class must be at least 1"));
    }
    let mut report = FetchReport::default();
    let Checked1 {
        mut entries,
        mut names,
        layouts,
    } = check_rows(shards, &mut report.bad, on_rows)?;
    let n_classes = entries.iter().map(|e| e.label + 1).max().unwrap_or(0).max(names.len());
    if n_classes < 2 {
        return Err(Error::Data("the data set has fewer than two classes".into()));
    }
    names.resize_with(n_classes, String::new);
    report.classes = class_folders(&names)?;
    report.test_source = choose_rows(&mut entries, sel, n_classes);
    let singular: Vec<String> = names.iter().enumerate().map(|(i, n)| file_prefix(n, i)).collect();
    write_rows(shards, &layouts, &entries, &singular, out, on_rows, &mut report)?;
    Ok(report)
}

/// Pass 1: every row's label and extension, and whether its image decodes (the bad ones go to `bad`).
fn check_rows(
    shards: &[(String, PathBuf)],
    bad: &mut Vec<(String, usize, String)>,
    on_rows: &(dyn Fn(usize) + Sync),
) -> Result<Checked1> {
    let limits = DecodeLimits::default();
    let (mut entries, mut names, mut layouts) = (Vec::new(), Vec::new(), Vec::new());
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
                .map(|(ri, row)| check_row(row, *ri, &l, path, &limits))
                .collect();
            for ((ri, _), c) in block.iter().zip(checked) {
                let (label, ext, ok) = c?;
                if let Err(reason) = &ok {
                    bad.push((path.display().to_string(), *ri, reason.clone()));
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
    Ok(Checked1 {
        entries,
        names,
        layouts,
    })
}

/// One row's label (an index below the named classes, or below [`MAX_UNNAMED_CLASSES`]), extension, and whether
/// its image decodes.
fn check_row(row: &Row, ri: usize, l: &Layout, path: &Path, limits: &DecodeLimits) -> Result<Checked> {
    let label = label_of(row, &l.label_col)
        .filter(|&v| v >= 0)
        .ok_or_else(|| err(path, format!("row {ri}: no integer label in column '{}'", l.label_col)))?
        as usize;
    let known = if l.names.is_empty() {
        MAX_UNNAMED_CLASSES
    } else {
        l.names.len()
    };
    if label >= known {
        return Err(err(
            path,
            format!("row {ri}: label {label}, but the data set has {known} classes at most"),
        ));
    }
    Ok(match image_bytes(row, &l.image_col) {
        None => (label, "jpg", Err("no image bytes in the row".to_string())),
        Some(b) => (label, extension(&b), decode_rgb_bytes(&b, limits).map(|_| ())),
    })
}

/// The good training rows of each class, shuffled with `seed`.
fn train_rows_of(entries: &[Entry], class: usize, rng: &mut rand::rngs::StdRng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].label == class && entries[i].good && entries[i].split == "train")
        .collect();
    idx.shuffle(rng);
    idx
}

/// Which rows are written, and to which split: `--per-class` keeps a seeded, stratified subset of the training
/// rows (the repository's test rows stay whole); the repository's test (or validation) split is used when there
/// is one, else a stratified share of train is drawn. Returns how the test split was made.
fn choose_rows(entries: &mut [Entry], sel: &Selection, n_classes: usize) -> String {
    if let Some(n) = sel.per_class {
        let mut rng = rand::rngs::StdRng::seed_from_u64(sel.seed ^ 0x5EB5E7);
        for c in 0..n_classes {
            for i in train_rows_of(entries, c, &mut rng).into_iter().skip(n) {
                entries[i].good = false;
            }
        }
    }
    if entries.iter().any(|e| e.split == "test") {
        for e in entries.iter_mut().filter(|e| e.split == "validation") {
            e.split = "test".into();
        }
        return "the repository's test split".into();
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(sel.seed);
    for c in 0..n_classes {
        let idx = train_rows_of(entries, c, &mut rng);
        let k = (idx.len() as f64 * sel.test_split).round() as usize;
        for &i in &idx[..k] {
            entries[i].split = "test".into();
        }
    }
    format!("{:.0}% of train, stratified, seed {}", sel.test_split * 100.0, sel.seed)
}

/// Pass 2: writes the good rows; files already there (an earlier, perhaps interrupted, run) are kept. Counts go
/// to `report`.
fn write_rows(
    shards: &[(String, PathBuf)],
    layouts: &[Layout],
    entries: &[Entry],
    singular: &[String],
    out: &Path,
    on_rows: &(dyn Fn(usize) + Sync),
    report: &mut FetchReport,
) -> Result<()> {
    let mut first = 0usize;
    for (si, (_, path)) in shards.iter().enumerate() {
        let l = &layouts[si];
        let count = entries.iter().filter(|e| e.shard == si).count();
        let mine = &entries[first..first + count];
        let name_of = |ri: usize, e: &Entry| format!("{}.{}.{}", singular[e.label], first + ri, e.ext);
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
                    let dest = out.join(&e.split).join(&classes[e.label]).join(name_of(*ri, e));
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
            let class = report.classes[e.label].clone();
            report.files.push(format!("{}/{class}/{}", e.split, name_of(ri, e)));
            *report
                .counts
                .entry(e.split.clone())
                .or_default()
                .entry(class)
                .or_default() += 1;
            if kept {
                report.kept += 1;
            } else {
                report.written += 1;
            }
        }
        first += count;
    }
    Ok(())
}

/// Options of [`fetch`].
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// `org/name[@revision]`.
    pub repo: String,
    pub out: PathBuf,
    pub selection: Selection,
    pub hub: HubOptions,
    /// Replace what another fetch (other repository or selection) left in `out`, instead of refusing.
    pub force: bool,
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

/// What a fetch records of itself, in its manifest and (while it runs) in its in-progress marker: enough to tell
/// whether a later fetch into the same folder asks for the same images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Request {
    repo: String,
    selection: Selection,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.selection;
        let per_class = s.per_class.map_or("all".to_string(), |n| n.to_string());
        write!(
            f,
            "{} with --seed {}, --test-split {}, --per-class {per_class}",
            self.repo, s.seed, s.test_split
        )
    }
}

/// The split folders a fetch writes (and `--force` replaces).
const SPLITS: [&str; 3] = ["train", "test", "validation"];

/// What `out` holds before a fetch: nothing (or only leftovers), the same request (a resumption), or something
/// else. A different request into a non-empty folder would mix two selections — the same images in train and
/// test — so it is refused unless `force`, which removes the earlier splits first.
fn claim_folder(out: &Path, wanted: &Request, force: bool) -> Result<()> {
    // The marker of a fetch in progress says what it fetches; a marker of an older catdog holds only the
    // repository, and then the manifest of the fetch it was completing says the rest.
    let recorded = |name: &str| {
        let text = std::fs::read_to_string(out.join(name)).ok()?;
        Some(serde_json::from_str::<Request>(&text).ok())
    };
    let earlier = match (recorded(IN_PROGRESS), recorded(MANIFEST)) {
        (Some(Some(r)), _) | (_, Some(Some(r))) => Some(Some(r)),
        (Some(None), _) | (_, Some(None)) => Some(None),
        (None, None) => None,
    };
    let holds_splits = SPLITS.iter().any(|s| out.join(s).exists());
    let what = match earlier {
        Some(Some(r)) if r == *wanted => return Ok(()),
        None if !holds_splits => return Ok(()),
        Some(Some(r)) => format!("a fetch of {r}"),
        Some(None) => "an earlier fetch whose settings it does not record".to_string(),
        None => format!("image folders that no catdog fetch wrote (no {MANIFEST})"),
    };
    if !force {
        return Err(Error::invalid(format!(
            "{} holds {what}; this fetch asks for {wanted}. Mixing the two would put the same images in train and \
             test: choose another --out, or add --force to replace what is there",
            out.display()
        )));
    }
    for split in SPLITS.iter().map(|s| out.join(s)).filter(|p| p.exists()) {
        std::fs::remove_dir_all(&split).map_err(|e| Error::io(&split, e))?;
    }
    let _ = std::fs::remove_file(out.join(MANIFEST));
    Ok(())
}

/// Removes the temporary files (`.*.tmp`) that an interrupted fetch's atomic writes left in `out/<split>/<class>/`.
/// Only called while holding the folder's lock, so no live fetch owns them.
fn remove_leftovers(out: &Path) {
    let folders = SPLITS
        .iter()
        .filter_map(|s| std::fs::read_dir(out.join(s)).ok())
        .flat_map(|d| d.flatten().map(|e| e.path()))
        .chain(std::iter::once(out.to_path_buf()));
    for folder in folders {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") && !name.starts_with(".lock.") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Downloads (or finds in the cache) the parquet shards of `opts.repo` and writes the image folders, then the
/// manifest. A folder whose manifest matches the request and whose files are all there is left as it is, without
/// touching the network or decoding an image. The folder is locked while the fetch writes into it, and a folder
/// that holds another fetch's images is refused unless `opts.force` (see [`claim_folder`]).
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
    let created = !opts.out.exists();
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let lock = crate::run::RunLock::acquire(&opts.out, "choose another --out")?;
    let result = fetch_locked(opts, on_rows, log);
    drop(lock);
    // A folder made for a fetch that failed before writing anything (the hub unreachable) goes again, so that the
    // next command does not take it for data; remove_dir leaves a folder that is not empty.
    if result.is_err() && created {
        let _ = std::fs::remove_dir(&opts.out);
    }
    result
}

/// [`fetch`] once the folder is made and locked.
fn fetch_locked(
    opts: &FetchOptions,
    on_rows: &(dyn Fn(usize) + Sync),
    log: &mut dyn FnMut(&str),
) -> Result<FetchReport> {
    let request = Request {
        repo: opts.repo.clone(),
        selection: opts.selection,
    };
    claim_folder(&opts.out, &request, opts.force)?;
    remove_leftovers(&opts.out);
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
    crate::io::write_json(&marker, &request)?;
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
        assert_eq!(folder_name("cat", 0), "cats");
        assert_eq!(folder_name("dogs", 1), "dogs");
    }

    #[test]
    fn class_names_from_the_network_become_plain_visible_folders() {
        assert_eq!(folder_name("", 3), "class3s");
        assert_eq!(folder_name("  ", 0), "class0s");
        assert_eq!(folder_name("..", 1), "class1s");
        assert_eq!(folder_name("../../etc", 0), "_.._etcs");
        assert_eq!(folder_name(".hidden", 0), "hiddens");
        assert_eq!(folder_name("a\nb", 0), "a_bs");
        assert_eq!(file_prefix("golden retriever", 0), "golden_retriever");
        let e = class_folders(&["cat".into(), "cats".into()]).unwrap_err().to_string();
        assert!(e.contains("'cat' and 'cats'") && e.contains("'cats'"), "{e}");
        assert_eq!(class_folders(&["".into(), "dog".into()]).unwrap(), ["class0s", "dogs"]);
    }
}
