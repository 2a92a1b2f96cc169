//! Training from extracted features (`finetune --features`): the files `catdog extract` wrote — one, or the shards
//! of one image list extracted by many jobs — read image by image into the run's feature cache, so that the head
//! trains on exactly what the in-run cache would have held.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::cache::FeatureCache;
use crate::data::decode::Interpolation;
use crate::data::folder::Sample;
use crate::data::preprocess::Preprocess;
use crate::error::{Error, Result};

/// The largest safetensors header read: a feature file's metadata lists its images, about 100 bytes each.
const MAX_HEADER_BYTES: u64 = 512 << 20;

/// How one feature file was made (its metadata).
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    layer: String,
    size: u32,
    interpolation: Interpolation,
    preprocess: Preprocess,
    precision: String,
    weights: String,
}

/// One feature file: where its `features` tensor starts, and how it was made.
struct FeatureFile {
    path: PathBuf,
    file: File,
    data_start: u64,
    settings: Settings,
}

/// Where an image's features are: file and row.
#[derive(Debug, Clone, Copy)]
struct Row {
    file: usize,
    row: usize,
}

/// What the run expects the features to be: its head's input layer and its image settings.
pub struct Expected<'a> {
    pub layer: &'a str,
    pub size: u32,
    pub interpolation: Interpolation,
    pub preprocess: Preprocess,
    pub precision: &'a str,
    /// This run's conv base, as `catdog extract` describes weights.
    pub weights: &'a str,
}

/// The feature files of `--features`, indexed by image.
pub struct FeatureFiles {
    given: PathBuf,
    files: Vec<FeatureFile>,
    /// `[C, H, W]` of one image's features.
    shape: [usize; 3],
    rows: HashMap<PathBuf, Row>,
    /// Images the extraction could not read, with its reason.
    skipped: HashMap<PathBuf, String>,
}

/// The key an image is found by: its canonical path when it exists, else the path as given.
fn key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

impl FeatureFiles {
    /// Opens `given`: a file written by `catdog extract`, or a folder whose `*.safetensors` files all are (shards
    /// of one extraction, or the extractions of the train and validation folders). They must agree on their
    /// settings and shape, and no image may be in two of them.
    pub fn open(given: &Path) -> Result<Self> {
        let paths = feature_paths(given)?;
        let mut out = FeatureFiles {
            given: given.to_path_buf(),
            files: Vec::new(),
            shape: [0; 3],
            rows: HashMap::new(),
            skipped: HashMap::new(),
        };
        for path in paths {
            out.add(&path)?;
        }
        Ok(out)
    }

    fn add(&mut self, path: &Path) -> Result<()> {
        let header = read_header(path)?;
        let (shape, images, skipped, settings) = parse_header(path, &header.json)?;
        let data_bytes = (images.len() * shape.iter().product::<usize>() * 4) as u64;
        if header.data_start + data_bytes > header.file_len {
            return Err(not_features(
                path,
                "it is shorter than its header says: an extraction cut short?",
            ));
        }
        let index = self.files.len();
        if let Some(first) = self.files.first() {
            if first.settings != settings || self.shape != shape {
                return Err(Error::invalid(format!(
                    "--features: {} and {} were extracted differently ({}; {}): extract every shard with the same \
                     --weights, --layer, --size, --interpolation, --preprocess and --precision",
                    first.path.display(),
                    path.display(),
                    first.settings.describe(self.shape),
                    settings.describe(shape)
                )));
            }
        }
        self.shape = shape;
        for (row, image) in images.iter().enumerate() {
            let k = key(image);
            if let Some(other) = self.rows.insert(k, Row { file: index, row }) {
                return Err(Error::invalid(format!(
                    "--features: {} is in both {} and {}; give each image to one shard only (extract --shard K/N)",
                    image.display(),
                    self.files[other.file].path.display(),
                    path.display()
                )));
            }
        }
        for (image, reason) in skipped {
            self.skipped.insert(key(&image), reason);
        }
        self.files.push(FeatureFile {
            path: path.to_path_buf(),
            file: header.file,
            data_start: header.data_start,
            settings,
        });
        Ok(())
    }

