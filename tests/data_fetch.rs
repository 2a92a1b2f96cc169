//! `catdog data fetch` on parquet files written here in the Hugging Face `datasets` schema (the hub itself cannot
//! be reached from the tests).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use catdog::data::fetch::extract_parquet;
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
    let schema = parse_message_type(
        "message schema { optional group image { optional binary bytes; optional binary path (STRING); } optional int64 labels; }",
    )
    .unwrap();
    let hf = r#"{"info": {"features": {"image": {"_type": "Image"}, "labels": {"names": ["cat", "dog"], "_type": "ClassLabel"}}}}"#;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![KeyValue::new("huggingface".to_string(), hf.to_string())]))
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
    let r = extract_parquet(&[("train".into(), shard.clone())], &out, 0.2, 3, &|_| {}).unwrap();
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
    let r2 = extract_parquet(&[("train".into(), shard.clone())], &out, 0.2, 3, &|_| {}).unwrap();
    assert_eq!((r2.written, r2.kept), (0, 10));
    std::fs::remove_file(&test.samples[0].path).unwrap();
    let r3 = extract_parquet(&[("train".into(), shard)], &out, 0.2, 3, &|_| {}).unwrap();
    assert_eq!((r3.written, r3.kept), (1, 9));
    assert!(test.samples[0].path.is_file());
}

#[test]
fn a_repository_test_split_is_used_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("train.parquet"), tmp.path().join("test.parquet"));
    write_parquet(&a, &sample_rows()[..6]);
    write_parquet(&b, &sample_rows()[6..10]);
    let out = tmp.path().join("out");
    let r = extract_parquet(&[("train".into(), a), ("test".into(), b)], &out, 0.2, 0, &|_| {}).unwrap();
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
    let repo = tmp.path().join("hub/datasets--someone--pets");
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let data = repo.join("snapshots").join(commit).join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_parquet(&data.join("train-00000-of-00001.parquet"), &sample_rows());
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
}
