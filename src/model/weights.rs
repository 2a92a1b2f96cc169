//! Where the conv-base weights come from: the Hugging Face Hub (the standard cache, see `crate::hub`), a local
//! safetensors or ONNX file (see [`super::onnx`]), or random He initialisation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Serialize;

pub use crate::hub::{cache_lookup, hf_cache_dir, hub_file, hub_offline, HubOptions, RepoKind};

use super::vgg16::{Vgg16, VGG16_WIDTHS};
use crate::data::preprocess::{self, Preprocess};
use crate::error::{Error, Result};

/// The default model: torchvision's ImageNet VGG16 as published by timm.
pub const DEFAULT_MODEL: &str = "timm/vgg16.tv_in1k";
/// The weights file in a timm repository.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The pretrained config in a timm repository (mean/std).
pub const CONFIG_FILE: &str = "config.json";

/// What `--weights` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum WeightsSpec {
    /// A hub model id, optionally at a revision (`org/name@rev`).
    Hub { repo: String, revision: Option<String> },
    /// A local `.safetensors` or `.onnx` file.
    File { path: PathBuf },
    /// He initialisation with these block widths.
    Random { widths: [usize; 5], seed: u64 },
}

/// Widest block `random:W1,…` may ask for: eight times VGG16's 512 (a block5 of 4096 channels already holds
/// 450M weights).
pub const MAX_RANDOM_WIDTH: usize = 4096;

/// Weights and biases of a VGG16 conv base of these block widths (2, 2, 3, 3, 3 convolutions of 3×3).
pub fn random_parameters(widths: &[usize; 5]) -> usize {
    let convs = [2usize, 2, 3, 3, 3];
    let mut input = 3;
    let mut total = 0;
    for (&w, &n) in widths.iter().zip(&convs) {
        for _ in 0..n {
            total += 9 * input * w + w;
            input = w;
        }
    }
    total
}

impl WeightsSpec {
    /// Parses `--weights`: `random`, `random:W1,W2,W3,W4,W5`, a path to a `.safetensors` file, or a hub id
    /// `org/name[@revision]`. `seed` seeds random weights.
    pub fn parse(s: &str, seed: u64) -> Result<Self> {
        let s = s.trim();
        if s == "random" {
            return Ok(WeightsSpec::Random {
                widths: VGG16_WIDTHS,
                seed,
            });
        }
        if let Some(rest) = s.strip_prefix("random:") {
            let v: Vec<usize> = rest
                .split(',')
                .map(|x| x.trim().parse::<usize>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| {
                    Error::invalid(format!(
                        "--weights {s}: expected random:W1,W2,W3,W4,W5 with five positive channel widths, e.g. random:8,16,32,64,64"
                    ))
                })?;
            if v.len() != 5 || v.contains(&0) {
                return Err(Error::invalid(format!(
                    "--weights {s}: expected five positive channel widths, e.g. random:8,16,32,64,64"
                )));
            }
            if let Some(w) = v.iter().find(|w| **w > MAX_RANDOM_WIDTH) {
                return Err(Error::invalid(format!(
                    "--weights {s}: a width of {w} channels is out of range: use 1..={MAX_RANDOM_WIDTH} (VGG16's \
                     widest block has 512)"
                )));
            }
            let widths = [v[0], v[1], v[2], v[3], v[4]];
            let weights = crate::limits::MemoryPart::new(
                "the random conv base's weights",
                random_parameters(&widths) as u64 * 4,
                "the random:W1,… widths of --weights",
            );
            crate::limits::check_memory(&format!("--weights {s}"), &[weights])?;
            return Ok(WeightsSpec::Random { widths, seed });
        }
        let path = Path::new(s);
        let looks_like_file = s.ends_with(".safetensors")
            || is_onnx(path)
            || s.starts_with('.')
            || s.starts_with('/')
            || s.contains('\\');
        if let Some(what) = crate::io::not_a_file(path).filter(|_| looks_like_file || path.is_dir()) {
            return Err(Error::invalid(format!(
                "--weights {s}: is {what}, not a weights file. Give a .safetensors or .onnx file, a hub id such as \
                 {DEFAULT_MODEL}, or `random`"
            )));
        }
        if path.is_file() || looks_like_file {
            if !path.is_file() {
                return Err(Error::invalid(format!(
                    "--weights {s}: no such file. Give an existing .safetensors or .onnx file, a hub id such as {DEFAULT_MODEL}, or `random`"
                )));
            }
            return Ok(WeightsSpec::File {
                path: path.to_path_buf(),
            });
        }
        let (repo, revision) = match s.split_once('@') {
            Some((r, rev)) => (r.to_string(), Some(rev.to_string())),
            None => (s.to_string(), None),
        };
        let valid = |x: &str| !x.is_empty() && x.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        let ok = match repo.split_once('/') {
            Some((org, name)) => valid(org) && valid(name),
            None => valid(&repo),
        };
        if !ok || revision.as_deref() == Some("") {
            return Err(Error::invalid(format!(
                "--weights {s}: not a file, not `random`, and not a hub id of the form org/name[@revision]"
            )));
        }
        if let Some(rev) = &revision {
            crate::hub::check_revision(rev).map_err(|why| {
                Error::invalid(format!(
                    "--weights {}: {why}; give a branch, tag or commit after @",
                    s.escape_debug()
                ))
            })?;
        }
        Ok(WeightsSpec::Hub { repo, revision })
    }

