//! Downloads from the hub when the network misbehaves, against the mock hub in `tests/common/mock_hub.rs` (its
//! scenarios are listed at its top): the cache layout huggingface_hub shares, the token kept from the CDN,
//! retries of 503 and 429, `Range` resumption (in the same run and in the next one), a server that ignores
//! `Range`, a close-delimited body cut short, a corrupted copy, `NO_PROXY`, and two processes at once.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::mock_hub::{
    refusing_server, run_catdog, sha256_hex, tiny_vgg_hub, tiny_vgg_weights, Behaviour, MockHub, COMMIT, TINY_VGG,
};
use common::{stderr, stdout};

const REPO: &str = TINY_VGG;

fn weights_bytes() -> Vec<u8> {
    tiny_vgg_weights()
}

fn repo_dir(hf_home: &Path) -> PathBuf {
    hf_home.join("hub/models--someone--tiny-vgg")
}

fn fetch(hub: &MockHub, hf_home: &Path, vars: &[(&str, &str)]) -> (std::process::Output, Duration) {
    run_catdog(&hub.url, hf_home, &["weights", "fetch", REPO], vars)
}

/// The weights blob is in the cache under its sha256 with the right bytes, and the snapshot points at it.
fn assert_cached_correctly(hf_home: &Path) {
    let sha = sha256_hex(&weights_bytes());
    let blob = repo_dir(hf_home).join("blobs").join(&sha);
    assert_eq!(sha256_hex(&std::fs::read(&blob).unwrap()), sha);
    let link = repo_dir(hf_home)
        .join("snapshots")
        .join(COMMIT)
        .join("model.safetensors");
    assert_eq!(std::fs::read(&link).unwrap(), weights_bytes());
    let leftovers: Vec<_> = std::fs::read_dir(repo_dir(hf_home).join("blobs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".incomplete"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_download_lands_in_the_cache_as_huggingface_hub_lays_it_out_and_the_token_stays_with_the_hub() {
    let hub = tiny_vgg_hub(Behaviour::default());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("token"), "hf_from_login_file\n").unwrap();
    let (o, _) = fetch(&hub, tmp.path(), &[]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert_cached_correctly(tmp.path());
    let sha = sha256_hex(&weights_bytes());
    let snapshot = repo_dir(tmp.path()).join("snapshots").join(COMMIT);
    #[cfg(unix)]
    assert_eq!(
        std::fs::read_link(snapshot.join("model.safetensors")).unwrap(),
        PathBuf::from(format!("../../blobs/{sha}"))
    );
    assert!(snapshot.join("config.json").exists());
    assert_eq!(
        std::fs::read_to_string(repo_dir(tmp.path()).join("refs/main")).unwrap(),
        COMMIT
    );
    assert!(stdout(&o).contains("model.safetensors"));

    let seen = hub.seen();
    assert!(
        seen.iter().any(|r| r.server == "cdn"),
        "the weights come from the CDN: {seen:?}"
    );
    for r in &seen {
        match r.server {
            "hub" => assert_eq!(r.authorization.as_deref(), Some("Bearer hf_from_login_file"), "{r:?}"),
            _ => assert_eq!(r.authorization, None, "the token must not go to another host: {r:?}"),
        }
    }
    assert!(!e.contains("hf_from_login_file") && !stdout(&o).contains("hf_from_login_file"));

    // A second run is served by the cache alone.
    let before = hub.seen().len();
    let (o, _) = fetch(&hub, tmp.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(hub.seen().len(), before, "the cached file needs no request");
}

#[test]
fn a_503_and_a_429_with_retry_after_are_retried() {
    let hub = tiny_vgg_hub(Behaviour {
        fail_first: Some((503, 2)),
        ..Behaviour::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let (o, _) = fetch(&hub, tmp.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_cached_correctly(tmp.path());

    let hub = tiny_vgg_hub(Behaviour {
        fail_first: Some((429, 1)),
        ..Behaviour::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let (o, took) = fetch(&hub, tmp.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        took >= Duration::from_secs(1),
        "Retry-After: 1 is waited for ({took:?})"
    );
    assert_cached_correctly(tmp.path());
}

#[test]
fn a_download_cut_mid_way_resumes_with_range_in_the_same_run() {
    let cut = 300_000;
    let hub = tiny_vgg_hub(Behaviour {
        cut_first_body_at: Some(cut),
        ..Behaviour::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let (o, _) = fetch(&hub, tmp.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_cached_correctly(tmp.path());
    let ranges: Vec<_> = hub.seen().into_iter().filter_map(|r| r.range).collect();
    assert_eq!(ranges, vec![format!("bytes={cut}-")]);
}

#[test]
fn a_close_delimited_body_cut_short_is_not_taken_for_the_whole_file() {
    let hub = tiny_vgg_hub(Behaviour {
        cut_first_body_at: Some(100_000),
        close_delimited: true,
        ..Behaviour::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let (o, _) = fetch(&hub, tmp.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_cached_correctly(tmp.path());
    assert!(hub.seen().iter().any(|r| r.range.as_deref() == Some("bytes=100000-")));
}

#[test]
fn a_server_that_ignores_range_gets_a_full_restart() {
    let hub = tiny_vgg_hub(Behaviour {
        cut_first_body_at: Some(200_000),
        ignore_range: true,
        ..Behaviour::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let (o, _) = fetch(&hub, tmp.path(), &[]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("ignored Range"), "{e}");
    assert_cached_correctly(tmp.path());
}

#[test]
fn a_corrupted_copy_fails_the_sha256_check_and_nothing_is_kept() {
    let hub = tiny_vgg_hub(Behaviour {
        corrupt: true,
        ..Behaviour::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let (o, _) = fetch(&hub, tmp.path(), &[]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains("sha256") && e.contains("run the same command again"), "{e}");
    let blobs: Vec<_> = std::fs::read_dir(repo_dir(tmp.path()).join("blobs"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(blobs.is_empty(), "nothing is kept: {blobs:?}");
    assert!(!repo_dir(tmp.path())
        .join("snapshots")
        .join(COMMIT)
        .join("model.safetensors")
        .exists());
}

#[test]
fn a_stalled_download_keeps_its_bytes_and_the_next_run_resumes_from_them() {
    let stall = 400_000;
    let hub = tiny_vgg_hub(Behaviour {
        stall_first_body_at: Some(stall),
        ..Behaviour::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let (o, took) = fetch(&hub, tmp.path(), &[]);
    let e = stderr(&o);
    eprintln!(
        "weights fetch whose download stalls: error after {:.1} s",
        took.as_secs_f64()
    );
    assert!(!o.status.success());
    assert!(
        e.contains("no data for 2 s") && e.contains("run the same command again to resume"),
        "{e}"
    );
    assert!(!e.contains("--weights random"), "{e}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    let partial = repo_dir(tmp.path())
        .join("blobs")
        .join(format!("{}.incomplete", sha256_hex(&weights_bytes())));
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), stall as u64);

    let (o, _) = fetch(&hub, tmp.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_cached_correctly(tmp.path());
    assert!(hub.seen().iter().any(|r| r.range.as_deref() == Some("bytes=400000-")));
}

#[test]
fn no_proxy_lets_the_hub_be_reached_directly_while_the_proxy_stays_set() {
    let hub = tiny_vgg_hub(Behaviour::default());
    // A "proxy" that answers everything with RepoNotFound: going through it fails the fetch.
    let proxy = refusing_server("404 Not Found", "RepoNotFound", "Repository not found");
    let tmp = tempfile::tempdir().unwrap();
    let (o, _) = fetch(&hub, tmp.path(), &[("HTTP_PROXY", &proxy)]);
    assert!(
        !o.status.success() && stderr(&o).contains("no such repository"),
        "{}",
        stderr(&o)
    );
    let (o, _) = fetch(
        &hub,
        tmp.path(),
        &[("HTTP_PROXY", &proxy), ("NO_PROXY", "localhost,127.0.0.1")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_cached_correctly(tmp.path());
}

#[test]
fn two_processes_fetching_the_same_file_at_once_download_it_once() {
    // ~0.9 MB at 1 kB per ms: about a second, long enough for the second process to find the lock taken.
    let hub = tiny_vgg_hub(Behaviour {
        slow_bytes_per_ms: Some(1000),
        ..Behaviour::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let (url, home) = (hub.url.clone(), tmp.path().to_path_buf());
    let first = std::thread::spawn(move || run_catdog(&url, &home, &["weights", "fetch", REPO], &[]));
    std::thread::sleep(Duration::from_millis(300));
    let (o2, _) = fetch(&hub, tmp.path(), &[]);
    let (o1, _) = first.join().unwrap();
    assert!(o1.status.success(), "{}", stderr(&o1));
    assert!(o2.status.success(), "{}", stderr(&o2));
    assert_cached_correctly(tmp.path());
    let bodies = hub.seen().iter().filter(|r| r.server == "cdn").count();
    assert_eq!(bodies, 1, "one download for two processes: {:?}", hub.seen());
}
