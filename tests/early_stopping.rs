//! Every case of tests/fixtures/early_stopping (Keras 3), driven through the trainer's own callback.

mod common;

use catdog::train::early_stop::{EarlyStopping, EarlyStoppingConfig, Mode};

#[test]
fn every_keras_case_is_reproduced() {
    let path = common::fixtures().join("early_stopping/cases.json");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = j["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for (i, c) in cases.iter().enumerate() {
        let cfg = &c["config"];
        let config = EarlyStoppingConfig {
            monitor: c["monitor"].as_str().unwrap().to_string(),
            patience: cfg["patience"].as_u64().unwrap_or(0) as usize,
            min_delta: cfg["min_delta"].as_f64().unwrap_or(0.0),
            baseline: cfg["baseline"].as_f64(),
            start_from_epoch: cfg["start_from_epoch"].as_u64().unwrap_or(0) as usize,
            restore_best_weights: cfg["restore_best_weights"].as_bool().unwrap_or(false),
            mode: match cfg["mode"].as_str() {
                Some("max") => Mode::Max,
                Some("min") => Mode::Min,
                _ => Mode::Auto,
            },
        };
        let mut es = EarlyStopping::new(config).unwrap();
        let values: Vec<f64> = c["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let mut run = 0;
        for (epoch, v) in values.iter().enumerate() {
            run += 1;
            if es.on_epoch_end(epoch, Some(*v)).stop {
                break;
            }
        }
        let what = format!("case {i}: {} {}", c["sequence"], cfg);
        assert_eq!(run, c["epochs_run"].as_u64().unwrap() as usize, "epochs run, {what}");
        assert_eq!(
            es.stopped_epoch,
            c["stopped_epoch"].as_u64().map(|v| v as usize),
            "stopped epoch, {what}"
        );
        assert_eq!(
            es.best_epoch,
            c["best_epoch"].as_u64().unwrap() as usize,
            "best epoch, {what}"
        );
        assert_eq!(
            es.restore_epoch(),
            c["restored_weights_from_epoch"].as_u64().map(|v| v as usize),
            "restored epoch, {what}"
        );
    }
}

#[test]
fn auto_mode_follows_the_metric_name() {
    assert_eq!(Mode::Auto.resolve("val_loss"), Mode::Min);
    assert_eq!(Mode::Auto.resolve("val_accuracy"), Mode::Max);
    assert_eq!(Mode::Auto.resolve("val_auc"), Mode::Max);
}
