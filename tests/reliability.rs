//! Nothing lost, nothing hung, nothing panics: run folders, resume checks, the on-disk feature cache, checkpoint
//! validation, limits, SIGTERM, non-finite validation losses, names, and messages about the user's input.
//! Each test pins one row of the README's reliability table.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use catdog::train::history::History;
use common::{catdog, make_dataset, stderr};

const WIDTHS: &str = "random:4,4,8,8,8";

fn layout(root: &Path) {
    make_dataset(&root.join("train"), 12, 21);
    make_dataset(&root.join("test"), 4, 22);
}

fn args<'a>(data: &'a Path, runs: &'a Path, name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let defaults = [
        ("--weights", WIDTHS),
        ("--size", "32"),
        ("--batch-size", "8"),
        ("--hidden", "8"),
        ("--lr", "1e-3"),
        ("--threads", "1"),
    ];
    let mut v = vec![
        "finetune",
        "--data",
        data.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ];
    v.extend(["--name", name, "--quiet"]);
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            v.extend([flag, value]);
        }
    }
    v.extend_from_slice(extra);
    v
}

fn finetune(data: &Path, runs: &Path, name: &str, extra: &[&str]) -> Output {
    catdog(&args(data, runs, name, extra), runs)
}

fn resume(dir: &Path, extra: &[&str]) -> Output {
    let mut v = vec!["finetune", "--resume", dir.to_str().unwrap(), "--quiet"];
    v.extend_from_slice(extra);
    catdog(&v, dir.parent().unwrap())
}

fn spawn(data: &Path, runs: &Path, name: &str, extra: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_catdog"))
        .args(args(data, runs, name, extra))
        .env("HF_HOME", runs)
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn files_named(dir: &Path, pred: impl Fn(&str) -> bool) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| pred(n))
        .collect()
}

#[test]
fn two_runs_started_at_once_under_one_name_never_share_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    layout(&data);
    let runs = tmp.path().join("runs");
    let a = spawn(&data, &runs, "twin", &["--epochs", "3", "--seed", "0"]);
    let b = spawn(&data, &runs, "twin", &["--epochs", "3", "--seed", "7"]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let ok: Vec<(&Output, u64)> = [(&a, 0u64), (&b, 7)]
        .into_iter()
        .filter(|(o, _)| o.status.success())
        .collect();
    assert_eq!(
        ok.len(),
        1,
        "exactly one run may own the folder:\n{}\n{}",
        stderr(&a),
        stderr(&b)
    );
    let loser = if a.status.success() { &b } else { &a };
    let e = stderr(loser);
    assert!(
        e.contains("in use by another catdog process") || e.contains("already holds a run"),
        "{e}"
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs.join("twin/config.json")).unwrap()).unwrap();
    assert_eq!(
        cfg["seed"].as_u64(),
        Some(ok[0].1),
        "config.json belongs to the run that won"
    );
    assert!(!runs.join("twin/.lock").exists(), "the lock is released at the end");
}

#[test]
fn a_live_lock_is_refused_with_its_pid_and_a_stale_one_is_taken_over() {
    use catdog::run::{RunFolder, LOCK_FILE};
    let tmp = tempfile::tempdir().unwrap();
    let mut log = |_: &str| {};
    let held = RunFolder::create(tmp.path(), Some("busy"), &mut log).unwrap();
    std::fs::write(held.dir.join("config.json"), "{}").unwrap(); // (an empty folder is removed on drop)
    let e = RunFolder::open(&held.dir).unwrap_err().to_string();
    assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
    drop(held);
    // A lock whose process is gone (kill -9) is stale.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let dir = tmp.path().join("busy");
    std::fs::write(dir.join(LOCK_FILE), format!("{dead}\n")).unwrap();
    std::fs::write(dir.join(".last.safetensors.1234.tmp"), b"half").unwrap();
    let f = RunFolder::open(&dir).unwrap();
    assert!(
        !dir.join(".last.safetensors.1234.tmp").exists(),
        "leftover temp files are removed"
    );
    drop(f);
    // Default names are unique even within one second.
    let a = RunFolder::create(tmp.path(), None, &mut log).unwrap();
    let b = RunFolder::create(tmp.path(), None, &mut log).unwrap();
    assert_ne!(a.dir, b.dir);
}

