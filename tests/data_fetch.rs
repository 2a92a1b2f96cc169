//! `catdog data fetch` on parquet files written here in the Hugging Face `datasets` schema (the hub itself cannot
//! be reached from the tests).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use catdog::data::fetch::{extract_parquet, Selection};
use catdog::data::folder::ImageFolder;
use common::{catdog, stderr};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

fn encoded(rgb: [u8; 3], format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(20, 16, |x, _| {
        if x % 4 < 2 {
            image::Rgb(rgb)
        } else {
            image::Rgb([0, 0, 0])
        }
    });
    let mut buf = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut buf), format).unwrap();
    buf
}

/// Rows: (image bytes or None, label). Schema as `datasets` writes it: image = struct<bytes, path>, labels = int64,
/// with the ClassLabel names in the `huggingface` metadata.
fn write_parquet(path: &Path, rows: &[(Option<Vec<u8>>, i64)]) {
    write_parquet_named(path, rows, &["cat", "dog"]);
}

/// As [`write_parquet`], with other ClassLabel names.
fn write_parquet_named(path: &Path, rows: &[(Option<Vec<u8>>, i64)], classes: &[&str]) {
    let schema = parse_message_type(
        "message schema { optional group image { optional binary bytes; optional binary path (STRING); } optional int64 labels; }",
    )
    .unwrap();
    let hf = serde_json::json!({"info": {"features": {"image": {"_type": "Image"},
        "labels": {"names": classes, "_type": "ClassLabel"}}}})
    .to_string();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![KeyValue::new("huggingface".to_string(), hf)]))
        .build();
    let mut w =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), Arc::new(schema), Arc::new(props)).unwrap();
    let mut rg = w.next_row_group().unwrap();
    // image.bytes: definition level 2 when present, 1 when the struct is there but bytes are null.
    let mut col = rg.next_column().unwrap().unwrap();
    let vals: Vec<ByteArray> = rows
        .iter()
        .filter_map(|(b, _)| b.clone().map(ByteArray::from))
        .collect();
    let defs: Vec<i16> = rows.iter().map(|(b, _)| if b.is_some() { 2 } else { 1 }).collect();
    col.typed::<ByteArrayType>()
        .write_batch(&vals, Some(&defs), None)
        .unwrap();
    col.close().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    let names: Vec<ByteArray> = (0..rows.len())
        .map(|i| ByteArray::from(format!("img{i}.jpg").as_str()))
        .collect();
    col.typed::<ByteArrayType>()
        .write_batch(&names, Some(&vec![2; rows.len()]), None)
        .unwrap();
    col.close().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    let labels: Vec<i64> = rows.iter().map(|r| r.1).collect();
    col.typed::<Int64Type>()
        .write_batch(&labels, Some(&vec![1; rows.len()]), None)
        .unwrap();
    col.close().unwrap();
    rg.close().unwrap();
    w.close().unwrap();
}

fn sample_rows() -> Vec<(Option<Vec<u8>>, i64)> {
    let mut rows = Vec::new();
    for i in 0..5 {
        let f = if i % 2 == 0 {
            image::ImageFormat::Jpeg
        } else {
            image::ImageFormat::Png
        };
        rows.push((Some(encoded([200, 80 + i as u8, 40], f)), 0));
        rows.push((Some(encoded([40, 80, 200 - i as u8], f)), 1));
    }
    rows.push((Some(b"\xff\xd8\xff\xe0 not really a jpeg".to_vec()), 1));
    rows.push((None, 0));
    rows
}

