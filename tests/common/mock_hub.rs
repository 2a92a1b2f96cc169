//! An imitation of the Hugging Face Hub that the tests start themselves on 127.0.0.1 (the real hub is never
//! contacted). Two servers: the hub, which lists repositories and resolves files (small files are served
//! directly with a git ETag; LFS files redirect to the CDN with `X-Linked-Etag` = their sha256 and
//! `X-Linked-Size`), and the CDN, a different host:port, which serves blobs with `Range`.
//!
//! Scenarios ([`Behaviour`]), each used by a test in `tests/hub_download.rs` or `tests/hub_network.rs`:
//! - `fail_first`: the first n hub requests get 503, or 429 with `Retry-After` (retried with backoff);
//! - `cut_first_body_at`: the first CDN body stops after n bytes and the connection closes (resumed with Range);
//! - `close_delimited`: CDN bodies have no Content-Length (a cut-short body looks complete to HTTP);
//! - `stall_first_body_at`: the first CDN body stops after n bytes and the connection stays open (stall timeout;
//!   the partial file is kept and the next run resumes it);
//! - `ignore_range`: the CDN always sends the whole file with 200 (a full restart);
//! - `corrupt`: the CDN sends other bytes of the right length (the sha256 check refuses them);
//! - `slow_bytes_per_ms`: the CDN trickles (two processes downloading the same file at once);
//! - `repo_commit`: the hub answers with this `X-Repo-Commit` (a hostile one tries to climb out of the cache);
//! - `header_per_second`: the hub sends its status line, then one header a second, for a minute;
//! - `trickle_listing`: the hub sends a listing's body a byte a second;
//! - `drip_cdn`: the CDN sends a file's body a byte a second.
//!
//! Every request is logged with the server, method, path, `Authorization` and `Range` it carried.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The commit every repository of the mock hub is at.
pub const COMMIT: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

/// A server on 127.0.0.1 that handles every connection on its own thread with `handle`; returns its URL.
pub fn serve(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let h = handle.clone();
            std::thread::spawn(move || h(stream));
        }
    });
    format!("http://{addr}")
}

/// A server that answers every request with `status` (e.g. "401 Unauthorized") and the hub's error headers.
pub fn refusing_server(status: &'static str, code: &'static str, message: &'static str) -> String {
    let response: &'static str = Box::leak(
        format!(
            "HTTP/1.1 {status}\r\nX-Error-Code: {code}\r\nX-Error-Message: {message}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        )
        .into_boxed_str(),
    );
    serve(move |mut s| {
        // Read the request head, then answer.
        let _ = Head::read(&mut s);
        let _ = s.write_all(response.as_bytes());
    })
}

/// A file of a repository on the mock hub.
#[derive(Clone)]
pub struct RepoFile {
    /// "model" or "dataset".
    pub kind: &'static str,
    pub repo: String,
    pub path: String,
    pub bytes: Vec<u8>,
    /// Stored with LFS: served from the CDN, named by its sha256.
    pub lfs: bool,
}

/// How the mock hub misbehaves (all off by default).
#[derive(Clone, Default)]
pub struct Behaviour {
    pub fail_first: Option<(u16, usize)>,
    pub cut_first_body_at: Option<usize>,
    pub close_delimited: bool,
    pub stall_first_body_at: Option<usize>,
    pub ignore_range: bool,
    pub corrupt: bool,
    pub slow_bytes_per_ms: Option<usize>,
    pub repo_commit: Option<String>,
    pub header_per_second: bool,
    pub trickle_listing: bool,
    pub drip_cdn: bool,
}

/// Writes `bytes` one a second until the reader goes away (at most a minute).
fn drip(s: &mut TcpStream, bytes: &[u8]) {
    for b in bytes.iter().take(60) {
        if s.write_all(&[*b]).and_then(|()| s.flush()).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// One request as a server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// "hub" or "cdn".
    pub server: &'static str,
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub range: Option<String>,
}

/// A running mock hub.
pub struct MockHub {
    pub url: String,
    pub cdn: String,
    log: Arc<Mutex<Vec<Seen>>>,
}

struct State {
    files: Vec<RepoFile>,
    behaviour: Behaviour,
    cdn: Mutex<String>,
    hub_requests: AtomicUsize,
    cdn_bodies: AtomicUsize,
    log: Arc<Mutex<Vec<Seen>>>,
}

/// The sha256 of `bytes` in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A request head: method, path, lower-cased headers.
struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn read(s: &mut TcpStream) -> Option<Head> {
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).ok()? != 1 {
                return None;
            }
            raw.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&raw).into_owned();
        let mut lines = text.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
        // A request through a proxy names the whole URL: keep the path.
        let path = match target.split_once("://") {
            Some((_, rest)) => format!("/{}", rest.split_once('/').map(|(_, p)| p).unwrap_or("")),
            None => target,
        };
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Some(Head { method, path, headers })
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

fn respond(s: &mut TcpStream, status: &str, headers: &[(String, String)], body: &[u8]) {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = s.write_all(out.as_bytes());
    let _ = s.write_all(body);
}

