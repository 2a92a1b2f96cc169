//! What a run is started with (`config.json`): its data, model, training and output settings, validated.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::early_stop::{EarlyStoppingConfig, Mode};
use super::loss_scale::LossScaling;
use super::monitor::Monitor;
use super::optim::OptimConfig;
use crate::data::augment::AugmentConfig;
use crate::data::decode::Interpolation;
use crate::data::preprocess::Preprocess;
use crate::error::{Error, Result};
use crate::kernels::{Kernels, Precision};
use crate::model::classifier::TrainMode;
use crate::model::head::HeadKind;
use crate::model::vgg16::{layer_index, LAYERS};

/// When to use the frozen-prefix cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// On when the training input is deterministic (no augmentation); validation always uses it.
    #[default]
    Auto,
    /// Always (an error with augmentation, whose input changes every epoch).
    On,
    /// Never for training (validation still uses it).
    Off,
}

/// Reduce-on-plateau settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReduceLrSettings {
    pub factor: f64,
    pub patience: usize,
    pub min_lr: f64,
}

/// Everything a run was started with (written as `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub data: PathBuf,
    pub mode: TrainMode,
    pub unfreeze_from: String,
    pub weights: String,
    pub weights_revision: Option<String>,
    /// Where a hub model's file was found (the Hugging Face cache); `weights` keeps the id as given.
    #[serde(default)]
    pub weights_path: Option<PathBuf>,
    pub preprocess: Preprocess,
    pub size: u32,
    pub interpolation: Interpolation,
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub optimizer: OptimConfig,
    pub head: HeadKind,
    pub hidden: usize,
    pub dropout: f64,
    pub l1: f64,
    pub l2: f64,
    pub augment: Option<AugmentConfig>,
    pub val_split: Option<f64>,
    /// The metric of the best checkpoint, early stopping and reduce-on-plateau (`--monitor`; `loss` when there
    /// is no validation data).
    #[serde(default = "default_monitor")]
    pub monitor: String,
    pub early_stopping: Option<EarlyStoppingConfig>,
    pub reduce_lr: Option<ReduceLrSettings>,
    pub cache: CacheMode,
    /// Memory budget of the feature cache, MiB (over it the cache goes to a file in the run folder).
    pub feature_cache_mb: usize,
    /// Memory budget of decoded training images, MiB.
    pub image_cache_mb: usize,
    pub device: String,
    /// The kernels the run uses (`fast` or `portable`; portable whenever the device is not the CPU).
    #[serde(default)]
    pub kernels: Kernels,
    /// The precision of the convolutions' and dense layers' products that runs (`fp32`, or `bf16` where a kernel for it exists).
    #[serde(default)]
    pub precision: Precision,
    /// The dynamic loss scaling of an fp16 run (PyTorch's GradScaler defaults); absent otherwise. Follows
    /// `precision` ([`Self::set_precision`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scaling: Option<LossScaling>,
    pub strict: bool,
    /// The checkpoint the run started from (`--init-from`: its conv base and head), if any.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// The files of `catdog extract` the head trains on (`--features`) instead of running the conv base.
    #[serde(default)]
    pub features: Option<PathBuf>,
    /// Where the run's TensorBoard event files go (`--tensorboard`), if anywhere.
    #[serde(default)]
    pub tensorboard: Option<PathBuf>,
    pub catdog_version: String,
}

fn default_monitor() -> String {
    "val_loss".into()
}

