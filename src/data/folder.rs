//! Image folders as Keras' `flow_from_directory` reads them: classes are the sub-folders sorted by name, files
//! with an image extension are walked recursively in sorted order, other files are skipped.

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::error::{Error, Result};

/// Extensions kept (case-insensitive), as Keras' white list.
pub const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff"];

/// True when the file name ends with one of [`IMAGE_EXTENSIONS`].
pub fn has_image_extension(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(|n| {
            let n = n.to_ascii_lowercase();
            IMAGE_EXTENSIONS.iter().any(|e| n.ends_with(&format!(".{e}")))
        })
        .unwrap_or(false)
}

/// Files under `dir` with an image extension, in Keras' order: directories sorted by path, files sorted by name
/// within each. Returns the images and the other files that were skipped.
pub fn walk_images(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut dirs: Vec<(String, PathBuf)> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let key = d.to_string_lossy().into_owned();
        dirs.push((key, d.clone()));
        let rd = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let ft = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            if ft.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    dirs.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut images, mut skipped) = (Vec::new(), Vec::new());
    for (_, d) in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
            .map_err(|e| Error::io(&d, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| !t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect();
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        for f in files {
            // Names that are not UTF-8 cannot go into config.json or --json output, and only regular files can be
            // read without blocking (a FIFO would wait for a writer): both are skipped and reported.
            if f.to_str().is_some() && has_image_extension(&f) && f.metadata().is_ok_and(|m| m.is_file()) {
                images.push(f);
            } else {
                skipped.push(f);
            }
        }
    }
    Ok((images, skipped))
}

/// One labelled image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub path: PathBuf,
    pub label: usize,
}

/// A labelled image folder.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    pub root: PathBuf,
    /// Class names in index order (sorted folder names).
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
    /// Files skipped because of their extension.
    pub skipped: Vec<PathBuf>,
}

impl ImageFolder {
    /// Reads `root/<class>/…`. Errors name the folder: missing, no class sub-folders, one class only, an empty class.
    pub fn scan(root: &Path) -> Result<Self> {
        let folder = Self::scan_lenient(root)?;
        if folder.classes.len() < 2 {
            return Err(Error::Data(format!(
                "{}: found one class folder ({}); a classifier needs at least two, e.g. {}/cats and {}/dogs",
                root.display(),
                folder.classes.join(", "),
                root.display(),
                root.display()
            )));
        }
        Ok(folder)
    }

    /// Like [`Self::scan`] but accepts a single class (evaluation of one class's images).
    pub fn scan_lenient(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::Data(format!(
                "{}: not a folder; expected a folder with one sub-folder of images per class (e.g. cats/, dogs/)",
                root.display()
            )));
        }
        let mut classes: Vec<String> = std::fs::read_dir(root)
            .map_err(|e| Error::io(root, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        classes.sort();
        if classes.is_empty() {
            return Err(Error::Data(format!(
                "{}: no class sub-folders; put the images of each class in its own folder (e.g. {}/cats, {}/dogs)",
                root.display(),
                root.display(),
                root.display()
            )));
        }
        let mut samples = Vec::new();
        let mut skipped = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let dir = root.join(class);
            let (images, other) = walk_images(&dir)?;
            if images.is_empty() {
                return Err(Error::Data(format!(
                    "{}: class folder '{class}' holds no images (extensions {})",
                    dir.display(),
                    IMAGE_EXTENSIONS.join(", ")
                )));
            }
            samples.extend(images.into_iter().map(|path| Sample { path, label }));
            skipped.extend(other);
        }
        Ok(ImageFolder {
            root: root.to_path_buf(),
            classes,
            samples,
            skipped,
        })
    }

    /// Images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes.len()];
        for s in &self.samples {
            c[s.label] += 1;
        }
        c
    }

    /// Stratified split: `fraction` of each class (rounded, at least one when the class has two or more images)
    /// goes to the second part. Seeded; the order inside each part stays the folder order.
    pub fn split(&self, fraction: f64, seed: u64) -> Result<(ImageFolder, ImageFolder)> {
        if !(0.0..1.0).contains(&fraction) || fraction == 0.0 {
            return Err(Error::invalid(format!("--val-split must be in (0, 1), got {fraction}")));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut in_second = vec![false; self.samples.len()];
        for label in 0..self.classes.len() {
            let mut idx: Vec<usize> = (0..self.samples.len())
                .filter(|&i| self.samples[i].label == label)
                .collect();
            idx.shuffle(&mut rng);
            let mut k = (idx.len() as f64 * fraction).round() as usize;
            if k == 0 && idx.len() >= 2 {
                k = 1;
            }
            k = k.min(idx.len().saturating_sub(1));
            for &i in &idx[..k] {
                in_second[i] = true;
            }
        }
        let part = |second: bool| ImageFolder {
            root: self.root.clone(),
            classes: self.classes.clone(),
            samples: self
                .samples
                .iter()
                .zip(&in_second)
                .filter(|(_, &s)| s == second)
                .map(|(x, _)| x.clone())
                .collect(),
            skipped: Vec::new(),
        };
        Ok((part(false), part(true)))
    }

    /// Keeps only the samples whose path is not in `bad`.
    pub fn without(&self, bad: &std::collections::HashSet<PathBuf>) -> ImageFolder {
        ImageFolder {
            root: self.root.clone(),
            classes: self.classes.clone(),
            samples: self
                .samples
                .iter()
                .filter(|s| !bad.contains(&s.path))
                .cloned()
                .collect(),
            skipped: self.skipped.clone(),
        }
    }
}