    /// Refuses features that are not what this run's head takes (layer, size, resize filter, preprocessing);
    /// returns notes on what differs without changing the shapes (precision, weights).
    pub fn check(&self, expected: &Expected) -> Result<Vec<String>> {
        let s = &self.files[0].settings;
        let mut diffs = Vec::new();
        let mut differ = |name: &str, file: String, run: String| {
            if file != run {
                diffs.push(format!("{name}: features {file}, this run {run}"));
            }
        };
        differ("layer", s.layer.clone(), expected.layer.into());
        differ("size", s.size.to_string(), expected.size.to_string());
        differ(
            "interpolation",
            format!("{:?}", s.interpolation),
            format!("{:?}", expected.interpolation),
        );
        differ("preprocess", s.preprocess.describe(), expected.preprocess.describe());
        if !diffs.is_empty() {
            return Err(Error::invalid(format!(
                "--features {}: the features do not fit this run:\n  {}\n  Extract with this run's settings \
                 (catdog extract --layer {} --size {} …), or give this run the features' settings",
                self.given.display(),
                diffs.join("\n  "),
                expected.layer,
                expected.size
            )));
        }
        let mut notes = Vec::new();
        if s.precision != expected.precision {
            notes.push(format!(
                "note: the features were extracted in {}, this run computes in {}: its history differs slightly \
                 from a run that extracts its own",
                s.precision, expected.precision
            ));
        }
        if s.weights != expected.weights {
            notes.push(format!(
                "note: the features were extracted with the weights {}, this run's conv base is {}: the \
                 checkpoints pair the head with this run's base",
                s.weights, expected.weights
            ));
        }
        Ok(notes)
    }

    /// How many images have features.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// How many of `samples` have features or were skipped by the extraction.
    pub fn covered(&self, samples: &[Sample]) -> usize {
        samples
            .iter()
            .map(|s| key(&s.path))
            .filter(|k| self.rows.contains_key(k) || self.skipped.contains_key(k))
            .count()
    }

    /// The feature cache of `samples` (by sample index), read from the files; with the images the extraction
    /// skipped and why. Every sample must have features or have been skipped, else an error counts the missing.
    pub fn cache(
        &mut self,
        label: &str,
        samples: &[Sample],
        budget_bytes: usize,
        spill_dir: &Path,
    ) -> Result<(FeatureCache, Vec<(PathBuf, String)>)> {
        let start = std::time::Instant::now();
        let mut cache = FeatureCache::empty(label, samples.len(), self.shape, budget_bytes, spill_dir)?;
        let mut bad = Vec::new();
        let mut missing = Vec::new();
        let mut row = vec![0f32; self.shape.iter().product()];
        let mut bytes = vec![0u8; row.len() * 4];
        for (i, sample) in samples.iter().enumerate() {
            let k = key(&sample.path);
            if let Some(&at) = self.rows.get(&k) {
                self.read_row(at, &mut bytes, &mut row)?;
                cache.put(i, &row)?;
            } else if let Some(reason) = self.skipped.get(&k) {
                bad.push((sample.path.clone(), reason.clone()));
            } else {
                missing.push(&sample.path);
            }
        }
        if let Some(first) = missing.first() {
            return Err(Error::invalid(format!(
                "--features {}: {} of the {} {label} images have no features, e.g. {}; extract them too (catdog \
                 extract FOLDER --out FILE, one --shard K/N per job), from the folder this run reads",
                self.given.display(),
                missing.len(),
                samples.len(),
                first.display()
            )));
        }
        cache.build_seconds = start.elapsed().as_secs_f64();
        Ok((cache, bad))
    }

