//! One file from the hub into the cache: its metadata (commit, ETag, size) from a HEAD request, then the bytes
//! into `blobs/<etag>.incomplete` — resumed with `Range` when the connection is cut (restarted from the start
//! when the server ignores `Range`) — and moved to `blobs/<etag>` only once its size and, for LFS files, its
//! sha256 check out. A stall or a cut that repeats leaves the partial file for the next run to resume.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::cache::RepoCache;
use super::client::{absolute, is_stall, Budget, Client, Follow, RequestError};
use super::names::is_sha256;
use super::names::{check_commit, check_etag};
use crate::progress::Progress;

/// Immediate resumptions of one download after a cut connection, as long as each attempt brings data.
const RESUMPTIONS: usize = 5;

/// Why a file did not reach the cache.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The request failed (see [`RequestError`]).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The download stopped part-way; the bytes so far are kept and the next run resumes from them.
    #[error("{0}")]
    Interrupted(String),
    /// What arrived is not the file the hub described (size or sha256); nothing was kept.
    #[error("{0}")]
    Corrupt(String),
    /// The cache could not be written.
    #[error(transparent)]
    Local(#[from] crate::error::Error),
}

/// What the hub says of a file before sending it.
#[derive(Debug)]
pub struct Remote {
    /// The commit the revision resolves to (`X-Repo-Commit`).
    pub commit: String,
    /// The blob's name: the sha256 of an LFS file (`X-Linked-Etag`), else the git hash (`ETag`).
    pub etag: String,
    /// Size in bytes (`X-Linked-Size`, else `Content-Length`), when given.
    pub size: Option<u64>,
    /// Where the bytes come from (the CDN a large file redirects to, or the resolve URL itself).
    pub url: String,
}

/// Asks the hub about the file at `resolve_url` (a HEAD request; redirects on the same host are followed, the
/// one to the CDN is not, as huggingface_hub does).
pub fn metadata(client: &Client, resolve_url: &str) -> Result<Remote, RequestError> {
    let (response, url) = client.send("HEAD", resolve_url, None, Follow::SameHost, Budget::Whole)?;
    let header = |name: &str| response.header(name).map(str::to_string);
    let commit = header("x-repo-commit").ok_or_else(|| {
        RequestError::Network(format!(
            "{url} answered HTTP {} without the X-Repo-Commit header: HF_ENDPOINT does not point at a Hugging \
             Face hub (or a proxy changed the answer)",
            response.status()
        ))
    })?;
    let unusable =
        |why: String| RequestError::Refused(format!("{url} gave an unusable answer: {why}; nothing was written"));
    check_commit(commit.trim()).map_err(unusable)?;
    let etag = header("x-linked-etag")
        .or_else(|| header("etag"))
        .map(|e| e.trim().trim_start_matches("W/").trim_matches('"').to_string())
        .ok_or_else(|| RequestError::Network(format!("{url} gave no ETag for the file")))?;
    check_etag(&etag).map_err(unusable)?;
    let size = header("x-linked-size")
        .or_else(|| header("content-length"))
        .and_then(|s| s.trim().parse().ok());
    let url = match response.status() {
        300..=399 => header("location").map(|l| absolute(&url, &l)).unwrap_or(url),
        _ => url,
    };
    Ok(Remote {
        commit: commit.trim().to_string(),
        etag,
        size,
        url,
    })
}

/// Downloads `remote` into `cache`'s blob for it (unless it is there) under the blob's lock; returns the blob.
pub fn fetch_blob(
    client: &Client,
    cache: &RepoCache,
    remote: &Remote,
    file: &str,
    quiet: bool,
) -> Result<PathBuf, DownloadError> {
    let blob = cache.blob(&remote.etag);
    if blob.exists() {
        return Ok(blob);
    }
    let _lock = cache.lock(&remote.etag, quiet)?;
    // Another process may have finished it while this one waited for the lock.
    if blob.exists() {
        return Ok(blob);
    }
    let partial = cache.incomplete(&remote.etag);
    let parent = partial.parent().expect("a blob has a folder");
    std::fs::create_dir_all(parent).map_err(|e| crate::error::Error::io(parent, e))?;
    let bar = crate::progress::bytes(remote.size.unwrap_or(0), file, quiet);
    let result = download(client, remote, &partial, &bar, quiet).and_then(|()| verify(remote, &partial));
    match &result {
        Ok(()) => bar.finish(),
        Err(_) => bar.abandon(),
    }
    result?;
    std::fs::rename(&partial, &blob).map_err(|e| crate::error::Error::io(&blob, e))?;
    Ok(blob)
}

