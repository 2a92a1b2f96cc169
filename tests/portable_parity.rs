//! The portable kernels (only candle's device-generic ops: the graph that `--device cuda` runs) against catdog's
//! fast CPU kernels: forward values, every gradient of a block5 fine-tune step, and whole runs.
//!
//! The reference is always the fast path on the CPU. The path under test is the portable one on
//! `CATDOG_TEST_DEVICE` (default `cpu`; `scripts/gpu_check.sh` sets `cuda`), so the same tests prove the GPU path
//! where there is a GPU and the GPU's graph where there is none. Each test prints its largest differences.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{Device, Tensor, Var};
use catdog::kernels::Kernels;
use catdog::model::head::{Head, HeadConfig, HeadKind};
use catdog::model::vgg16::{layer_index, Vgg16, LAYERS};
use catdog::model::weights::{self, read_safetensors, HubOptions, WeightsSpec};
use catdog::train::history::History;
use catdog::train::loss;
use common::{catdog, fixtures, make_dataset, rel_diff, stderr, stdout, POOLS};

/// The device of the path under test.
fn test_device() -> Device {
    let name = std::env::var("CATDOG_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    catdog::device::parse_device(&name).expect("CATDOG_TEST_DEVICE names a device this build can open")
}

fn device_flag() -> String {
    std::env::var("CATDOG_TEST_DEVICE").unwrap_or_else(|_| "cpu".into())
}

/// Tolerances: on the CPU both paths compute in f32 with different summation orders (Winograd vs im2col);
/// on a GPU the issue allows 1e-3. In this process cuDNN may run the convolutions in TF32 (its default on
/// Ampere and later; these in-process checks passed with it on an H200); the catdog runs the tests start turn it
/// off (`common::catdog`), since a 3-epoch run drifts past 1e-3 with it.
fn tolerance(cpu: f32) -> f32 {
    if test_device().is_cpu() {
        cpu
    } else {
        cpu.max(1e-3)
    }
}

/// A base with the same weights on `device` with `kernels`.
fn moved(base: &Vgg16, device: &Device, kernels: Kernels) -> Vgg16 {
    let tensors: HashMap<String, Tensor> = base.named_tensors().into_iter().collect();
    let mut m = Vgg16::from_tensors(&tensors, "copy", device).unwrap();
    m.set_kernels(kernels);
    m
}

#[test]
fn portable_forward_matches_the_fast_one_and_pytorch_on_the_vgg_tiny_fixture() {
    let dir = fixtures().join("vgg_tiny");
    let spec = WeightsSpec::parse(dir.join("weights.safetensors").to_str().unwrap(), 0).unwrap();
    let fast = weights::load(&spec, &Device::Cpu, &HubOptions::default())
        .unwrap()
        .model;
    let portable = moved(&fast, &test_device(), Kernels::Portable);
    let (golden, _) = read_safetensors(&dir.join("outputs.safetensors")).unwrap();
    let wanted: Vec<usize> = POOLS.iter().map(|p| layer_index(p).unwrap()).collect();
    let a = fast.forward_collect(&golden["input"], &wanted).unwrap();
    let x = golden["input"].to_device(&test_device()).unwrap();
    let b = portable.forward_collect(&x, &wanted).unwrap();
    for ((name, a), b) in POOLS.iter().zip(&a).zip(&b) {
        let b = b.to_device(&Device::Cpu).unwrap();
        let (d_fast, d_torch) = (rel_diff(&b, a), rel_diff(&b, &golden[*name]));
        eprintln!("{name}: portable vs fast {d_fast:.1e}, portable vs PyTorch {d_torch:.1e}");
        assert!(d_fast < tolerance(1e-5), "{name}: portable vs fast differ by {d_fast}");
        assert!(
            d_torch < tolerance(1e-4),
            "{name}: portable vs PyTorch differ by {d_torch}"
        );
    }
}

/// One block5 fine-tune step's parts: a narrow random base (block5 convs wide enough for Winograd), a
/// Flatten → Dense(32) → Dropout(0.5) → Dense(1) head, and a 150×150 batch: the poolings floor 75 → 37 and 9 → 4.
struct Step {
    base: Vgg16,
    head: Head,
    x: Tensor,
    labels: Vec<u32>,
}

const SIZE: usize = 150;

impl Step {
    fn new(device: &Device, kernels: Kernels) -> Step {
        let reference = Vgg16::random([8, 8, 16, 16, 16], 3, &Device::Cpu).unwrap();
        let mut base = moved(&reference, device, kernels);
        base.set_trainable_from(layer_index("block5_conv1").unwrap()).unwrap();
        let (c, h, w) = base.output_shape(LAYERS.len() - 1, SIZE);
        assert_eq!([c, h, w], [16, 4, 4]);
        let head_cfg = HeadConfig {
            kind: HeadKind::Flatten,
            in_shape: [c, h, w],
            hidden: 32,
            dropout: 0.5,
            n_out: 1,
        };
        let head = Head::new(head_cfg, 5, device).unwrap();
        let x = catdog::bench::pseudo_random(&[2, 3, SIZE, SIZE], 9, device).unwrap();
        let x = ((x + 1.0).unwrap() * 1.5).unwrap();
        Step {
            base,
            head,
            x,
            labels: vec![0, 1],
        }
    }

    fn vars(&self) -> Vec<(String, Var)> {
        let mut v = self.head.vars();
        v.extend(self.base.trainable_vars());
        v
    }

    /// Data loss + L2 (1e-3) on the head's kernels, as the trainer computes it.
    fn loss(&self) -> Tensor {
        let h = self.base.forward_frozen(&self.x).unwrap();
        let f = self.base.forward_trainable(&h).unwrap();
        let logits = self.head.forward(&f, Some(42), self.base.compute()).unwrap();
        let data = loss::data_loss(&logits, &self.labels).unwrap();
        let kernels = self.head.kernels();
        match loss::penalty(&kernels, 0.0, 1e-3).unwrap() {
            Some(p) => (data + p).unwrap(),
            None => data,
        }
    }

    fn gradients(&self) -> HashMap<String, Tensor> {
        let grads = self.loss().backward().unwrap();
        self.vars()
            .into_iter()
            .map(|(name, v)| {
                let g = grads
                    .get(v.as_tensor())
                    .unwrap_or_else(|| panic!("{name} has no gradient"));
                (name, g.to_device(&Device::Cpu).unwrap())
            })
            .collect()
    }
}

fn gradient_pair() -> &'static (HashMap<String, Tensor>, HashMap<String, Tensor>) {
    static PAIR: OnceLock<(HashMap<String, Tensor>, HashMap<String, Tensor>)> = OnceLock::new();
    PAIR.get_or_init(|| {
        let fast = Step::new(&Device::Cpu, Kernels::Fast).gradients();
        let portable = Step::new(&test_device(), Kernels::Portable).gradients();
        (fast, portable)
    })
}