impl MockHub {
    /// Starts the hub and its CDN serving `files`.
    pub fn start(files: Vec<RepoFile>, behaviour: Behaviour) -> MockHub {
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(State {
            files,
            behaviour,
            cdn: Mutex::new(String::new()),
            hub_requests: AtomicUsize::new(0),
            cdn_bodies: AtomicUsize::new(0),
            log: log.clone(),
        });
        let s2 = state.clone();
        let cdn = serve(move |mut stream| s2.cdn(&mut stream));
        *state.cdn.lock().unwrap() = cdn.clone();
        let s3 = state.clone();
        let url = serve(move |mut stream| s3.hub(&mut stream));
        MockHub { url, cdn, log }
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

impl State {
    fn note(&self, server: &'static str, head: &Head) {
        self.log.lock().unwrap().push(Seen {
            server,
            method: head.method.clone(),
            path: head.path.clone(),
            authorization: head.header("authorization"),
            range: head.header("range"),
        });
    }

    fn hub(&self, s: &mut TcpStream) {
        let Some(head) = Head::read(s) else { return };
        self.note("hub", &head);
        if let Some((status, n)) = self.behaviour.fail_first {
            if self.hub_requests.fetch_add(1, Ordering::SeqCst) < n {
                let text = if status == 429 {
                    "429 Too Many Requests"
                } else {
                    "503 Service Unavailable"
                };
                let headers = vec![
                    ("Retry-After".to_string(), "1".to_string()),
                    ("Content-Length".into(), "0".into()),
                ];
                return respond(s, text, if status == 429 { &headers } else { &headers[1..] }, b"");
            }
        }
        if self.behaviour.header_per_second {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
            let headers: Vec<u8> = (0..60).flat_map(|i| format!("X-Pad-{i}: x\r\n").into_bytes()).collect();
            for line in headers.split_inclusive(|b| *b == b'\n') {
                if s.write_all(line).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            return;
        }
        let parts: Vec<&str> = head.path.trim_start_matches('/').split('/').collect();
        if parts.first() == Some(&"api") && parts.len() >= 6 && parts[4] == "revision" {
            let kind = parts[1].trim_end_matches('s');
            let repo = format!("{}/{}", parts[2], parts[3]);
            return self.listing(s, kind, &repo);
        }
        let (kind, rest) = if parts.first() == Some(&"datasets") {
            ("dataset", &parts[1..])
        } else {
            ("model", &parts[..])
        };
        if rest.len() >= 5 && rest[2] == "resolve" {
            let repo = format!("{}/{}", rest[0], rest[1]);
            let path = rest[4..].join("/");
            return self.resolve(s, &head, kind, &repo, &path);
        }
        respond(
            s,
            "404 Not Found",
            &[
                ("X-Error-Code".into(), "RepoNotFound".into()),
                ("Content-Length".into(), "0".into()),
            ],
            b"",
        );
    }

    fn listing(&self, s: &mut TcpStream, kind: &str, repo: &str) {
        let names: Vec<String> = self
            .files
            .iter()
            .filter(|f| f.kind == kind && f.repo == repo)
            .map(|f| format!("{{\"rfilename\": \"{}\"}}", f.path))
            .collect();
        if names.is_empty() {
            return respond(
                s,
                "404 Not Found",
                &[
                    ("X-Error-Code".into(), "RepoNotFound".into()),
                    ("Content-Length".into(), "0".into()),
                ],
                b"",
            );
        }
        let commit = self.behaviour.repo_commit.clone().unwrap_or_else(|| COMMIT.to_string());
        let body = format!("{{\"sha\": \"{commit}\", \"siblings\": [{}]}}", names.join(", "));
        let headers = [("Content-Length".into(), body.len().to_string())];
        if self.behaviour.trickle_listing {
            respond(s, "200 OK", &headers, b"");
            return drip(s, body.as_bytes());
        }
        respond(s, "200 OK", &headers, body.as_bytes());
    }

    fn resolve(&self, s: &mut TcpStream, head: &Head, kind: &str, repo: &str, path: &str) {
        let Some(f) = self
            .files
            .iter()
            .find(|f| f.kind == kind && f.repo == repo && f.path == path)
        else {
            let code = if self.files.iter().any(|f| f.repo == repo) {
                "EntryNotFound"
            } else {
                "RepoNotFound"
            };
            return respond(
                s,
                "404 Not Found",
                &[
                    ("X-Error-Code".into(), code.into()),
                    ("Content-Length".into(), "0".into()),
                ],
                b"",
            );
        };
        let commit = self.behaviour.repo_commit.clone().unwrap_or_else(|| COMMIT.to_string());
        let mut headers = vec![("X-Repo-Commit".to_string(), commit)];
        if f.lfs {
            let sha = sha256_hex(&f.bytes);
            let cdn = self.cdn.lock().unwrap().clone();
            headers.push(("Location".into(), format!("{cdn}/blobs/{sha}")));
            headers.push(("X-Linked-Etag".into(), format!("\"{sha}\"")));
            headers.push(("X-Linked-Size".into(), f.bytes.len().to_string()));
            headers.push(("Content-Length".into(), "0".into()));
            return respond(s, "302 Found", &headers, b"");
        }
        // A small file: a git-like ETag (40 hex digits), served here.
        headers.push(("ETag".into(), format!("\"{}\"", &sha256_hex(&f.bytes)[..40])));
        headers.push(("Content-Length".into(), f.bytes.len().to_string()));
        let body: &[u8] = if head.method == "HEAD" { b"" } else { &f.bytes };
        respond(s, "200 OK", &headers, body);
    }

    fn cdn(&self, s: &mut TcpStream) {
        let Some(head) = Head::read(s) else { return };
        self.note("cdn", &head);
        let sha = head.path.trim_start_matches("/blobs/").to_string();
        let Some(f) = self.files.iter().find(|f| f.lfs && sha256_hex(&f.bytes) == sha) else {
            return respond(s, "404 Not Found", &[("Content-Length".into(), "0".into())], b"");
        };
        let b = &self.behaviour;
        let mut bytes = f.bytes.clone();
        if b.corrupt {
            bytes.iter_mut().for_each(|x| *x = x.wrapping_add(1));
        }
        let from = head
            .header("range")
            .and_then(|r| r.strip_prefix("bytes=")?.trim_end_matches('-').parse::<usize>().ok())
            .filter(|_| !b.ignore_range);
        let (status, body) = match from {
            Some(n) if n < bytes.len() => ("206 Partial Content", bytes[n..].to_vec()),
            Some(_) => {
                return respond(
                    s,
                    "416 Range Not Satisfiable",
                    &[("Content-Length".into(), "0".into())],
                    b"",
                )
            }
            None => ("200 OK", bytes.clone()),
        };
        let mut headers = Vec::new();
        if !b.close_delimited {
            headers.push(("Content-Length".to_string(), body.len().to_string()));
        }
        if let Some(n) = from {
            headers.push((
                "Content-Range".into(),
                format!("bytes {n}-{}/{}", bytes.len() - 1, bytes.len()),
            ));
        }
        let first = self.cdn_bodies.fetch_add(1, Ordering::SeqCst) == 0;
        let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (k, v) in &headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let _ = s.write_all(out.as_bytes());
        if head.method == "HEAD" {
            return;
        }
        if let (true, Some(n)) = (first, b.cut_first_body_at) {
            let _ = s.write_all(&body[..n.min(body.len())]);
            let _ = s.shutdown(std::net::Shutdown::Both);
            return;
        }
        if b.drip_cdn {
            return drip(s, &body);
        }
        if let (true, Some(n)) = (first, b.stall_first_body_at) {
            let _ = s.write_all(&body[..n.min(body.len())]);
            let _ = s.flush();
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        match b.slow_bytes_per_ms {
            Some(rate) => {
                for chunk in body.chunks(rate.max(1)) {
                    if s.write_all(chunk).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            None => {
                let _ = s.write_all(&body);
            }
        }
    }
}

/// Runs catdog against the hub at `endpoint` with the cache in `hf_home`, a 2-second hub timeout, no proxy or
/// certificate-bundle variables but those in `vars`, and no `HF_TOKEN` unless `vars` sets it; kills it after 60 s so that a hang
/// fails the test instead of the CI job. Returns the output and how long it took.
pub fn run_catdog(endpoint: &str, hf_home: &Path, args: &[&str], vars: &[(&str, &str)]) -> (Output, Duration) {
    let start = Instant::now();
    let mut command = Command::new(env!("CARGO_BIN_EXE_catdog"));
    for k in [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
        "HF_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HUB_CACHE",
        "HF_HUB_OFFLINE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "SSL_CERT_FILE",
    ] {
        command.env_remove(k);
    }
    command
        .args(args)
        .env("HF_HOME", hf_home)
        .env("HF_ENDPOINT", endpoint)
        .env("CATDOG_HUB_TIMEOUT", "2");
    for (k, v) in vars {
        command.env(k, v);
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("catdog {args:?} hung for 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child.wait_with_output().unwrap(), start.elapsed())
}

/// The repository the tiny VGG fixture stands as on the mock hub.
pub const TINY_VGG: &str = "someone/tiny-vgg";

/// The tiny VGG fixture's weights.
pub fn tiny_vgg_weights() -> Vec<u8> {
    std::fs::read(super::fixtures().join("vgg_tiny/weights.safetensors")).unwrap()
}

/// The tiny VGG fixture as [`TINY_VGG`] on a mock hub: model.safetensors in LFS, a small config.json beside it.
pub fn tiny_vgg_hub(behaviour: Behaviour) -> MockHub {
    let file = |path: &str, bytes: Vec<u8>, lfs: bool| RepoFile {
        kind: "model",
        repo: TINY_VGG.into(),
        path: path.into(),
        bytes,
        lfs,
    };
    MockHub::start(
        vec![
            file("model.safetensors", tiny_vgg_weights(), true),
            file("config.json", br#"{"architecture": "vgg16"}"#.to_vec(), false),
        ],
        behaviour,
    )
}