/// Image files named on a command line: files as given, folders walked. When exactly one folder is given and it
/// is laid out by class, the labels and class names come with it.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub files: Vec<PathBuf>,
    pub labels: Option<Vec<usize>>,
    pub classes: Option<Vec<String>>,
    pub skipped: Vec<PathBuf>,
}

pub fn collect_inputs(paths: &[PathBuf]) -> Result<Inputs> {
    if paths.is_empty() {
        return Err(Error::invalid("no images given: name image files or folders"));
    }
    if let [single] = paths {
        if single.is_dir() {
            let has_subdirs = std::fs::read_dir(single)
                .map_err(|e| Error::io(single, e))?
                .filter_map(|e| e.ok())
                .any(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false));
            let direct_images = std::fs::read_dir(single)
                .map_err(|e| Error::io(single, e))?
                .filter_map(|e| e.ok())
                .any(|e| has_image_extension(&e.path()) && e.path().is_file());
            if has_subdirs && !direct_images {
                let f = ImageFolder::scan_lenient(single)?;
                return Ok(Inputs {
                    files: f.samples.iter().map(|s| s.path.clone()).collect(),
                    labels: Some(f.samples.iter().map(|s| s.label).collect()),
                    classes: Some(f.classes),
                    skipped: f.skipped,
                });
            }
        }
    }
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for p in paths {
        if p.is_dir() {
            let (imgs, other) = walk_images(p)?;
            files.extend(imgs);
            skipped.extend(other);
        } else if p.is_file() && p.to_str().is_none() {
            skipped.push(p.clone());
        } else if p.is_file() {
            files.push(p.clone());
        } else if let Some(what) = crate::io::not_a_file(p) {
            return Err(Error::invalid(format!("{}: is {what}, not an image file", p.display())));
        } else {
            return Err(Error::invalid(format!("{}: no such file or folder", p.display())));
        }
    }
    if files.is_empty() {
        return Err(Error::Data(format!(
            "no images found in {} (extensions {}){}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            IMAGE_EXTENSIONS.join(", "),
            match skipped.iter().find(|p| p.to_str().is_none()) {
                Some(p) => format!("; {} was skipped: its name is not UTF-8, rename it", p.display()),
                None => String::new(),
            }
        )));
    }
    Ok(Inputs {
        files,
        labels: None,
        classes: None,
        skipped,
    })
}

/// Names of split folders recognised at the top of a data folder, in the order they are reported.
pub const SPLIT_NAMES: [&str; 4] = ["train", "validation", "val", "test"];

/// The split sub-folders of `dir` that exist (`train`, `validation`/`val`, `test`); empty when `dir` is itself a
/// class folder.
pub fn split_dirs(dir: &Path) -> Vec<(String, PathBuf)> {
    SPLIT_NAMES
        .iter()
        .map(|n| (n.to_string(), dir.join(n)))
        .filter(|(_, p)| p.is_dir())
        .collect()
}

/// Training data with its validation and test parts.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: ImageFolder,
    pub val: Option<ImageFolder>,
    pub test: Option<ImageFolder>,
    /// How the validation part was obtained, for summaries.
    pub val_source: String,
    /// Whether `val_split` made the validation part (false when a folder gave it, or there is none).
    pub val_from_split: bool,
}

/// Finds the parts of a data folder:
/// - `DIR/train` (+ `DIR/validation` or `DIR/val`, + `DIR/test`): the course layout. Validation is the validation
///   folder, else a `val_split` of train, else the test folder (as the course does);
/// - otherwise `DIR` is one class folder, and `val_split` (if given) splits it, stratified and seeded.
pub fn resolve_splits(dir: &Path, val_split: Option<f64>, seed: u64) -> Result<Splits> {
    let parts = split_dirs(dir);
    let find = |names: &[&str]| {
        parts
            .iter()
            .find(|(n, _)| names.contains(&n.as_str()))
            .map(|(_, p)| p.clone())
    };
    let (train, mut val, mut val_source, test) = if let Some(train_dir) = find(&["train"]) {
        let train = ImageFolder::scan(&train_dir)?;
        let val_dir = find(&["validation", "val"]);
        let test = find(&["test"]).map(|p| ImageFolder::scan(&p)).transpose()?;
        let val = val_dir.as_ref().map(|p| ImageFolder::scan(p)).transpose()?;
        let src = val_dir.map(|p| p.display().to_string()).unwrap_or_default();
        (train, val, src, test)
    } else if !parts.is_empty() {
        return Err(Error::Data(format!(
            "{}: found {} but no train/ folder; the layout is DIR/train/<class>/… with optional DIR/test/<class>/…",
            dir.display(),
            parts
                .iter()
                .map(|(n, _)| format!("{n}/"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    } else {
        (ImageFolder::scan(dir)?, None, String::new(), None)
    };
    let mut train = train;
    let mut val_from_split = false;
    if val.is_none() {
        if let Some(f) = val_split {
            val_from_split = true;
            let (a, b) = train.split(f, seed)?;
            val_source = format!(
                "{:.0}% of {} (stratified, seed {seed})",
                f * 100.0,
                train.root.display()
            );
            train = a;
            val = Some(b);
        } else if let Some(t) = &test {
            val = Some(t.clone());
            val_source = format!("{} (the test folder, as the course does)", t.root.display());
        }
    }
    for (what, part) in [("validation", &val), ("test", &test)] {
        if let Some(p) = part {
            if p.classes != train.classes {
                return Err(Error::Data(format!(
                    "{}: the {what} classes {:?} differ from the training classes {:?} in {}",
                    p.root.display(),
                    p.classes,
                    train.classes,
                    train.root.display()
                )));
            }
        }
    }
    Ok(Splits {
        train,
        val,
        test,
        val_source,
        val_from_split,
    })
}