#[test]
fn every_block5_and_head_gradient_of_a_150px_finetune_step_matches_between_fast_and_portable() {
    let (fast, portable) = gradient_pair();
    let names: Vec<String> = Step::new(&Device::Cpu, Kernels::Fast)
        .vars()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names.len(), 10, "block5 (3 convs × 2) + head (2 dense × 2): {names:?}");
    let mut worst = Vec::new();
    for name in &names {
        let largest = fast[name].abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(
            largest > 1e-6,
            "{name}: the gradient is zero, so this step tests nothing"
        );
        let d = rel_diff(&portable[name], &fast[name]);
        eprintln!("{name:<20} portable vs fast: {d:.2e}");
        worst.push((name.clone(), d));
    }
    for (name, d) in worst {
        assert!(
            d < tolerance(1e-4),
            "{name}: gradients differ by {d} (relative to the largest)"
        );
    }
}

/// Central differences of the loss at the largest-gradient entries of every block5 tensor, against both paths'
/// gradients. An entry whose one-sided differences disagree has a ReLU or max-pool kink within ±ε, where no
/// finite difference means anything; it is skipped for the next one, and every tensor needs two clean entries.
#[test]
fn block5_gradients_of_both_paths_agree_with_finite_differences_at_150px() {
    let (fast, portable) = gradient_pair();
    let step = Step::new(&test_device(), Kernels::Portable);
    let eps = 1e-3f32;
    let mut worst = 0f32;
    for (name, var) in step.base.trainable_vars() {
        let g: Vec<f32> = portable[&name].flatten_all().unwrap().to_vec1().unwrap();
        let gf: Vec<f32> = fast[&name].flatten_all().unwrap().to_vec1().unwrap();
        let mut order: Vec<usize> = (0..g.len()).collect();
        order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
        let w0: Vec<f32> = var.flatten_all().unwrap().to_vec1().unwrap();
        let loss_at = |i: usize, delta: f32| {
            let mut w = w0.clone();
            w[i] += delta;
            var.set(&Tensor::from_vec(w, var.shape(), var.device()).unwrap())
                .unwrap();
            f64::from(step.loss().to_scalar::<f32>().unwrap())
        };
        let mut clean = 0;
        for &i in order.iter().take(12) {
            let (up, mid, down) = (loss_at(i, eps), loss_at(i, 0.0), loss_at(i, -eps));
            let (forward, backward) = ((up - mid) / f64::from(eps), (mid - down) / f64::from(eps));
            let fd = ((forward + backward) / 2.0) as f32;
            if (forward - backward).abs() > 2e-2 * fd.abs() as f64 {
                eprintln!("{name}[{i}]: a kink within ±{eps} (one-sided {forward:.5e} vs {backward:.5e}); skipped");
                continue;
            }
            for (path, an) in [("portable", g[i]), ("fast", gf[i])] {
                let err = (fd - an).abs() / an.abs().max(1e-6);
                worst = worst.max(err);
                eprintln!(
                    "{name}[{i}] {path}: analytic {an:.6e}, finite difference {fd:.6e}, relative error {err:.1e}"
                );
                assert!(
                    err < 1e-2,
                    "{name}[{i}]: the {path} gradient {an} disagrees with the finite difference {fd}"
                );
            }
            clean += 1;
            if clean == 2 {
                break;
            }
        }
        var.set(&Tensor::from_vec(w0.clone(), var.shape(), var.device()).unwrap())
            .unwrap();
        assert_eq!(clean, 2, "{name}: fewer than two entries without a kink nearby");
    }
    eprintln!("largest relative error against finite differences: {worst:.1e}");
}