#[test]
fn resume_refuses_renamed_classes_another_models_checkpoint_and_conflicting_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    layout(&data);
    let runs = tmp.path().join("runs");
    assert!(finetune(&data, &runs, "r", &["--epochs", "1"]).status.success());
    let dir = runs.join("r");
    // Flags that would change the saved configuration are listed; --epochs, --threads and same values pass.
    let o = resume(
        &dir,
        &["--epochs", "2", "--lr", "0.5", "--batch-size", "4", "--size", "32"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("--lr") && e.contains("--batch-size") && !e.contains("--size"),
        "{e}"
    );
    // Another model's last.safetensors (finetune mode) dropped into this (extract) run.
    assert!(
        finetune(&data, &runs, "other", &["--epochs", "1", "--mode", "finetune"])
            .status
            .success()
    );
    std::fs::copy(dir.join("last.safetensors"), tmp.path().join("mine.safetensors")).unwrap();
    std::fs::copy(runs.join("other/last.safetensors"), dir.join("last.safetensors")).unwrap();
    let o = resume(&dir, &["--epochs", "2"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("mode: checkpoint Finetune, now Extract"),
        "{}",
        stderr(&o)
    );
    std::fs::copy(tmp.path().join("mine.safetensors"), dir.join("last.safetensors")).unwrap();
    // A class folder renamed between the runs would flip labels.
    std::fs::rename(data.join("train/dogs"), data.join("train/aardvarks")).unwrap();
    std::fs::rename(data.join("test/dogs"), data.join("test/aardvarks")).unwrap();
    let o = resume(&dir, &["--epochs", "2"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("classes") && e.contains("aardvarks") && e.contains("dogs"),
        "{e}"
    );
    std::fs::rename(data.join("train/aardvarks"), data.join("train/dogs")).unwrap();
    std::fs::rename(data.join("test/aardvarks"), data.join("test/dogs")).unwrap();
    let o = resume(&dir, &["--epochs", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_run_killed_before_its_first_epoch_can_be_started_again_under_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    layout(&data);
    let runs = tmp.path().join("runs");
    // What a kill during the first epoch leaves: the folder and config.json, no checkpoint.
    assert!(finetune(&data, &runs, "early", &["--epochs", "1"]).status.success());
    let dir = runs.join("early");
    for f in ["last.safetensors", "best.safetensors", "history.csv", "history.json"] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    let o = resume(&dir, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("start it again"), "{}", stderr(&o));
    let o = finetune(&data, &runs, "early", &["--epochs", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("starting it again"), "{}", stderr(&o));
    assert!(dir.join("last.safetensors").exists());
}

#[test]
fn the_on_disk_feature_cache_gives_the_in_memory_history_and_leaves_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    layout(&data);
    let runs = tmp.path().join("runs");
    for (name, mb) in [("mem", "64"), ("disk", "0")] {
        let o = finetune(&data, &runs, name, &["--epochs", "2", "--feature-cache-mb", mb]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
    }
    let (a, b) = (
        History::read(&runs.join("mem")).unwrap(),
        History::read(&runs.join("disk")).unwrap(),
    );
    assert_eq!(a.epochs.len(), 2);
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        assert_eq!((x.loss, x.val_loss, x.accuracy), (y.loss, y.val_loss, y.accuracy));
    }
    assert!(files_named(&runs.join("disk"), |n| n.starts_with("feature-cache")).is_empty());
    // Also after an error (a diverging run).
    let o = finetune(
        &data,
        &runs,
        "diverge",
        &[
            "--epochs",
            "3",
            "--feature-cache-mb",
            "0",
            "--optimizer",
            "sgd",
            "--lr",
            "1e30",
        ],
    );
    assert!(!o.status.success());
    assert!(files_named(&runs.join("diverge"), |n| n.starts_with("feature-cache")).is_empty());
}

/// Rewrites a checkpoint with its `model` metadata changed by `edit` and its tensors by `poison`.
fn doctored(src: &Path, dst: &Path, edit: impl Fn(&mut serde_json::Value), poison: Option<&str>) {
    let (tensors, mut meta) = catdog::model::weights::read_safetensors(src).unwrap();
    let mut model: serde_json::Value = serde_json::from_str(&meta["model"]).unwrap();
    edit(&mut model);
    meta.insert("model".into(), model.to_string());
    let tensors: Vec<(String, candle_core::Tensor)> = tensors
        .into_iter()
        .map(|(n, t)| {
            if Some(n.as_str()) == poison {
                let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let mut v = v.clone();
                v[0] = f32::NAN;
                (
                    n,
                    candle_core::Tensor::from_vec(v, t.dims(), &candle_core::Device::Cpu).unwrap(),
                )
            } else {
                (n, t)
            }
        })
        .collect();
    catdog::io::write_safetensors(dst, &tensors, meta).unwrap();
}

#[test]
fn checkpoint_metadata_and_values_are_checked_on_load_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    layout(&data);
    let runs = tmp.path().join("runs");
    assert!(finetune(&data, &runs, "ck", &["--epochs", "1"]).status.success());
    let best = runs.join("ck/best.safetensors");
    let image = data.join("test/cats/cats.000.png");
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, Option<&str>, &str)> = vec![
        (
            "empty",
            Box::new(|m| m["classes"] = serde_json::json!([])),
            None,
            "'classes' is empty",
        ),
        (
            "dup",
            Box::new(|m| m["classes"] = serde_json::json!(["a", "a"])),
            None,
            "names 'a' twice",
        ),
        (
            "three",
            Box::new(|m| m["classes"] = serde_json::json!(["a", "b", "c"])),
            None,
            "'head.n_out'",
        ),
        ("size0", Box::new(|m| m["size"] = 0.into()), None, "'size' is 0"),
        (
            "huge",
            Box::new(|m| m["size"] = 100000.into()),
            None,
            "'size' is 100000",
        ),
        (
            "prep",
            Box::new(|m| m["preprocess"]["mode"] = "sepia".into()),
            None,
            "unreadable 'model' metadata",
        ),
        (
            "nan",
            Box::new(|_| {}),
            Some("head.fc2.weight"),
            "tensor 'head.fc2.weight' holds NaN",
        ),
        (
            "nanbase",
            Box::new(|_| {}),
            Some("features.0.weight"),
            "tensor 'features.0.weight' holds NaN",
        ),
    ];
    for (name, edit, poison, expected) in cases {
        let ck = tmp.path().join(format!("{name}.safetensors"));
        doctored(&best, &ck, edit, poison);
        let o = catdog(
            &["predict", "--checkpoint", ck.to_str().unwrap(), image.to_str().unwrap()],
            tmp.path(),
        );
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {e}");
        assert!(
            e.contains(expected) && e.contains(&format!("{name}.safetensors")),
            "{name}: {e}"
        );
        let o = catdog(
            &[
                "evaluate",
                "--checkpoint",
                ck.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
            ],
            tmp.path(),
        );
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
    }
    // NaN in a conv base given as --weights FILE is refused too.
    let nan_base = tmp.path().join("nanbase.safetensors");
    let o = finetune(&data, &runs, "w", &["--weights", nan_base.to_str().unwrap()]);
    assert!(stderr(&o).contains("holds NaN"), "{}", stderr(&o));
}

#[test]
fn numbers_that_would_exhaust_the_machine_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    layout(&data);
    let runs = tmp.path().join("runs");
    let cases: [(&[&str], &str); 4] = [
        (&["--size", "100000"], "--size 100000"),
        (&["--size", "16"], "--size 16"),
        (&["--batch-size", "0"], "--batch-size 0"),
        (&["--hidden", "10000000"], "--hidden 10000000"),
    ];
    for (extra, expected) in cases {
        let o = finetune(&data, &runs, "lim", extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(expected), "{}", stderr(&o));
    }
    // The memory estimate: full VGG16 widths at 1024 px with batch 4096 need terabytes.
    let full = [
        "--size",
        "1024",
        "--batch-size",
        "4096",
        "--weights",
        "random:64,128,256,512,512",
    ];
    let o = finetune(&data, &runs, "mem", &full);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("needs about") && stderr(&o).contains("--batch-size"),
        "{}",
        stderr(&o)
    );
    // The CPU kernels' per-thread buffers are part of it, and --threads is one way down.
    assert!(
        stderr(&o).contains("kernel buffers for") && stderr(&o).contains("--threads"),
        "{}",
        stderr(&o)
    );
    assert!(!runs.join("mem").exists(), "a refused run leaves no empty folder");
    let o = catdog(
        &["--threads", "100000", "data", "check", data.to_str().unwrap()],
        tmp.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--threads 100000"), "{}", stderr(&o));
    let img = data.join("train/cats/cats.000.png");
    let o = catdog(
        &[
            "augment",
            "preview",
            "--image",
            img.to_str().unwrap(),
            "--n",
            "100000000",
            "--out",
            "x.png",
        ],
        tmp.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--n 100000000"), "{}", stderr(&o));
}

#[test]
fn sigterm_finishes_the_batch_saves_last_and_exits_143_and_the_run_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    layout(&data);
    let runs = tmp.path().join("runs");
    let mut child = spawn(&data, &runs, "term", &["--epochs", "500", "--cache", "off"]);
    let history = runs.join("term/history.csv");
    let start = Instant::now();
    while !history.exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(history.exists(), "the run never finished an epoch");
    // SAFETY: sending SIGTERM to our own child process, whose pid we hold.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let dir = runs.join("term");
    assert!(dir.join("last.safetensors").exists());
    assert!(!dir.join(".lock").exists());
    let o = resume(&dir, &["--epochs", "2"]);
    assert!(
        o.status.success() || stderr(&o).contains("all 2 epochs are done"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_non_finite_validation_loss_stops_the_run_and_is_never_the_best_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    layout(&data);
    let runs = tmp.path().join("runs");
    // One batch per epoch: the training loss is computed before the exploding update, validation after it.
    let o = finetune(
        &data,
        &runs,
        "valnan",
        &[
            "--epochs",
            "3",
            "--batch-size",
            "64",
            "--optimizer",
            "sgd",
            "--lr",
            "1e35",
        ],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("validation loss became") && e.contains("--lr"), "{e}");
    assert!(!runs.join("valnan/best.safetensors").exists());
}

#[test]
fn a_run_name_is_one_folder_name() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    layout(&data);
    let runs = tmp.path().join("runs");
    for bad in ["../x", "a/b", "", ".."] {
        let o = finetune(&data, &runs, bad, &["--epochs", "1"]);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("--name"), "{}", stderr(&o));
    }
    assert!(!tmp.path().join("x").exists());
}

#[test]
fn lab_csv_errors_are_about_the_input_and_memory_stays_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let csv: PathBuf = tmp.path().join("t.csv");
    std::fs::write(&csv, "a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,1,0\n").unwrap();
    let lab = |extra: &[&str]| {
        let mut v = vec![
            "lab",
            "l2",
            "--csv",
            csv.to_str().unwrap(),
            "--target",
            "label",
            "--epochs",
            "1",
        ];
        v.extend_from_slice(extra);
        v.extend(["--out", tmp.path().to_str().unwrap()]);
        catdog(&v, tmp.path())
    };
    let o = lab(&["--drop", "a", "--drop", "b"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("no feature columns are left") && !e.contains("catdog-optim"),
        "{e}"
    );
    // A 3 MB value: refused by the line limit, and never printed whole.
    let mut big = String::from("a,b,label\n1,2,0\n3,");
    big.push_str(&"x".repeat(3 << 20));
    big.push_str(",1\n5,6,0\n7,8,1\n");
    std::fs::write(&csv, big).unwrap();
    let o = lab(&[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("longer than 1 MiB") && e.len() < 2000,
        "{}",
        &e[..e.len().min(2000)]
    );
    // An unterminated quote would swallow every row after it into one field: refused with where it opened.
    // (In the label column the swallowed rows would become one more class, with no error at all.)
    std::fs::write(&csv, "a,b,label\n1,2,0\n3,4,\"1\n5,6,0\n7,8,1\n9,1,0\n11,12,1\n").unwrap();
    let o = lab(&[]);
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains("line 3") && e.contains("never closed"), "{e}");
    // Quoted fields that close are read as usual.
    std::fs::write(
        &csv,
        "a,b,label\n1,2,0\n\"3\",\"4\",1\n5,6,0\n7,8,1\n9,10,0\n11,12,\"1\"\n",
    )
    .unwrap();
    assert!(lab(&[]).status.success());
    // A long value on a short-enough line is shortened in the message.
    let mut wide = String::from("a,b,label\n1,2,0\n3,");
    wide.push_str(&"y".repeat(500_000));
    wide.push_str(",1\n5,6,0\n7,8,1\n9,1,0\n");
    std::fs::write(&csv, wide).unwrap();
    let o = lab(&[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("not a number") && e.len() < 2000,
        "{}",
        &e[..e.len().min(2000)]
    );
}

#[test]
fn loading_a_head_of_another_shape_names_the_tensor_not_candles_internals() {
    use catdog::model::head::{Head, HeadConfig, HeadKind};
    let cfg = |n_out| HeadConfig {
        kind: HeadKind::Flatten,
        in_shape: [4, 1, 1],
        hidden: 3,
        dropout: 0.0,
        n_out,
    };
    let two = Head::new(cfg(1), 0, &candle_core::Device::Cpu).unwrap();
    let three = Head::new(cfg(3), 0, &candle_core::Device::Cpu).unwrap();
    let tensors = three.named_tensors().into_iter().collect();
    let e = two.load_values(&tensors).unwrap_err().to_string();
    assert!(e.contains("head.fc2") && !e.contains("shape mismatch in set"), "{e}");
}

#[test]
fn resume_never_deletes_a_folder_or_a_lock_it_did_not_make() {
    let tmp = tempfile::tempdir().unwrap();
    // What a kill in the first 0.15 s leaves: a folder holding only the (stale) lock.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let early = tmp.path().join("runs/early");
    std::fs::create_dir_all(&early).unwrap();
    std::fs::write(early.join(".lock"), format!("{dead}\n")).unwrap();
    let o = resume(&early, &[]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("nothing to resume") && e.contains("--name early"), "{e}");
    assert!(early.join(".lock").exists(), "the folder is left as it was");
    // Any other folder: its files, a .lock of another program's included, stay.
    let other = tmp.path().join("project");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join(".lock"), "held by some editor").unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let o = resume(&other, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a run folder"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(other.join(".lock")).unwrap(),
        "held by some editor"
    );
}

#[test]
fn a_checkpoint_lost_to_a_full_disk_is_not_taken_for_a_run_that_never_finished_an_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    layout(&data);
    let runs = tmp.path().join("runs");
    assert!(finetune(&data, &runs, "full", &["--epochs", "2"]).status.success());
    let dir = runs.join("full");
    // ENOSPC while writing last.safetensors leaves the history and best.safetensors, and no last.
    std::fs::remove_file(dir.join("last.safetensors")).unwrap();
    let o = resume(&dir, &["--epochs", "3"]);
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(!e.contains("before its first epoch"), "{e}");
    assert!(e.contains("2 finished epoch") && e.contains("best.safetensors"), "{e}");
}

