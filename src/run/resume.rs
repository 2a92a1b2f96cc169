//! `--resume`: what a run folder holds to continue from (`config.json`, `last.safetensors` with the optimizer state
//! and progress, the history), which flags may change on the way, and the check that the checkpoint belongs to
//! this run (its model, classes and data agree with `config.json` and the data folders as they are now).

use std::path::Path;

use candle_core::Device;

use crate::error::{Error, Result};
use crate::model::classifier::Classifier;
use crate::model::vgg16::Vgg16;
use crate::train::config::TrainConfig;
use crate::train::history::History;
use crate::train::state::{Resume, TrainState};

/// Reads `dir/config.json` and `dir/last.safetensors` (onto `device`): the run's configuration, its conv base and
/// where it stopped.
pub fn load(dir: &Path, device: &Device) -> Result<(TrainConfig, Vgg16, Resume)> {
    let cfg_path = super::RunPaths::new(dir).config();
    let text = std::fs::read_to_string(&cfg_path).map_err(|_| {
        Error::invalid(format!(
            "{}: cannot resume: no config.json (is it a run folder?)",
            dir.display()
        ))
    })?;
    let cfg: TrainConfig = serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
        path: cfg_path.clone(),
        message: format!("not a catdog config.json: {e}"),
    })?;
    let last = super::RunPaths::new(dir).last();
    if !super::has_checkpoint(dir) {
        return Err(no_checkpoint(dir));
    }
    let (model, tensors, meta) = Classifier::load(&last, device)?;
    let state_json = meta.get("train_state").ok_or_else(|| Error::Checkpoint {
        path: last.clone(),
        message: "no train_state metadata: not a last.safetensors that --resume can continue".into(),
    })?;
    let state: TrainState = serde_json::from_str(state_json).map_err(|e| Error::Checkpoint {
        path: last.clone(),
        message: format!("train_state: {e}"),
    })?;
    state.check(cfg.batch_size).map_err(|why| Error::Checkpoint {
        path: last.clone(),
        message: format!("{why}: the file was damaged or edited; it cannot be resumed"),
    })?;
    let history = History::read(dir).unwrap_or_default();
    let resume = Resume {
        checkpoint: last,
        meta: model.meta,
        tensors,
        state,
        history,
    };
    Ok((cfg, model.base, resume))
}

/// Why a run folder without `last.safetensors` cannot be resumed. Epochs in `history.csv` (or a
/// `best.safetensors`) mean the run got past its first epoch and then failed to write the checkpoint (a full disk,
/// say): that is said, with what is still usable, instead of claiming the run never finished an epoch.
fn no_checkpoint(dir: &Path) -> Error {
    let name = dir
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let epochs = History::read(dir).map(|h| h.epochs.len()).unwrap_or(0);
    let best = super::RunPaths::new(dir).best();
    if epochs == 0 && !best.exists() {
        return Error::invalid(format!(
            "{}: nothing to resume: the run stopped before its first epoch ended (no last.safetensors); start it \
             again with the same flags and --name {name} (the folder is reused)",
            dir.display()
        ));
    }
    let best_note = if best.exists() {
        format!(
            "; the best epoch's weights are in {} (evaluate or predict with it)",
            best.display()
        )
    } else {
        String::new()
    };
    Error::invalid(format!(
        "{}: cannot resume: last.safetensors is missing although the run's history records {epochs} finished epoch(s) — \
         it was not written (a full disk?){best_note}. Free space and start the run again with the same flags in a \
         new --name",
        dir.display()
    ))
}

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
];

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
/// the configuration those flags build, `weights_flag` the `--weights` given. Empty when the resume may go on.
pub fn conflicting_flags(
    explicit: &[String],
    saved: &TrainConfig,
    now: &TrainConfig,
    weights_flag: &str,
) -> Result<Vec<String>> {
    let now = serde_json::to_value(now).map_err(|e| Error::Other(e.to_string()))?;
    let before = serde_json::to_value(saved).map_err(|e| Error::Other(e.to_string()))?;
    let differs = |field: &str| match field {
        // Runs before weights_path existed wrote "id (path)" as the weights.
        "weights" => !(weights_flag == saved.weights || saved.weights.starts_with(&format!("{weights_flag} ("))),
        f => now.get(f) != before.get(f),
    };
    Ok(explicit
        .iter()
        .filter(|f| !MAY_CHANGE.contains(&f.as_str()))
        .filter(|flag| match config_field(flag) {
            None => true,
            Some("") => differs(flag),
            Some(field) => differs(field),
        })
        .map(|flag| format!("--{}", flag.replace('_', "-")))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TrainConfig {
        let text = include_str!("../../tests/fixtures/run_config.json");
        serde_json::from_str(text).expect("the fixture is a config.json")
    }

    #[test]
    fn only_flags_that_change_the_saved_config_conflict() {
        let saved = config();
        let flags = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // The same values again, and the flags that may change: no conflict.
        let none = conflicting_flags(&flags(&["epochs", "lr", "device"]), &saved, &saved, &saved.weights).unwrap();
        assert!(none.is_empty(), "{none:?}");
        let mut now = saved.clone();
        now.optimizer.lr *= 10.0;
        now.monitor = "val_accuracy".into();
        let c = conflicting_flags(
            &flags(&["lr", "monitor", "epochs", "name"]),
            &saved,
            &now,
            &saved.weights,
        )
        .unwrap();
        assert_eq!(c, ["--lr", "--monitor", "--name"]);
        let c = conflicting_flags(&flags(&["weights"]), &saved, &saved, "someone/else").unwrap();
        assert_eq!(c, ["--weights"]);
    }
}