fn sel(test_split: f64, seed: u64) -> Selection {
    Selection {
        test_split,
        seed,
        per_class: None,
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    catdog::data::folder::walk_images(dir)
        .map(|(f, _)| f)
        .unwrap_or_default()
}

#[test]
fn parquet_rows_become_the_course_layout_with_a_stratified_test_split() {
    let tmp = tempfile::tempdir().unwrap();
    let shard = tmp.path().join("train-00000-of-00001.parquet");
    write_parquet(&shard, &sample_rows());
    let out = tmp.path().join("dogs-vs-cats");
    let r = extract_parquet(&[("train".into(), shard.clone())], &out, &sel(0.2, 3), &|_| {}).unwrap();
    assert_eq!(r.classes, ["cats", "dogs"]);
    assert_eq!(r.written, 10);
    assert_eq!(r.bad.len(), 2, "{:?}", r.bad);
    assert!(
        r.bad
            .iter()
            .any(|(_, row, reason)| *row == 10 && reason.contains("corrupt")),
        "{:?}",
        r.bad
    );
    assert!(
        r.bad
            .iter()
            .any(|(_, row, reason)| *row == 11 && reason.contains("no image bytes")),
        "{:?}",
        r.bad
    );
    let train = ImageFolder::scan(&out.join("train")).unwrap();
    let test = ImageFolder::scan(&out.join("test")).unwrap();
    assert_eq!(train.classes, ["cats", "dogs"]);
    assert_eq!(test.class_counts()[0], 1);
    assert_eq!(train.class_counts()[0], 4);
    assert_eq!(train.samples.len() + test.samples.len(), 10);
    // Every written file decodes; names follow the Kaggle pattern.
    for f in files_under(&out) {
        catdog::data::decode::decode_rgb(&f, &Default::default()).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("cat.") || name.starts_with("dog."), "{name}");
    }
    // Re-running keeps what is there; a missing file (an interrupted run) is written again.
    let r2 = extract_parquet(&[("train".into(), shard.clone())], &out, &sel(0.2, 3), &|_| {}).unwrap();
    assert_eq!((r2.written, r2.kept), (0, 10));
    std::fs::remove_file(&test.samples[0].path).unwrap();
    let r3 = extract_parquet(&[("train".into(), shard)], &out, &sel(0.2, 3), &|_| {}).unwrap();
    assert_eq!((r3.written, r3.kept), (1, 9));
    assert!(test.samples[0].path.is_file());
}

#[test]
fn class_names_from_the_data_set_never_make_hidden_files_or_climb_out_of_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let shard = tmp.path().join("train-00000-of-00001.parquet");
    let out = tmp.path().join("pets");
    write_parquet_named(&shard, &sample_rows(), &["", "../../dog"]);
    let r = extract_parquet(&[("train".into(), shard.clone())], &out, &sel(0.2, 3), &|_| {}).unwrap();
    assert_eq!(r.classes, ["class0s", "_.._dogs"]);
    for split in ["train", "test"] {
        for e in std::fs::read_dir(out.join(split)).unwrap().flatten() {
            assert!(e.file_type().unwrap().is_dir(), "{:?} is loose in {split}/", e.path());
            for f in std::fs::read_dir(e.path()).unwrap().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                assert!(!name.starts_with('.'), "a hidden file: {:?}", f.path());
            }
        }
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        2,
        "only the shard and pets/"
    );

    // A label past the named classes would make a folder per missing class: refused with the row.
    let mut rows = sample_rows();
    rows.push((Some(encoded([1, 2, 3], image::ImageFormat::Png)), 1_000_000_000));
    write_parquet(&shard, &rows);
    let e = extract_parquet(
        &[("train".into(), shard)],
        &tmp.path().join("big"),
        &sel(0.2, 3),
        &|_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("row 12") && e.contains("label 1000000000"), "{e}");
}

#[test]
fn a_repository_test_split_is_used_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("train.parquet"), tmp.path().join("test.parquet"));
    write_parquet(&a, &sample_rows()[..6]);
    write_parquet(&b, &sample_rows()[6..10]);
    let out = tmp.path().join("out");
    let r = extract_parquet(&[("train".into(), a), ("test".into(), b)], &out, &sel(0.2, 0), &|_| {}).unwrap();
    assert!(r.test_source.contains("repository"));
    assert_eq!(files_under(&out.join("train")).len(), 6);
    assert_eq!(files_under(&out.join("test")).len(), 4);
    // Indices continue across shards, so no two files share a name.
    let mut names: Vec<String> = files_under(&out)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 10);
}

