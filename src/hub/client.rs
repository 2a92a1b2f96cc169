//! The HTTP side of hub access, on ureq: every request has the connect and read timeouts of
//! `CATDOG_HUB_TIMEOUT`, goes through the proxy [`super::proxy`] picks for its URL, follows redirects here (so
//! that the token goes only to the endpoint's own host, never to the CDN a file redirects to) and retries what
//! the hub says is passing (5xx, 429 with its `Retry-After`) with backoff.

use std::time::Duration;

use super::proxy::{proxy_for, ProxySetting, Target};

/// The first backoff; it doubles each retry (1, 2, 4, 8 s), as huggingface_hub's `http_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest `Retry-After` waited for; a longer one ends the command with advice to come back later.
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Redirects followed at most.
const MAX_REDIRECTS: usize = 10;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The hub answered that it will not serve this (a 4xx): what it said, as advice for the user.
    #[error("{0}")]
    Refused(String),
    /// The network or the server failed: no connection, no answer in time, 5xx after the retries.
    #[error("{0}")]
    Network(String),
}

/// How long one exchange may take. The status line and the headers always arrive within twice the timeout of
/// asking (connecting, then waiting for them); a server that sends one header a second does not reset that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// A small answer (a file's metadata, a listing): the body too, within [`WHOLE_ANSWER_TIMEOUTS`] × the
    /// timeout.
    Whole,
    /// A file's bytes: each read within the timeout; the caller watches the rate (see `download`).
    Stream,
}

/// A small answer's whole exchange, in timeouts.
pub const WHOLE_ANSWER_TIMEOUTS: u32 = 4;

/// Which redirects a request follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Only to the same host (renamed repositories); a redirect elsewhere (the CDN) is returned as it is.
    SameHost,
    /// Any redirect.
    Any,
}

/// A hub client: the endpoint, the token for it, the timeout and the retries (proxies come from the environment).
pub struct Client {
    endpoint: Target,
    token: Option<String>,
    timeout: Duration,
    retries: u32,
}

impl Client {
    /// A client for `endpoint` that reads proxy variables from the process environment.
    pub fn new(endpoint: &str, token: Option<String>, timeout: Duration, retries: u32) -> Result<Client, RequestError> {
        let endpoint = Target::parse(endpoint).ok_or_else(|| {
            RequestError::Refused(format!(
                "HF_ENDPOINT is '{endpoint}', which is not an http:// or https:// URL; unset it or fix it"
            ))
        })?;
        Ok(Client {
            endpoint,
            token,
            timeout,
            retries,
        })
    }

    /// The timeout of connecting and of each wait for data.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The proxy for `url`, if any.
    pub fn proxy(&self, url: &str) -> Option<String> {
        proxy_for(url, &|k| std::env::var(k).ok())
    }

    fn agent(&self, url: &str) -> Result<ureq::Agent, RequestError> {
        let mut builder = ureq::AgentBuilder::new()
            .resolver(DeadlineResolver { timeout: self.timeout })
            .timeout_connect(self.timeout)
            .timeout_read(self.timeout)
            .timeout_write(self.timeout)
            .redirects(0)
            .try_proxy_from_env(false)
            .user_agent(concat!("catdog/", env!("CARGO_PKG_VERSION")));
        if let Some(p) = self.proxy(url) {
            // The messages name the proxy's address only: the setting may hold a password.
            let setting = ProxySetting::parse(&p).map_err(RequestError::Refused)?;
            let proxy = ureq::Proxy::new(&setting.for_ureq).map_err(|e| {
                RequestError::Refused(format!(
                    "the proxy setting for {} cannot be used ({e}); fix it",
                    setting.address
                ))
            })?;
            builder = builder.proxy(proxy);
        }
        if url.starts_with("https://") {
            if let Some(tls) = super::tls::process_config().map_err(RequestError::Refused)? {
                builder = builder.tls_config(tls);
            }
        }
        Ok(builder.build())
    }

    /// Sends the token only to the endpoint's own host and port.
    fn authorized(&self, url: &str) -> bool {
        Target::parse(url).is_some_and(|t| t.host == self.endpoint.host && t.port == self.endpoint.port)
    }

