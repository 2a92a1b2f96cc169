//! The effects the course claims, pinned on seeded runs of the labs (with generous margins).

use catdog::nn::{Activation, Init, Norm, NormDefaults};
use catdog::tabular::dataset::Scaling;
use catdog::tabular::fit::{FitConfig, Regularize};
use catdog::tabular::labs::{run_lab, LabConfig, LabName, LabResult};
use catdog::train::optim::{OptimConfig, OptimizerKind};

fn cfg(epochs: usize) -> LabConfig {
    LabConfig {
        data: None,
        val_split: 0.2,
        scaling: Scaling::Standard,
        layers: vec![64, 32],
        activation: Activation::Relu,
        dropout: 0.0,
        norm: Norm::None,
        norm_defaults: NormDefaults::Keras,
        init: Init::Glorot,
        fit: FitConfig {
            epochs,
            batch_size: 32,
            optimizer: OptimConfig::new(OptimizerKind::Adam, 1e-3),
            l1: 0.0,
            l2: 0.0,
            regularize: Regularize::Hidden,
            early_stopping: None,
            seed: 0,
        },
        seeds: 1,
        epochs: Some(epochs),
        target_loss: 0.1,
        patience: 10,
    }
}

fn lab(name: LabName, c: &LabConfig) -> (LabResult, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let r = run_lab(name, c, dir.path()).unwrap();
    for f in ["table.md", "table.csv", "results.json"] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    for p in &r.plots {
        assert!(dir.path().join(p).is_file(), "{p} missing");
    }
    (r, dir)
}

#[test]
fn l1_leaves_more_near_zero_weights_than_l2_at_the_same_strength() {
    let c = cfg(60);
    let (l1, _d1) = lab(LabName::L1, &c);
    let (l2, _d2) = lab(LabName::L2, &c);
    for s in ["λ = 0.001", "λ = 0.01"] {
        let a = l1.variant(s).unwrap().extra["near_zero_fraction"];
        let b = l2.variant(s).unwrap().extra["near_zero_fraction"];
        assert!(a > b + 0.05, "{s}: L1 {a} vs L2 {b}");
    }
    // And the penalty shrinks the weights as it grows.
    let m = |r: &LabResult, s: &str| r.variant(s).unwrap().extra["mean_abs_weight"];
    assert!(m(&l2, "λ = 0.01") < m(&l2, "λ = 0") * 0.5);
    // At λ = 0.1, L1 drives every weight to ~0 and the network answers the majority class: the notes say so (and
    // not for L2, which still learns there).
    let collapsed = |r: &LabResult| r.notes.iter().any(|n| n.contains("collapsed to the majority class"));
    assert!(collapsed(&l1), "{:?}", l1.notes);
    assert!(
        l1.notes
            .iter()
            .any(|n| n.starts_with("At λ = 0.1 the network collapsed")),
        "{:?}",
        l1.notes
    );
    assert!(!collapsed(&l2), "{:?}", l2.notes);
}

#[test]
fn dropout_narrows_the_train_validation_gap_on_the_overfit_set() {
    let (r, _d) = lab(LabName::Dropout, &cfg(150));
    let gap = |name: &str| {
        let v = r.variant(name).unwrap();
        v.val_loss - v.train_loss
    };
    let (none, half) = (gap("dropout 0"), gap("dropout 0.5"));
    assert!(half < none - 0.02, "gap without dropout {none}, with 0.5 {half}");
    assert!(r.plots.contains(&"boundaries.png".to_string()) && r.plots.contains(&"regression.png".to_string()));
    // The overfit lab reports where validation loss is lowest, before the end.
    let (o, _d2) = lab(LabName::Overfit, &cfg(150));
    let large = &o.variants[0];
    assert!(
        large.best_epoch < large.epochs_run && large.val_loss > large.best_val_loss,
        "{:?}",
        (large.best_epoch, large.val_loss)
    );
}

#[test]
fn scaling_reaches_the_target_loss_in_fewer_epochs_than_raw_features() {
    let (r, _d) = lab(LabName::Scaling, &cfg(60));
    let epochs = |name: &str| {
        let v = r.variant(name).unwrap();
        let e = v.extra["epochs_to_target"];
        if e.is_finite() {
            e
        } else {
            f64::INFINITY
        }
    };
    assert!(
        epochs("standard") * 2.0 < epochs("none"),
        "standard {} vs none {}",
        epochs("standard"),
        epochs("none")
    );
    assert!(epochs("minmax").is_finite());
}

