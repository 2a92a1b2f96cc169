//! What people read: every flag's default in `--help`, words as users write them, JSON as the README shows it,
//! and config.json fields that hold one thing each.

mod common;

use std::path::Path;

use common::{catdog, make_dataset, stderr, stdout};

const SUBCOMMANDS: [&[&str]; 13] = [
    &["finetune"],
    &["extract"],
    &["evaluate"],
    &["predict"],
    &["lab"],
    &["data", "fetch"],
    &["weights", "inspect"],
    &["augment", "preview"],
    &["augment", "apply"],
    &["bench", "forward"],
    &["bench", "train"],
    &["bench", "loader"],
    &["bench", "mlp"],
];

/// Options that must be given, so have no default to show.
const REQUIRED: [&str; 7] = [
    "--checkpoint",
    "--data",
    "--out",
    "--image",
    "--target",
    "--resume",
    "--csv",
];

#[test]
fn every_optional_flag_with_a_value_shows_its_default_in_help() {
    let tmp = tempfile::tempdir().unwrap();
    let mut missing = Vec::new();
    for cmd in SUBCOMMANDS {
        let mut args = cmd.to_vec();
        args.push("--help");
        let o = catdog(&args, tmp.path());
        assert!(o.status.success(), "{cmd:?}: {}", stderr(&o));
        let help = stdout(&o);
        // Each option's block starts with its flag and runs to the next one.
        let mut blocks: Vec<String> = Vec::new();
        for line in help.lines() {
            let t = line.trim_start();
            if t.starts_with("--") || (t.starts_with('-') && t.get(2..4) == Some(", ")) {
                blocks.push(t.to_string());
            } else if let Some(b) = blocks.last_mut() {
                b.push(' ');
                b.push_str(t);
            }
        }
        for b in blocks {
            let name = b
                .split_whitespace()
                .find(|w| w.starts_with("--"))
                .unwrap_or("")
                .trim_end_matches(',')
                .to_string();
            let takes_value = b.split_whitespace().nth(1).is_some_and(|w| w.starts_with('<'))
                || b.split_whitespace().nth(2).is_some_and(|w| w.starts_with('<'));
            if takes_value && !b.contains("[default") && !REQUIRED.contains(&name.as_str()) {
                missing.push(format!("{} {name}", cmd.join(" ")));
            }
        }
    }
    assert!(missing.is_empty(), "flags without a default in --help: {missing:?}");
}

#[test]
fn the_start_line_writes_modes_optimizers_and_counts_as_people_do() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_dataset(&data, 4, 3);
    let o = catdog(
        &[
            "finetune",
            "--data",
            data.to_str().unwrap(),
            "--weights",
            "random:4,4,4,4,4",
            "--size",
            "32",
            "--epochs",
            "1",
            "--runs-dir",
            tmp.path().join("runs").to_str().unwrap(),
            "--quiet",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("mode extract, 1 epoch, batch 32, RMSprop lr"), "{e}");
}

#[test]
fn predict_json_keys_come_in_the_readme_order_and_config_json_keeps_the_weights_id_apart_from_its_path() {
    // A hub model already in the Hugging Face cache, laid out as huggingface_hub does.
    let tmp = tempfile::tempdir().unwrap();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    common::cached_tiny_vgg(tmp.path());
    let data = tmp.path().join("data");
    make_dataset(&data, 4, 5);
    let runs = tmp.path().join("runs");
    let args = [
        "finetune",
        "--data",
        data.to_str().unwrap(),
        "--weights",
        "someone/tiny-vgg",
        "--size",
        "64",
        "--epochs",
        "1",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--name",
        "hub",
        "--quiet",
    ];
    let o = catdog(&args, tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let run = runs.join("hub");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["weights"], "someone/tiny-vgg");
    let path = config["weights_path"]
        .as_str()
        .expect("weights_path is set for a hub model");
    assert!(
        Path::new(path).ends_with("model.safetensors") && path.contains(commit),
        "{path}"
    );

    let image = data.join("cats").read_dir().unwrap().next().unwrap().unwrap().path();
    let broken = tmp.path().join("broken.png");
    std::fs::write(&broken, b"not a png").unwrap();
    let o = catdog(
        &[
            "predict",
            "--checkpoint",
            run.join("best.safetensors").to_str().unwrap(),
            "--json",
            image.to_str().unwrap(),
            broken.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("{\"path\":") && lines[0].contains("\"label\":"),
        "{out}"
    );
    let (l, p) = (
        lines[0].find("\"label\"").unwrap(),
        lines[0].find("\"probabilities\"").unwrap(),
    );
    assert!(l < p, "{out}");
    assert!(
        lines[1].starts_with("{\"path\":") && lines[1].contains("\"error\":"),
        "{out}"
    );
}