/// Length of a file, 0 when it does not exist.
fn len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Fills `partial` with the file's bytes, resuming from what it holds.
fn download(
    client: &Client,
    remote: &Remote,
    partial: &Path,
    bar: &Progress,
    quiet: bool,
) -> Result<(), DownloadError> {
    let io = |e| DownloadError::Local(crate::error::Error::io(partial, e));
    let mut resumptions = 0;
    loop {
        let mut have = len(partial);
        if remote.size.is_some_and(|n| have > n) {
            std::fs::remove_file(partial).map_err(io)?;
            have = 0;
        }
        if remote.size == Some(have) && have > 0 {
            return Ok(());
        }
        let (response, _) = match client.send(
            "GET",
            &remote.url,
            (have > 0).then_some(have),
            Follow::Any,
            Budget::Stream,
        ) {
            Ok(r) => r,
            Err(RequestError::Network(why)) if have > 0 => {
                return Err(DownloadError::Interrupted(interrupted(have, remote, &why)))
            }
            Err(f) => return Err(f.into()),
        };
        let append = match answer(&response, have, remote, quiet)? {
            RangeAnswer::Append => true,
            RangeAnswer::Restart => false,
            RangeAnswer::WrongRange => {
                std::fs::remove_file(partial).map_err(io)?;
                resumptions += 1;
                if resumptions > RESUMPTIONS {
                    return Err(DownloadError::Corrupt(
                        "the server keeps answering with the wrong byte range".into(),
                    ));
                }
                continue;
            }
        };
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(partial)
            .map_err(io)?;
        let start = if append { have } else { 0 };
        bar.set_position(start);
        let window = client.timeout() * RATE_WINDOW_TIMEOUTS;
        let copied = copy_body(response.into_reader(), &mut out, bar, window);
        out.sync_all().map_err(io)?;
        let now = len(partial);
        match copied {
            Ok(()) if remote.size.is_none_or(|n| now >= n) => return Ok(()),
            Err(CopyError::Read(e)) if is_stall(&e) => {
                let why = format!("no data for {} s (CATDOG_HUB_TIMEOUT)", client.timeout().as_secs_f64());
                return Err(DownloadError::Interrupted(interrupted(now, remote, &why)));
            }
            Err(CopyError::TooSlow) => {
                let why = format!(
                    "slower than {} KiB/s for {} s, CATDOG_HUB_TIMEOUT × {RATE_WINDOW_TIMEOUTS}",
                    MIN_BYTES_PER_SEC / 1024,
                    window.as_secs_f64()
                );
                return Err(DownloadError::Interrupted(interrupted(now, remote, &why)));
            }
            Err(CopyError::Write(e)) => return Err(io(e)),
            Err(CopyError::Read(e)) if e.kind() != std::io::ErrorKind::UnexpectedEof && !is_network(&e) => {
                return Err(io(e))
            }
            // The body ended short (a cut connection, or a close-delimited body cut early): resume at once.
            _ => {}
        }
        resumptions += 1;
        if now <= start || resumptions > RESUMPTIONS {
            return Err(DownloadError::Interrupted(interrupted(
                now,
                remote,
                "the connection was cut",
            )));
        }
    }
}

/// What the answer to a request from byte `have` means for the partial file.
enum RangeAnswer {
    /// The bytes from `have` on: append them.
    Append,
    /// The whole file (the server ignored Range, or none was asked): write it from the start.
    Restart,
    /// Another range than the one asked for, or none possible: drop the partial file and ask again.
    WrongRange,
}