    /// A short description (model id, file path, or `random:…`).
    pub fn describe(&self) -> String {
        match self {
            WeightsSpec::Hub { repo, revision } => match revision {
                Some(r) => format!("{repo}@{r}"),
                None => repo.clone(),
            },
            WeightsSpec::File { path } => path.display().to_string(),
            WeightsSpec::Random { widths, seed } => {
                format!("random:{} (seed {seed})", widths.map(|w| w.to_string()).join(","))
            }
        }
    }
}

/// Weights loaded and ready to build a model.
#[derive(Debug)]
pub struct LoadedWeights {
    pub spec: WeightsSpec,
    /// The conv base.
    pub model: Vgg16,
    /// The conv-base tensors of the file (`features.*`). Empty for random weights.
    pub tensors: HashMap<String, Tensor>,
    /// The file's other tensors (a classifier, a head), named but never read.
    pub ignored: Vec<String>,
    /// The preprocessing that goes with the weights.
    pub preprocess: Preprocess,
    /// The file the weights came from (none for random).
    pub path: Option<PathBuf>,
    /// The hub commit when known.
    pub revision: Option<String>,
    /// safetensors metadata of the file.
    pub metadata: HashMap<String, String>,
}

/// Reads every tensor of a safetensors file (CPU), with a clear error for a truncated or invalid file.
pub fn read_safetensors(path: &Path) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let part = read_safetensors_where(path, |_| true)?;
    Ok((part.tensors, part.metadata))
}

/// The tensors of a safetensors file that a filter kept, its metadata and the names it left out.
pub struct SafetensorsPart {
    pub tensors: HashMap<String, Tensor>,
    pub metadata: HashMap<String, String>,
    /// Names of the tensors the filter left out, sorted.
    pub skipped: Vec<String>,
}