impl TrainConfig {
    /// The fields (by their config.json names) where `now` differs from this saved configuration. Every field is
    /// compared (the destructuring fails to compile when one is added and not listed); a saved `weights` of the
    /// form "id (path)", as runs before `weights_path` wrote it, equals the id.
    pub fn differing_fields(&self, now: &TrainConfig) -> Vec<&'static str> {
        let TrainConfig {
            data,
            mode,
            unfreeze_from,
            weights,
            weights_revision,
            weights_path,
            preprocess,
            size,
            interpolation,
            epochs,
            batch_size,
            seed,
            optimizer,
            head,
            hidden,
            dropout,
            l1,
            l2,
            augment,
            val_split,
            monitor,
            early_stopping,
            reduce_lr,
            cache,
            feature_cache_mb,
            image_cache_mb,
            device,
            kernels,
            precision,
            // Follows precision, which is compared.
            loss_scaling: _,
            strict,
            init_from,
            features,
            tensorboard,
            catdog_version,
        } = self;
        let mut out = Vec::new();
        let mut differ = |name: &'static str, differs: bool| {
            if differs {
                out.push(name);
            }
        };
        differ(
            "weights",
            !(now.weights == *weights || weights.starts_with(&format!("{} (", now.weights))),
        );
        differ("data", data != &now.data);
        differ("mode", mode != &now.mode);
        differ("unfreeze_from", unfreeze_from != &now.unfreeze_from);
        differ("weights_revision", weights_revision != &now.weights_revision);
        differ("weights_path", weights_path != &now.weights_path);
        differ("preprocess", preprocess != &now.preprocess);
        differ("size", size != &now.size);
        differ("interpolation", interpolation != &now.interpolation);
        differ("epochs", epochs != &now.epochs);
        differ("batch_size", batch_size != &now.batch_size);
        differ("seed", seed != &now.seed);
        differ("optimizer", optimizer != &now.optimizer);
        differ("head", head != &now.head);
        differ("hidden", hidden != &now.hidden);
        differ("dropout", dropout != &now.dropout);
        differ("l1", l1 != &now.l1);
        differ("l2", l2 != &now.l2);
        differ("augment", augment != &now.augment);
        differ("val_split", val_split != &now.val_split);
        differ("monitor", monitor != &now.monitor);
        differ("early_stopping", early_stopping != &now.early_stopping);
        differ("reduce_lr", reduce_lr != &now.reduce_lr);
        differ("cache", cache != &now.cache);
        differ("feature_cache_mb", feature_cache_mb != &now.feature_cache_mb);
        differ("image_cache_mb", image_cache_mb != &now.image_cache_mb);
        differ("device", device != &now.device);
        differ("kernels", kernels != &now.kernels);
        differ("precision", precision != &now.precision);
        differ("strict", strict != &now.strict);
        differ("init_from", init_from != &now.init_from);
        differ("features", features != &now.features);
        differ("tensorboard", tensorboard != &now.tensorboard);
        differ("catdog_version", catdog_version != &now.catdog_version);
        out
    }

    /// Sets the precision that runs, and the loss scaling that goes with it (fp16's, none otherwise).
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
        self.loss_scaling = (precision == Precision::Fp16).then(LossScaling::default);
    }

    /// The first trainable layer (an index into [`LAYERS`]; `LAYERS.len()` for extract).
    pub fn split(&self) -> Result<usize> {
        match self.mode {
            TrainMode::Extract => Ok(LAYERS.len()),
            TrainMode::Finetune => layer_index(&self.unfreeze_from),
        }
    }

    /// The metric that decides the best checkpoint, early stopping and reduce-on-plateau, with its direction
    /// (early stopping's `--es-mode` when it is on, Keras' `auto` otherwise).
    pub fn monitor(&self) -> Result<Monitor> {
        let mode = self.early_stopping.as_ref().map_or(Mode::Auto, |es| es.mode);
        Monitor::parse(&self.monitor, mode)
    }

    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::invalid("--epochs must be at least 1"));
        }
        crate::limits::check_batch(self.batch_size)?;
        crate::limits::check_size(self.size)?;
        if self.hidden > crate::limits::MAX_HIDDEN {
            return Err(Error::invalid(format!(
                "--hidden {} is out of range: use 0..={} units",
                self.hidden,
                crate::limits::MAX_HIDDEN
            )));
        }
        for (flag, v) in [("--l1", self.l1), ("--l2", self.l2)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::invalid(format!("{flag} must be ≥ 0, got {v}")));
            }
        }
        self.optimizer.validate()?;
        self.split()?;
        let monitor = self.monitor()?;
        if let Some(es) = &self.early_stopping {
            if es.monitor != monitor.name {
                return Err(Error::invalid(format!(
                    "early stopping watches {} but the run monitors {}: one --monitor serves both",
                    es.monitor, monitor.name
                )));
            }
            if !super::history::MONITORABLE.contains(&es.monitor.as_str()) {
                return Err(Error::invalid(format!(
                    "--monitor {}: expected one of {}",
                    es.monitor,
                    super::history::MONITORABLE.join(", ")
                )));
            }
        }
        let augmenting = self.augment.is_some_and(|a| !a.is_identity());
        if self.cache == CacheMode::On && augmenting {
            return Err(Error::invalid(
                "--cache on needs a deterministic input, but augmentation changes the images every epoch; \
                 use --cache auto (the frozen part then runs every step without gradients) or drop the augmentation flags",
            ));
        }
        if self.features.is_some() {
            self.check_features_apply(augmenting)?;
        }
        Ok(())
    }

    /// `--features` holds one fixed block5_pool output per image: it serves the extraction mode, without
    /// augmentation, through the feature cache.
    fn check_features_apply(&self, augmenting: bool) -> Result<()> {
        let problem = if self.mode != TrainMode::Extract {
            "trains the head on fixed block5_pool features, so it needs --mode extract (fine-tuning runs block5 itself)"
        } else if augmenting {
            "holds one feature map per image, but augmentation changes the images every epoch: drop the augmentation flags"
        } else if self.cache == CacheMode::Off {
            "replaces the conv base with the feature cache it fills: drop --cache off"
        } else {
            return Ok(());
        };
        Err(Error::invalid(format!("--features {problem}")))
    }
}
