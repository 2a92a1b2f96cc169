//! What a hostile or broken hub (or whatever answers in its place) must not achieve, against the mock hub of
//! `tests/common/mock_hub.rs`: a write outside the Hugging Face cache through a commit, a revision or a listed file
//! name that climbs out with `..`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::mock_hub::{run_catdog, tiny_vgg_hub, Behaviour, MockHub, RepoFile};
use common::stderr;

/// Every file and link under `root`, relative to it, sorted.
fn tree(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p.clone());
            }
            found.push(p.strip_prefix(root).unwrap().to_path_buf());
        }
    }
    found.sort();
    found
}

/// A scratch folder with the cache four levels down (`a/b/c/d/home`), so that `..` from the cache's folders lands
/// inside the scratch folder where the test can see it; returns (scratch, HF_HOME).
fn nested_home() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("a/b/c/d/home");
    std::fs::create_dir_all(&home).unwrap();
    (tmp, home)
}

/// What exists in the scratch folder outside the cache.
fn outside_the_cache(tmp: &Path) -> Vec<PathBuf> {
    tree(tmp)
        .into_iter()
        .filter(|p| !p.starts_with("a/b/c/d/home/") && !Path::new("a/b/c/d/home").starts_with(p))
        .collect()
}

#[test]
fn a_commit_from_the_hub_that_climbs_out_of_the_cache_is_refused_and_nothing_is_written_outside() {
    let hub = tiny_vgg_hub(Behaviour {
        repo_commit: Some("../../../../../../outside".into()),
        ..Behaviour::default()
    });
    let (tmp, home) = nested_home();
    // The file a symlink would have replaced: a/b/outside/model.safetensors.
    let precious = tmp.path().join("a/b/outside/model.safetensors");
    std::fs::create_dir_all(precious.parent().unwrap()).unwrap();
    std::fs::write(&precious, "the user's own file").unwrap();
    let before = outside_the_cache(tmp.path());
    let (o, _) = run_catdog(&hub.url, &home, &["weights", "fetch", "someone/tiny-vgg"], &[]);
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("not a commit hash") && e.contains("nothing was written"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "the user's own file");
    assert!(!precious.is_symlink());
    assert_eq!(outside_the_cache(tmp.path()), before);
}

#[test]
fn a_revision_that_climbs_out_of_the_cache_is_a_usage_error_before_any_request() {
    let hub = tiny_vgg_hub(Behaviour::default());
    let (tmp, home) = nested_home();
    let victim = tmp.path().join("a/b/c/d/x.txt");
    std::fs::write(&victim, "mine").unwrap();
    for spec in [
        "someone/tiny-vgg@../../../../x.txt",
        "someone/tiny-vgg@/etc/passwd",
        "someone/tiny-vgg@main\u{1b}[2J",
    ] {
        let (o, _) = run_catdog(&hub.url, &home, &["weights", "fetch", spec], &[]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{spec}: {e}");
        assert!(e.contains("revision") && !e.contains('\u{1b}'), "{spec}: {e}");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
    assert!(hub.seen().is_empty(), "no request for a bad revision: {:?}", hub.seen());
}

#[test]
fn a_listing_that_names_a_file_outside_the_repository_is_refused_whole() {
    let shard = |path: &str| RepoFile {
        kind: "dataset",
        repo: "someone/pets".into(),
        path: path.into(),
        bytes: b"not read".to_vec(),
        lfs: false,
    };
    let hub = MockHub::start(
        vec![
            shard("data/train-00000-of-00001.parquet"),
            shard("../../../../../escape/test-00000-of-00001.parquet"),
        ],
        Behaviour::default(),
    );
    let (tmp, home) = nested_home();
    let out = home.join("pets");
    let out_arg = out.to_str().unwrap();
    let (o, _) = run_catdog(
        &hub.url,
        &home,
        &["data", "fetch", "--repo", "someone/pets", "--out", out_arg],
        &[],
    );
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains("not usable") && e.contains("'..'"), "{e}");
    assert_eq!(outside_the_cache(tmp.path()), Vec::<PathBuf>::new());
    assert!(
        hub.seen().iter().all(|r| !r.path.contains("resolve")),
        "no file of a refused listing is downloaded: {:?}",
        hub.seen()
    );

    // The listing's commit is a path too.
    let hub = MockHub::start(
        vec![shard("data/train-00000-of-00001.parquet")],
        Behaviour {
            repo_commit: Some("../../../x".into()),
            ..Behaviour::default()
        },
    );
    let (o, _) = run_catdog(
        &hub.url,
        &home,
        &["data", "fetch", "--repo", "someone/pets", "--out", out_arg],
        &[],
    );
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("not a commit hash"), "{e}");
    assert_eq!(outside_the_cache(tmp.path()), Vec::<PathBuf>::new());
}