    /// One request (`range_from`: ask for the bytes from there on), with retries and redirects; returns the last
    /// response (a 3xx one when `follow` stops at it) and its URL.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        range_from: Option<u64>,
        follow: Follow,
        budget: Budget,
    ) -> Result<(ureq::Response, String), RequestError> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let response = self.send_retrying(method, &url, range_from, budget)?;
            if !(300..400).contains(&response.status()) {
                return Ok((response, url));
            }
            let Some(next) = response.header("location").map(|l| absolute(&url, l)) else {
                return Ok((response, url));
            };
            let same_host =
                Target::parse(&next).map(|t| (t.host, t.port)) == Target::parse(&url).map(|t| (t.host, t.port));
            if follow == Follow::SameHost && !same_host {
                return Ok((response, url));
            }
            url = next;
        }
        Err(RequestError::Network(format!(
            "more than {MAX_REDIRECTS} redirects from {url}"
        )))
    }

    /// One request to one URL, retried on 5xx and 429.
    fn send_retrying(
        &self,
        method: &str,
        url: &str,
        range_from: Option<u64>,
        budget: Budget,
    ) -> Result<ureq::Response, RequestError> {
        let agent = self.agent(url)?;
        let mut backoff = FIRST_BACKOFF;
        let attempts = self.retries + 1;
        for attempt in 1..=attempts {
            let mut request = agent.request(method, url).set("Accept-Encoding", "identity");
            if budget == Budget::Whole {
                request = request.timeout(self.timeout * WHOLE_ANSWER_TIMEOUTS);
            }
            if let Some(from) = range_from {
                request = request.set("Range", &format!("bytes={from}-"));
            }
            if let Some(token) = self.token.as_deref().filter(|_| self.authorized(url)) {
                request = request.set("Authorization", &format!("Bearer {token}"));
            }
            match call_within(request, self.timeout * 2) {
                Ok(response) => return Ok(response),
                Err(ureq::Error::Status(status, response)) if status == 429 || status >= 500 => {
                    let wait = retry_after(&response).unwrap_or(backoff);
                    if wait > LONGEST_RETRY_AFTER {
                        return Err(RequestError::Network(format!(
                            "the hub answered HTTP {status} and asks to wait {} s; run the same command again later",
                            wait.as_secs()
                        )));
                    }
                    if attempt == attempts {
                        return Err(RequestError::Network(format!(
                            "the hub answered HTTP {status}{} {attempts} time(s) in a row (CATDOG_HUB_RETRIES)",
                            said(&response)
                        )));
                    }
                    std::thread::sleep(wait);
                    backoff *= 2;
                }
                Err(ureq::Error::Status(status, response)) => return Err(refusal(status, &response)),
                Err(ureq::Error::Transport(t)) => return Err(RequestError::Network(self.describe_transport(&t))),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// A transport failure in words; a timeout names the setting.
    pub fn describe_transport(&self, t: &ureq::Transport) -> String {
        if is_timeout(t) {
            format!("no answer within {} s (CATDOG_HUB_TIMEOUT)", self.timeout.as_secs_f64())
        } else if t.to_string().contains("UnknownIssuer") {
            format!("{t}: {}", super::tls::UNKNOWN_CERTIFICATE_ADVICE)
        } else {
            t.to_string()
        }
    }
}

/// `request.call()` on its own thread, waited for at most `limit`: ureq's read timeout restarts with every byte,
/// so a server that sends its headers one a second would hold `call` for as long as it likes. After `limit` the
/// thread is left to end on its own (its reads still time out when the server falls silent).
// The error is ureq's own, matched by the caller exactly as `request.call()`'s would be.
#[allow(clippy::result_large_err)]
fn call_within(request: ureq::Request, limit: Duration) -> Result<ureq::Response, ureq::Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(request.call());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| {
        let timeout = std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the status line and headers did not arrive within {} s",
                limit.as_secs_f64()
            ),
        );
        Err(ureq::Error::from(timeout))
    })
}

/// Resolves host names within the timeout. The system resolver waits for its own retries (tens of seconds where
/// DNS does not answer), and a redirect to a CDN names a host the reachability probe never saw.
struct DeadlineResolver {
    timeout: Duration,
}

impl ureq::Resolver for DeadlineResolver {
    fn resolve(&self, netloc: &str) -> std::io::Result<Vec<std::net::SocketAddr>> {
        resolve_within(netloc, self.timeout, |n| {
            std::net::ToSocketAddrs::to_socket_addrs(n).map(|addrs| addrs.collect())
        })
    }
}

