//! Where the conv-base weights come from: the Hugging Face Hub (through hf-hub and the standard cache), a local
//! safetensors file, or random He initialisation.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use serde::Serialize;

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
    /// A local `.safetensors` file.
    File { path: PathBuf },
    /// He initialisation with these block widths.
    Random { widths: [usize; 5], seed: u64 },
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
            return Ok(WeightsSpec::Random {
                widths: [v[0], v[1], v[2], v[3], v[4]],
                seed,
            });
        }
        let path = Path::new(s);
        let looks_like_file =
            s.ends_with(".safetensors") || s.starts_with('.') || s.starts_with('/') || s.contains('\\');
        if path.is_file() || looks_like_file {
            if !path.is_file() {
                return Err(Error::invalid(format!(
                    "--weights {s}: no such file. Give an existing .safetensors file, a hub id such as {DEFAULT_MODEL}, or `random`"
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

/// Options of hub access.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Show a download progress bar.
    pub progress: bool,
    /// Time allowed to reach the hub (DNS + TCP connect) and the longest pause in a download.
    pub timeout: Duration,
}

impl Default for HubOptions {
    fn default() -> Self {
        let secs = std::env::var("CATDOG_HUB_TIMEOUT")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(15);
        HubOptions {
            progress: std::io::stderr().is_terminal(),
            timeout: Duration::from_secs(secs.max(1)),
        }
    }
}

/// The Hugging Face cache folder, as Python's huggingface_hub finds it: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
pub fn hf_cache_dir() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = env("HF_HUB_CACHE").or_else(|| env("HUGGINGFACE_HUB_CACHE")) {
        return p;
    }
    if let Some(p) = env("HF_HOME") {
        return p.join("hub");
    }
    if let Some(p) = env("XDG_CACHE_HOME") {
        return p.join("huggingface").join("hub");
    }
    env("HOME")
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".cache")
        .join("huggingface")
        .join("hub")
}

/// `HF_HUB_OFFLINE` is set to a true value.
pub fn hub_offline() -> bool {
    matches!(
        std::env::var("HF_HUB_OFFLINE").map(|v| v.to_ascii_lowercase()),
        Ok(v) if v == "1" || v == "true" || v == "yes" || v == "on"
    )
}

fn hub_endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "https://huggingface.co".to_string())
}

/// Which kind of hub repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    Model,
    Dataset,
}

impl RepoKind {
    fn folder_prefix(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        }
    }
    fn hf(self) -> hf_hub::RepoType {
        match self {
            RepoKind::Model => hf_hub::RepoType::Model,
            RepoKind::Dataset => hf_hub::RepoType::Dataset,
        }
    }
}

/// A file found in the cache, without network: `snapshots/<commit>/<file>` where `<commit>` is `refs/<revision>`
/// or the revision itself when it is a commit hash.
pub fn cache_lookup(kind: RepoKind, repo: &str, revision: &str, file: &str) -> Option<(PathBuf, String)> {
    let root = hf_cache_dir().join(format!("{}--{}", kind.folder_prefix(), repo.replace('/', "--")));
    let commit = std::fs::read_to_string(root.join("refs").join(revision))
        .ok()
        .map(|s| s.trim().to_string())
        .or_else(|| {
            (revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit())).then(|| revision.to_string())
        })?;
    let p = root.join("snapshots").join(&commit).join(file);
    p.exists().then_some((p, commit))
}

/// Checks within `timeout` that the hub's host accepts a TCP connection (DNS included), so that an offline machine
/// fails at once instead of hanging in a library's retries.
fn probe_endpoint(endpoint: &str, timeout: Duration) -> std::result::Result<(), String> {
    let rest = endpoint.split("://").nth(1).unwrap_or(endpoint);
    let host_port = rest.split('/').next().unwrap_or(rest).to_string();
    let default_port = if endpoint.starts_with("http://") { 80 } else { 443 };
    let target = if host_port.contains(':') {
        host_port.clone()
    } else {
        format!("{host_port}:{default_port}")
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let t2 = target.clone();
    std::thread::spawn(move || {
        let r = t2
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {t2}: {e}"))
            .and_then(|mut addrs| {
                let addr = addrs.next().ok_or_else(|| format!("no address for {t2}"))?;
                TcpStream::connect_timeout(&addr, timeout)
                    .map(|_| ())
                    .map_err(|e| format!("cannot connect to {t2}: {e}"))
            });
        let _ = tx.send(r);
    });
    match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => Err(format!("no answer from {target} within {} s", timeout.as_secs())),
    }
}

struct WatchProgress {
    bar: Option<indicatif::ProgressBar>,
    last: Arc<AtomicU64>,
    start: Instant,
}

