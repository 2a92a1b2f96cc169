//! The Hugging Face Hub through hf-hub and the standard cache: cached files are used without network,
//! `HF_HOME`, `HF_HUB_CACHE`, `HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE` are honoured, and an unreachable hub
//! is one clear error within a bounded time. Shared by the weights and `catdog data fetch`.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Options of hub access.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Show download progress (a bar on a terminal, plain lines otherwise; see [`crate::progress`]).
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
            progress: true,
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

/// The access token, found where Python's `huggingface_hub` looks: `HF_TOKEN`, else the file `HF_TOKEN_PATH`
/// names, else `$HF_HOME/token` (what `hf auth login` writes; `~/.cache/huggingface/token` without `HF_HOME`).
pub fn hf_token() -> Option<String> {
    token_from(&|k| std::env::var(k).ok(), &|p| std::fs::read_to_string(p).ok())
}

/// [`hf_token`] with the environment and the file system given (for tests).
pub fn token_from(env: &dyn Fn(&str) -> Option<String>, read: &dyn Fn(&Path) -> Option<String>) -> Option<String> {
    let nonempty = |s: String| {
        let t = s.trim().to_string();
        (!t.is_empty()).then_some(t)
    };
    if let Some(t) = env("HF_TOKEN").and_then(nonempty) {
        return Some(t);
    }
    let path = match env("HF_TOKEN_PATH").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let home = env("HF_HOME")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(env("HOME").unwrap_or_else(|| ".".into()))
                        .join(".cache")
                        .join("huggingface")
                });
            home.join("token")
        }
    };
    read(&path).and_then(nonempty)
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

/// The error for a hub file that can be neither found in the cache nor downloaded, with the ways out.
pub fn unavailable_error(kind: RepoKind, id: &str, file: &str, reason: String) -> Error {
    let (what, ways_out) = match kind {
        RepoKind::Model => (
            "weights",
            format!(
                "Ways out: pass a local file with `--weights path/to/model.safetensors`, or train from scratch with \
                 `--weights random`. (On a machine with network, `catdog weights fetch {id}` fills the cache.)"
            ),
        ),
        RepoKind::Dataset => (
            "data set",
            format!(
                "Ways out: point `--data` at a folder of images laid out as DIR/train/<class>/… and DIR/test/<class>/…, \
                 or run `catdog data fetch --repo {id}` on a machine with network and copy the folder it writes."
            ),
        ),
    };
    Error::HubUnavailable(Box::new(crate::error::HubUnavailable {
        what: what.into(),
        id: id.to_string(),
        file: file.to_string(),
        cache_dir: hf_cache_dir(),
        reason,
        ways_out,
    }))
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

/// `host:port` of a URL (or of a bare `host[:port]`), with `default_port` when it has none; credentials dropped.
fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:{default_port}")
    }
}

/// The proxy the hub client uses, from the environment `env` gives: the first non-empty of `ALL_PROXY`,
/// `HTTPS_PROXY`, `HTTP_PROXY` (upper case first), as ureq reads them.
fn proxy_from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ]
    .iter()
    .find_map(|k| env(k).filter(|v| !v.trim().is_empty()))
}

