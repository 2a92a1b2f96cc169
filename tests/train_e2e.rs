//! `catdog finetune`, `evaluate` and `predict` end to end on generated images with a narrow random VGG.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::Device;
use catdog::data::folder::resolve_splits;
use catdog::model::classifier::Classifier;
use catdog::model::vgg16::Vgg16;
use catdog::train::history::History;
use catdog::train::trainer::{Ending, RunOptions, TrainConfig, Trainer};
use common::{add_bad_files, catdog, make_dataset, stderr, stdout};

const WIDTHS: &str = "random:8,8,16,16,16";

/// DIR/train (30 per class) and DIR/test (10 per class).
fn course_layout(root: &Path) {
    make_dataset(&root.join("train"), 30, 11);
    make_dataset(&root.join("test"), 10, 12);
}

fn finetune(data: &Path, runs: &Path, name: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "finetune",
        "--data",
        data.to_str().unwrap(),
        "--weights",
        WIDTHS,
        "--size",
        "48",
        "--batch-size",
        "8",
        "--hidden",
        "32",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--name",
        name,
        "--quiet",
    ];
    if !extra.contains(&"--lr") {
        args.extend(["--lr", "2e-3"]);
    }
    args.extend_from_slice(extra);
    catdog(&args, runs)
}

fn history(dir: &Path) -> History {
    History::read(dir).unwrap()
}

const RUN_FILES: [&str; 8] = [
    "config.json",
    "history.csv",
    "history.json",
    "curves.png",
    "best.safetensors",
    "last.safetensors",
    "summary.md",
    "bad_files.txt",
];