#[test]
fn a_hand_edited_train_state_is_refused_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    layout(&data);
    let runs = tmp.path().join("runs");
    assert!(finetune(&data, &runs, "st", &["--epochs", "1"]).status.success());
    let dir = runs.join("st");
    let last = dir.join("last.safetensors");
    let original = std::fs::read(&last).unwrap();
    let cases: [(&str, serde_json::Value, &str); 4] = [
        ("lr", serde_json::json!(-0.1), "learning rate -0.1"),
        ("correct", serde_json::json!(1000), "1000 correct of"),
        ("seen", serde_json::json!(1_000_000), "images seen in"),
        ("epoch", serde_json::json!(1_000_000_000_000u64), "epoch 1000000000000"),
    ];
    for (field, value, expected) in cases {
        std::fs::write(&last, &original).unwrap();
        let (tensors, mut meta) = catdog::model::weights::read_safetensors(&last).unwrap();
        let mut state: serde_json::Value = serde_json::from_str(&meta["train_state"]).unwrap();
        state[field] = value;
        if field == "seen" {
            state["correct"] = serde_json::json!(0);
        }
        meta.insert("train_state".into(), state.to_string());
        let tensors: Vec<_> = tensors.into_iter().collect();
        catdog::io::write_safetensors(&last, &tensors, meta).unwrap();
        let o = resume(&dir, &["--epochs", "2"]);
        let e = stderr(&o);
        assert!(!o.status.success(), "{field}: {e}");
        assert!(e.contains("train_state") && e.contains(expected), "{field}: {e}");
    }
}