/// Checks within `timeout` that the hub's host accepts a TCP connection (DNS included), so that an offline machine
/// fails at once instead of hanging in a library's retries.
///
/// Behind a proxy the proxy is what must answer (it may be the only one that can resolve the hub's name): the
/// probe goes to the proxy that the hub client (hf-hub on ureq) will use, chosen from the same variables in the
/// same order: `ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY`, each in upper and lower case.
fn probe_endpoint(endpoint: &str, timeout: Duration) -> std::result::Result<(), String> {
    let target = match proxy_from_env(&|k| std::env::var(k).ok()) {
        Some(proxy) => host_port(&proxy, 8080),
        None => host_port(endpoint, if endpoint.starts_with("http://") { 80 } else { 443 }),
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
    bar: Option<crate::progress::Progress>,
    last: Arc<AtomicU64>,
    start: Instant,
}

impl hf_hub::api::Progress for WatchProgress {
    fn init(&mut self, size: usize, filename: &str) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_length(size as u64);
            b.set_message(filename);
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
    let unavailable = |reason: String| unavailable_error(kind, &id, file, reason);
    if hub_offline() {
        return Err(unavailable("HF_HUB_OFFLINE is set, so the hub is not contacted".into()));
    }
    let endpoint = hub_endpoint();
    probe_endpoint(&endpoint, opts.timeout)
        .map_err(|e| unavailable(format!("the hub at {endpoint} cannot be reached: {e}")))?;

    let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(hf_cache_dir()))
        .with_endpoint(endpoint.clone())
        .with_progress(false)
        .with_token(hf_token())
        .build()
        .map_err(|e| unavailable(format!("cannot set up the hub client: {e}")))?;
    let hf_repo = hf_hub::Repo::with_revision(repo.to_string(), kind.hf(), rev.to_string());
    let last = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let bar = opts.progress.then(|| crate::progress::bytes(0, file, false));
    let progress = WatchProgress {
        bar: bar.clone(),
        last: last.clone(),
        start,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let file_owned = file.to_string();
    std::thread::spawn(move || {
        let r = api.repo(hf_repo).download_with_progress(&file_owned, progress);
        let _ = tx.send(r.map_err(|e| describe_api_error(&e)));
    });
    // No data for the timeout (first byte included) is a stall: CATDOG_HUB_TIMEOUT as given, without a floor.
    let stall = opts.timeout;
    let result = loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(r) => break r,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                break Err(HubFailure::Network(
                    "the download thread ended unexpectedly".to_string(),
                ))
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
        Err(HubFailure::Refused(advice)) => Err(Error::Hub {
            model_id: id,
            message: format!("{file}: {advice}"),
        }),
        Err(HubFailure::Network(msg)) => Err(unavailable(msg)),
    }
}

/// Why a hub request failed: the hub refused it (it said why; advice for the user), or the network failed.
enum HubFailure {
    Refused(String),
    Network(String),
}

/// The hub's own words, when it answered with an error status: its `X-Error-Code` (RepoNotFound, GatedRepo,
/// EntryNotFound, RevisionNotFound) gets advice of its own; other statuses say what they are.
fn describe_api_error(e: &hf_hub::api::sync::ApiError) -> HubFailure {
    let hf_hub::api::sync::ApiError::RequestError(inner) = e else {
        return HubFailure::Network(e.to_string());
    };
    let ureq::Error::Status(status, response) = inner.as_ref() else {
        return HubFailure::Network(e.to_string());
    };
    let code = response.header("x-error-code").unwrap_or("").to_string();
    let message = response.header("x-error-message").unwrap_or("").to_string();
    let said = if message.is_empty() {
        String::new()
    } else {
        format!(" (the hub says: {message})")
    };
    HubFailure::Refused(match code.as_str() {
        "GatedRepo" => format!(
            "the repository is gated{said}: accept its conditions on its page on the hub, then log in with \
             `hf auth login` or set HF_TOKEN"
        ),
        "RepoNotFound" => format!(
            "no such repository{said}: check the id (org/name; data sets and models are separate), or log in if \
             it is private"
        ),
        "EntryNotFound" => format!("the repository has no such file{said}"),
        "RevisionNotFound" => format!("no such revision{said}: check the branch, tag or commit after @"),
        _ if *status == 401 || *status == 403 => {
            format!("the hub refused access (HTTP {status}){said}: log in with `hf auth login` or set HF_TOKEN")
        }
        _ if *status == 404 => format!("not found (HTTP 404){said}: check the repository id and revision"),
        _ => return HubFailure::Network(format!("the hub answered HTTP {status}{said}")),
    })
}