fn answer(response: &ureq::Response, have: u64, remote: &Remote, quiet: bool) -> Result<RangeAnswer, DownloadError> {
    Ok(match response.status() {
        206 if content_range_start(response) == Some(have) => RangeAnswer::Append,
        206 | 416 => RangeAnswer::WrongRange,
        200 => {
            if have > 0 && !quiet {
                eprintln!("the server does not resume downloads (it ignored Range): starting again from the start");
            }
            RangeAnswer::Restart
        }
        status => return Err(RequestError::Network(format!("unexpected HTTP {status} for {}", remote.url)).into()),
    })
}

/// True for a read error that is the connection's, not the disk's.
fn is_network(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | Other | InvalidData | InvalidInput
    )
}

/// "the download stopped after 12.0 of 40.0 MiB (why); the next run resumes it".
fn interrupted(have: u64, remote: &Remote, why: &str) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let of = remote.size.map(|n| format!(" of {:.1}", mib(n))).unwrap_or_default();
    format!(
        "the download stopped after {:.1}{of} MiB ({why}); run the same command again to resume it (the bytes so \
         far are kept)",
        mib(have)
    )
}

/// The first byte of a `Content-Range: bytes a-b/n` answer.
fn content_range_start(response: &ureq::Response) -> Option<u64> {
    let value = response.header("content-range")?;
    value
        .trim()
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The slowest a download may go, averaged over [`RATE_WINDOW_TIMEOUTS`] × `CATDOG_HUB_TIMEOUT`, before it is
/// taken for a stall: a server that drips a byte a second never lets a read time out.
const MIN_BYTES_PER_SEC: u64 = 10 * 1024;
/// The window of that average, in timeouts.
const RATE_WINDOW_TIMEOUTS: u32 = 4;

/// Why copying a body ended early.
enum CopyError {
    /// Reading failed (a cut, or a read that timed out): the caller tells which.
    Read(std::io::Error),
    /// Fewer than [`MIN_BYTES_PER_SEC`] came in over the last window.
    TooSlow,
    /// The file could not be written (a full disk, …).
    Write(std::io::Error),
}

/// Copies a response body to `out`, counting progress and watching the rate over windows of `window`.
fn copy_body(
    mut body: impl Read,
    out: &mut std::fs::File,
    bar: &Progress,
    window: std::time::Duration,
) -> Result<(), CopyError> {
    let mut buf = vec![0u8; 1 << 16];
    let (mut window_start, mut window_bytes) = (std::time::Instant::now(), 0u64);
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
        bar.inc(n as u64);
        window_bytes += n as u64;
        let elapsed = window_start.elapsed();
        if elapsed >= window {
            if (window_bytes as f64) < MIN_BYTES_PER_SEC as f64 * elapsed.as_secs_f64() {
                return Err(CopyError::TooSlow);
            }
            (window_start, window_bytes) = (std::time::Instant::now(), 0);
        }
    }
}

/// Checks the finished file against what the hub said (size; sha256 for LFS files). A mismatch deletes it.
fn verify(remote: &Remote, partial: &Path) -> Result<(), DownloadError> {
    let got = len(partial);
    let mismatch = |what: String| {
        let _ = std::fs::remove_file(partial);
        DownloadError::Corrupt(format!(
            "{what}: the file was damaged on the way and was not kept; run the same command again to download it \
             afresh"
        ))
    };
    if let Some(n) = remote.size.filter(|n| *n != got) {
        return Err(mismatch(format!("{got} bytes arrived where the hub announced {n}")));
    }
    if is_sha256(&remote.etag) {
        let digest = sha256_of(partial).map_err(|e| DownloadError::Local(crate::error::Error::io(partial, e)))?;
        if !digest.eq_ignore_ascii_case(&remote.etag) {
            return Err(mismatch(format!(
                "its sha256 is {digest} where the hub announced {}",
                remote.etag
            )));
        }
    }
    Ok(())
}

/// The sha256 of a file, in lower-case hex.
pub fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
