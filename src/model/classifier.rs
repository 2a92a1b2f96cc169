//! The whole image classifier (conv base + head) and its checkpoint file.
//!
//! A checkpoint is one safetensors file: the conv base under the timm names (`features.N.weight/bias`), the head
//! as `head.fc1.*` / `head.fc2.*` (PyTorch `nn.Linear` layout), optionally the optimizer state
//! (`optimizer.<param>.<slot>`), and string metadata: `format`, `model` (JSON of [`ModelMeta`]: class names in
//! index order, image size, interpolation, preprocessing, head shape, mode), `classes`, `preprocess`, `epoch`
//! and, in `last.safetensors`, `train_state` (JSON, for `--resume`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::head::{Head, HeadConfig};
use super::vgg16::Vgg16;
use super::weights::read_safetensors;
use crate::data::decode::Interpolation;
use crate::data::preprocess::Preprocess;
use crate::error::{Error, Result};

/// The value of the `format` metadata key.
pub const FORMAT: &str = "catdog-checkpoint-1";

/// Which part of the network trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainMode {
    /// The whole conv base frozen; only the head trains.
    #[default]
    Extract,
    /// Layers from --unfreeze-from onward train with the head.
    Finetune,
}

impl TrainMode {
    /// The name as the flag spells it (`extract`, `finetune`).
    pub fn flag_name(self) -> &'static str {
        match self {
            TrainMode::Extract => "extract",
            TrainMode::Finetune => "finetune",
        }
    }
}

/// What a checkpoint says about its model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Class names in index order.
    pub classes: Vec<String>,
    pub size: u32,
    pub interpolation: Interpolation,
    pub preprocess: Preprocess,
    pub head: HeadConfig,
    pub mode: TrainMode,
    /// First trainable layer (finetune).
    pub unfreeze_from: Option<String>,
    /// Where the conv base came from.
    pub weights: String,
    pub weights_revision: Option<String>,
    pub catdog_version: String,
}

impl ModelMeta {
    /// Checks what a checkpoint says before anything is allocated from it; the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let classes = &self.classes;
        if classes.is_empty() {
            return Err("metadata field 'classes' is empty: a checkpoint needs its class names".into());
        }
        if let Some(c) = classes.iter().find(|c| c.trim().is_empty()) {
            return Err(format!("metadata field 'classes' has an empty name ({c:?})"));
        }
        for (i, c) in classes.iter().enumerate() {
            if classes[..i].contains(c) {
                return Err(format!("metadata field 'classes' names '{c}' twice: {classes:?}"));
            }
        }
        let expected = HeadConfig::outputs_for(classes.len());
        if self.head.n_out != expected {
            return Err(format!(
                "metadata field 'head.n_out' is {} but {} classes need {expected} output(s)",
                self.head.n_out,
                classes.len()
            ));
        }
        crate::limits::check_size(self.size).map_err(|_| {
            format!(
                "metadata field 'size' is {}; expected {}..={}",
                self.size,
                crate::limits::MIN_SIZE,
                crate::limits::MAX_SIZE
            )
        })?;
        let p = &self.preprocess;
        let usable = p.scale.is_finite()
            && p.scale > 0.0
            && p.std.iter().all(|s| s.is_finite() && *s > 0.0)
            && p.mean.iter().all(|m| m.is_finite());
        if !usable {
            return Err(format!(
                "metadata field 'preprocess' is not usable (scale {}, mean {:?}, std {:?}): scale and std must \
                 be finite and positive",
                p.scale, p.mean, p.std
            ));
        }
        if self.head.hidden > crate::limits::MAX_HIDDEN {
            return Err(format!(
                "metadata field 'head.hidden' is {}; at most {} units",
                self.head.hidden,
                crate::limits::MAX_HIDDEN
            ));
        }
        self.head.validate().map_err(|e| format!("metadata field 'head': {e}"))
    }
}

/// Refuses NaN or ±Inf in any float tensor (a diverged run's weights, a corrupted file), naming the tensor.
pub fn check_all_finite(tensors: &HashMap<String, Tensor>) -> std::result::Result<(), String> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        if let Some(bad) = first_non_finite(&tensors[name]) {
            return Err(format!(
                "tensor '{name}' holds {bad}: the weights are not usable (was the run diverging?); use an earlier \
                 checkpoint"
            ));
        }
    }
    Ok(())
}

/// Lists every field where the checkpoint's model (`saved`) differs from the one this run's configuration and
/// data describe (`expected`); an error naming them all, or `Ok` when they agree.
pub fn check_same_model(saved: &ModelMeta, expected: &ModelMeta, checkpoint: &std::path::Path) -> Result<()> {
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

pub use super::tensors::first_non_finite;

/// Named tensors of a safetensors file.
pub type Tensors = HashMap<String, Tensor>;
/// String metadata of a safetensors file.
pub type Metadata = HashMap<String, String>;

/// Conv base + head.
#[derive(Debug, Clone)]
pub struct Classifier {
    pub base: Vgg16,
    pub head: Head,
    pub meta: ModelMeta,
}

impl Classifier {
    /// Logits `[N, n_out]` for preprocessed images `[N, 3, size, size]` (no dropout).
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let f = self.base.forward(x)?;
        self.head.forward(&f, None, self.base.compute())
    }

    /// Class probabilities `[N, classes]`.
    pub fn probabilities(&self, x: &Tensor) -> Result<Tensor> {
        Head::probabilities(&self.logits(x)?)
    }

    /// Every model tensor (base and head) with its name.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut t = self.base.named_tensors();
        t.extend(self.head.named_tensors());
        t
    }

    /// Writes the checkpoint (atomically), with optional extra tensors (optimizer state) and metadata.
    pub fn save(&self, path: &Path, extra: Vec<(String, Tensor)>, mut metadata: HashMap<String, String>) -> Result<()> {
        let mut tensors = self.named_tensors();
        tensors.extend(extra);
        metadata.insert("format".into(), FORMAT.into());
        metadata.insert("model".into(), serde_json::to_string(&self.meta)?);
        metadata.insert("classes".into(), serde_json::to_string(&self.meta.classes)?);
        metadata.insert("preprocess".into(), serde_json::to_string(&self.meta.preprocess)?);
        // How the weights were trained (informative: a checkpoint runs in either precision).
        metadata.insert("precision".into(), self.base.precision().name().into());
        crate::io::write_safetensors(path, &tensors, metadata)
    }

    /// Loads a checkpoint written by [`Self::save`]; also returns all its tensors and metadata.
    pub fn load(path: &Path, device: &Device) -> Result<(Self, Tensors, Metadata)> {
        let (tensors, metadata) = read_safetensors(path)?;
        let err = |message: String| Error::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let meta: ModelMeta =
            match metadata.get("model") {
                Some(s) => serde_json::from_str(s).map_err(|e| err(format!("unreadable 'model' metadata: {e}")))?,
                None => return Err(err(
                    "not a catdog checkpoint (no 'model' metadata); use best.safetensors or last.safetensors from a \
                     `catdog finetune` run folder"
                        .into(),
                )),
            };
        meta.validate().map_err(err)?;
        check_all_finite(&tensors).map_err(err)?;
        let name = path.display().to_string();
        let base = Vgg16::from_tensors(&tensors, &name, device)?;
        let head = Head::from_tensors(meta.head.clone(), &tensors, &name, device)?;
        Ok((Classifier { base, head, meta }, tensors, metadata))
    }
}
