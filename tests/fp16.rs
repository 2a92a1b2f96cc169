//! `--precision fp16` (torch.cuda.amp's recipe, for GPUs without bf16), run here on the CPU's portable twins with
//! the same arithmetic: a short fine-tune stays close to fp32, records its precision and loss scaler, and a
//! resumed run continues the scaler where it stopped. (The scaler's schedule against PyTorch's GradScaler and the
//! f16 overflow and underflow are unit tests of `train::loss_scale`.)

mod common;

use std::path::Path;

use catdog::model::weights::read_safetensors;
use catdog::train::history::History;
use common::{catdog, make_dataset, stderr};

fn finetune(data: &Path, runs: &Path, name: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "finetune",
        "--device",
        "cpu",
        "--data",
        data.to_str().unwrap(),
        "--weights",
        "random:4,4,8,8,8",
        "--size",
        "32",
        "--batch-size",
        "4",
        "--mode",
        "finetune",
        "--unfreeze-from",
        "block5_conv1",
        "--optimizer",
        "adam",
        "--lr",
        "1e-3",
        "--threads",
        "2",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--name",
        name,
    ];
    args.extend(extra);
    let o = catdog(&args, runs);
    assert!(o.status.success(), "{}", stderr(&o));
    stderr(&o)
}

fn history(run: &Path) -> History {
    History::read(run).unwrap()
}

fn train_state(run: &Path) -> serde_json::Value {
    let (_, meta) = read_safetensors(&run.join("last.safetensors")).unwrap();
    serde_json::from_str(&meta["train_state"]).unwrap()
}

#[test]
fn an_fp16_fine_tune_stays_close_to_fp32_and_records_its_precision_and_loss_scaler() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_dataset(&data.join("train"), 6, 1);
    make_dataset(&data.join("validation"), 3, 2);
    let runs = tmp.path().join("runs");
    finetune(&data, &runs, "fp32", &["--epochs", "3", "--precision", "fp32"]);
    let err = finetune(&data, &runs, "fp16", &["--epochs", "3", "--precision", "fp16"]);
    assert!(
        err.contains("no fp16 CPU kernels") && err.contains("precision fp16"),
        "{err}"
    );

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs.join("fp16/config.json")).unwrap()).unwrap();
    assert_eq!(config["precision"], "fp16");
    assert_eq!(config["loss_scaling"]["init_scale"], 65536.0);
    assert_eq!(config["loss_scaling"]["growth_interval"], 2000);
    let fp32_config = std::fs::read_to_string(runs.join("fp32/config.json")).unwrap();
    assert!(!fp32_config.contains("loss_scaling"), "{fp32_config}");
    let scaler = &train_state(&runs.join("fp16"))["loss_scaler"];
    let scale = scaler["scale"].as_f64().unwrap();
    assert!(scale.log2().fract() == 0.0 && scale <= 65536.0, "{scaler}");
    assert!(train_state(&runs.join("fp32")).get("loss_scaler").is_none());

    let (a, b) = (history(&runs.join("fp32")), history(&runs.join("fp16")));
    assert_eq!(b.epochs.len(), 3);
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        for (what, u, v) in [
            ("loss", x.loss, y.loss),
            ("val_loss", x.val_loss.unwrap(), y.val_loss.unwrap()),
        ] {
            assert!(
                (u - v).abs() < 2e-2 * u.abs().max(1.0),
                "epoch {} {what}: fp32 {u} vs fp16 {v}",
                x.epoch
            );
        }
        // Not the same numbers: f16 rounding ran (a test that fp16 silently ran f32 would fail here).
        assert_ne!(x.loss, y.loss, "epoch {}", x.epoch);
    }
}

#[test]
fn a_resumed_fp16_run_continues_its_loss_scaler_and_matches_the_straight_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_dataset(&data.join("train"), 6, 3);
    let runs = tmp.path().join("runs");
    let fp16 = ["--precision", "fp16", "--quiet"];
    finetune(&data, &runs, "straight", &[&fp16[..], &["--epochs", "3"]].concat());
    finetune(&data, &runs, "split", &[&fp16[..], &["--epochs", "2"]].concat());
    let split = runs.join("split");
    let o = catdog(
        &[
            "finetune",
            "--resume",
            split.to_str().unwrap(),
            "--epochs",
            "3",
            "--quiet",
            "--threads",
            "2",
        ],
        &runs,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (history(&runs.join("straight")), history(&split));
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        assert_eq!((x.loss, x.accuracy), (y.loss, y.accuracy), "epoch {}", x.epoch);
    }
    let (sa, sb) = (train_state(&runs.join("straight")), train_state(&split));
    // 3 epochs of 3 clean steps: a resume that started a new scaler would have counted 3.
    assert_eq!(sa["loss_scaler"]["growth_tracker"], 9, "{}", sa["loss_scaler"]);
    assert_eq!(sa["loss_scaler"], sb["loss_scaler"]);
}