#[test]
fn data_fetch_offline_names_the_repository_the_cache_and_the_ways_out_and_uses_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = catdog(&["data", "fetch", "--out", out.to_str().unwrap()], tmp.path());
    assert!(!o.status.success());
    let e = stderr(&o);
    for needle in [
        "microsoft/cats_vs_dogs",
        tmp.path().join("hub").to_str().unwrap(),
        "--data",
    ] {
        assert!(e.contains(needle), "missing '{needle}' in: {e}");
    }
    // A cached snapshot is used without network, as the Python library lays it out.
    cached_dataset(tmp.path(), "someone/pets", &sample_rows());
    let o = catdog(
        &[
            "data",
            "fetch",
            "--repo",
            "someone/pets",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&common::stdout(&o)).unwrap();
    assert_eq!(j["written"], 10);
    let o = catdog(&["data", "check", out.to_str().unwrap(), "--strict"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn finetune_without_data_says_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_catdog"))
        .args(["finetune", "--weights", "random:4,4,4,4,4", "--epochs", "1", "--quiet"])
        .current_dir(tmp.path())
        .env("HF_HOME", tmp.path())
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("catdog data fetch") && e.contains("data/dogs-vs-cats"),
        "{e}"
    );
    // What failed (the hub), then the ways out, one per line.
    let error = e.lines().find(|l| l.starts_with("error:")).unwrap();
    assert!(error.contains("the hub at http://127.0.0.1:9 cannot be reached"), "{e}");
    assert!(
        e.contains("\n  - point `--data`") && e.contains("\n  - on a machine with network"),
        "{e}"
    );
    // The failed fetch leaves no empty folder that a second run would take for data.
    assert!(!tmp.path().join("data/dogs-vs-cats").exists());
}

/// A dataset repository in the Hugging Face cache under `hf_home`, laid out as huggingface_hub does.
fn cached_dataset(hf_home: &Path, repo: &str, rows: &[(Option<Vec<u8>>, i64)]) -> PathBuf {
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    let data = common::cached_repo(hf_home, "dataset", repo, commit).join("data");
    std::fs::create_dir_all(&data).unwrap();
    let shard = data.join("train-00000-of-00001.parquet");
    write_parquet(&shard, rows);
    shard
}

#[test]
fn per_class_takes_a_stratified_seeded_subset_before_the_test_split() {
    let tmp = tempfile::tempdir().unwrap();
    let shard = tmp.path().join("train.parquet");
    write_parquet(&shard, &sample_rows());
    let subset = |seed: u64| {
        let out = tmp.path().join(format!("out{seed}"));
        let s = Selection {
            test_split: 0.25,
            seed,
            per_class: Some(4),
        };
        let r = extract_parquet(&[("train".into(), shard.clone())], &out, &s, &|_| {}).unwrap();
        (r, out)
    };
    let (r, out) = subset(1);
    // 5 good images per class, 4 kept per class, then a quarter of them (1 per class) held out.
    for class in ["cats", "dogs"] {
        assert_eq!(r.counts["train"][class], 3, "{:?}", r.counts);
        assert_eq!(r.counts["test"][class], 1, "{:?}", r.counts);
    }
    assert_eq!(files_under(&out).len(), 8);
    // The subset follows the seed.
    let names = |dir: &Path| {
        let mut v: Vec<String> = files_under(dir)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let (_, same) = subset(1);
    assert_eq!(names(&out), names(&same));
}

#[test]
fn a_complete_fetch_leaves_a_manifest_that_a_rerun_trusts_without_reading_the_data_again() {
    let tmp = tempfile::tempdir().unwrap();
    let shard = cached_dataset(tmp.path(), "someone/pets", &sample_rows());
    let out = tmp.path().join("pets");
    let fetch = || {
        catdog(
            &[
                "data",
                "fetch",
                "--repo",
                "someone/pets",
                "--per-class",
                "4",
                "--out",
                out.to_str().unwrap(),
                "--json",
            ],
            tmp.path(),
        )
    };
    let o = fetch();
    assert!(o.status.success(), "{}", stderr(&o));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("catdog-manifest.json")).unwrap()).unwrap();
    assert_eq!(m["repo"], "someone/pets");
    assert_eq!(m["revision"], "89abcdef0123456789abcdef0123456789abcdef");
    assert_eq!(m["selection"]["per_class"], 4);
    assert_eq!(m["files"].as_array().unwrap().len(), 8);
    assert!(!out.join("catdog-fetch.partial").exists());
    // The shard is now unreadable: a re-run that trusts the manifest does not notice.
    std::fs::write(&shard, b"not parquet").unwrap();
    let o = fetch();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing to do"), "{}", stderr(&o));
    // A listed file gone: the folder is not complete, so the fetch runs again (and here meets the broken shard).
    let first = m["files"][0].as_str().unwrap();
    std::fs::remove_file(out.join(first)).unwrap();
    let o = fetch();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("parquet"), "{}", stderr(&o));
}