#[test]
fn early_stopping_runs_fewer_epochs_without_a_worse_validation_loss() {
    let (r, _d) = lab(LabName::EarlyStopping, &cfg(100));
    let (full, es) = (&r.variants[0], &r.variants[1]);
    assert!(
        es.epochs_run < full.epochs_run,
        "{} vs {}",
        es.epochs_run,
        full.epochs_run
    );
    assert!(
        es.val_loss <= full.best_val_loss * 1.05 + 1e-3,
        "{} vs best {}",
        es.val_loss,
        full.best_val_loss
    );
}

#[test]
fn labs_are_deterministic_under_the_seed_and_init_zeros_does_not_learn() {
    let c = cfg(20);
    let (a, _d1) = lab(LabName::Init, &c);
    let (b, _d2) = lab(LabName::Init, &c);
    assert_eq!(a.rows, b.rows);
    let zeros = a.variant("zeros").unwrap();
    assert_eq!(zeros.extra["grad_norm_layer1"], 0.0);
    assert!(a.rows[0][2] == "no" && a.rows[2][2] == "yes", "{:?}", a.rows);
    let (act, _d3) = lab(LabName::Activations, &c);
    assert_eq!(act.variants.len(), 7);
    assert!(act.variants.iter().all(|v| v.extra.contains_key("dead_fraction")));
}

#[test]
fn several_seeds_give_mean_and_spread_and_the_notes_quote_the_table() {
    let c = LabConfig { seeds: 3, ..cfg(30) };
    let (r, dir) = lab(LabName::L2, &c);
    assert_eq!(r.seeds, [0, 1, 2]);
    let none = r.variant("λ = 0").unwrap();
    assert_eq!(none.seeds, [0, 1, 2]);
    // Each seed has its own split and initialisation, so the validation figures spread.
    assert!(none.sd["val_loss"] > 0.0, "{:?}", none.sd);
    assert!(r.rows.iter().all(|row| row[2].contains(" ± ")), "{:?}", r.rows);
    // The first note is derived from the table's own figures at λ = 0 and the largest λ.
    let most = r.variants.last().unwrap();
    let share = |v: &catdog::tabular::labs::VariantResult| format!("{:.1}%", 100.0 * v.extra["near_zero_fraction"]);
    assert!(
        r.notes[0].contains(&share(none)) && r.notes[0].contains(&share(most)),
        "{:?}",
        r.notes
    );
    assert!(r.rows[0][5].starts_with(&share(none)) && r.rows[4][5].starts_with(&share(most)));
    // Markdown cells escape the pipes of |w|.
    let md = std::fs::read_to_string(dir.path().join("table.md")).unwrap();
    assert!(md.contains("\\|w\\| < 1e-3"), "{md}");
    assert!(!md.contains("-0.0000"), "{md}");
}

#[test]
fn regularize_hidden_leaves_the_output_kernel_out_of_the_penalty() {
    use catdog::tabular::dataset::{builtin, Builtin};
    use catdog::tabular::fit::{evaluate, Tensors};
    use catdog::tabular::mlp::{Mlp, MlpConfig};
    let t = builtin(Builtin::Moons, 40, 0.1, 0);
    let data = Tensors::new(&t, &candle_core::Device::Cpu).unwrap();
    let mlp = MlpConfig {
        inputs: 2,
        layers: vec![8],
        outputs: 1,
        activation: Activation::Relu,
        dropout: 0.0,
        norm: Norm::None,
        norm_defaults: NormDefaults::Keras,
        init: Init::Glorot,
    };
    let model = Mlp::new(mlp, 0, &candle_core::Device::Cpu).unwrap();
    let fit = |regularize| FitConfig {
        l2: 1.0,
        regularize,
        ..cfg(1).fit
    };
    let (hidden, data_loss, _) = evaluate(&model, &data, &fit(Regularize::Hidden)).unwrap();
    let (all, _, _) = evaluate(&model, &data, &fit(Regularize::All)).unwrap();
    let sq = |k: &candle_core::Var| {
        k.as_tensor()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let kernels = model.kernels();
    assert!(
        (hidden - data_loss - sq(&kernels[0])).abs() < 1e-4,
        "hidden: {hidden} vs {data_loss} + Σw²"
    );
    assert!(
        (all - hidden - sq(&kernels[1])).abs() < 1e-4,
        "all adds the output kernel: {all} vs {hidden}"
    );
}

#[test]
fn prelu_starts_at_zero_as_in_keras_and_leaky_slopes_outside_0_1_are_refused() {
    use catdog::tabular::mlp::{Mlp, MlpConfig};
    let mlp = MlpConfig {
        inputs: 2,
        layers: vec![4],
        outputs: 1,
        activation: Activation::Prelu,
        dropout: 0.0,
        norm: Norm::None,
        norm_defaults: NormDefaults::Keras,
        init: Init::Glorot,
    };
    let model = Mlp::new(mlp, 0, &candle_core::Device::Cpu).unwrap();
    let (_, slopes) = model.vars().into_iter().find(|(n, _)| n.contains("prelu")).unwrap();
    assert!(slopes
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|a| *a == 0.0));
    assert_eq!(Activation::Prelu.value(-2.0), 0.0);
    for bad in ["leaky_relu:1.5", "leaky_relu:0", "leaky_relu:-0.2"] {
        let e = bad.parse::<Activation>().unwrap_err().to_string();
        assert!(e.contains("(0, 1)"), "{bad}: {e}");
    }
    assert_eq!(
        "leaky_relu:0.2".parse::<Activation>().unwrap(),
        Activation::LeakyRelu { alpha: 0.2 }
    );
}