    /// Row `at` into `row`, through `bytes` (its size in bytes, reused from row to row).
    fn read_row(&mut self, at: Row, bytes: &mut [u8], row: &mut [f32]) -> Result<()> {
        let f = &mut self.files[at.file];
        f.file
            .seek(SeekFrom::Start(f.data_start + (at.row * bytes.len()) as u64))
            .and_then(|_| f.file.read_exact(bytes))
            .map_err(|e| Error::io(&f.path, e))?;
        for (v, b) in row.iter_mut().zip(bytes.chunks_exact(4)) {
            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }
}

impl Settings {
    fn describe(&self, shape: [usize; 3]) -> String {
        format!(
            "{} {:?}, size {}, {:?}, {}, {}, weights {}",
            self.layer,
            shape,
            self.size,
            self.interpolation,
            self.preprocess.describe(),
            self.precision,
            self.weights
        )
    }
}

/// The files `given` names: itself, or the `*.safetensors` files of a folder in name order.
fn feature_paths(given: &Path) -> Result<Vec<PathBuf>> {
    if given.is_file() {
        return Ok(vec![given.to_path_buf()]);
    }
    if !given.is_dir() {
        return Err(Error::invalid(format!(
            "--features {}: no such file or folder; give a file `catdog extract` wrote, or a folder of them",
            given.display()
        )));
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(given)
        .map_err(|e| Error::io(given, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(Error::invalid(format!(
            "--features {}: the folder holds no .safetensors files; write them with catdog extract --out",
            given.display()
        )));
    }
    Ok(paths)
}

/// A safetensors file's header, read without its data.
struct Header {
    file: File,
    json: serde_json::Value,
    data_start: u64,
    file_len: u64,
}

fn read_header(path: &Path) -> Result<Header> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut n = [0u8; 8];
    file.read_exact(&mut n).map_err(|e| Error::io(path, e))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER_BYTES || 8 + n > file_len {
        return Err(not_features(
            path,
            &format!("a header of {n} bytes in a file of {file_len}"),
        ));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    let json = serde_json::from_slice(&header).map_err(|e| not_features(path, &format!("its header: {e}")))?;
    Ok(Header {
        file,
        json,
        data_start: 8 + n,
        file_len,
    })
}

fn not_features(path: &Path, what: &str) -> Error {
    Error::invalid(format!(
        "--features {}: not a features file of catdog extract ({what})",
        path.display()
    ))
}

type Parsed = ([usize; 3], Vec<PathBuf>, Vec<(PathBuf, String)>, Settings);

/// The `features` tensor's shape, the images in row order, the skipped images and the settings of a header.
fn parse_header(path: &Path, json: &serde_json::Value) -> Result<Parsed> {
    let bad = |what: &str| not_features(path, what);
    let t = &json["features"];
    if t["dtype"] != "F32" {
        return Err(bad("no F32 tensor named features"));
    }
    let shape: Vec<usize> = serde_json::from_value(t["shape"].clone()).map_err(|_| bad("its shape"))?;
    let offsets: (u64, u64) = serde_json::from_value(t["data_offsets"].clone()).map_err(|_| bad("its offsets"))?;
    let [n, c, h, w] = shape[..] else {
        return Err(bad(&format!("features of shape {shape:?}, not N×C×H×W")));
    };
    let bytes = [n, c, h, w].iter().try_fold(4u64, |acc, &d| acc.checked_mul(d as u64));
    if offsets.0 != 0 || bytes != Some(offsets.1) {
        return Err(bad("its data offsets do not match its shape"));
    }
    let meta = &json["__metadata__"];
    let field = |name: &str| {
        meta[name]
            .as_str()
            .ok_or_else(|| bad(&format!("no '{name}' in its metadata")))
    };
    let parse = |name: &str| -> Result<serde_json::Value> {
        serde_json::from_str(field(name)?).map_err(|_| bad(&format!("its metadata '{name}'")))
    };
    let cwd = meta["cwd"].as_str().map(PathBuf::from);
    let resolve = |p: String| match &cwd {
        Some(dir) if Path::new(&p).is_relative() => dir.join(p),
        _ => PathBuf::from(p),
    };
    let images: Vec<String> = serde_json::from_value(parse("files")?).map_err(|_| bad("its file list"))?;
    if images.len() != n {
        return Err(bad(&format!("{} files listed for {n} rows", images.len())));
    }
    let skipped: Vec<(String, String)> = match meta.get("skipped") {
        Some(_) => serde_json::from_value(parse("skipped")?).map_err(|_| bad("its skipped list"))?,
        None => Vec::new(),
    };
    let settings = Settings {
        layer: field("layer")?.to_string(),
        size: field("size")?.parse().map_err(|_| bad("its size"))?,
        interpolation: serde_json::from_value(parse("interpolation")?).map_err(|_| bad("its interpolation"))?,
        preprocess: serde_json::from_value(parse("preprocess")?).map_err(|_| bad("its preprocess"))?,
        precision: field("precision")?.to_string(),
        weights: field("weights")?.to_string(),
    };
    Ok((
        [c, h, w],
        images.into_iter().map(resolve).collect(),
        skipped.into_iter().map(|(p, r)| (resolve(p), r)).collect(),
        settings,
    ))
}
