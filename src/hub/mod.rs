//! The Hugging Face Hub and its standard cache, shared by the weights and `catdog data fetch`: cached files are
//! used without network; `HF_HOME`, `HF_HUB_CACHE`, `HF_ENDPOINT`, `HF_TOKEN` (and the token file) and
//! `HF_HUB_OFFLINE` are honoured as huggingface_hub honours them; proxies (`HTTPS_PROXY`, `NO_PROXY`, …) and
//! an organisation's certificate bundle (`REQUESTS_CA_BUNDLE`, [`tls`]),
//! timeouts, retries, resumed downloads and sha256 checks are [`client`]'s and [`download`]'s; an unreachable hub
//! is one clear error within a bounded time, and a cached copy wins over a broken hub.

mod cache;
mod client;
mod download;
mod names;
mod proxy;
mod tls;
mod token;

use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

pub use self::cache::RepoCache;
use self::client::{quote, Budget, Client, Follow, RequestError};
pub use self::download::sha256_of;
use self::download::DownloadError;
pub use self::names::{check_revision, RepoKind};
pub use self::proxy::proxy_for;
use self::proxy::{ProxySetting, Target};
pub use self::token::{hf_token, token_from};
use crate::error::{Error, Result};

/// Options of hub access.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Show download progress (a bar on a terminal, plain lines otherwise; see [`crate::progress`]).
    pub progress: bool,
    /// Time allowed to reach the hub (DNS + TCP connect) and the longest pause in a download
    /// (`CATDOG_HUB_TIMEOUT` seconds, default 15).
    pub timeout: Duration,
    /// Retries of a request the hub answers with 5xx or 429 (`CATDOG_HUB_RETRIES`, default 4), with backoff
    /// 1, 2, 4, 8 s or the hub's `Retry-After`.
    pub retries: u32,
}

impl Default for HubOptions {
    /// The defaults, without reading the environment (see [`HubOptions::from_env`]).
    fn default() -> Self {
        HubOptions {
            progress: true,
            timeout: Duration::from_secs(15),
            retries: 4,
        }
    }
}

/// Largest `CATDOG_HUB_TIMEOUT`, in seconds (a day).
const MAX_TIMEOUT_SECS: u64 = 86_400;
/// Largest `CATDOG_HUB_RETRIES`.
const MAX_RETRIES: u32 = 20;

impl HubOptions {
    /// The defaults with `CATDOG_HUB_TIMEOUT` (whole seconds, 1 to 86400) and `CATDOG_HUB_RETRIES` (0 to 20)
    /// applied; a value that is not a number in range is refused, naming the variable.
    pub fn from_env() -> Result<HubOptions> {
        let mut opts = HubOptions::default();
        if let Some(secs) = env_number("CATDOG_HUB_TIMEOUT", 1, MAX_TIMEOUT_SECS, "whole seconds")? {
            opts.timeout = Duration::from_secs(secs);
        }
        if let Some(n) = env_number("CATDOG_HUB_RETRIES", 0, MAX_RETRIES as u64, "retries")? {
            opts.retries = n as u32;
        }
        Ok(opts)
    }
}

