//! `finetune` behaves as Keras' `fit` with `ModelCheckpoint(save_best_only=True)` and `EarlyStopping` would: the
//! monitor, a resumed early-stopped run, a run without validation data, and flags that do not apply.

mod common;

use std::path::Path;

use catdog::model::weights::read_safetensors;
use catdog::train::history::History;
use common::{catdog, make_dataset, stderr};

fn finetune(data: &Path, runs: &Path, name: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "finetune",
        "--data",
        data.to_str().unwrap(),
        "--weights",
        "random:4,4,8,8,8",
        "--size",
        "32",
        "--batch-size",
        "8",
        "--hidden",
        "8",
        "--lr",
        "3e-3",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--name",
        name,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    catdog(&args, runs)
}

fn config(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap()
}

fn course_layout(root: &Path) {
    make_dataset(&root.join("train"), 12, 31);
    make_dataset(&root.join("validation"), 6, 32);
}

#[test]
fn monitor_picks_the_best_checkpoint_without_patience_and_val_acc_is_keras_2s_name_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    course_layout(&data);
    let o = finetune(&data, &runs, "acc", &["--epochs", "6", "--monitor", "val_acc"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = runs.join("acc");
    assert_eq!(config(&run)["monitor"], "val_accuracy");
    let (_, meta) = read_safetensors(&run.join("best.safetensors")).unwrap();
    assert_eq!(meta["monitor"], "val_accuracy");
    // The saved epoch is the first with the highest validation accuracy (ModelCheckpoint saves on strict
    // improvement only).
    let h = History::read(&run).unwrap();
    let accs: Vec<f64> = h.epochs.iter().map(|e| e.val_accuracy.unwrap()).collect();
    let top = accs.iter().cloned().fold(f64::MIN, f64::max);
    let first_top = accs.iter().position(|a| *a == top).unwrap() + 1;
    assert_eq!(meta["epoch"], first_top.to_string(), "val_accuracy per epoch: {accs:?}");

    let o = finetune(&data, &runs, "bad", &["--epochs", "1", "--monitor", "val_auc"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("val_auc") && e.contains("val_loss, val_accuracy"), "{e}");
}

#[test]
fn every_early_stopping_setting_is_in_config_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    course_layout(&data);
    let flags = [
        "--epochs",
        "2",
        "--patience",
        "3",
        "--monitor",
        "val_loss",
        "--min-delta",
        "0.01",
        "--baseline",
        "2.5",
        "--start-from-epoch",
        "1",
        "--restore-best-weights",
    ];
    let o = finetune(&data, &runs, "es", &flags);
    assert!(o.status.success(), "{}", stderr(&o));
    let c = config(&runs.join("es"));
    let es = &c["early_stopping"];
    assert_eq!(c["monitor"], "val_loss");
    assert_eq!(es["monitor"], "val_loss");
    assert_eq!(es["patience"], 3);
    assert_eq!(es["min_delta"], 0.01);
    assert_eq!(es["baseline"], 2.5);
    assert_eq!(es["start_from_epoch"], 1);
    assert_eq!(es["restore_best_weights"], true);
    assert_eq!(es["mode"], "auto");
}

#[test]
fn resuming_an_early_stopped_run_with_more_epochs_is_a_new_fit_whose_patience_starts_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    course_layout(&data);
    // A min_delta no epoch can beat: the first epoch is the best, and patience 2 stops after epoch 3.
    let flags = ["--epochs", "10", "--patience", "2", "--min-delta", "100"];
    let o = finetune(&data, &runs, "stop", &flags);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = runs.join("stop");
    assert_eq!(History::read(&run).unwrap().epochs.len(), 3);
    // A new fit of up to 20 epochs: patience 2 again, so two more epochs (not one, as a carried-over counter
    // would give).
    let o = catdog(
        &[
            "finetune",
            "--resume",
            run.to_str().unwrap(),
            "--epochs",
            "20",
            "--quiet",
        ],
        &runs,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(History::read(&run).unwrap().epochs.len(), 5, "{}", stderr(&o));
}

#[test]
fn without_validation_data_patience_watches_the_training_loss_and_best_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    make_dataset(&data, 8, 41);
    let o = finetune(&data, &runs, "noval", &["--epochs", "3", "--patience", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("no validation data") && e.contains("monitor loss"), "{e}");
    let run = runs.join("noval");
    assert_eq!(config(&run)["monitor"], "loss");
    assert_eq!(config(&run)["early_stopping"]["monitor"], "loss");
    let (_, meta) = read_safetensors(&run.join("best.safetensors")).unwrap();
    assert_eq!(meta["monitor"], "loss");
    // Asked for explicitly, a validation metric without validation data is a usage error.
    let o = finetune(&data, &runs, "noval2", &["--epochs", "1", "--monitor", "val_accuracy"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--monitor val_accuracy"), "{}", stderr(&o));
}

#[test]
fn flags_that_do_not_apply_are_refused_or_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    course_layout(&data);
    let o = finetune(
        &data,
        &runs,
        "a",
        &["--epochs", "1", "--mode", "extract", "--unfreeze-from", "block4_conv1"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--unfreeze-from applies to --mode finetune"),
        "{}",
        stderr(&o)
    );
    let o = finetune(
        &data,
        &runs,
        "b",
        &["--epochs", "1", "--optimizer", "adam", "--momentum", "0.9"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--momentum and --nesterov apply to --optimizer sgd"),
        "{}",
        stderr(&o)
    );
    let o = finetune(&data, &runs, "c", &["--epochs", "1", "--val-split", "0.3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("--val-split is not used"), "{}", stderr(&o));
}