#[test]
fn a_hub_that_sends_one_header_a_second_is_cut_off_within_the_timeout() {
    let hub = tiny_vgg_hub(Behaviour {
        header_per_second: true,
        ..Behaviour::default()
    });
    let (_tmp, home) = nested_home();
    let (o, took) = run_catdog(
        &hub.url,
        &home,
        &["weights", "fetch", "someone/tiny-vgg", "--quiet"],
        &[],
    );
    let e = stderr(&o);
    eprintln!("headers at one a second: error after {:.1} s", took.as_secs_f64());
    assert!(!o.status.success(), "{e}");
    assert!(e.contains("CATDOG_HUB_TIMEOUT"), "{e}");
    // Twice the 2-second timeout for the headers, once for the probe, plus the start.
    assert!(took < Duration::from_secs(15), "{took:?}");
}

#[test]
fn a_listing_that_trickles_is_cut_off_within_the_timeout() {
    let shard = RepoFile {
        kind: "dataset",
        repo: "someone/pets".into(),
        path: "data/train-00000-of-00001.parquet".into(),
        bytes: b"not read".to_vec(),
        lfs: false,
    };
    let hub = MockHub::start(
        vec![shard],
        Behaviour {
            trickle_listing: true,
            ..Behaviour::default()
        },
    );
    let (_tmp, home) = nested_home();
    let out = home.join("pets");
    let args = [
        "data",
        "fetch",
        "--repo",
        "someone/pets",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    let (o, took) = run_catdog(&hub.url, &home, &args, &[]);
    let e = stderr(&o);
    eprintln!("a listing at a byte a second: error after {:.1} s", took.as_secs_f64());
    assert!(!o.status.success() && e.contains("listing"), "{e}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn a_download_that_drips_is_a_stall_the_next_run_resumes() {
    let hub = tiny_vgg_hub(Behaviour {
        drip_cdn: true,
        ..Behaviour::default()
    });
    let (_tmp, home) = nested_home();
    let (o, took) = run_catdog(
        &hub.url,
        &home,
        &["weights", "fetch", "someone/tiny-vgg", "--quiet"],
        &[],
    );
    let e = stderr(&o);
    eprintln!("a download at a byte a second: error after {:.1} s", took.as_secs_f64());
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("slower than 10 KiB/s for 8 s") && e.contains("run the same command again to resume"),
        "{e}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    let blobs = home.join("hub/models--someone--tiny-vgg/blobs");
    let partial: Vec<_> = std::fs::read_dir(blobs).unwrap().flatten().collect();
    assert!(
        partial
            .iter()
            .any(|e| e.file_name().to_string_lossy().ends_with(".incomplete")),
        "the bytes so far are kept for the next run"
    );
}

#[test]
fn a_hub_timeout_or_retry_count_that_is_not_a_number_in_range_is_refused() {
    let (_tmp, home) = nested_home();
    for (var, value) in [
        ("CATDOG_HUB_TIMEOUT", "0"),
        ("CATDOG_HUB_TIMEOUT", "-1"),
        ("CATDOG_HUB_TIMEOUT", "abc"),
        ("CATDOG_HUB_RETRIES", "many"),
    ] {
        let (o, _) = run_catdog(
            "http://127.0.0.1:9",
            &home,
            &["weights", "fetch", "someone/tiny-vgg"],
            &[(var, value)],
        );
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{var}={value}: {e}");
        assert!(e.contains(&format!("{var}={value}")), "{e}");
    }
}

#[test]
fn a_token_with_a_line_break_is_refused_by_where_it_came_from_and_never_printed() {
    let hub = tiny_vgg_hub(Behaviour::default());
    let (_tmp, home) = nested_home();
    let (o, _) = run_catdog(
        &hub.url,
        &home,
        &["weights", "fetch", "someone/tiny-vgg"],
        &[("HF_TOKEN", "hf_first_half\nhf_second_half")],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("HF_TOKEN") && !e.contains("first_half") && !e.contains("second_half"),
        "{e}"
    );
    std::fs::write(home.join("token"), "hf_file\u{7}token\n").unwrap();
    let (o, _) = run_catdog(&hub.url, &home, &["weights", "fetch", "someone/tiny-vgg"], &[]);
    let e = stderr(&o);
    assert!(e.contains("token file") && !e.contains("hf_file"), "{e}");
    assert!(hub.seen().is_empty(), "nothing was sent: {:?}", hub.seen());
}