impl hf_hub::api::Progress for WatchProgress {
    fn init(&mut self, size: usize, filename: &str) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_length(size as u64);
            b.set_message(filename.to_string());
        }
    }
    fn update(&mut self, size: usize) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.inc(size as u64);
        }
    }
    fn finish(&mut self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

/// Path of `file` of a hub repository: from the cache when it is there (no network), else downloaded into the
/// cache through hf-hub. Returns the path and the commit hash when known. Offline, or when the hub cannot be
/// reached within the timeout, the error names the repository, the cache folder and the ways out.
pub fn hub_file(
    kind: RepoKind,
    repo: &str,
    revision: Option<&str>,
    file: &str,
    opts: &HubOptions,
) -> Result<(PathBuf, Option<String>)> {
    let rev = revision.unwrap_or("main");
    if let Some((p, commit)) = cache_lookup(kind, repo, rev, file) {
        return Ok((p, Some(commit)));
    }
    let id = match revision {
        Some(r) => format!("{repo}@{r}"),
        None => repo.to_string(),
    };
    let unavailable = |reason: String| Error::HubUnavailable {
        model_id: id.clone(),
        file: file.to_string(),
        cache_dir: hf_cache_dir(),
        reason,
    };
    if hub_offline() {
        return Err(unavailable("HF_HUB_OFFLINE is set, so the hub is not contacted".into()));
    }
    let endpoint = hub_endpoint();
    probe_endpoint(&endpoint, opts.timeout)
        .map_err(|e| unavailable(format!("the hub at {endpoint} cannot be reached: {e}")))?;

    let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(hf_cache_dir()))
        .with_endpoint(endpoint.clone())
        .with_progress(false)
        .with_token(std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()))
        .build()
        .map_err(|e| unavailable(format!("cannot set up the hub client: {e}")))?;
    let hf_repo = hf_hub::Repo::with_revision(repo.to_string(), kind.hf(), rev.to_string());
    let last = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let bar = opts.progress.then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})",
            )
            .expect("valid template"),
        );
        b
    });
    let progress = WatchProgress {
        bar: bar.clone(),
        last: last.clone(),
        start,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let file_owned = file.to_string();
    std::thread::spawn(move || {
        let r = api.repo(hf_repo).download_with_progress(&file_owned, progress);
        let _ = tx.send(r);
    });
    let stall = opts.timeout.max(Duration::from_secs(30));
    let result = loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(r) => break r.map_err(|e| e.to_string()),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                break Err("the download thread ended unexpectedly".to_string())
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let idle = start.elapsed().as_millis() as u64 - last.load(Ordering::Relaxed);
                if idle > stall.as_millis() as u64 {
                    if let Some(b) = &bar {
                        b.abandon();
                    }
                    return Err(unavailable(format!(
                        "the download stalled: no data for {} s",
                        stall.as_secs()
                    )));
                }
            }
        }
    };
    match result {
        Ok(p) => {
            let commit = cache_lookup(kind, repo, rev, file).map(|(_, c)| c);
            Ok((p, commit))
        }
        Err(msg) => {
            if msg.contains("404") || msg.contains("401") || msg.contains("403") {
                Err(Error::Hub {
                    model_id: id,
                    message: format!(
                        "{file} not found or not accessible ({msg}); check the repository id and revision (gated repositories need HF_TOKEN)"
                    ),
                })
            } else {
                Err(unavailable(msg))
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
    /// Every tensor of the file (for checkpoints that carry a head too). Empty for random weights.
    pub tensors: HashMap<String, Tensor>,
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
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |message: String| Error::BadSafetensors {
        path: path.to_path_buf(),
        message,
    };
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let t = candle_core::safetensors::Load::load(&view, &Device::Cpu)
            .map_err(|e| bad(format!("tensor '{name}': {e}")))?;
        out.insert(name, t);
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

/// Loads the conv base named by `spec` onto `device`.
pub fn load(spec: &WeightsSpec, device: &Device, opts: &HubOptions) -> Result<LoadedWeights> {
    match spec {
        WeightsSpec::Random { widths, seed } => Ok(LoadedWeights {
            spec: spec.clone(),
            model: Vgg16::random(*widths, *seed, device)?,
            tensors: HashMap::new(),
            preprocess: Preprocess::imagenet(),
            path: None,
            revision: None,
            metadata: HashMap::new(),
        }),
        WeightsSpec::File { path } => {
            let (tensors, metadata) = read_safetensors(path)?;
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
            let (tensors, metadata) = read_safetensors(&path)?;
            let model = Vgg16::from_tensors(&tensors, &format!("{repo} ({})", path.display()), device)?;
            Ok(LoadedWeights {
                spec: spec.clone(),
                model,
                tensors,
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
        assert!(WeightsSpec::parse("missing/file.safetensors", 1).is_err());
        assert!(WeightsSpec::parse("not a model id", 1).is_err());
    }
}
