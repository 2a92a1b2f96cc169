//! The effects the course claims, pinned on seeded runs of the labs (with generous margins).

use catdog::tabular::dataset::Scaling;
use catdog::tabular::fit::FitConfig;
use catdog::tabular::labs::{run_lab, LabConfig, LabName, LabResult};
use catdog::tabular::mlp::{Activation, Init, Norm, NormDefaults};
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
            early_stopping: None,
            seed: 0,
        },
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
