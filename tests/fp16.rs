//! `--precision fp16` (torch.cuda.amp's recipe, for GPUs without bf16), run here on the CPU's portable twins with
//! the same arithmetic: a short fine-tune stays close to fp32, records its precision and loss scaler, and a
//! resumed run continues the scaler where it stopped; the convolution's f16 arithmetic on `CATDOG_TEST_DEVICE`
//! (`scripts/gpu_check.sh` sets `cuda`: there candle's f16 kernels run) equals f16-rounded inputs convolved exactly
//! and rounded to f16. (The scaler's schedule against PyTorch's GradScaler and the f16 overflow and underflow are
//! unit tests of `train::loss_scale`.)

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use catdog::kernels::{conv, Compute, Kernels, Precision};
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
    let summary = |run: &str| std::fs::read_to_string(runs.join(run).join("summary.md")).unwrap();
    assert!(
        summary("fp32").contains("- precision: fp32, fast kernels\n"),
        "{}",
        summary("fp32")
    );
    let fp16_summary = summary("fp16");
    assert!(
        fp16_summary.contains("- precision: fp16, fast kernels; dynamic loss scaling: ")
            && fp16_summary.contains(&format!("loss scale now {scale}")),
        "{fp16_summary}"
    );

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

fn test_device() -> Device {
    let name = std::env::var("CATDOG_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    catdog::device::parse_device(&name).expect("CATDOG_TEST_DEVICE names a device this build can open")
}

/// A tensor's values, flattened, on the CPU.
fn cpu_values(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .unwrap()
        .to_device(&Device::Cpu)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn f16_round(v: &[f32]) -> Vec<f32> {
    let t = Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap();
    t.to_dtype(DType::F16)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn the_fp16_convolution_rounds_its_inputs_and_output_to_f16_and_its_gradients_are_f16() {
    let (n, c, o, s) = (2, 8, 4, 6);
    let pattern = |len: usize, k: f32| (0..len).map(|i| (i as f32 * k).sin() * 3.0).collect::<Vec<f32>>();
    let (x, w, b) = (pattern(n * c * s * s, 0.37), pattern(o * c * 9, 0.71), pattern(o, 1.3));
    let device = test_device();
    let xv = Var::from_tensor(&Tensor::from_slice(&x, (n, c, s, s), &device).unwrap()).unwrap();
    let wt = Tensor::from_slice(&w, (o, c, 3, 3), &device).unwrap();
    let bt = Tensor::from_slice(&b, o, &device).unwrap();
    let compute = Compute {
        kernels: Kernels::Portable,
        precision: Precision::Fp16,
    };
    let y = conv::conv2d(xv.as_tensor(), &wt, &bt, 1, false, compute).unwrap();
    // The reference: f16 inputs, exact sums (f64), the sum rounded to f16, then the f32 bias.
    let (xr, wr) = (f16_round(&x), f16_round(&w));
    let mut sums = vec![0f32; n * o * s * s];
    for (idx, sum) in sums.iter_mut().enumerate() {
        let (img, oc, yy, xx) = (idx / (o * s * s), idx / (s * s) % o, idx / s % s, idx % s);
        let mut acc = 0f64;
        for ci in 0..c {
            for (dy, dx) in (0..9).map(|t| (t / 3, t % 3)) {
                let (iy, ix) = ((yy + dy) as isize - 1, (xx + dx) as isize - 1);
                if (0..s as isize).contains(&iy) && (0..s as isize).contains(&ix) {
                    let xi = ((img * c + ci) * s + iy as usize) * s + ix as usize;
                    acc += f64::from(xr[xi]) * f64::from(wr[(oc * c + ci) * 9 + dy * 3 + dx]);
                }
            }
        }
        *sum = acc as f32;
    }
    let want: Vec<f32> = f16_round(&sums)
        .iter()
        .enumerate()
        .map(|(i, v)| v + b[i / (s * s) % o])
        .collect();
    let got = cpu_values(&y);
    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
        // One f16 step (2⁻¹⁰ relative) where the f32 sums' order put a sum on the other side of a rounding edge.
        assert!((g - e).abs() <= e.abs().max(1.0) * 1e-3, "output {i}: {g} vs {e}");
    }
    let mismatched = got.iter().zip(&want).filter(|(g, e)| g != e).count();
    assert!(
        mismatched * 20 < got.len(),
        "{mismatched} of {} outputs off by a rounding step",
        got.len()
    );
    // The input's gradient went through f16 (the rounding's backward): every value is an f16 value.
    let grads = (y.sqr().unwrap().sum_all().unwrap() * 1e-3)
        .unwrap()
        .backward()
        .unwrap();
    let dx = cpu_values(grads.get(xv.as_tensor()).unwrap());
    assert!(dx.iter().any(|v| *v != 0.0));
    assert_eq!(dx, f16_round(&dx), "the input gradient holds values f16 cannot");
}

/// A one-epoch run's checkpoint on a small data set, copied with the weights of the convolutions `scaled` picks
/// ×100: the temporary folder, the data and the copy.
fn overflowing_checkpoint(
    scaled: impl Fn(&str) -> bool,
) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_dataset(&data.join("train"), 4, 5);
    let runs = tmp.path().join("runs");
    finetune(
        &data,
        &runs,
        "run",
        &["--epochs", "1", "--precision", "fp32", "--quiet"],
    );
    let (tensors, meta) = read_safetensors(&runs.join("run/best.safetensors")).unwrap();
    let tensors: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(
            |(name, t)| match name.starts_with("features.") && name.ends_with("weight") && scaled(&name) {
                true => (name, (t * 100.0).unwrap()),
                false => (name, t),
            },
        )
        .collect();
    let big = tmp.path().join("big.safetensors");
    catdog::io::write_safetensors(&big, &tensors, meta).unwrap();
    (tmp, data, big)
}

#[test]
fn an_activation_over_f16s_range_stops_the_command_with_what_to_do() {
    // The checkpoint with every convolution's weights ×100: block5's activations pass f16's 65504.
    let (tmp, data, big) = overflowing_checkpoint(|_| true);
    let image = std::fs::read_dir(data.join("train/cats"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let predict = |precision: &str| {
        let (big, image) = (big.to_str().unwrap(), image.to_str().unwrap());
        catdog(
            &[
                "predict",
                "--checkpoint",
                big,
                image,
                "--json",
                "--precision",
                precision,
                "--device",
                "cpu",
            ],
            tmp.path(),
        )
    };
    // Not a finite, meaningless probability (the ReLUs and pools would have turned the overflow's NaNs into 0):
    // the command fails and says what to do.
    let o = predict("fp16");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("overflowed f16") && err.contains("--precision bf16 or fp32"),
        "{err}"
    );
    assert!(!common::stdout(&o).contains("probabilities"), "{}", common::stdout(&o));
    let o = predict("fp32");
    assert!(
        o.status.success() && common::stdout(&o).contains("probabilities"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn lr_find_in_fp16_ends_its_sweep_where_f16_overflows_as_where_the_loss_diverges() {
    // Only block5's weights ×100: the frozen prefix (cached first) stays in range, the sweep's first step does not.
    let block5 = ["features.24.", "features.26.", "features.28."];
    let (tmp, data, big) = overflowing_checkpoint(|n| block5.iter().any(|b| n.starts_with(b)));
    let runs = tmp.path().join("runs");
    let big = big.to_str().unwrap();
    let (d, r) = (data.to_str().unwrap(), runs.to_str().unwrap());
    let args = [
        "lr-find",
        "--data",
        d,
        "--weights",
        big,
        "--size",
        "32",
        "--mode",
        "finetune",
        "--device",
        "cpu",
    ];
    let o = catdog(
        &[&args[..], &["--precision", "fp16", "--runs-dir", r, "--quiet"]].concat(),
        tmp.path(),
    );
    let err = stderr(&o);
    assert!(
        err.contains("lr-find: stopped at 1.00e-7: an activation overflowed f16"),
        "{err}"
    );
    assert!(err.contains("too few to suggest a learning rate"), "{err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
}