/// The variable `name` as a number in `lo..=hi`; `None` when it is unset or empty.
fn env_number(name: &str, lo: u64, hi: u64, unit: &str) -> Result<Option<u64>> {
    let Some(raw) = std::env::var_os(name) else {
        return Ok(None);
    };
    let text = raw.to_string_lossy();
    if text.trim().is_empty() {
        return Ok(None);
    }
    match text.trim().parse::<u64>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(Some(v)),
        _ => Err(Error::invalid(format!(
            "{name}={}: give {unit} from {lo} to {hi}, or unset it",
            text.escape_debug()
        ))),
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

/// `HF_ENDPOINT`, or the public hub.
pub fn hub_endpoint() -> String {
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
                "Ways out:\n  - pass a local file with `--weights path/to/model.safetensors` (or .onnx)\n  - train from \
                 scratch with `--weights random`\n  - on a machine with network, `catdog weights fetch {id}` fills \
                 the cache; copy it here"
            ),
        ),
        RepoKind::Dataset => (
            "data set",
            format!(
                "Ways out:\n  - point `--data` at a folder of images laid out as DIR/train/<class>/… and \
                 DIR/test/<class>/…\n  - on a machine with network, run `catdog data fetch --repo {id}` and copy \
                 the folder it writes"
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

/// A file found in the cache, without network: `snapshots/<commit>/<file>` where `<commit>` is `refs/<revision>`
/// or the revision itself when it is a commit hash.
pub fn cache_lookup(kind: RepoKind, repo: &str, revision: &str, file: &str) -> Option<(PathBuf, String)> {
    RepoCache::new(&hf_cache_dir(), kind, repo).lookup(revision, file)
}

/// `org/name` or `org/name@revision`, as the user wrote it.
fn display_id(repo: &str, revision: Option<&str>) -> String {
    match revision {
        Some(r) => format!("{repo}@{r}"),
        None => repo.to_string(),
    }
}

/// The hub client for this process's endpoint, once the endpoint (or the proxy in front of it) answers within the
/// timeout.
fn connect(opts: &HubOptions, token: Option<String>) -> std::result::Result<(Client, String), String> {
    let endpoint = hub_endpoint();
    let client = Client::new(&endpoint, token, opts.timeout, opts.retries).map_err(|f| match f {
        RequestError::Refused(s) | RequestError::Network(s) => s,
    })?;
    probe(&client, &endpoint, opts.timeout).map_err(|e| format!("the hub at {endpoint} cannot be reached: {e}"))?;
    Ok((client, endpoint))
}

/// Checks within `timeout` that the host the first request goes to accepts a TCP connection (DNS included), so
/// that an offline machine fails at once. Behind a proxy that host is the proxy (it may be the only one that can
/// resolve the hub's name); with the endpoint in `NO_PROXY` it is the hub itself.
fn probe(client: &Client, endpoint: &str, timeout: Duration) -> std::result::Result<(), String> {
    let target = match client.proxy(endpoint) {
        Some(proxy) => ProxySetting::parse(&proxy)?.address,
        None => Target::parse(endpoint)
            .map(|t| t.address())
            .ok_or_else(|| format!("cannot tell the host of '{endpoint}'"))?,
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
        Err(_) => Err(format!("no answer from {target} within {} s", timeout.as_secs_f64())),
    }
}

/// `{endpoint}/[datasets/]{repo}/resolve/{revision}/{file}`.
fn resolve_url(endpoint: &str, kind: RepoKind, repo: &str, revision: &str, file: &str) -> String {
    let prefix = match kind {
        RepoKind::Model => "",
        RepoKind::Dataset => "datasets/",
    };
    format!(
        "{}/{prefix}{repo}/resolve/{}/{}",
        endpoint.trim_end_matches('/'),
        quote(revision, false),
        quote(file, true)
    )
}

/// Path of `file` of a hub repository: from the cache when it is there (no network), else downloaded into the
/// cache (see [`download`]). Returns the path and the commit. Offline, or when the hub cannot be reached within
/// the timeout, the error names the repository, the cache folder and the ways out; a refusal gives the hub's
/// reason; an interrupted download says how to resume it.
pub fn hub_file(
    kind: RepoKind,
    repo: &str,
    revision: Option<&str>,
    file: &str,
    opts: &HubOptions,
) -> Result<(PathBuf, Option<String>)> {
    let rev = revision.unwrap_or("main");
    check_names(repo, rev, Some(file))?;
    let cache = RepoCache::new(&hf_cache_dir(), kind, repo);
    if let Some((p, commit)) = cache.lookup(rev, file) {
        return Ok((p, Some(commit)));
    }
    let id = display_id(repo, revision);
    let unavailable = |reason: String| unavailable_error(kind, &id, file, reason);
    if hub_offline() {
        return Err(unavailable("HF_HUB_OFFLINE is set, so the hub is not contacted".into()));
    }
    let token = hf_token().map_err(Error::invalid)?;
    let (client, endpoint) = connect(opts, token).map_err(unavailable)?;
    let fetched = download::metadata(&client, &resolve_url(&endpoint, kind, repo, rev, file))
        .map_err(DownloadError::from)
        .and_then(|remote| {
            download::fetch_blob(&client, &cache, &remote, file, !opts.progress)?;
            cache.write_ref(rev, &remote.commit)?;
            Ok((cache.link(&remote.commit, file, &remote.etag)?, remote.commit))
        });
    match fetched {
        Ok((path, commit)) => Ok((path, Some(commit))),
        Err(DownloadError::Request(RequestError::Network(reason))) => Err(unavailable(reason)),
        Err(
            DownloadError::Request(RequestError::Refused(why))
            | DownloadError::Interrupted(why)
            | DownloadError::Corrupt(why),
        ) => Err(Error::Hub {
            model_id: id,
            message: format!("{file}: {why}"),
        }),
        Err(DownloadError::Local(e)) => Err(e),
    }
}

/// The files of a hub repository: from the hub's listing of the revision, or — offline, or when the hub fails
/// (no answer, 5xx) — from the cached snapshot of the same revision, with a warning. Returns the commit.
pub fn list_files(
    kind: RepoKind,
    repo: &str,
    revision: Option<&str>,
    opts: &HubOptions,
) -> Result<(Vec<String>, Option<String>)> {
    let rev = revision.unwrap_or("main");
    check_names(repo, rev, None)?;
    let id = display_id(repo, revision);
    let cache = RepoCache::new(&hf_cache_dir(), kind, repo);
    let cached = cache.commit_of(rev);
    let listed = if hub_offline() {
        Err(RequestError::Network(
            "HF_HUB_OFFLINE is set, so the hub is not contacted".into(),
        ))
    } else {
        let token = hf_token().map_err(Error::invalid)?;
        connect(opts, token)
            .map_err(RequestError::Network)
            .and_then(|(client, endpoint)| listing(&client, &endpoint, kind, repo, rev))
    };
    match (listed, cached) {
        (Ok(found), _) => Ok(found),
        // The hub answered that the repository or revision is not there for us: its advice, not the cache.
        (Err(RequestError::Refused(advice)), _) => Err(Error::Hub {
            model_id: id,
            message: format!("cannot list the repository's files: {advice}"),
        }),
        // The cache wins over a broken hub: the same revision, as cached, with a warning.
        (Err(RequestError::Network(reason)), Some(c)) => {
            if !hub_offline() {
                eprintln!("warning: cannot list {id} on the hub ({reason}); using the cached copy of commit {c}");
            }
            Ok((cache.files(&c), Some(c)))
        }
        (Err(RequestError::Network(reason)), None) => Err(unavailable_error(kind, &id, "the file list", reason)),
    }
}

/// Refuses a repository id, revision or file name that could name a path outside the cache, before any is
/// built: the id is `name` or `org/name` of letters, digits, `-`, `_` and `.` (as huggingface_hub's
/// `validate_repo_id`), the revision and file plain relative names ([`names`]).
fn check_names(repo: &str, revision: &str, file: Option<&str>) -> Result<()> {
    let plain = |x: &str| {
        !x.is_empty() && x != "." && x != ".." && x.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    let repo_ok = match repo.split_once('/') {
        Some((org, name)) => plain(org) && plain(name),
        None => plain(repo),
    } && !repo.contains("--")
        && repo.len() <= 96;
    if !repo_ok {
        return Err(Error::invalid(format!(
            "'{}' is not a hub repository id: use org/name of letters, digits, '-', '_' and '.' (no '--' or '..')",
            repo.escape_debug()
        )));
    }
    names::check_revision(revision)
        .map_err(|why| Error::invalid(format!("{why}: give a branch, tag or commit after @")))?;
    if let Some(f) = file {
        names::check_repo_path(f).map_err(Error::invalid)?;
    }
    Ok(())
}

/// The hub's listing of a revision: `GET {endpoint}/api/{models|datasets}/{repo}/revision/{revision}`.
fn listing(
    client: &Client,
    endpoint: &str,
    kind: RepoKind,
    repo: &str,
    rev: &str,
) -> std::result::Result<(Vec<String>, Option<String>), RequestError> {
    let url = format!(
        "{}/api/{}/{repo}/revision/{}",
        endpoint.trim_end_matches('/'),
        kind.folder_prefix(),
        quote(rev, false)
    );
    let (response, _) = client.send("GET", &url, None, Follow::Any, Budget::Whole)?;
    let body = response.into_string().map_err(|e| {
        let why = if client::is_stall(&e) {
            format!(
                "no answer within {} s (CATDOG_HUB_TIMEOUT)",
                client.timeout().as_secs_f64()
            )
        } else {
            e.to_string()
        };
        RequestError::Network(format!("the listing of {repo} broke off: {why}"))
    })?;
    let json: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| RequestError::Network(format!("the hub's listing of {repo} is not JSON ({e})")))?;
    let files: Vec<String> = json["siblings"]
        .as_array()
        .ok_or_else(|| RequestError::Network(format!("the hub's listing of {repo} has no \"siblings\"")))?
        .iter()
        .filter_map(|s| s["rfilename"].as_str().map(str::to_string))
        .collect();
    // Every name becomes a path in the cache: one that could leave it makes the whole listing unusable.
    let unusable = |why: String| RequestError::Refused(format!("the hub's listing of {repo} is not usable: {why}"));
    for f in &files {
        names::check_repo_path(f).map_err(unusable)?;
    }
    let commit = json["sha"].as_str().map(str::to_string);
    if let Some(c) = &commit {
        names::check_commit(c).map_err(unusable)?;
    }
    Ok((files, commit))
}