#[test]
fn out_gives_every_lab_its_own_sub_folder_so_none_overwrites_another() {
    let dir = tempfile::tempdir().unwrap();
    for lab in ["l1", "l2"] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_catdog"))
            .args(["lab", lab, "--epochs", "3", "--seeds", "1", "--quiet", "--out"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for lab in ["l1", "l2"] {
        let md = std::fs::read_to_string(dir.path().join(lab).join("table.md")).unwrap();
        assert!(md.starts_with(&format!("### {lab} ")), "{md}");
    }
    assert!(!dir.path().join("table.md").exists());
}

#[test]
fn layer_norm_uses_the_epsilon_of_the_chosen_defaults() {
    use candle_core::{Device, Tensor};
    use catdog::tabular::mlp::{Mlp, MlpConfig};
    // Inputs small enough that ε matters: the pre-activation's variance is near ε.
    let x = Tensor::from_vec(vec![0.01f32, -0.02, 0.015, 0.03, -0.01, 0.005], (2, 3), &Device::Cpu).unwrap();
    let variance_ratio = |defaults: NormDefaults| -> f64 {
        let mlp = MlpConfig {
            inputs: 3,
            layers: vec![16],
            outputs: 1,
            activation: Activation::Relu,
            dropout: 0.0,
            norm: Norm::Layer,
            norm_defaults: defaults,
            init: Init::Glorot,
        };
        let m = Mlp::new(mlp, 0, &Device::Cpu).unwrap();
        let vars: std::collections::HashMap<String, candle_core::Var> = m.vars().into_iter().collect();
        let z = x
            .matmul(&vars["dense0.weight"].as_tensor().t().unwrap())
            .unwrap()
            .broadcast_add(vars["dense0.bias"].as_tensor())
            .unwrap();
        let var_of = |t: &Tensor| -> f64 {
            let v: Vec<f32> = t.get(0).unwrap().to_vec1().unwrap();
            let mean = v.iter().map(|a| *a as f64).sum::<f64>() / v.len() as f64;
            v.iter().map(|a| (*a as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64
        };
        let normalized = &m.forward(&x, None).unwrap().pre[0];
        // Layer norm with γ = 1, β = 0: var(ẑ) = var(z) / (var(z) + ε), so ε = var(z)·(1/ratio − 1).
        let (vz, vn) = (var_of(&z), var_of(normalized));
        vz * (1.0 / vn - 1.0)
    };
    let keras = variance_ratio(NormDefaults::Keras);
    let torch = variance_ratio(NormDefaults::Torch);
    assert!((keras - 1e-3).abs() < 1e-4, "Keras ε: {keras}");
    assert!((torch - 1e-5).abs() < 2e-6, "PyTorch ε: {torch}");
}

#[test]
fn lab_all_runs_every_lab_into_its_folder_and_indexes_them() {
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_catdog"))
        .args(["lab", "all", "--epochs", "2", "--seeds", "1", "--quiet", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let index = std::fs::read_to_string(dir.path().join("index.md")).unwrap();
    for lab in LabName::ALL {
        assert!(
            dir.path().join(lab.slug()).join("table.md").is_file(),
            "{} missing",
            lab.slug()
        );
        assert!(
            index.contains(&format!("## [{}]({}/table.md)", lab.slug(), lab.slug())),
            "{index}"
        );
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(results.as_array().unwrap().len(), LabName::ALL.len());
}
