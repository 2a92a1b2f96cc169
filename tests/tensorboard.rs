//! `finetune --tensorboard`: the event files are read back here with a decoder of their own (TFRecord framing with
//! masked CRC-32C, then the Event and Summary protobufs), and hold what history.csv holds, in Keras' layout.
//! `scripts/check_tensorboard.py` reads the same files with TensorBoard's EventAccumulator.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use catdog::tensorboard::crc32c::masked;
use catdog::train::history::History;
use common::protobuf::{bytes, fields, get, Field};
use common::{catdog, make_dataset, stderr};

/// The records of an event file, each CRC checked.
fn records(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let mut at = 0;
    let mut out = Vec::new();
    while at < data.len() {
        let len_bytes = &data[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        assert_eq!(
            u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()),
            masked(len_bytes)
        );
        let body = &data[at + 12..at + 12 + len];
        let crc = u32::from_le_bytes(data[at + 12 + len..at + 16 + len].try_into().unwrap());
        assert_eq!(crc, masked(body), "record CRC");
        out.push(body.to_vec());
        at += 16 + len;
    }
    out
}

/// What one folder's event files hold: scalars by tag and step, the text and image tags, the file version.
#[derive(Default, Debug)]
struct Board {
    scalars: BTreeMap<String, BTreeMap<i64, f32>>,
    texts: BTreeMap<String, String>,
    images: BTreeMap<String, (u64, u64, Vec<u8>)>,
    versions: Vec<String>,
}

fn read_board(dir: &Path) -> Board {
    let mut board = Board::default();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        assert!(path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("events.out.tfevents."));
        for rec in records(&path) {
            let event = fields(&rec);
            if let Some(Field::Bytes(v)) = get(&event, 3) {
                board.versions.push(String::from_utf8(v.clone()).unwrap());
                continue;
            }
            let step = match get(&event, 2) {
                Some(Field::Varint(s)) => *s as i64,
                _ => 0,
            };
            for (_, value) in fields(bytes(get(&event, 5))).iter().filter(|(k, _)| *k == 1) {
                let Field::Bytes(value) = value else { panic!() };
                let v = fields(value);
                let tag = String::from_utf8(bytes(get(&v, 1)).to_vec()).unwrap();
                if let Some(Field::Fixed32(f)) = get(&v, 2) {
                    board
                        .scalars
                        .entry(tag)
                        .or_default()
                        .insert(step, f32::from_le_bytes(*f));
                } else if let Some(Field::Bytes(img)) = get(&v, 4) {
                    let img = fields(img);
                    let (Some(Field::Varint(h)), Some(Field::Varint(w))) = (get(&img, 1), get(&img, 2)) else {
                        panic!()
                    };
                    board.images.insert(tag, (*h, *w, bytes(get(&img, 4)).to_vec()));
                } else if let Some(Field::Bytes(tensor)) = get(&v, 8) {
                    let metadata = fields(bytes(get(&v, 9)));
                    let plugin = fields(bytes(get(&metadata, 1)));
                    assert_eq!(bytes(get(&plugin, 1)), b"text");
                    let tensor = fields(tensor);
                    let text = bytes(get(&tensor, 8));
                    board.texts.insert(tag, String::from_utf8(text.to_vec()).unwrap());
                }
            }
        }
    }
    board
}

#[test]
fn finetune_logs_every_epoch_to_tensorboard_in_keras_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_dataset(&data.join("train"), 12, 1);
    make_dataset(&data.join("test"), 6, 2);
    let (runs, tb) = (tmp.path().join("runs"), tmp.path().join("tb"));
    let args = |extra: &[&str]| {
        let mut a = vec![
            "finetune",
            "--data",
            data.to_str().unwrap(),
            "--weights",
            "random:4,4,4,4,4",
        ];
        a.extend([
            "--size",
            "32",
            "--batch-size",
            "8",
            "--hidden",
            "8",
            "--lr",
            "1e-3",
            "--quiet",
        ]);
        a.extend(["--runs-dir", runs.to_str().unwrap(), "--name", "r"]);
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        catdog(&a.iter().map(String::as_str).collect::<Vec<_>>(), tmp.path())
    };
    let o = run(&["--epochs", "2", "--tensorboard", tb.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A resume for a third epoch appends files beside the first ones.
    let run_dir = runs.join("r");
    let o = catdog(
        &[
            "finetune",
            "--resume",
            run_dir.to_str().unwrap(),
            "--epochs",
            "3",
            "--quiet",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let history = History::read(&run_dir).unwrap();
    let (train, val) = (read_board(&tb.join("train")), read_board(&tb.join("validation")));
    assert!(train.versions.iter().all(|v| v == "brain.Event:2") && train.versions.len() == 2);
    for (e, rec) in history.epochs.iter().enumerate() {
        let at = |b: &Board, tag: &str| b.scalars[tag][&(e as i64)];
        assert_eq!(at(&train, "epoch_loss"), rec.loss as f32, "epoch {e}");
        assert_eq!(at(&train, "epoch_accuracy"), rec.accuracy as f32);
        assert_eq!(at(&train, "epoch_learning_rate"), rec.lr as f32);
        assert_eq!(at(&train, "epoch_images_per_s"), rec.images_per_s as f32);
        assert_eq!(at(&val, "epoch_loss"), rec.val_loss.unwrap() as f32);
        assert_eq!(at(&val, "epoch_accuracy"), rec.val_accuracy.unwrap() as f32);
    }
    assert_eq!(train.scalars["epoch_loss"].len(), 3);
    assert!(!val.scalars.contains_key("epoch_learning_rate"));
    assert!(train.texts["config"].contains("\"tensorboard\""), "{:?}", train.texts);
    let (h, w, png) = &train.images["curves"];
    assert!(*h > 0 && *w > 0 && png.starts_with(b"\x89PNG"));
}

#[test]
fn lab_variants_become_tensorboard_runs_with_their_first_seeds_curves() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, tb) = (tmp.path().join("labs"), tmp.path().join("tb"));
    let o = catdog(
        &[
            "lab",
            "l2",
            "--dataset",
            "moons",
            "--n",
            "80",
            "--epochs",
            "3",
            "--seeds",
            "1",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
            "--tensorboard",
            tb.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("l2/results.json")).unwrap()).unwrap();
    let variants = results["variants"].as_array().unwrap();
    let runs: Vec<_> = std::fs::read_dir(tb.join("l2"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), variants.len(), "{runs:?}");
    for v in variants {
        let name: String = v["variant"].as_str().unwrap().replace(" = ", "_");
        let run = tb.join("l2").join(&name);
        let (train, val) = (read_board(&run.join("train")), read_board(&run.join("validation")));
        for (step, row) in v["history"].as_array().unwrap().iter().enumerate() {
            let step = step as i64;
            assert_eq!(train.scalars["epoch_loss"][&step], row["loss"].as_f64().unwrap() as f32);
            assert_eq!(
                val.scalars["epoch_accuracy"][&step],
                row["val_metric"].as_f64().unwrap() as f32
            );
        }
        assert!(train.texts["lab"].contains("| λ |"), "{:?}", train.texts);
    }
}
