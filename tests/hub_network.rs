//! The hub when the network misbehaves, against a server the test starts itself (never the real hub).
//!
//! Scenarios: a server that accepts connections and never answers (listing and download must fail within
//! `CATDOG_HUB_TIMEOUT`, not hang); the same server with the data set already in the cache (the cache wins, with a
//! warning); a server that refuses with the hub's `X-Error-Code` (GatedRepo, RepoNotFound: each its own advice);
//! that server as an HTTP proxy in front of a hub whose name does not resolve (only the proxy can reach it).

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::mock_hub::{refusing_server, run_catdog, serve};
use common::stderr;

/// A server that accepts every connection, reads what comes and never answers.
fn silent_server() -> String {
    serve(|mut s| {
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    })
}

/// Runs catdog against `endpoint` with a 2-second hub timeout (see [`common::mock_hub::run_catdog`]).
fn catdog_against(endpoint: &str, hf_home: &Path, args: &[&str]) -> (Output, Duration) {
    run_catdog(endpoint, hf_home, args, &[])
}

#[test]
fn a_hub_that_accepts_and_never_answers_is_an_error_within_the_timeout() {
    let endpoint = silent_server();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pets");
    let (o, took) = catdog_against(
        &endpoint,
        tmp.path(),
        &[
            "data",
            "fetch",
            "--repo",
            "someone/pets",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ],
    );
    eprintln!(
        "data fetch against a silent hub: error after {:.1} s",
        took.as_secs_f64()
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("someone/pets") && e.contains("no answer within 2"), "{e}");
    assert!(took < Duration::from_secs(15), "{took:?}");

    let (o, took) = catdog_against(
        &endpoint,
        tmp.path(),
        &["weights", "fetch", "someone/tiny-vgg", "--quiet"],
    );
    eprintln!(
        "weights fetch against a silent hub: error after {:.1} s",
        took.as_secs_f64()
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("someone/tiny-vgg") && e.contains("no answer within 2"),
        "{e}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
}

#[test]
fn a_cached_data_set_is_used_when_the_hub_does_not_answer() {
    let endpoint = silent_server();
    let tmp = tempfile::tempdir().unwrap();
    // The listing of refs/main is cached, and so is its snapshot (as huggingface_hub lays it out).
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let data = common::cached_repo(tmp.path(), "dataset", "someone/pets", commit).join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("train-00000-of-00001.parquet"), b"not read in this test").unwrap();
    let out = tmp.path().join("pets");
    let (o, took) = catdog_against(
        &endpoint,
        tmp.path(),
        &[
            "data",
            "fetch",
            "--repo",
            "someone/pets",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ],
    );
    let e = stderr(&o);
    // The listing falls back to the cache with a warning; the (deliberately broken) cached shard is then read.
    assert!(e.contains("using the cached copy of commit 0123456789"), "{e}");
    assert!(e.contains("parquet"), "{e}");
    assert!(took < Duration::from_secs(15), "{took:?}");
}

#[test]
fn the_hubs_error_codes_each_get_their_own_advice() {
    let tmp = tempfile::tempdir().unwrap();
    let gated = refusing_server(
        "401 Unauthorized",
        "GatedRepo",
        "Access to dataset someone/gated is restricted.",
    );
    let out = tmp.path().join("gated");
    let (o, _) = catdog_against(
        &gated,
        tmp.path(),
        &[
            "data",
            "fetch",
            "--repo",
            "someone/gated",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("gated") && e.contains("hf auth login") && e.contains("is restricted"),
        "{e}"
    );

    let missing = refusing_server("404 Not Found", "RepoNotFound", "Repository not found");
    let (o, _) = catdog_against(
        &missing,
        tmp.path(),
        &["weights", "fetch", "someone/nothing", "--quiet"],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("no such repository") && e.contains("check the id"), "{e}");
    assert!(
        !e.contains("--weights random"),
        "a refusal is not a network problem: {e}"
    );
}

#[test]
fn behind_a_proxy_the_hub_is_reached_through_it_even_when_only_the_proxy_resolves_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    // The "proxy" answers every request itself, with the hub's RepoNotFound: seeing that advice proves the
    // request went through it. The hub's own name (.invalid) resolves nowhere.
    let proxy = refusing_server("404 Not Found", "RepoNotFound", "Repository not found");
    let (o, took) = run_catdog(
        "http://hub.invalid",
        tmp.path(),
        &["weights", "fetch", "someone/model", "--quiet"],
        &[("HTTP_PROXY", proxy.as_str())],
    );
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("no such repository"),
        "the request should reach the hub through the proxy: {e}"
    );
    assert!(!e.contains("cannot resolve"), "{e}");
    assert!(took < Duration::from_secs(15), "{took:?}");
}