/// `lookup(netloc)` on its own thread, waited for at most `timeout` (a TimedOut error after that; the thread is
/// left to finish on its own).
fn resolve_within(
    netloc: &str,
    timeout: Duration,
    lookup: impl FnOnce(&str) -> std::io::Result<Vec<std::net::SocketAddr>> + Send + 'static,
) -> std::io::Result<Vec<std::net::SocketAddr>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = netloc.to_string();
    std::thread::spawn(move || {
        let _ = tx.send(lookup(&name));
    });
    rx.recv_timeout(timeout).unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("cannot resolve {netloc} within {} s", timeout.as_secs_f64()),
        ))
    })
}

/// True when a transport error is a connect or read timeout.
fn is_timeout(t: &ureq::Transport) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(io.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) {
                return true;
            }
        }
        source = e.source();
    }
    t.to_string().contains("timed out")
}

/// True when an I/O error while reading a body is the read timeout.
pub fn is_stall(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
        || e.to_string().contains("timed out")
}

/// `location` resolved against `base` (absolute, or a path on the same host).
pub fn absolute(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    let authority = rest.split('/').next().unwrap_or(rest);
    if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let dir = base.rsplit_once('/').map(|(d, _)| d).unwrap_or(base);
        format!("{dir}/{location}")
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the hub and gets the backoff instead).
fn retry_after(response: &ureq::Response) -> Option<Duration> {
    response
        .header("retry-after")?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// " (the hub says: …)" from `X-Error-Message`, or nothing.
fn said(response: &ureq::Response) -> String {
    match response.header("x-error-message").filter(|m| !m.is_empty()) {
        Some(m) => format!(" (the hub says: {m})"),
        None => String::new(),
    }
}

/// The hub's refusal in words: its `X-Error-Code` (RepoNotFound, GatedRepo, EntryNotFound, RevisionNotFound)
/// gets advice of its own; other statuses say what they are.
fn refusal(status: u16, response: &ureq::Response) -> RequestError {
    let said = said(response);
    RequestError::Refused(match response.header("x-error-code").unwrap_or("") {
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
        _ if status == 401 || status == 403 => {
            format!("the hub refused access (HTTP {status}){said}: log in with `hf auth login` or set HF_TOKEN")
        }
        _ if status == 404 => format!("not found (HTTP 404){said}: check the repository id and revision"),
        _ => format!("the hub answered HTTP {status}{said}"),
    })
}

/// `s` with every byte outside `[A-Za-z0-9-._~]` (and `/` when `keep_slash`) percent-encoded, as
/// huggingface_hub quotes revisions (`refs/pr/1` → `refs%2Fpr%2F1`) and file paths (slashes kept).
pub fn quote(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_and_revisions_are_quoted() {
        assert_eq!(absolute("https://hf.co/a/b/c", "/x/y"), "https://hf.co/x/y");
        assert_eq!(absolute("https://hf.co/a/b/c", "https://cdn/z"), "https://cdn/z");
        assert_eq!(absolute("https://hf.co/a/b/c", "d"), "https://hf.co/a/b/d");
        assert_eq!(quote("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(quote("data/train 1.parquet", true), "data/train%201.parquet");
    }

    #[test]
    fn a_name_that_does_not_resolve_in_time_is_a_timeout_not_a_hang() {
        // The lookup would answer (with no address) after 5 s: a TimedOut error means it was not waited for.
        let slow = |_: &str| {
            std::thread::sleep(Duration::from_secs(5));
            Ok(vec![])
        };
        let e = resolve_within("cdn.example:443", Duration::from_millis(200), slow).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("cdn.example"), "{e}");
        let quick = |_: &str| Ok(vec!["127.0.0.1:1".parse().unwrap()]);
        assert_eq!(resolve_within("x:1", Duration::from_secs(1), quick).unwrap().len(), 1);
    }

    #[test]
    fn the_token_goes_only_to_the_endpoints_host_and_port() {
        let c = Client::new(
            "https://huggingface.co",
            Some("hf_secret".into()),
            Duration::from_secs(1),
            0,
        )
        .unwrap();
        assert!(c.authorized("https://huggingface.co/api/models/x"));
        assert!(!c.authorized("https://cdn-lfs.huggingface.co/x"));
        assert!(!c.authorized("https://huggingface.co:8443/x"));
        assert!(!c.authorized("http://evil.example/huggingface.co"));
    }
}