#[test]
fn finetune_fetches_the_default_folder_however_it_is_spelled_and_resumes_a_half_written_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rows = sample_rows();
    rows.extend(sample_rows());
    cached_dataset(tmp.path(), "microsoft/cats_vs_dogs", &rows);
    let run = |data: &str, name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_catdog"))
            .args([
                "finetune",
                "--data",
                data,
                "--weights",
                "random:4,4,4,4,4",
                "--size",
                "32",
            ])
            .args(["--epochs", "1", "--quiet", "--name", name])
            .current_dir(tmp.path())
            .env("HF_HOME", tmp.path())
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .output()
            .unwrap()
    };
    let o = run("./data/dogs-vs-cats/", "a");
    assert!(o.status.success(), "{}", stderr(&o));
    let folder = tmp.path().join("data/dogs-vs-cats");
    assert!(folder.join("catdog-manifest.json").is_file(), "{}", stderr(&o));
    assert!(stderr(&o).contains("getting Dogs-vs-Cats first"), "{}", stderr(&o));
    // An interrupted fetch (its marker still there, a file missing) is completed before training.
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("catdog-manifest.json")).unwrap()).unwrap();
    std::fs::remove_file(folder.join(m["files"][0].as_str().unwrap())).unwrap();
    std::fs::write(folder.join("catdog-fetch.partial"), "microsoft/cats_vs_dogs").unwrap();
    let o = run("data/dogs-vs-cats", "b");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("half-written"), "{}", stderr(&o));
    assert!(folder.join(m["files"][0].as_str().unwrap()).is_file());
    assert!(!folder.join("catdog-fetch.partial").exists());
}

#[test]
fn data_fetch_lists_and_downloads_from_the_hub_and_then_a_failing_hub_falls_back_to_the_cache() {
    use common::mock_hub::{refusing_server, run_catdog, Behaviour, MockHub, RepoFile};
    let tmp = tempfile::tempdir().unwrap();
    let shard = tmp.path().join("shard.parquet");
    write_parquet(&shard, &sample_rows());
    let hub = MockHub::start(
        vec![RepoFile {
            kind: "dataset",
            repo: "someone/pets".into(),
            path: "data/train-00000-of-00001.parquet".into(),
            bytes: std::fs::read(&shard).unwrap(),
            lfs: true,
        }],
        Behaviour::default(),
    );
    let home = tmp.path().join("hf");
    let out = tmp.path().join("pets");
    let args = |out: &Path| {
        [
            "data",
            "fetch",
            "--repo",
            "someone/pets",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ]
        .map(str::to_string)
        .to_vec()
    };
    let run = |endpoint: &str, out: &Path| {
        let a = args(out);
        run_catdog(
            endpoint,
            &home,
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            &[("CATDOG_HUB_RETRIES", "1")],
        )
        .0
    };
    let o = run(&hub.url, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let written = files_under(&out.join("train")).len() + files_under(&out.join("test")).len();
    assert_eq!(written, 10, "the ten decodable rows");
    assert!(hub
        .seen()
        .iter()
        .any(|r| r.path.starts_with("/api/datasets/someone/pets/revision/main")));

    // A hub that answers 500 to everything: after the retry, the cached copy of the same revision is used.
    let broken = refusing_server("500 Internal Server Error", "", "");
    let again = tmp.path().join("pets-again");
    let o = run(&broken, &again);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("HTTP 500") && e.contains("using the cached copy of commit"),
        "{e}"
    );
    let again_written = files_under(&again.join("train")).len() + files_under(&again.join("test")).len();
    assert_eq!(again_written, 10);
}