#[test]
fn a_lock_that_is_a_folder_or_held_by_another_program_is_explained() {
    use catdog::run::{RunLock, LOCK_FILE};
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join(LOCK_FILE)).unwrap();
    let e = RunLock::acquire(tmp.path(), "choose another --name")
        .unwrap_err()
        .to_string();
    assert!(e.contains("is a folder") && e.contains("remove"), "{e}");
    std::fs::remove_dir(tmp.path().join(LOCK_FILE)).unwrap();
    // A live process that is not catdog (`sleep`): the pid of a killed run, reused.
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(tmp.path().join(LOCK_FILE), format!("{}\n", sleeper.id())).unwrap();
    let e = RunLock::acquire(tmp.path(), "choose another --name")
        .unwrap_err()
        .to_string();
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    if Path::new("/proc/self/comm").exists() {
        assert!(
            e.contains("(sleep), which is not catdog") && e.contains("delete"),
            "{e}"
        );
    }
    assert!(e.contains(&format!("pid {}", sleeper.id())), "{e}");
}

#[test]
fn a_checkpoint_whose_outputs_are_not_finite_is_an_error_not_a_result() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    layout(&data);
    let runs = tmp.path().join("runs");
    assert!(finetune(&data, &runs, "huge", &["--epochs", "1"]).status.success());
    let best = runs.join("huge/best.safetensors");
    // Huge but finite head weights: the logits overflow float32.
    let (tensors, meta) = catdog::model::weights::read_safetensors(&best).unwrap();
    let tensors: Vec<(String, candle_core::Tensor)> = tensors
        .into_iter()
        .map(|(n, t)| {
            let scaled = if n.starts_with("head.") && n.ends_with("weight") {
                (t * 1e30).unwrap()
            } else {
                t
            };
            (n, scaled)
        })
        .collect();
    let broken = tmp.path().join("huge.safetensors");
    catdog::io::write_safetensors(&broken, &tensors, meta).unwrap();
    let ck = broken.to_str().unwrap();
    let o = catdog(
        &[
            "evaluate",
            "--checkpoint",
            ck,
            "--data",
            data.to_str().unwrap(),
            "--json",
        ],
        tmp.path(),
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("huge.safetensors") && e.contains("not a finite number"),
        "{e}"
    );
    assert!(common::stdout(&o).is_empty(), "no result is printed");
    let image = data.join("test/cats/cats.000.png");
    let o = catdog(
        &["predict", "--checkpoint", ck, image.to_str().unwrap(), "--json"],
        tmp.path(),
    );
    let out = common::stdout(&o);
    assert!(
        out.contains("\"error\"") && out.contains("not a finite number") && !out.contains("null"),
        "{out}"
    );
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn every_command_checks_its_memory_before_any_work_and_names_the_flag_behind_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    layout(&data);
    let runs = tmp.path().join("runs");
    let refused = |args: &[&str], expected: &[&str]| {
        let o = catdog(args, tmp.path());
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        for x in expected {
            assert!(e.contains(x), "{args:?}: expected {x:?} in {e}");
        }
    };
    // A width that would take hundreds of gigabytes is refused as such, before anything is allocated.
    refused(
        &args(&data, &runs, "w", &["--weights", "random:100000,8,8,8,8"]),
        &["100000 channels", "--weights"],
    );
    // extract: the batch, and (with wide random weights) the widths.
    let images = data.join("test");
    let out = tmp.path().join("f.safetensors");
    let extract = |extra: &[&str]| {
        let mut v = vec![
            "extract",
            images.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let big_batch = extract(&[
        "--weights",
        "random:64,128,256,512,512",
        "--size",
        "1024",
        "--batch-size",
        "4096",
    ]);
    let big_batch: Vec<&str> = big_batch.iter().map(String::as_str).collect();
    refused(&big_batch, &["extract needs about", "lower --batch-size or --size"]);
    let wide = extract(&[
        "--weights",
        "random:4096,8,8,8,8",
        "--size",
        "1024",
        "--batch-size",
        "8",
    ]);
    let wide: Vec<&str> = wide.iter().map(String::as_str).collect();
    refused(&wide, &["widths of --weights"]);
    assert!(!out.exists());
    // evaluate and predict: a checkpoint made for 1024 px, asked for batches of 4096.
    assert!(finetune(&data, &runs, "ck", &["--epochs", "1"]).status.success());
    let big = tmp.path().join("big.safetensors");
    doctored(
        &runs.join("ck/best.safetensors"),
        &big,
        |m| m["size"] = serde_json::json!(1024),
        None,
    );
    let (ck, d) = (big.to_str().unwrap(), data.to_str().unwrap());
    refused(
        &["evaluate", "--checkpoint", ck, "--data", d, "--batch-size", "4096"],
        &["evaluate needs about"],
    );
    let image = data.join("test/cats/cats.000.png");
    let image = image.to_str().unwrap();
    refused(
        &["predict", "--checkpoint", ck, image, "--batch-size", "4096"],
        &["predict needs about", "--batch-size"],
    );
    // The labs bound --n and --layers.
    refused(
        &["lab", "l2", "--dataset", "moons", "--n", "1000000000"],
        &["--n 1000000000"],
    );
    refused(&["lab", "l2", "--layers", "100000"], &["100000 units"]);
    refused(
        &["lab", "l2", "--layers", "65536,65536,65536,65536"],
        &["this lab needs about", "lower --layers"],
    );
}

#[test]
fn extracted_features_are_written_batch_by_batch_and_read_back_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    layout(&data);
    let out = tmp.path().join("features.safetensors");
    let o = catdog(
        &[
            "extract",
            data.join("test").to_str().unwrap(),
            "--weights",
            WIDTHS,
            "--size",
            "32",
            "--batch-size",
            "3",
            "--layer",
            "block2_pool",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (tensors, meta) = catdog::model::weights::read_safetensors(&out).unwrap();
    let f = &tensors["features"];
    let files: Vec<String> = serde_json::from_str(&meta["files"]).unwrap();
    assert_eq!(f.dims()[0], files.len());
    assert_eq!(f.dims()[2], 8, "block2_pool of 32 px");
    let leftovers = files_named(tmp.path(), |n| n.ends_with(".tmp"));
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The same features as one batch of all the images.
    let whole = tmp.path().join("whole.safetensors");
    let o = catdog(
        &[
            "extract",
            data.join("test").to_str().unwrap(),
            "--weights",
            WIDTHS,
            "--size",
            "32",
            "--batch-size",
            "64",
            "--layer",
            "block2_pool",
            "--out",
            whole.to_str().unwrap(),
            "--quiet",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (w, _) = catdog::model::weights::read_safetensors(&whole).unwrap();
    let diff = (f - &w["features"])
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn messages_name_what_a_path_is_and_say_an_io_cause_once() {
    use common::mock_hub::run_catdog;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    layout(&data);
    let runs = tmp.path().join("runs");
    assert!(finetune(&data, &runs, "ck", &["--epochs", "1"]).status.success());
    let ck = runs.join("ck/best.safetensors");
    // A FIFO would block the reader until something writes to it: called what it is, at once (the runner kills
    // a hang after 60 s).
    let fifo = tmp.path().join("pipe.safetensors");
    let made = Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
    let dir_as_file = tmp.path().join("folder.safetensors");
    std::fs::create_dir(&dir_as_file).unwrap();
    let mut cases: Vec<(Vec<String>, &str)> = vec![(
        vec!["weights".into(), "inspect".into(), dir_as_file.display().to_string()],
        "is a folder",
    )];
    if made {
        let f = fifo.display().to_string();
        cases.push((vec!["weights".into(), "inspect".into(), f.clone()], "is a FIFO"));
        cases.push((
            vec![
                "evaluate".into(),
                "--checkpoint".into(),
                f.clone(),
                "--data".into(),
                data.display().to_string(),
            ],
            "is a FIFO",
        ));
        cases.push((
            vec!["predict".into(), "--checkpoint".into(), ck.display().to_string(), f],
            "is a FIFO",
        ));
    }
    for (args, expected) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (o, _) = run_catdog("http://127.0.0.1:9", tmp.path(), &args, &[]);
        let e = stderr(&o);
        assert!(
            !o.status.success() && e.contains(expected) && !e.contains("no such file"),
            "{args:?}: {e}"
        );
    }
    // An I/O error's cause appears once.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let o = finetune(&data, &file, "x", &["--epochs", "1"]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(e.matches("os error").count(), 1, "{e}");
    // A run name with a line break.
    let o = finetune(&data, &runs, "two\nlines", &["--epochs", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("control character"), "{}", stderr(&o));
}

#[cfg(unix)]
#[test]
fn an_image_whose_name_is_not_utf8_is_named_and_skipped() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    layout(&data);
    let runs = tmp.path().join("runs");
    assert!(finetune(&data, &runs, "ck", &["--epochs", "1"]).status.success());
    let pics = tmp.path().join("pics");
    std::fs::create_dir(&pics).unwrap();
    let src = data.join("test/cats/cats.000.png");
    std::fs::copy(&src, pics.join("good.png")).unwrap();
    let odd = pics.join(std::ffi::OsStr::from_bytes(b"ca\xfft.png"));
    std::fs::copy(&src, &odd).unwrap();
    let ck = runs.join("ck/best.safetensors");
    // Named alone: refused with its (lossy) name and why, not serde's "path contains invalid UTF-8 characters".
    let mut alone = Command::new(env!("CARGO_BIN_EXE_catdog"));
    alone
        .args(["predict", "--checkpoint", ck.to_str().unwrap(), "--json"])
        .arg(&odd);
    let o = alone.env("HF_HOME", tmp.path()).output().unwrap();
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("ca\u{FFFD}t.png") && e.contains("not UTF-8"),
        "{e}"
    );
    assert!(!e.contains("invalid UTF-8"), "{e}");
    // In a folder: skipped and named, the other images predicted.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_catdog"));
    cmd.args(["predict", "--checkpoint", ck.to_str().unwrap(), "--json"])
        .arg(&pics);
    let o = cmd.env("HF_HOME", tmp.path()).output().unwrap();
    let (out, e) = (common::stdout(&o), stderr(&o));
    assert!(o.status.success(), "{e}");
    assert_eq!(out.lines().count(), 1, "the good image alone: {out}");
    assert!(e.contains("ca\u{FFFD}t.png") && e.contains("not UTF-8"), "{e}");
}
