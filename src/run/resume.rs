//! What `--resume` checks before it continues a run: that the checkpoint belongs to this run (its model, classes
//! and data agree with `config.json` and the data folders as they are now).

use std::path::Path;

use crate::error::{Error, Result};
use crate::model::classifier::ModelMeta;

/// Lists every field where the checkpoint's model (`saved`) differs from the one this run's configuration and
/// data describe (`expected`); an error naming them all, or `Ok` when they agree.
pub fn check_same_model(saved: &ModelMeta, expected: &ModelMeta, checkpoint: &Path) -> Result<()> {
    let mut diffs = Vec::new();
    let mut field = |name: &str, saved: String, now: String| {
        if saved != now {
            diffs.push(format!("{name}: checkpoint {saved}, now {now}"));
        }
    };
    field(
        "classes (from the data folders)",
        format!("{:?}", saved.classes),
        format!("{:?}", expected.classes),
    );
    field("size", saved.size.to_string(), expected.size.to_string());
    field(
        "interpolation",
        format!("{:?}", saved.interpolation),
        format!("{:?}", expected.interpolation),
    );
    field(
        "preprocess",
        format!("{:?}", saved.preprocess.mode),
        format!("{:?}", expected.preprocess.mode),
    );
    field("mode", format!("{:?}", saved.mode), format!("{:?}", expected.mode));
    field(
        "unfreeze_from",
        format!("{:?}", saved.unfreeze_from),
        format!("{:?}", expected.unfreeze_from),
    );
    field("head", format!("{:?}", saved.head), format!("{:?}", expected.head));
    // Runs before the path had its own config field wrote "id (path)" as the weights.
    let id = |w: &str| w.split(" (").next().unwrap_or(w).to_string();
    field("weights", id(&saved.weights), id(&expected.weights));
    if diffs.is_empty() {
        return Ok(());
    }
    Err(Error::Checkpoint {
        path: checkpoint.to_path_buf(),
        message: format!(
            "does not belong to this run; refusing to resume because\n  {}\n  (a renamed or added class folder \
             would change which label each image gets). Restore the data folders as they were, or start a new \
             run with another --name",
            diffs.join("\n  ")
        ),
    })
}