#[test]
fn a_fetch_with_other_settings_never_mixes_its_split_into_an_earlier_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rows = sample_rows();
    rows.extend(sample_rows());
    cached_dataset(tmp.path(), "someone/pets", &rows);
    let out = tmp.path().join("pets");
    let fetch = |extra: &[&str]| {
        let mut args = vec![
            "data",
            "fetch",
            "--repo",
            "someone/pets",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ];
        args.extend_from_slice(extra);
        catdog(&args, tmp.path())
    };
    let o = fetch(&["--seed", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = files_under(&out).len();

    // Another seed into the same folder: refused, nothing added, the manifest still says seed 1.
    let o = fetch(&["--seed", "2"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("--seed 1") && e.contains("--seed 2") && e.contains("--force"),
        "{e}"
    );
    assert_eq!(files_under(&out).len(), first);
    let manifest = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("catdog-manifest.json")).unwrap()).unwrap()
    };
    assert_eq!(manifest()["selection"]["seed"], 1);

    // With --force the folder holds the new selection alone: no image in both train and test.
    let o = fetch(&["--seed", "2", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(files_under(&out).len(), first);
    assert_eq!(manifest()["selection"]["seed"], 2);
    let names = |split: &str| -> std::collections::BTreeSet<String> {
        files_under(&out.join(split))
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert!(names("train").is_disjoint(&names("test")));

    // A folder of someone's own images is not a fetch's: refused too.
    let own = tmp.path().join("own");
    std::fs::create_dir_all(own.join("train/cats")).unwrap();
    let o = catdog(
        &[
            "data",
            "fetch",
            "--repo",
            "someone/pets",
            "--out",
            own.to_str().unwrap(),
            "--quiet",
        ],
        tmp.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no catdog fetch wrote"), "{}", stderr(&o));
}

#[test]
fn an_interrupted_fetch_leaves_no_temporary_files_and_two_fetches_into_one_folder_are_locked() {
    let tmp = tempfile::tempdir().unwrap();
    cached_dataset(tmp.path(), "someone/pets", &sample_rows());
    let out = tmp.path().join("pets");
    let args = [
        "data",
        "fetch",
        "--repo",
        "someone/pets",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    // What a fetch killed mid-write leaves: its marker and a half-written temporary file.
    std::fs::create_dir_all(out.join("train/cats")).unwrap();
    let leftover = out.join("train/cats/.cat.3.jpg.4242.tmp");
    std::fs::write(&leftover, b"half").unwrap();
    let marker = serde_json::json!({"repo": "someone/pets",
        "selection": {"test_split": 0.2, "seed": 0, "per_class": null}});
    std::fs::write(out.join("catdog-fetch.partial"), marker.to_string()).unwrap();
    // Another live process holds the folder's lock: refused, naming it.
    let me = std::process::id();
    std::fs::write(out.join(".lock"), format!("{me}\n")).unwrap();
    let o = catdog(&args, tmp.path());
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains(&format!("pid {me}")) && e.contains("--out"),
        "{e}"
    );
    assert!(
        leftover.exists(),
        "nothing is touched while another process holds the lock"
    );
    std::fs::remove_file(out.join(".lock")).unwrap();
    let o = catdog(&args, tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!leftover.exists(), "the interrupted fetch's temporary file is removed");
    assert!(!out.join(".lock").exists() && !out.join("catdog-fetch.partial").exists());
}
