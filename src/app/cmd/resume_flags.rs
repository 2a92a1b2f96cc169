//! Which `finetune` flags may be given with `--resume`: those that say how long and where to compute; any other
//! flag given must leave the run's config.json as it is (compared field by field, [`TrainConfig::differing_fields`]).

use crate::train::config::TrainConfig;

/// Flags that may be given with `--resume` (the rest are fixed by the run's config.json): they say how long and
/// where to compute, not what.
pub const MAY_CHANGE: &[&str] = &[
    "resume",
    "epochs",
    "patience",
    "quiet",
    "threads",
    "device",
    "kernels",
    "precision",
    "tensorboard",
];

/// The flags of [`MAY_CHANGE`] as the user types them, for messages: "--epochs, --patience, … and --tensorboard".
pub fn may_change_list() -> String {
    let flags: Vec<String> = MAY_CHANGE
        .iter()
        .filter(|f| **f != "resume")
        .map(|f| format!("--{}", f.replace('_', "-")))
        .collect();
    match flags.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => flags.join(""),
    }
}

/// The `config.json` field each flag sets, where its name differs from the flag's; `None` for flags that name the
/// run folder (never allowed with `--resume`).
fn config_field(flag: &str) -> Option<&'static str> {
    Some(match flag {
        "lr" | "momentum" | "nesterov" | "optimizer" => "optimizer",
        "min_delta" | "baseline" | "start_from_epoch" | "restore_best_weights" | "es_mode" => "early_stopping",
        "reduce_lr_patience" | "reduce_lr_factor" | "min_lr" => "reduce_lr",
        "augment" | "rotation" | "width_shift" | "height_shift" | "shear" | "zoom" | "horizontal_flip"
        | "vertical_flip" | "brightness" | "channel_shift" | "fill_mode" | "cval" => "augment",
        "name" | "runs_dir" => return None,
        _ => return Some(""),
    })
}

/// The flags given explicitly (`explicit`, as clap names them) that would change the saved configuration: `now` is
/// the configuration those flags build. Empty when the resume may go on.
pub fn conflicting_flags(explicit: &[String], saved: &TrainConfig, now: &TrainConfig) -> Vec<String> {
    let changed = saved.differing_fields(now);
    let differs = |field: &str| changed.contains(&field);
    explicit
        .iter()
        .filter(|f| !MAY_CHANGE.contains(&f.as_str()))
        .filter(|flag| match config_field(flag) {
            None => true,
            Some("") => differs(flag),
            Some(field) => differs(field),
        })
        .map(|flag| format!("--{}", flag.replace('_', "-")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TrainConfig {
        let text = include_str!("../../../tests/fixtures/run_config.json");
        serde_json::from_str(text).expect("the fixture is a config.json")
    }

    #[test]
    fn only_flags_that_change_the_saved_config_conflict() {
        let saved = config();
        let flags = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // The same values again, and the flags that may change: no conflict.
        let none = conflicting_flags(&flags(&["epochs", "lr", "device"]), &saved, &saved);
        assert!(none.is_empty(), "{none:?}");
        let mut now = saved.clone();
        now.optimizer.lr *= 10.0;
        now.monitor = "val_accuracy".into();
        let c = conflicting_flags(&flags(&["lr", "monitor", "epochs", "name"]), &saved, &now);
        assert_eq!(c, ["--lr", "--monitor", "--name"]);
        let mut other = saved.clone();
        other.weights = "someone/else".into();
        assert_eq!(conflicting_flags(&flags(&["weights"]), &saved, &other), ["--weights"]);
        // A run from before weights_path wrote "id (path)" as its weights: the same id is no change.
        let mut legacy = saved.clone();
        legacy.weights = format!("{} (/cache/model.safetensors)", saved.weights);
        assert!(conflicting_flags(&flags(&["weights"]), &legacy, &saved).is_empty());
        // A field given no flag of its own name is compared too: --features.
        let mut with_features = saved.clone();
        with_features.features = Some("feats".into());
        assert_eq!(
            conflicting_flags(&flags(&["features"]), &saved, &with_features),
            ["--features"]
        );
    }
}
