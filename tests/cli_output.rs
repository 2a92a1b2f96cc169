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
            "--precision",
            "fp32",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("mode extract, 1 epoch, batch 32, RMSprop lr"), "{e}");
    assert!(e.contains("; precision fp32\n") && !e.contains("fp32 (fp32)"), "{e}");
    assert!(e.contains("preprocessing: imagenet: RGB"), "{e}");
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

/// Runs `catdog args` under a pseudo-terminal (as `!catdog` in a Jupyter cell does) with `vars` set; returns what
/// the terminal received, or `None` where `script` (util-linux) is missing.
fn under_a_terminal(args: &[&str], vars: &[(&str, &str)], dir: &Path) -> Option<String> {
    let mut command = vec![env!("CARGO_BIN_EXE_catdog").to_string()];
    command.extend(args.iter().map(|a| a.to_string()));
    let line = command.join(" ");
    let mut script = std::process::Command::new("script");
    script.args(["-qfec", &line, "/dev/null"]).current_dir(dir);
    for k in [
        "JPY_PARENT_PID",
        "COLAB_RELEASE_TAG",
        "KAGGLE_KERNEL_RUN_TYPE",
        "CATDOG_PROGRESS",
    ] {
        script.env_remove(k);
    }
    script.env("TERM", "xterm").env("CATDOG_PROGRESS_SECS", "0");
    for (k, v) in vars {
        script.env(k, v);
    }
    let o = script.output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn in_a_notebook_progress_is_plain_lines_with_units_and_a_bad_mode_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    make_dataset(&tmp.path().join("d/train"), 12, 1);
    let check = ["data", "check", "d"];
    let Some(terminal) = under_a_terminal(&check, &[], tmp.path()) else {
        eprintln!("skipped: no `script` to make a pseudo-terminal");
        return;
    };
    assert!(terminal.contains("\u{1b}["), "a terminal gets a bar: {terminal:?}");
    for notebook in [("JPY_PARENT_PID", "4242"), ("COLAB_RELEASE_TAG", "x"), ("TERM", "dumb")] {
        // (A pseudo-terminal turns each line break into \r\n; a bar's redraw is a bare \r.)
        let seen = under_a_terminal(&check, &[notebook], tmp.path())
            .unwrap()
            .replace("\r\n", "\n");
        assert!(
            !seen.contains("\u{1b}[") && !seen.contains('\r'),
            "{notebook:?}: {seen:?}"
        );
        assert!(
            seen.contains("decode: ") && seen.contains("images/s"),
            "{notebook:?}: {seen:?}"
        );
    }
    // --progress and CATDOG_PROGRESS choose it by hand; off shows nothing.
    let lines = under_a_terminal(&["--progress", "lines", "data", "check", "d"], &[], tmp.path()).unwrap();
    assert!(lines.contains("decode: ") && !lines.contains("\u{1b}["), "{lines:?}");
    let off = under_a_terminal(&check, &[("CATDOG_PROGRESS", "off")], tmp.path()).unwrap();
    assert!(!off.contains("decode"), "{off:?}");
    for (flag, var) in [
        (Some("fancy"), None),
        (None, Some(("CATDOG_PROGRESS", "fancy"))),
        (None, Some(("CATDOG_PROGRESS_SECS", "-1"))),
    ] {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_catdog"));
        if let Some(f) = flag {
            c.args(["--progress", f]);
        }
        if let Some((k, v)) = var {
            c.env(k, v);
        }
        let o = c.args(check).current_dir(tmp.path()).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{flag:?} {var:?}: {}", stderr(&o));
    }
}

