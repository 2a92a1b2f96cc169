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