#[test]
fn extract_mode_learns_writes_every_file_and_evaluate_agrees_with_predict() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    course_layout(&data);
    let runs = tmp.path().join("runs");
    let o = finetune(&data, &runs, "ex", &["--epochs", "10", "--dropout", "0.2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = runs.join("ex");
    for f in RUN_FILES {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let h = history(&run);
    assert_eq!(h.epochs.len(), 10);
    let best_val = h.epochs.iter().filter_map(|e| e.val_accuracy).fold(0.0, f64::max);
    assert!(best_val >= 0.9, "validation accuracy only {best_val}: {:?}", h.epochs);
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(summary.contains("frozen-prefix cache: on"), "{summary}");

    // evaluate --json and predict --json on the same folder agree image by image.
    let ckpt = run.join("best.safetensors");
    let o = catdog(
        &[
            "evaluate",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--json",
            "--quiet",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let ev: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(ev["images"], 20);
    assert!(ev["accuracy"].as_f64().unwrap() >= 0.9, "{ev}");
    assert!(ev["roc_auc"].as_f64().unwrap() >= 0.9);
    let test = data.join("test");
    let o = catdog(
        &[
            "predict",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            test.to_str().unwrap(),
            "--json",
            "--quiet",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let preds: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(preds.len(), 20);
    let correct = preds
        .iter()
        .filter(|p| {
            let path = p["path"].as_str().unwrap();
            let truth = if path.contains("/cats/") { "cats" } else { "dogs" };
            p["label"] == truth
        })
        .count();
    assert_eq!(correct as f64 / 20.0, ev["accuracy"].as_f64().unwrap());
    let confusion = &ev["confusion"];
    let cats_right = confusion[0][0].as_u64().unwrap() as usize;
    let predicted_cats_right = preds
        .iter()
        .filter(|p| p["path"].as_str().unwrap().contains("/cats/") && p["label"] == "cats")
        .count();
    assert_eq!(cats_right, predicted_cats_right);
}

#[test]
fn finetune_mode_with_augmentation_learns_and_a_checkpoint_round_trip_predicts_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    course_layout(&data);
    let runs = tmp.path().join("runs");
    let o = finetune(
        &data,
        &runs,
        "ft",
        &[
            "--mode",
            "finetune",
            "--unfreeze-from",
            "block4_conv1",
            "--epochs",
            "8",
            "--augment",
            "--dropout",
            "0.2",
            "--patience",
            "4",
            "--restore-best-weights",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let run = runs.join("ft");
    for f in RUN_FILES {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let h = history(&run);
    let best_val = h.epochs.iter().filter_map(|e| e.val_accuracy).fold(0.0, f64::max);
    assert!(best_val >= 0.9, "validation accuracy only {best_val}: {:?}", h.epochs);
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(
        summary.contains("fine-tuning from block4_conv1") && summary.contains("augmentation changes the input"),
        "{summary}"
    );

    // The fine-tuned base differs from the random start in the trained layers only.
    let (m, _, meta) = Classifier::load(&run.join("best.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(meta["format"], "catdog-checkpoint-1");
    let start = Vgg16::random([8, 8, 16, 16, 16], 0, &Device::Cpu).unwrap();
    let a: std::collections::HashMap<_, _> = m.base.named_tensors().into_iter().collect();
    let b: std::collections::HashMap<_, _> = start.named_tensors().into_iter().collect();
    let same = |n: &str| common::rel_diff(&a[n], &b[n]) == 0.0;
    assert!(same("features.0.weight") && same("features.14.weight"));
    assert!(!same("features.17.weight") && !same("features.28.weight"));

    // Round trip: save → load gives identical probabilities, equal to `predict`.
    let again = tmp.path().join("again.safetensors");
    m.save(&again, vec![], Default::default()).unwrap();
    let (m2, _, _) = Classifier::load(&again, &Device::Cpu).unwrap();
    let files: Vec<PathBuf> = catdog::data::folder::walk_images(&data.join("test")).unwrap().0;
    let p1 = catdog::eval::report::predict(&m, &files, 7, None, &mut |_| {}).unwrap();
    let p2 = catdog::eval::report::predict(&m2, &files, 5, None, &mut |_| {}).unwrap();
    for (a, b) in p1.iter().zip(&p2) {
        assert_eq!(a.as_ref().unwrap().probabilities, b.as_ref().unwrap().probabilities);
    }
    let o = catdog(
        &[
            "predict",
            "--checkpoint",
            again.to_str().unwrap(),
            files[0].to_str().unwrap(),
            "--json",
            "--precision",
            "fp32",
        ],
        tmp.path(),
    );
    let j: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let p_dogs = p1[0].as_ref().unwrap().probabilities[1].1;
    assert!((j["probabilities"]["dogs"].as_f64().unwrap() - p_dogs).abs() < 1e-12);
}

#[test]
fn a_resumed_run_continues_at_the_right_epoch_with_the_same_history() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    course_layout(&data);
    let runs = tmp.path().join("runs");
    let flags = ["--mode", "finetune", "--augment", "--dropout", "0.3", "--threads", "2"];
    let mut straight = flags.to_vec();
    straight.extend(["--epochs", "4"]);
    assert!(finetune(&data, &runs, "straight", &straight).status.success());
    let mut first = flags.to_vec();
    first.extend(["--epochs", "2"]);
    assert!(finetune(&data, &runs, "split", &first).status.success());
    let split = runs.join("split");
    let o = catdog(
        &[
            "finetune",
            "--resume",
            split.to_str().unwrap(),
            "--epochs",
            "4",
            "--quiet",
            "--threads",
            "2",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("resuming") && stderr(&o).contains("epoch 3"),
        "{}",
        stderr(&o)
    );
    let (a, b) = (history(&runs.join("straight")), history(&split));
    assert_eq!(b.epochs.len(), 4);
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        assert_eq!(x.epoch, y.epoch);
        for (m, u, v) in [("loss", x.loss, y.loss), ("accuracy", x.accuracy, y.accuracy)] {
            assert!((u - v).abs() < 1e-9, "epoch {} {m}: {u} vs {v}", x.epoch);
        }
        assert!((x.val_loss.unwrap() - y.val_loss.unwrap()).abs() < 1e-9);
    }
}

#[test]
fn an_interrupted_epoch_resumes_mid_epoch_and_matches_the_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    course_layout(&data);
    let runs = tmp.path().join("runs");
    let flags = [
        "--mode",
        "finetune",
        "--augment",
        "--epochs",
        "2",
        "--dropout",
        "0.3",
        "--threads",
        "2",
    ];
    assert!(finetune(&data, &runs, "whole", &flags).status.success());
    // The same run through the library, interrupted after its first batch (as Ctrl-C would).
    let cfg: TrainConfig =
        serde_json::from_str(&std::fs::read_to_string(runs.join("whole/config.json")).unwrap()).unwrap();
    let dir = runs.join("cut");
    std::fs::create_dir_all(&dir).unwrap();
    catdog::io::write_json(&dir.join("config.json"), &cfg).unwrap();
    let splits = resolve_splits(&data, None, cfg.seed).unwrap();
    let base = Vgg16::random([8, 8, 16, 16, 16], 0, &Device::Cpu).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let stop = AtomicBool::new(true);
    let outcome = pool.install(|| {
        let mut t = Trainer::new(cfg.clone(), base, &splits, &dir, None, &Device::Cpu).unwrap();
        let mut log = |_: &str| {};
        t.run(&mut RunOptions {
            quiet: true,
            interrupt: &stop,
            log: &mut log,
        })
        .unwrap()
    });
    assert_eq!(outcome.ending, Ending::Interrupted);
    let (_, meta) = catdog::model::weights::read_safetensors(&dir.join("last.safetensors")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&meta["train_state"]).unwrap();
    assert_eq!(
        (state["epoch"].as_u64(), state["batches_done"].as_u64()),
        (Some(0), Some(1))
    );
    let o = catdog(
        &[
            "finetune",
            "--resume",
            dir.to_str().unwrap(),
            "--quiet",
            "--threads",
            "2",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("batch 2"), "{}", stderr(&o));
    let (a, b) = (history(&runs.join("whole")), history(&dir));
    assert_eq!(b.epochs.len(), 2);
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        assert!(
            (x.loss - y.loss).abs() < 1e-9 && (x.accuracy - y.accuracy).abs() < 1e-9,
            "{x:?} vs {y:?}"
        );
        assert!((x.val_loss.unwrap() - y.val_loss.unwrap()).abs() < 1e-9);
    }
}

#[test]
fn bad_files_are_skipped_and_listed_and_a_diverging_loss_stops_with_advice() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    course_layout(&data);
    let bad = add_bad_files(&data.join("train/dogs"));
    let runs = tmp.path().join("runs");
    let o = finetune(&data, &runs, "bad", &["--epochs", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listed = std::fs::read_to_string(runs.join("bad/bad_files.txt")).unwrap();
    for b in bad {
        assert!(listed.contains(b), "{b} not listed: {listed}");
    }
    assert!(stderr(&o).contains("skipped 5 unreadable images"), "{}", stderr(&o));
    // With augmentation (no cache) the same files are met in the loader.
    let o = finetune(&data, &runs, "bad-aug", &["--epochs", "1", "--augment"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(runs.join("bad-aug/bad_files.txt"))
            .unwrap()
            .lines()
            .count(),
        5
    );

    let o = finetune(
        &data,
        &runs,
        "nan",
        &["--epochs", "2", "--optimizer", "sgd", "--lr", "1e30"],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("epoch 1") && e.contains("batch") && e.contains("--lr"),
        "{e}"
    );
}

#[test]
fn missing_data_and_an_existing_run_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let o = finetune(&tmp.path().join("nowhere"), tmp.path(), "x", &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("catdog data fetch"), "{}", stderr(&o));
    let data = tmp.path().join("data");
    course_layout(&data);
    let runs = tmp.path().join("runs");
    assert!(finetune(&data, &runs, "once", &["--epochs", "1"]).status.success());
    let o = finetune(&data, &runs, "once", &["--epochs", "1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
}

#[test]
fn a_global_average_pooling_head_learns_and_its_checkpoint_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    course_layout(&data);
    let runs = tmp.path().join("runs");
    let o = finetune(
        &data,
        &runs,
        "gap",
        &["--head", "gap", "--epochs", "10", "--lr", "1e-2"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let run = runs.join("gap");
    let h = history(&run);
    let best_val = h.epochs.iter().filter_map(|e| e.val_accuracy).fold(0.0, f64::max);
    assert!(best_val >= 0.8, "validation accuracy only {best_val}: {:?}", h.epochs);
    let (m, _, _) = Classifier::load(&run.join("best.safetensors"), &Device::Cpu).unwrap();
    // GAP averages each channel: the head's first layer takes 16 inputs (block5's width), not 16·1·1 flattened
    // positions of a larger map.
    assert_eq!(m.meta.head.in_features(), 16);
    assert_eq!(format!("{:?}", m.meta.head.kind), "Gap");
}

#[test]
fn three_classes_train_with_a_softmax_and_predict_three_probabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    course_layout(&data);
    // A third class, green and unstriped, in both parts.
    for (part, n) in [("train", 30), ("test", 10)] {
        for i in 0..n {
            let shade = (i * 5) as u8;
            common::write_image(
                &data.join(part).join("frogs").join(format!("f{i}.png")),
                44,
                40,
                [30, 180 + shade / 2, 40],
            );
        }
    }
    let runs = tmp.path().join("runs");
    let o = finetune(&data, &runs, "three", &["--epochs", "10", "--lr", "5e-3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = runs.join("three");
    let h = history(&run);
    let best_val = h.epochs.iter().filter_map(|e| e.val_accuracy).fold(0.0, f64::max);
    assert!(
        best_val > 0.75,
        "validation accuracy only {best_val} (chance is 1/3): {:?}",
        h.epochs
    );
    let (m, _, _) = Classifier::load(&run.join("best.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(m.meta.classes, ["cats", "dogs", "frogs"]);
    assert_eq!(m.meta.head.n_out, 3);
    let frog = data.join("test/frogs/f0.png");
    let o = catdog(
        &[
            "predict",
            "--checkpoint",
            run.join("best.safetensors").to_str().unwrap(),
            "--json",
            frog.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let j: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let probs = j["probabilities"].as_object().unwrap();
    assert_eq!(probs.len(), 3);
    let sum: f64 = probs.values().map(|p| p.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-5, "softmax probabilities sum to {sum}");
}

#[test]
fn reduce_lr_on_plateau_lowers_the_image_trainers_learning_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    course_layout(&data);
    let runs = tmp.path().join("runs");
    // A learning rate so small that the validation loss cannot improve by reduce-LR's min_delta (1e-4): every
    // epoch after the first is a plateau.
    let flags = [
        "--epochs",
        "4",
        "--lr",
        "1e-9",
        "--reduce-lr-patience",
        "1",
        "--reduce-lr-factor",
        "0.5",
    ];
    let o = finetune(&data, &runs, "plateau", &flags);
    assert!(o.status.success(), "{}", stderr(&o));
    let lrs: Vec<f64> = history(&runs.join("plateau")).epochs.iter().map(|e| e.lr).collect();
    assert_eq!(lrs.len(), 4);
    assert!((lrs[0] - 1e-9).abs() < 1e-18, "{lrs:?}");
    assert!(
        lrs.windows(2).skip(1).all(|w| w[1] < w[0]),
        "the rate should halve on each plateau: {lrs:?}"
    );
    assert!(stderr(&o).contains("reducing the learning rate"), "{}", stderr(&o));
}

/// `finetune` flags of the second stage: no --weights (the checkpoint brings the conv base); `extra` gives the
/// size and head.
fn second_stage(data: &Path, runs: &Path, name: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["finetune", "--data", data.to_str().unwrap(), "--batch-size", "8"];
    args.extend(["--runs-dir", runs.to_str().unwrap(), "--name", name, "--quiet"]);
    args.extend_from_slice(extra);
    catdog(&args, runs)
}

#[test]
fn a_fine_tune_init_from_an_extraction_run_starts_where_that_run_ended() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    course_layout(&data);
    let runs = tmp.path().join("runs");
    let o = finetune(&data, &runs, "extract", &["--epochs", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let best = history(&runs.join("extract"))
        .epochs
        .iter()
        .filter_map(|e| e.val_loss)
        .fold(f64::INFINITY, f64::min);
    // Block5 fine-tuning from it with a learning rate of ~0: its first validation is the extraction run's best.
    let o = second_stage(
        &data,
        &runs,
        "ft",
        &[
            "--mode",
            "finetune",
            "--init-from",
            runs.join("extract").to_str().unwrap(),
            "--lr",
            "1e-30",
            "--epochs",
            "1",
            "--size",
            "48",
            "--hidden",
            "32",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let first = history(&runs.join("ft")).epochs[0].val_loss.unwrap();
    assert!(
        (first - best).abs() <= 1e-5 * best.max(1.0),
        "first {first}, extraction's best {best}"
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs.join("ft/config.json")).unwrap()).unwrap();
    assert!(
        cfg["init_from"].as_str().unwrap().ends_with("extract/best.safetensors"),
        "{cfg}"
    );
    // A run of another shape is refused with every difference at once.
    let o = second_stage(
        &data,
        &runs,
        "other",
        &[
            "--init-from",
            runs.join("extract").to_str().unwrap(),
            "--size",
            "64",
            "--hidden",
            "16",
        ],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("size: checkpoint 48, this run 64") && e.contains("head:"),
        "{e}"
    );
    // --weights naming a checkpoint says what it drops and points at --init-from.
    let ck = runs.join("extract/best.safetensors");
    let args = [
        "--weights",
        ck.to_str().unwrap(),
        "--mode",
        "finetune",
        "--epochs",
        "1",
        "--size",
        "48",
    ];
    let o = second_stage(&data, &runs, "dropped-head", &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("uses only its conv base") && stderr(&o).contains("--init-from"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn lr_find_suggests_rates_plots_them_and_saves_no_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    course_layout(&data);
    let runs = tmp.path().join("runs");
    let plot = tmp.path().join("lr.png");
    let mut args = vec![
        "lr-find",
        "--data",
        data.to_str().unwrap(),
        "--weights",
        WIDTHS,
        "--size",
        "48",
    ];
    args.extend([
        "--hidden",
        "32",
        "--batch-size",
        "8",
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    args.extend([
        "--iters",
        "60",
        "--end-lr",
        "100",
        "--out",
        plot.to_str().unwrap(),
        "--json",
        "--quiet",
    ]);
    let o = catdog(&args, tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let (valley, steepest) = (j["suggestion"].as_f64().unwrap(), j["steepest"].as_f64().unwrap());
    let points = j["points"].as_array().unwrap();
    assert!(points.len() >= 20 && points.len() <= 60, "{}", points.len());
    let lrs: Vec<f64> = points.iter().map(|p| p[0].as_f64().unwrap()).collect();
    assert!(
        lrs.contains(&valley) && lrs.contains(&steepest),
        "suggestions are rates of the sweep"
    );
    assert!((1e-7..=100.0).contains(&valley), "{valley}");
    assert_eq!(&std::fs::read(&plot).unwrap()[..4], b"\x89PNG");
    assert!(!runs.exists(), "lr-find saves no run");
    let iters = args.iter().position(|a| *a == "60").unwrap();
    args[iters] = "5";
    let o = catdog(&args, tmp.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn test_time_augmentation_averages_the_image_its_flip_and_augmented_draws() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    course_layout(&data);
    let runs = tmp.path().join("runs");
    assert!(finetune(&data, &runs, "tta", &["--epochs", "2"]).status.success());
    let ck = runs.join("tta/best.safetensors");
    let ck = ck.to_str().unwrap();
    let json = |args: &[&str]| -> serde_json::Value {
        let o = catdog(args, tmp.path());
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap()
    };
    let d = data.to_str().unwrap();
    let plain = json(&["evaluate", "--checkpoint", ck, "--data", d, "--json", "--quiet"]);
    assert!(plain.get("tta").is_none(), "--tta 1 is the plain evaluation");
    let looked = json(&[
        "evaluate",
        "--checkpoint",
        ck,
        "--data",
        d,
        "--json",
        "--tta",
        "4",
        "--quiet",
    ]);
    assert_eq!(looked["tta"], 4);
    assert_eq!(looked["accuracy_without_tta"], plain["accuracy"]);
    assert_eq!(looked["loss_without_tta"], plain["loss"]);
    assert_eq!(looked["roc_auc_without_tta"], plain["roc_auc"]);
    // Two looks are the image and its mirror: their mean, exactly (a 48×48 image needs no resizing).
    let img = image::RgbImage::from_fn(48, 48, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 3) as u8, ((x + y) * 2) as u8])
    });
    let (one, mirror) = (tmp.path().join("one.png"), tmp.path().join("mirror.png"));
    img.save(&one).unwrap();
    image::imageops::flip_horizontal(&img).save(&mirror).unwrap();
    let dogs = |args: &[&str]| json(args)["probabilities"]["dogs"].as_f64().unwrap();
    let (p1, p2) = (one.to_str().unwrap(), mirror.to_str().unwrap());
    let a = dogs(&["predict", "--checkpoint", ck, p1, "--json", "--quiet"]);
    let b = dogs(&["predict", "--checkpoint", ck, p2, "--json", "--quiet"]);
    let two = dogs(&["predict", "--checkpoint", ck, p1, "--json", "--tta", "2", "--quiet"]);
    assert!((two - (a + b) / 2.0).abs() < 1e-6, "{two} vs mean of {a} and {b}");
    let o = catdog(&["predict", "--checkpoint", ck, p1, "--tta", "0"], tmp.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn the_course_runs_its_recipes_reports_them_and_a_rerun_keeps_what_is_done() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    course_layout(&data);
    let out = tmp.path().join("course");
    let args = [
        "course",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quick",
        "--recipes",
        "extract,finetune-from-extract",
        "--",
        "--weights",
        WIDTHS,
        "--size",
        "48",
        "--batch-size",
        "8",
        "--hidden",
        "32",
    ];
    let o = catdog(&args, tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let rows = report.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert!((0.0..=1.0).contains(&row["test_accuracy"].as_f64().unwrap()), "{row}");
        assert_eq!(row["epochs_run"], 3, "{row}");
    }
    let table = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        table.contains("(a) feature extraction") && table.contains("(d) block5 fine-tuning from (a)"),
        "{table}"
    );
    assert_eq!(&std::fs::read(out.join("report.png")).unwrap()[..4], b"\x89PNG");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("finetune-from-extract/config.json")).unwrap()).unwrap();
    assert!(
        cfg["init_from"].as_str().unwrap().ends_with("extract/best.safetensors"),
        "{cfg}"
    );
    // A re-run keeps the finished recipes and reports the same figures.
    let o = catdog(&args, tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o).matches("finished earlier").count(), 2, "{}", stderr(&o));
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(again[0]["test_accuracy"], rows[0]["test_accuracy"]);
}

/// `catdog extract` of `dir` into `out` with the settings of [`finetune`] (and `extra`).
fn extract(dir: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["extract", "--weights", WIDTHS, "--size", "48", "--quiet"];
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    args.push(dir.to_str().unwrap());
    catdog(&args, out.parent().unwrap())
}

#[test]
fn a_head_trained_on_extracted_shards_has_the_in_run_cache_history() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    course_layout(&data);
    let runs = tmp.path().join("runs");
    let train = ["--epochs", "3", "--dropout", "0.2"];
    let o = finetune(&data, &runs, "cached", &train);
    assert!(o.status.success(), "{}", stderr(&o));
    // The training images in three jobs' shards, the validation (test) folder in one file.
    let feats = tmp.path().join("feats");
    std::fs::create_dir(&feats).unwrap();
    for k in 1..=3 {
        let out = feats.join(format!("train-{k}.safetensors"));
        let o = extract(&data.join("train"), &out, &["--shard", &format!("{k}/3")]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = extract(&data.join("test"), &feats.join("test.safetensors"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let with = |name: &str, extra: &[&str]| {
        let mut args = vec!["--features", feats.to_str().unwrap()];
        args.extend_from_slice(extra);
        finetune(&data, &runs, name, &args)
    };
    let o = with("from-features", &train);
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (history(&runs.join("cached")), history(&runs.join("from-features")));
    assert_eq!(a.epochs.len(), 3);
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        assert_eq!(
            (x.loss, x.accuracy, x.val_loss, x.val_accuracy),
            (y.loss, y.accuracy, y.val_loss, y.val_accuracy),
            "epoch {}",
            x.epoch
        );
    }
    let cfg = std::fs::read_to_string(runs.join("from-features/config.json")).unwrap();
    assert!(cfg.contains("\"features\": \""), "{cfg}");

    // A missing shard, another size, fine-tuning: refused before any training, saying what to do.
    std::fs::remove_file(feats.join("train-2.safetensors")).unwrap();
    let o = with("missing", &train);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("of the 60 train images have no features"), "{e}");
    let o = with("filter", &["--interpolation", "bilinear"]);
    assert!(
        stderr(&o).contains("interpolation: features Nearest, this run Bilinear"),
        "{}",
        stderr(&o)
    );
    let o = with("ft", &["--mode", "finetune"]);
    assert!(stderr(&o).contains("needs --mode extract"), "{}", stderr(&o));
    let o = extract(&data.join("train"), &feats.join("x.safetensors"), &["--shard", "4/3"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