#[test]
fn info_reports_the_machine_and_the_hub_settings_without_the_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |json: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_catdog"));
        c.arg("info").current_dir(tmp.path()).env("HF_HOME", tmp.path());
        if json {
            c.arg("--json");
        }
        c.env("HF_TOKEN", "hf_topsecret")
            .env("ALL_PROXY", "socks5h://me:pa55word@127.0.0.1:1080")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .unwrap()
    };
    let o = run(true);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    for key in [
        "version",
        "cpu",
        "kernels",
        "threads",
        "cuda",
        "hf_cache",
        "hf_endpoint",
        "token_found",
    ] {
        assert!(j.get(key).is_some(), "no {key}: {out}");
    }
    assert_eq!(j["token_found"], true);
    assert_eq!(j["hf_cache"], tmp.path().join("hub").to_str().unwrap());
    assert_eq!(j["proxy"], "socks5h://me:***@127.0.0.1:1080");
    assert!(j["cpu"]["amx"].is_string() && j["kernels"]["bf16"].is_string(), "{out}");
    // One entry per GPU that answered (its compute capability and what --precision auto runs there).
    assert_eq!(
        j["cuda"]["gpus"].as_array().unwrap().len() as u64,
        j["cuda"]["devices"].as_u64().unwrap()
    );
    assert!(j["default_data"].as_str().unwrap().contains("missing"), "{out}");
    let text = stdout(&run(false));
    for shown in [out.as_str(), text.as_str()] {
        assert!(!shown.contains("topsecret") && !shown.contains("pa55word"), "{shown}");
    }
    assert!(text.starts_with("catdog ") && text.contains("token found"), "{text}");
}

#[test]
fn the_spellings_a_newcomer_tries_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    // The README's data set name with an underscore, as Python people write it.
    let labs = tmp.path().join("labs");
    let o = catdog(
        &[
            "lab",
            "l2",
            "--dataset",
            "breast_cancer",
            "--epochs",
            "1",
            "--out",
            labs.to_str().unwrap(),
            "--json",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // weights inspect takes --weights like every other command (and the positional form still works).
    for args in [
        &["weights", "inspect", "--weights", "random:4,4,4,4,4", "--json"][..],
        &["weights", "inspect", "random:4,4,4,4,4", "--json"][..],
    ] {
        let o = catdog(args, tmp.path());
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("block5_conv3"), "{}", stdout(&o));
    }
    // evaluate's --data has finetune's default.
    let in_tmp = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_catdog"))
            .args(args)
            .current_dir(tmp.path())
            .env("HF_HOME", tmp.path())
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .output()
            .unwrap()
    };
    make_dataset(&tmp.path().join("data/dogs-vs-cats/test"), 3, 5);
    let o = in_tmp(&[
        "finetune",
        "--data",
        "data/dogs-vs-cats/test",
        "--weights",
        "random:4,4,4,4,4",
        "--size",
        "32",
        "--epochs",
        "1",
        "--name",
        "r",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = in_tmp(&["evaluate", "--checkpoint", "runs/r/best.safetensors", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("dogs-vs-cats"), "{}", stdout(&o));
}

#[test]
fn every_catdog_switch_refuses_a_value_it_would_ignore() {
    let tmp = tempfile::tempdir().unwrap();
    for (var, bad) in [
        ("CATDOG_SIMD", "avx3"),
        ("CATDOG_BF16", "on"),
        ("CATDOG_BF16_CONV", "im2col"),
        ("CATDOG_CONV_CHUNK_KB", "abc"),
        ("CATDOG_KERNELS", "fastest"),
        ("CATDOG_PROGRESS", "fancy"),
        ("CATDOG_PROGRESS_SECS", "-1"),
    ] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_catdog"))
            .args(["info"])
            .env(var, bad)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{var}={bad}: {e}");
        assert!(e.contains(&format!("{var}={bad}")) || e.contains(var), "{var}: {e}");
    }
}

#[test]
fn bench_kernels_reports_each_kernel_with_its_precision_and_time() {
    let tmp = tempfile::tempdir().unwrap();
    let o = catdog(&["bench", "kernels", "--iters", "1", "--json", "--quiet"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&common::stdout(&o)).unwrap();
    let kernels = r["kernels"].as_array().unwrap();
    let fp32 = |what: &str| {
        kernels
            .iter()
            .any(|k| k["kernel"].as_str().unwrap().starts_with(what) && k["precision"] == "fp32")
    };
    assert!(fp32("weight gradient 512→512 at 9×9") && fp32("block1_conv2"), "{r}");
    assert!(kernels.iter().all(|k| k["seconds"].as_f64().unwrap() > 0.0), "{r}");
}