/// Reads the tensors whose names `wanted` accepts (CPU). The file is memory-mapped, so only those tensors' bytes
/// are read: the timm VGG16 file is 553 MB, 470 MB of it the ImageNet classifier a conv base never uses. A
/// truncated or invalid file is a clear error.
pub fn read_safetensors_where(path: &Path, wanted: impl Fn(&str) -> bool) -> Result<SafetensorsPart> {
    // Opening a FIFO would wait for a writer; a folder or device is no weights file either.
    if let Some(what) = crate::io::not_a_file(path) {
        return Err(Error::invalid(format!(
            "{}: is {what}, not a safetensors file",
            path.display()
        )));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // As with any memory-mapped loader (candle's, safetensors'), another process truncating the file while it is
    // mapped would fault; catdog writes checkpoints to a temporary file and renames it, which leaves a mapped file
    // intact.
    // SAFETY: the map is only read, and every tensor is copied out of it before it is dropped at the end of this
    // function; nothing in catdog writes a weights file in place while it is mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let bad = |message: String| Error::BadSafetensors {
        path: path.to_path_buf(),
        message,
    };
    let (_, meta) = safetensors::SafeTensors::read_metadata(&map).map_err(|e| bad(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&map).map_err(|e| bad(e.to_string()))?;
    let mut tensors = HashMap::new();
    let mut skipped = Vec::new();
    for (name, view) in st.tensors() {
        if !wanted(&name) {
            skipped.push(name);
            continue;
        }
        let t = candle_core::safetensors::Load::load(&view, &Device::Cpu)
            .map_err(|e| bad(format!("tensor '{name}': {e}")))?;
        tensors.insert(name, t);
    }
    skipped.sort();
    Ok(SafetensorsPart {
        tensors,
        metadata: meta.metadata().clone().unwrap_or_default(),
        skipped,
    })
}

/// Whether `path` names an ONNX model (by its extension, in any case).
fn is_onnx(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// The conv base of an ONNX model. Its preprocessing is the exporting framework's VGG16 convention: Keras'
/// `preprocess_input` ("caffe": BGR, mean subtracted) for tf2onnx/keras2onnx models, the recorded one for
/// `catdog export`'s, ImageNet mean/std for the rest (torch.onnx); `--preprocess` overrides it when the model was
/// trained otherwise.
fn load_onnx(spec: &WeightsSpec, path: &Path, device: &Device) -> Result<LoadedWeights> {
    let base = super::onnx::read_onnx_conv_base(path)?;
    let model = Vgg16::from_tensors(&base.tensors, &path.display().to_string(), device)?;
    let from_keras = base.producer.contains("tf2onnx") || base.producer.contains("keras");
    // catdog's own export says how its checkpoint preprocessed.
    let recorded = (base.producer == "catdog")
        .then(|| base.metadata.get("preprocess_json"))
        .flatten()
        .and_then(|j| serde_json::from_str::<Preprocess>(j).ok());
    let preprocess = match recorded {
        Some(p) => p,
        None if from_keras => Preprocess::caffe(),
        None => Preprocess::imagenet(),
    };
    Ok(LoadedWeights {
        spec: spec.clone(),
        model,
        tensors: base.tensors,
        ignored: base.ignored,
        preprocess,
        path: Some(path.to_path_buf()),
        revision: None,
        metadata: HashMap::from([("onnx_producer".to_string(), base.producer)]),
    })
}

/// Whether a tensor belongs to the conv base (torchvision/timm `features.N.*`).
fn is_conv_base(name: &str) -> bool {
    name.starts_with("features.")
}

/// Loads the conv base named by `spec` onto `device`.
pub fn load(spec: &WeightsSpec, device: &Device, opts: &HubOptions) -> Result<LoadedWeights> {
    match spec {
        WeightsSpec::Random { widths, seed } => Ok(LoadedWeights {
            spec: spec.clone(),
            model: Vgg16::random(*widths, *seed, device)?,
            tensors: HashMap::new(),
            ignored: Vec::new(),
            preprocess: Preprocess::imagenet(),
            path: None,
            revision: None,
            metadata: HashMap::new(),
        }),
        WeightsSpec::File { path } if is_onnx(path) => load_onnx(spec, path, device),
        WeightsSpec::File { path } => {
            let SafetensorsPart {
                tensors,
                metadata,
                skipped: ignored,
            } = read_safetensors_where(path, is_conv_base)?;
            let model = Vgg16::from_tensors(&tensors, &path.display().to_string(), device)?;
            // A catdog checkpoint records its preprocessing; a plain file gets the ImageNet default.
            let preprocess = metadata
                .get("preprocess")
                .and_then(|s| serde_json::from_str::<Preprocess>(s).ok())
                .unwrap_or_default();
            Ok(LoadedWeights {
                spec: spec.clone(),
                model,
                tensors,
                ignored,
                preprocess,
                path: Some(path.clone()),
                revision: None,
                metadata,
            })
        }
        WeightsSpec::Hub { repo, revision } => {
            let (path, commit) = hub_file(RepoKind::Model, repo, revision.as_deref(), WEIGHTS_FILE, opts)?;
            // The config is small and optional: use it when it is cached or can be fetched, else the default.
            let preprocess = hub_file(
                RepoKind::Model,
                repo,
                revision.as_deref(),
                CONFIG_FILE,
                &HubOptions {
                    progress: false,
                    ..opts.clone()
                },
            )
            .ok()
            .and_then(|(p, _)| std::fs::read_to_string(p).ok())
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|j| preprocess::from_timm_config(&j))
            .unwrap_or_default();
            let SafetensorsPart {
                tensors,
                metadata,
                skipped: ignored,
            } = read_safetensors_where(&path, is_conv_base)?;
            let model = Vgg16::from_tensors(&tensors, &format!("{repo} ({})", path.display()), device)?;
            Ok(LoadedWeights {
                spec: spec.clone(),
                model,
                tensors,
                ignored,
                preprocess,
                path: Some(path),
                revision: commit,
                metadata,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            WeightsSpec::parse("timm/vgg16.tv_in1k", 0).unwrap(),
            WeightsSpec::Hub {
                repo: "timm/vgg16.tv_in1k".into(),
                revision: None
            }
        );
        assert_eq!(
            WeightsSpec::parse("timm/vgg16.tv_in1k@abc123", 0).unwrap(),
            WeightsSpec::Hub {
                repo: "timm/vgg16.tv_in1k".into(),
                revision: Some("abc123".into())
            }
        );
        assert_eq!(
            WeightsSpec::parse("random", 3).unwrap(),
            WeightsSpec::Random {
                widths: VGG16_WIDTHS,
                seed: 3
            }
        );
        assert_eq!(
            WeightsSpec::parse("random:8,16,32,64,64", 1).unwrap(),
            WeightsSpec::Random {
                widths: [8, 16, 32, 64, 64],
                seed: 1
            }
        );
        assert!(WeightsSpec::parse("random:8,16", 1).is_err());
        let e = WeightsSpec::parse("random:100000,8,8,8,8", 1).unwrap_err().to_string();
        assert!(e.contains("100000 channels") && e.contains("1..=4096"), "{e}");
        assert_eq!(
            random_parameters(&VGG16_WIDTHS),
            14_714_688,
            "torchvision's VGG16 features"
        );
        assert!(WeightsSpec::parse("missing/file.safetensors", 1).is_err());
        assert!(WeightsSpec::parse("not a model id", 1).is_err());
    }
}