/// The files of a hub repository: from the cached snapshot when it exists (no network), else from the hub's
/// repository listing. Returns the snapshot's commit when known.
pub fn list_files(
    kind: RepoKind,
    repo: &str,
    revision: Option<&str>,
    opts: &HubOptions,
) -> Result<(Vec<String>, Option<String>)> {
    let rev = revision.unwrap_or("main");
    let id = match revision {
        Some(r) => format!("{repo}@{r}"),
        None => repo.to_string(),
    };
    let root = hf_cache_dir().join(format!("{}--{}", kind.folder_prefix(), repo.replace('/', "--")));
    let cached_commit = std::fs::read_to_string(root.join("refs").join(rev))
        .ok()
        .map(|s| s.trim().to_string());
    let from_cache = |commit: &str| -> Vec<String> {
        let snap = root.join("snapshots").join(commit);
        let mut files = Vec::new();
        let mut stack = vec![snap.clone()];
        while let Some(d) = stack.pop() {
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if let Ok(rel) = p.strip_prefix(&snap) {
                        files.push(rel.to_string_lossy().replace('\\', "/"));
                    }
                }
            }
        }
        files.sort();
        files
    };
    if hub_offline() {
        return match cached_commit {
            Some(c) => Ok((from_cache(&c), Some(c))),
            None => Err(unavailable_error(
                kind,
                &id,
                "the file list",
                "HF_HUB_OFFLINE is set, so the hub is not contacted".into(),
            )),
        };
    }
    let endpoint = hub_endpoint();
    if let Err(e) = probe_endpoint(&endpoint, opts.timeout) {
        return match cached_commit {
            Some(c) => Ok((from_cache(&c), Some(c))),
            None => Err(unavailable_error(
                kind,
                &id,
                "the file list",
                format!("the hub at {endpoint} cannot be reached: {e}"),
            )),
        };
    }
    let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(hf_cache_dir()))
        .with_endpoint(endpoint)
        .with_progress(false)
        .with_token(hf_token())
        .build()
        .map_err(|e| unavailable_error(kind, &id, "the file list", format!("cannot set up the hub client: {e}")))?;
    let hf_repo = hf_hub::Repo::with_revision(repo.to_string(), kind.hf(), rev.to_string());
    let listed = with_deadline(opts.timeout, move || {
        api.repo(hf_repo).info().map_err(|e| describe_api_error(&e))
    })
    .unwrap_or_else(|timeout| Err(HubFailure::Network(timeout)));
    match (listed, cached_commit) {
        (Ok(info), _) => Ok((info.siblings.into_iter().map(|s| s.rfilename).collect(), Some(info.sha))),
        // The hub answered that the repository or revision is not there for us: its advice, not the cache.
        (Err(HubFailure::Refused(advice)), _) => Err(Error::Hub {
            model_id: id.clone(),
            message: format!("cannot list the repository's files: {advice}"),
        }),
        // The cache wins over a broken hub: the same revision, as cached, with a warning.
        (Err(HubFailure::Network(reason)), Some(c)) => {
            eprintln!("warning: cannot list {id} on the hub ({reason}); using the cached copy of commit {c}");
            Ok((from_cache(&c), Some(c)))
        }
        (Err(HubFailure::Network(reason)), None) => Err(unavailable_error(kind, &id, "the file list", reason)),
    }
}

/// Runs `f` on its own thread and waits at most `timeout` for it: a server that accepts and never answers makes
/// an error naming the time, not a hang. (The thread is left to finish or fail on its own.)
fn with_deadline<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(timeout)
        .map_err(|_| format!("no answer within {} s (CATDOG_HUB_TIMEOUT)", timeout.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_a_proxy_the_probe_goes_to_the_proxy() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(proxy_from_env(&env(&[])), None);
        let p = proxy_from_env(&env(&[
            ("http_proxy", "http://p2:3128"),
            ("HTTPS_PROXY", "http://u:pw@p1:8080"),
        ]));
        assert_eq!(p.as_deref(), Some("http://u:pw@p1:8080"));
        assert_eq!(host_port("http://u:pw@p1:8080", 8080), "p1:8080");
        assert_eq!(host_port("proxy.campus", 8080), "proxy.campus:8080");
        assert_eq!(host_port("https://huggingface.co", 443), "huggingface.co:443");
    }

    #[test]
    fn the_token_is_found_where_huggingface_hub_looks() {
        let files = |p: &Path| match p.to_str()? {
            "/hf/token" => Some("from-hf-home\n".to_string()),
            "/elsewhere/tok" => Some("from-token-path".to_string()),
            "/home/u/.cache/huggingface/token" => Some("from-default-home".to_string()),
            _ => None,
        };
        let with = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            token_from(
                &move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
                &files,
            )
        };
        assert_eq!(with(&[("HF_TOKEN", "env"), ("HF_HOME", "/hf")]).as_deref(), Some("env"));
        assert_eq!(
            with(&[("HF_TOKEN", ""), ("HF_HOME", "/hf")]).as_deref(),
            Some("from-hf-home")
        );
        assert_eq!(
            with(&[("HF_TOKEN_PATH", "/elsewhere/tok"), ("HF_HOME", "/hf")]).as_deref(),
            Some("from-token-path")
        );
        assert_eq!(with(&[("HOME", "/home/u")]).as_deref(), Some("from-default-home"));
        assert_eq!(with(&[("HF_HOME", "/nothing")]), None);
    }
}