/// Two 3-epoch block5 fine-tunes at 150×150 on generated images, fast on the CPU and portable on the test
/// device, with everything else the same.
struct Runs {
    _tmp: tempfile::TempDir,
    fast: PathBuf,
    portable: PathBuf,
    data: PathBuf,
}

fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        make_dataset(&data.join("train"), 8, 21);
        make_dataset(&data.join("validation"), 4, 22);
        let runs = tmp.path().join("runs");
        let device = device_flag();
        for (name, kernels, device) in [("fast", "fast", "cpu"), ("portable", "portable", device.as_str())] {
            let o = catdog(
                &[
                    "finetune",
                    "--data",
                    data.to_str().unwrap(),
                    "--weights",
                    "random:8,8,16,16,16",
                    "--mode",
                    "finetune",
                    "--size",
                    "150",
                    "--epochs",
                    "3",
                    "--batch-size",
                    "8",
                    "--hidden",
                    "16",
                    "--lr",
                    "1e-3",
                    "--l2",
                    "1e-4",
                    "--kernels",
                    kernels,
                    "--precision",
                    "fp32",
                    "--device",
                    device,
                    "--runs-dir",
                    runs.to_str().unwrap(),
                    "--name",
                    name,
                    "--quiet",
                ],
                tmp.path(),
            );
            assert!(o.status.success(), "{name} run failed: {}", stderr(&o));
        }
        Runs {
            fast: runs.join("fast"),
            portable: runs.join("portable"),
            data,
            _tmp: tmp,
        }
    })
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

#[test]
fn a_3_epoch_block5_finetune_has_the_same_history_and_weights_with_portable_kernels() {
    let r = runs();
    let (hf, hp) = (History::read(&r.fast).unwrap(), History::read(&r.portable).unwrap());
    assert_eq!(hf.epochs.len(), 3);
    assert_eq!(hp.epochs.len(), 3);
    let limit = f64::from(tolerance(1e-4));
    for (a, b) in hp.epochs.iter().zip(&hf.epochs) {
        let (dl, dv) = (
            relative(a.loss, b.loss),
            relative(a.val_loss.unwrap(), b.val_loss.unwrap()),
        );
        eprintln!(
            "epoch {}: loss {:.6} vs {:.6} ({dl:.1e}), val_loss {:.6} vs {:.6} ({dv:.1e})",
            a.epoch,
            a.loss,
            b.loss,
            a.val_loss.unwrap(),
            b.val_loss.unwrap()
        );
        assert!(dl < limit, "epoch {}: loss {} vs {}", a.epoch, a.loss, b.loss);
        assert!(
            dv < limit,
            "epoch {}: val_loss {:?} vs {:?}",
            a.epoch,
            a.val_loss,
            b.val_loss
        );
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.portable.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["kernels"], "portable");
    let (wf, _) = read_safetensors(&r.fast.join("last.safetensors")).unwrap();
    let (wp, _) = read_safetensors(&r.portable.join("last.safetensors")).unwrap();
    let mut compared = 0;
    for (name, b) in wf
        .iter()
        .filter(|(n, _)| n.starts_with("features.2") || n.starts_with("head."))
    {
        let d = rel_diff(&wp[name], b);
        eprintln!("final {name:<20} portable vs fast: {d:.2e}");
        assert!(d < tolerance(1e-4), "final weights {name} differ by {d}");
        compared += 1;
    }
    assert!(compared >= 10, "block5 and head tensors compared: {compared}");
}

fn predictions(checkpoint: &Path, data: &Path, kernels: &str, device: &str) -> Vec<Vec<f64>> {
    let images = data.join("validation");
    let o = catdog(
        &[
            "predict",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--kernels",
            kernels,
            "--precision",
            "fp32",
            "--device",
            device,
            "--json",
            images.to_str().unwrap(),
        ],
        data,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["probabilities"]
                .as_object()
                .expect("probabilities by class")
                .values()
                .map(|p| p.as_f64().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn a_checkpoint_trained_on_the_portable_path_predicts_the_same_with_fast_kernels_on_the_cpu() {
    let r = runs();
    let checkpoint = r.portable.join("last.safetensors");
    let on_device = predictions(&checkpoint, &r.data, "portable", &device_flag());
    let on_cpu = predictions(&checkpoint, &r.data, "fast", "cpu");
    assert_eq!(on_device.len(), 8);
    let worst = on_device
        .iter()
        .flatten()
        .zip(on_cpu.iter().flatten())
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("largest probability difference: {worst:.1e}");
    assert!(worst < 1e-5, "predictions differ by {worst}");
}

#[test]
fn catdog_kernels_picks_the_kernels_config_json_records_them_and_a_wrong_value_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_dataset(&data, 4, 1);
    let run = |name: &str, value: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_catdog"))
            .args([
                "finetune",
                "--data",
                data.to_str().unwrap(),
                "--weights",
                "random:4,4,4,4,4",
            ])
            .args(["--size", "32", "--epochs", "1", "--quiet", "--name", name])
            .arg("--runs-dir")
            .arg(tmp.path().join("runs"))
            .env(Kernels::ENV, value)
            .env("HF_HOME", tmp.path())
            .output()
            .unwrap()
    };
    let o = run("from-env", "portable");
    assert!(o.status.success(), "{}", stderr(&o));
    let config = std::fs::read_to_string(tmp.path().join("runs/from-env/config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["kernels"], "portable");
    let o = run("wrong", "quick");
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("CATDOG_KERNELS=quick") && e.contains("use fast, portable"),
        "{e}"
    );
}
