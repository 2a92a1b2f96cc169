//! The training loop of `catdog finetune`: feature extraction or fine-tuning from a layer, with the frozen-prefix
//! cache, dropout, L1/L2, Keras-style optimizers, early stopping, reduce-on-plateau, checkpoints (atomic),
//! resume (also mid-epoch, bit for bit), NaN detection and Ctrl-C handling.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::{Device, Tensor};

use super::cache::FeatureCache;
use super::callbacks::{check_loss, Callbacks};
use super::early_stop::EarlyStopping;
use super::features::FeatureFiles;
use super::fit_loop::{self, Batches, Checkpointing, Interrupter, Learner, Monitored};
use super::history::{EpochRecord, History};
use super::loss;
use super::loss_scale::LossScaler;
use super::monitor::Monitor;
use super::optim::Optimizer;
use crate::data::augment::AugmentConfig;
use crate::data::folder::{ImageFolder, Splits};
use crate::data::loader::{mix, Loader, LoaderConfig};
use crate::error::{Error, Result};
use crate::model::classifier::{Classifier, ModelMeta, TrainMode};
use crate::model::head::{Head, HeadConfig};
use crate::model::vgg16::{Vgg16, LAYERS};
use crate::tensorboard::RunBoard;

pub use super::config::{CacheMode, ReduceLrSettings, TrainConfig};
pub use super::state::{Resume, TrainState};

pub use super::fit_loop::Ending;

/// A step's forward pass: the logits, the data loss and the penalty as numbers, and their sum to differentiate.
struct LossPass {
    logits: Tensor,
    data_loss: f64,
    penalty: f64,
    total: Tensor,
}

/// What one training step measured: its batch's mean data loss and penalty, and how many it classified right.
#[derive(Debug, Clone, Copy)]
struct StepStats {
    data_loss: f64,
    penalty: f64,
    correct: usize,
}

/// A validation pass: the mean data loss, the loss with the penalty (as Keras reports `val_loss`), the accuracy.
#[derive(Debug, Clone, Copy)]
struct ValMetrics {
    data_loss: f64,
    loss: f64,
    accuracy: f64,
}

/// Knobs of a run that are not part of its configuration.
pub struct RunOptions<'a> {
    pub quiet: bool,
    pub interrupt: &'a AtomicBool,
    /// Print one line per epoch (and other notes) to stderr.
    pub log: &'a mut dyn FnMut(&str),
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    pub ending: Ending,
    pub history: History,
    pub best_epoch: Option<usize>,
    pub run_dir: PathBuf,
    pub bad_files: Vec<(PathBuf, String)>,
}

/// A training run in a run folder.
pub struct Trainer {
    pub cfg: TrainConfig,
    pub model: Classifier,
    optimizer: Optimizer,
    train: Loader,
    val: Option<Loader>,
    train_cache: Option<FeatureCache>,
    val_cache: Option<FeatureCache>,
    /// `--features`: where the caches come from instead of the conv base.
    features: Option<FeatureFiles>,
    /// `--tensorboard`: the event files the epochs go to.
    board: Option<RunBoard>,
    pub history: History,
    state: TrainState,
    run_dir: PathBuf,
    split: usize,
    cache_seconds: f64,
    /// fp16: the skipped steps already reported.
    skips_reported: u64,
}

fn loader_cfg(cfg: &TrainConfig, augment: Option<AugmentConfig>, shuffle: bool, image_cache: usize) -> LoaderConfig {
    let mut l = LoaderConfig::new(cfg.batch_size, cfg.size, cfg.preprocess);
    l.interpolation = cfg.interpolation;
    l.augment = augment;
    l.shuffle = shuffle;
    l.seed = cfg.seed;
    l.cache_bytes = image_cache;
    l.strict = cfg.strict;
    l
}

/// The classifier of a new run: `base` with its layers from `split` on trainable, in the run's kernels and
/// precision, and a new head for `classes`.
fn new_model(
    cfg: &TrainConfig,
    mut base: Vgg16,
    split: usize,
    classes: &[String],
    device: &Device,
) -> Result<Classifier> {
    base.set_trainable_from(split)?;
    base.set_kernels(cfg.kernels.for_device(device));
    base.set_precision(cfg.precision);
    let (c, h, w) = base.output_shape(LAYERS.len() - 1, cfg.size as usize);
    let head_cfg = HeadConfig {
        kind: cfg.head,
        in_shape: [c, h, w],
        hidden: cfg.hidden,
        dropout: cfg.dropout,
        n_out: HeadConfig::outputs_for(classes.len()),
    };
    let head = Head::new(head_cfg.clone(), cfg.seed, device)?;
    let meta = ModelMeta {
        classes: classes.to_vec(),
        size: cfg.size,
        interpolation: cfg.interpolation,
        preprocess: cfg.preprocess,
        head: head_cfg,
        mode: cfg.mode,
        unfreeze_from: (cfg.mode == TrainMode::Finetune).then(|| cfg.unfreeze_from.clone()),
        weights: cfg.weights.clone(),
        weights_revision: cfg.weights_revision.clone(),
        catdog_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    Ok(Classifier { base, head, meta })
}

/// A resumed run's state and history, its weights and optimizer state loaded into `model` and `optimizer`
/// (after checking that the checkpoint holds this run's model).
fn resumed(
    cfg: &TrainConfig,
    r: Resume,
    model: &mut Classifier,
    optimizer: &mut Optimizer,
) -> Result<(TrainState, History)> {
    crate::model::classifier::check_same_model(&r.meta, &model.meta, &r.checkpoint)?;
    model.base.load_values(&r.tensors)?;
    model.head.load_values(&r.tensors)?;
    optimizer.load_state(&r.tensors, r.state.optimizer_steps)?;
    optimizer.set_lr(r.state.lr);
    let mut state = r.state;
    // --patience may change on a resume: the saved callback keeps its counters, with the new patience.
    match (&cfg.early_stopping, state.callbacks.early_stopping.as_mut()) {
        (Some(c), Some(es)) => es.config.patience = c.patience,
        (Some(c), None) => state.callbacks.early_stopping = Some(EarlyStopping::new(c.clone())?),
        _ => {}
    }
    // A finished run given more epochs is a new fit, as a second model.fit() in Keras: patience counts
    // again from here. The best value is kept, so best.safetensors is only replaced by a better epoch.
    if state.finished && cfg.epochs > state.epoch {
        state.finished = false;
        state.callbacks.start_new_fit();
    }
    // The scaler goes on where it was; a resume that switches to or from fp16 starts or drops one.
    state.loss_scaler = match (cfg.loss_scaling, state.loss_scaler) {
        (Some(_), Some(kept)) => Some(kept),
        (scaling, _) => scaling.map(LossScaler::new),
    };
    let mut history = r.history;
    history.epochs.truncate(state.epoch);
    Ok((state, history))
}

impl Trainer {
    /// Sets up a new run (`resume = None`) or continues one from `last.safetensors`.
    pub fn new(
        cfg: TrainConfig,
        base: Vgg16,
        splits: &Splits,
        run_dir: &Path,
        resume: Option<Resume>,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let split = cfg.split()?;
        let kernels = cfg.kernels.for_device(device);
        let mut model = new_model(&cfg, base, split, &splits.train.classes, device)?;
        let mut params = model.head.vars();
        params.extend(model.base.trainable_vars());
        let mut optimizer = Optimizer::new(cfg.optimizer.clone(), params)?;
        optimizer.set_kernels(kernels);

        let augmenting = cfg.augment.filter(|a| !a.is_identity());
        let image_cache = cfg.image_cache_mb * 1024 * 1024;
        let train = Loader::new(
            splits.train.samples.clone(),
            loader_cfg(&cfg, augmenting, true, image_cache),
        )?;
        let val = splits
            .val
            .as_ref()
            .map(|v: &ImageFolder| Loader::new(v.samples.clone(), loader_cfg(&cfg, None, false, 0)))
            .transpose()?;
        let (state, history) = match resume {
            Some(r) => resumed(&cfg, r, &mut model, &mut optimizer)?,
            None => (TrainState::fresh(&cfg)?, History::default()),
        };
        let state_skips = state.loss_scaler.map_or(0, |s| s.skipped_steps);
        Ok(Trainer {
            cfg,
            model,
            optimizer,
            train,
            val,
            train_cache: None,
            val_cache: None,
            features: None,
            board: None,
            history,
            state,
            run_dir: run_dir.to_path_buf(),
            split,
            cache_seconds: 0.0,
            skips_reported: state_skips,
        })
    }

    /// Starts from the head (and trainable conv layers) of a checkpoint of the same shape (`--init-from`): its
    /// classes, size, interpolation, preprocessing and head (kind, input, hidden units, outputs) must be this run's,
    /// else one error lists every difference. The optimizer, history and callbacks start afresh.
    pub fn init_from(&mut self, checkpoint: &Path, saved: &ModelMeta, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let now = &self.model.meta;
        let mut diffs = Vec::new();
        let mut field = |name: &str, saved: String, now: String| {
            if saved != now {
                diffs.push(format!("{name}: checkpoint {saved}, this run {now}"));
            }
        };
        field("classes", format!("{:?}", saved.classes), format!("{:?}", now.classes));
        field("size", saved.size.to_string(), now.size.to_string());
        field(
            "interpolation",
            format!("{:?}", saved.interpolation),
            format!("{:?}", now.interpolation),
        );
        field(
            "preprocess",
            format!("{:?}", saved.preprocess),
            format!("{:?}", now.preprocess),
        );
        let shape = |h: &HeadConfig| format!("{:?} {:?} → {} → {}", h.kind, h.in_shape, h.hidden, h.n_out);
        field("head", shape(&saved.head), shape(&now.head));
        if !diffs.is_empty() {
            return Err(Error::invalid(format!(
                "--init-from {}: the checkpoint does not fit this run:\n  {}\n  Give this run the checkpoint's \
                 settings (--size, --interpolation, --preprocess, --head, --hidden, the same class folders)",
                checkpoint.display(),
                diffs.join("\n  ")
            )));
        }
        self.model.base.load_values(tensors)?;
        self.model.head.load_values(tensors)
    }

    /// The paths of the run folder's files.
    pub fn paths(&self) -> crate::run::RunPaths {
        crate::run::RunPaths::new(&self.run_dir)
    }

    /// True when the training batches go through the feature cache.
    pub fn caching(&self) -> bool {
        match self.cfg.cache {
            CacheMode::On => true,
            CacheMode::Off => false,
            CacheMode::Auto => self.cfg.augment.is_none_or(|a| a.is_identity()),
        }
    }

    /// Trains on the features of `catdog extract` (`--features`) instead of running the conv base: the caches
    /// are filled from `files` (the validation one from the base when the files hold no validation image).
    pub fn use_features(&mut self, files: FeatureFiles) {
        self.features = Some(files);
    }

    /// Builds the feature caches (training when caching, validation always).
    fn build_caches(&mut self, quiet: bool, log: &mut dyn FnMut(&str)) -> Result<()> {
        if self.caching() && self.train_cache.is_none() {
            let (c, good) = self.train_cache_built(quiet)?;
            let prefix = LAYERS[self.split.min(LAYERS.len()) - 1].name;
            log(&format!(
                "{} the frozen part's output (up to {prefix}, {:?} per image) for {good} training images in {:.1} s{}",
                if self.features.is_some() { "read" } else { "cached" },
                c.shape,
                c.build_seconds,
                if c.on_disk() {
                    " (on disk: over --feature-cache-mb)"
                } else {
                    ""
                }
            ));
            self.cache_seconds += c.build_seconds;
            self.train_cache = Some(c);
        }
        if let (Some(val), None) = (&self.val, &self.val_cache) {
            let budget = self.cfg.feature_cache_mb * 1024 * 1024;
            let c = match self.features.as_mut().filter(|f| f.covered(val.samples()) > 0) {
                Some(files) => {
                    let (c, bad) = files.cache("validation", val.samples(), budget, &self.run_dir)?;
                    for (p, r) in bad {
                        if let Some(i) = val.samples().iter().position(|s| s.path == p) {
                            val.mark_bad(i, r);
                        }
                    }
                    c
                }
                None => {
                    if self.features.is_some() {
                        log("--features holds no validation image: the conv base computes their features");
                    }
                    let bar = crate::progress::bar(val.len() as u64, "cache val", "images", quiet);
                    let c = FeatureCache::build("val", val, &self.model.base, budget, &self.run_dir, &mut |n| {
                        bar.inc(n as u64)
                    })?;
                    bar.finish_and_clear();
                    c
                }
            };
            self.cache_seconds += c.build_seconds;
            self.val_cache = Some(c);
        }
        Ok(())
    }

    /// The training cache, from `--features` or the conv base, with how many images it holds; the training
    /// loader learns which files are bad from it.
    fn train_cache_built(&mut self, quiet: bool) -> Result<(FeatureCache, usize)> {
        let budget = self.cfg.feature_cache_mb * 1024 * 1024;
        let samples = self.train.samples().to_vec();
        let (cache, bad) = match self.features.as_mut() {
            Some(files) => files.cache("train", &samples, budget, &self.run_dir)?,
            None => {
                let det = Loader::new(samples.clone(), loader_cfg(&self.cfg, None, false, 0))?;
                let bar = crate::progress::bar(det.len() as u64, "cache train", "images", quiet);
                let c = FeatureCache::build("train", &det, &self.model.base, budget, &self.run_dir, &mut |n| {
                    bar.inc(n as u64)
                })?;
                bar.finish_and_clear();
                (c, det.bad_files())
            }
        };
        for (p, r) in &bad {
            if let Some(i) = samples.iter().position(|s| &s.path == p) {
                self.train.mark_bad(i, r.clone());
            }
        }
        Ok((cache, samples.len() - bad.len()))
    }

    fn dropout_seed(&self, epoch: usize, batch: usize) -> u64 {
        mix(mix(self.cfg.seed ^ 0xD209) ^ mix(epoch as u64) ^ (batch as u64).wrapping_mul(0x9E37))
    }

    /// One training step on a batch of frozen-prefix outputs.
    fn step(&mut self, h: &Tensor, labels: &[u32], epoch: usize, batch: usize) -> Result<StepStats> {
        let pass = self.forward_loss(h, labels, epoch, batch)?;
        let worst = if pass.data_loss.is_finite() {
            pass.penalty
        } else {
            pass.data_loss
        };
        // Checked here first so that the message (and where the last checkpoint is) is only built on failure.
        if !worst.is_finite() {
            check_loss(worst, epoch, batch, self.optimizer.lr(), Some(&self.kept_checkpoint()))?;
        }
        self.backward_and_update(&pass.total)?;
        Ok(StepStats {
            data_loss: pass.data_loss,
            penalty: pass.penalty,
            correct: loss::correct(&pass.logits, labels)?,
        })
    }

    /// The backward pass of a step's loss and the update: through fp16's loss scaler when it runs, which skips the
    /// update when the gradients overflowed.
    fn backward_and_update(&mut self, total: &Tensor) -> Result<()> {
        super::loss_scale::backward_and_step(self.state.loss_scaler.as_mut(), total, &mut self.optimizer)
    }

    /// The forward pass of a training step on `h` (the frozen part's output) and its loss, before any update.
    fn forward_loss(&mut self, h: &Tensor, labels: &[u32], epoch: usize, batch: usize) -> Result<LossPass> {
        let feats = self.model.base.forward_trainable(h)?;
        let logits =
            self.model
                .head
                .forward(&feats, Some(self.dropout_seed(epoch, batch)), self.model.base.compute())?;
        let dl = loss::data_loss(&logits, labels)?;
        let pen = loss::penalty(&self.model.head.kernels(), self.cfg.l1, self.cfg.l2)?;
        let total = match &pen {
            Some(p) => (&dl + p)?,
            None => dl.clone(),
        };
        Ok(LossPass {
            data_loss: dl.to_scalar::<f32>()? as f64,
            penalty: pen.as_ref().map(|p| p.to_scalar::<f32>()).transpose()?.unwrap_or(0.0) as f64,
            logits,
            total,
        })
    }

    /// fastai's learning-rate finder on this run's model and data (see [`super::lr_find`]): one step per rate of
    /// `lrs` over the training batches (epoch after epoch), recording each step's loss (penalty included) before
    /// its update, until the smoothed loss exceeds 4× its minimum or turns non-finite, or (fp16) f16 overflows.
    /// The model is changed: throw the trainer away afterwards.
    pub fn lr_sweep(&mut self, lrs: &[f64], quiet: bool, log: &mut dyn FnMut(&str)) -> Result<Vec<(f64, f64)>> {
        std::fs::create_dir_all(&self.run_dir).map_err(|e| Error::io(&self.run_dir, e))?;
        self.build_caches(quiet, log)?;
        let device = self.model.base.device().clone();
        let bar = crate::progress::bar(lrs.len() as u64, "lr-find", "steps", quiet);
        let mut smoother = super::lr_find::Smoother::default();
        let mut points = Vec::with_capacity(lrs.len());
        let (mut epoch, mut batches) = (0, Vec::new().into_iter());
        for &lr in lrs {
            let chunk = loop {
                if let Some(c) = batches.next() {
                    break c;
                }
                let order = self.train.order(epoch);
                batches = order
                    .chunks(self.cfg.batch_size)
                    .map(<[usize]>::to_vec)
                    .collect::<Vec<_>>()
                    .into_iter();
                epoch += 1;
            };
            let (h, labels) = self.frozen_batch(&chunk, &device)?;
            self.optimizer.set_lr(lr);
            // In fp16 a rate high enough overflows f16 before the loss diverges: the same end of the sweep.
            let pass = match self.forward_loss(&h, &labels, epoch, points.len()) {
                Err(e) if e.is_f16_overflow() => {
                    log(&format!("lr-find: stopped at {lr:.2e}: {e}"));
                    break;
                }
                pass => pass?,
            };
            let loss = pass.data_loss + pass.penalty;
            bar.inc(1);
            if !smoother.push(loss) {
                break;
            }
            points.push((lr, loss));
            match self.backward_and_update(&pass.total) {
                Err(e) if e.is_f16_overflow() => {
                    log(&format!("lr-find: stopped at {lr:.2e}: {e}"));
                    break;
                }
                done => done?,
            }
        }
        bar.finish_and_clear();
        Ok(points)
    }

    /// The frozen part's output and the labels of the training samples `chunk` (from the feature cache when it
    /// serves training).
    fn frozen_batch(&self, chunk: &[usize], device: &Device) -> Result<(Tensor, Vec<u32>)> {
        let labels: Vec<u32> = chunk.iter().map(|&i| self.train.samples()[i].label as u32).collect();
        if let Some(cache) = &self.train_cache {
            return Ok((cache.batch(chunk, device)?, labels));
        }
        let samples: Vec<_> = chunk.iter().map(|&i| self.train.samples()[i].clone()).collect();
        let augmenting = self.cfg.augment.filter(|a| !a.is_identity());
        let loader = Loader::new(samples, loader_cfg(&self.cfg, augmenting, true, 0))?;
        let batch = loader.epoch(0).next().expect("one batch")?;
        let x = batch.images.to_device(device)?;
        Ok((self.model.base.forward_frozen(&x)?, batch.labels))
    }

    /// Where the last good state is, for messages about a run that had to stop.
    fn kept_checkpoint(&self) -> String {
        if self.history.epochs.is_empty() {
            "no epoch had completed, so no checkpoint was written".to_string()
        } else {
            format!(
                "{} holds the last good epoch ({})",
                self.paths().last().display(),
                self.history.epochs.len()
            )
        }
    }

    /// Validation loss (data, total) and accuracy with the current weights; `None` without validation data.
    fn validation_metrics(&self) -> Result<Option<ValMetrics>> {
        let (Some(val), Some(cache)) = (&self.val, &self.val_cache) else {
            return Ok(None);
        };
        let device = self.model.base.device().clone();
        let idx: Vec<usize> = (0..val.len()).filter(|&i| cache.is_valid(i)).collect();
        if idx.is_empty() {
            return Ok(None);
        }
        let (mut sum, mut correct) = (0.0, 0);
        for chunk in idx.chunks(self.cfg.batch_size) {
            let h = cache.batch(chunk, &device)?;
            let feats = self.model.base.forward_trainable(&h)?.detach();
            let logits = self
                .model
                .head
                .forward(&feats, None, self.model.base.compute())?
                .detach();
            let labels: Vec<u32> = chunk.iter().map(|&i| val.samples()[i].label as u32).collect();
            sum += loss::data_loss(&logits, &labels)?.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            correct += loss::correct(&logits, &labels)?;
        }
        let n = idx.len() as f64;
        if !sum.is_finite() {
            return Err(Error::Other(format!(
                "the validation loss became {sum} after epoch {}: training stopped and this epoch was not kept as \
                 the best; {}. Try a lower --lr (now {:e}), or --optimizer adam",
                self.state.epoch + 1,
                self.kept_checkpoint(),
                self.optimizer.lr()
            )));
        }
        let pen = loss::penalty(&self.model.head.kernels(), self.cfg.l1, self.cfg.l2)?
            .map(|p| p.to_scalar::<f32>())
            .transpose()?
            .unwrap_or(0.0) as f64;
        Ok(Some(ValMetrics {
            data_loss: sum / n,
            loss: sum / n + pen,
            accuracy: correct as f64 / n,
        }))
    }

    fn train_state_meta(&self) -> Result<HashMap<String, String>> {
        let mut m = HashMap::new();
        m.insert("train_state".into(), serde_json::to_string(&self.state)?);
        m.insert("epoch".into(), self.state.epoch.to_string());
        m.insert("precision".into(), self.cfg.precision.name().into());
        Ok(m)
    }

    fn save_last(&self) -> Result<()> {
        self.model.save(
            &self.paths().last(),
            self.optimizer.state_tensors(),
            self.train_state_meta()?,
        )
    }

    /// Runs the remaining epochs: each trains its batches ([`Self::train_epoch`]), then ends
    /// (its end: validation, history, the callbacks, checkpoints); at the end the best weights go back
    /// in when early stopping restores them.
    pub fn run(&mut self, opts: &mut RunOptions) -> Result<Outcome> {
        std::fs::create_dir_all(&self.run_dir).map_err(|e| Error::io(&self.run_dir, e))?;
        self.build_caches(opts.quiet, opts.log)?;
        let monitor = self.cfg.monitor()?;
        if monitor.needs_validation() && self.val_cache.is_none() {
            return Err(Error::invalid(format!(
                "--monitor {}: this run has no validation data; add DIR/validation or --val-split, or monitor loss",
                monitor.name
            )));
        }
        let epochs = self.cfg.epochs;
        let interrupter = Interrupter::new(opts.interrupt);
        let ending = fit_loop::fit(&mut ImageRun { t: self, opts }, &monitor, epochs, interrupter)?;
        Ok(Outcome {
            ending,
            history: self.history.clone(),
            best_epoch: self.state.callbacks.best.epoch.map(|e| e + 1),
            run_dir: self.run_dir.clone(),
            bad_files: self.bad_files(),
        })
    }

    /// The training batches of `epoch` from the one `state.batches_done` points at: from the feature cache when
    /// it serves training, else through the frozen part. Stops after the batch in progress on Ctrl-C/SIGTERM.
    fn train_epoch(&mut self, epoch: usize, interrupter: Interrupter, opts: &mut RunOptions) -> Result<Batches> {
        let start = Instant::now();
        let device = self.model.base.device().clone();
        let order = self.train.order(epoch);
        let nb = order.len().div_ceil(self.cfg.batch_size);
        let title = format!("epoch {}/{}", epoch + 1, self.cfg.epochs);
        let bar = crate::progress::bar(nb as u64, &title, "batches", opts.quiet);
        bar.set_position(self.state.batches_done as u64);
        let skip = self.state.batches_done;
        let mut outcome = Batches::Done;
        if let Some(cache) = &self.train_cache {
            let batches: Vec<Vec<usize>> = order
                .chunks(self.cfg.batch_size)
                .map(|c| c.iter().copied().filter(|&i| cache.is_valid(i)).collect())
                .collect();
            for (b, chunk) in batches.into_iter().enumerate().skip(skip) {
                if chunk.is_empty() {
                    continue;
                }
                let h = self.train_cache.as_ref().expect("cache").batch(&chunk, &device)?;
                let labels: Vec<u32> = chunk.iter().map(|&i| self.train.samples()[i].label as u32).collect();
                self.account(&h, &labels, epoch, b, &bar)?;
                if interrupter.requested() {
                    outcome = Batches::Interrupted;
                    break;
                }
            }
        } else {
            let loader = self.train.clone();
            for (k, batch) in loader.epoch_from(epoch, skip).enumerate() {
                let batch = batch?;
                let x = batch.images.to_device(&device)?;
                let h = self.model.base.forward_frozen(&x)?;
                self.account(&h, &batch.labels, epoch, skip + k, &bar)?;
                if interrupter.requested() {
                    outcome = Batches::Interrupted;
                    break;
                }
            }
        }
        self.state.seconds += start.elapsed().as_secs_f64();
        match outcome {
            Batches::Interrupted => bar.abandon(),
            Batches::Done => bar.finish_and_clear(),
        }
        Ok(outcome)
    }

    /// Ctrl-C or SIGTERM inside an epoch: `last.safetensors` keeps the batch reached, for `--resume`.
    fn save_interrupted(&mut self, epoch: usize, log: &mut dyn FnMut(&str)) -> Result<()> {
        self.state.optimizer_steps = self.optimizer.steps;
        self.save_last()?;
        log(&format!(
            "interrupted in epoch {} after batch {}: saved {}; continue with --resume {}",
            epoch + 1,
            self.state.batches_done,
            self.paths().last().display(),
            self.run_dir.display()
        ));
        Ok(())
    }

    /// The finished epoch's figures: the training sums of the state and a validation pass.
    fn epoch_record(&mut self, epoch: usize) -> Result<EpochRecord> {
        let n = self.state.seen as f64;
        let val = self.validation_metrics()?;
        Ok(EpochRecord {
            epoch: epoch + 1,
            loss: (self.state.sum_data_loss + self.state.sum_penalty) / n,
            data_loss: self.state.sum_data_loss / n,
            penalty: self.state.sum_penalty / n,
            accuracy: self.state.correct as f64 / n,
            val_loss: val.map(|v| v.loss),
            val_data_loss: val.map(|v| v.data_loss),
            val_accuracy: val.map(|v| v.accuracy),
            lr: self.optimizer.lr(),
            seconds: self.state.seconds,
            images_per_s: n / self.state.seconds.max(1e-9),
        })
    }

    /// `best.safetensors`: the model at `epoch`, with the monitor and its value in the metadata.
    fn save_best(&self, epoch: usize, monitor: &Monitor, value: Option<f64>) -> Result<()> {
        let mut meta = HashMap::new();
        meta.insert("epoch".into(), (epoch + 1).to_string());
        meta.insert("monitor".into(), monitor.name.clone());
        // What the epoch ran in (the weights are f32 either way).
        meta.insert("precision".into(), self.cfg.precision.name().into());
        if let Some(v) = value {
            meta.insert("monitor_value".into(), v.to_string());
        }
        self.model.save(&self.paths().best(), vec![], meta)
    }

    /// restore_best_weights: the best epoch's weights back into the model (Keras 3 does so even without a stop).
    fn restore_best(&mut self, epoch: usize, log: &mut dyn FnMut(&str)) -> Result<()> {
        let (t, _) = crate::model::weights::read_safetensors(&self.paths().best())?;
        self.model.base.load_values(&t)?;
        self.model.head.load_values(&t)?;
        log(&format!("restored the weights of the best epoch ({})", epoch + 1));
        Ok(())
    }

    /// The epoch is over: its record in the history, curves.png, the next epoch's fresh sums and
    /// `last.safetensors`.
    fn epoch_done(&mut self, epoch: usize, record: EpochRecord, last: bool, log: &mut dyn FnMut(&str)) -> Result<()> {
        self.board_epoch(&record, log);
        self.history.epochs.push(record);
        self.history.write(&self.run_dir)?;
        self.report_skipped_steps(log);
        let curves = self.write_curves(log);
        if let (true, Some(img)) = (last, curves) {
            self.board_write(log, |b| b.image("curves", epoch, &img));
        }
        self.state
            .start_next_epoch(epoch + 1, self.optimizer.steps, self.optimizer.lr());
        self.state.finished = last;
        self.save_last()
    }

    /// fp16: says when steps of the epoch were skipped because their gradients overflowed f16.
    fn report_skipped_steps(&mut self, log: &mut dyn FnMut(&str)) {
        let Some(scaler) = &self.state.loss_scaler else { return };
        if scaler.skipped_steps > self.skips_reported {
            log(&format!(
                "fp16: {} step(s) skipped because the gradients overflowed f16 (the loss scale backs off; a few are \
                 normal); loss scale now {}",
                scaler.skipped_steps - self.skips_reported,
                scaler.scale
            ));
            self.skips_reported = scaler.skipped_steps;
        }
    }

    /// Redraws curves.png with the best epoch marked, and gives the image back; a failure is a warning (the run
    /// goes on).
    fn write_curves(&self, log: &mut dyn FnMut(&str)) -> Option<image::RgbImage> {
        let best = self.state.callbacks.best.epoch.map(|e| e + 1);
        let written = crate::plot::curves(&self.history, best)
            .and_then(|img| crate::plot::save_png(&self.paths().curves(), &img).map(|_| img));
        match written {
            Ok(img) => Some(img),
            Err(e) => {
                log(&format!("warning: curves.png not written: {e}"));
                None
            }
        }
    }

    /// Logs the run to TensorBoard event files in `dir` (`--tensorboard`), starting with its configuration.
    pub fn use_tensorboard(&mut self, dir: &Path) -> Result<()> {
        let mut board = RunBoard::create(dir)?;
        let config = serde_json::to_string_pretty(&self.cfg)?;
        board.text("config", self.state.epoch, &format!("```json\n{config}\n```"))?;
        self.board = Some(board);
        Ok(())
    }

    /// The epoch's figures to TensorBoard, at step = epoch counted from 0 as Keras does.
    fn board_epoch(&mut self, record: &EpochRecord, log: &mut dyn FnMut(&str)) {
        let (train, validation) = record.board_figures();
        let step = record.epoch.saturating_sub(1);
        self.board_write(log, |b| b.epoch(step, &train, &validation));
    }

    /// A write to the event files; a failure is a warning and ends the logging, never the run.
    fn board_write(&mut self, log: &mut dyn FnMut(&str), write: impl FnOnce(&mut RunBoard) -> Result<()>) {
        if let Some(board) = self.board.as_mut() {
            if let Err(e) = write(board) {
                log(&format!("warning: TensorBoard logging stopped: {e}"));
                self.board = None;
            }
        }
    }

    fn account(
        &mut self,
        h: &Tensor,
        labels: &[u32],
        epoch: usize,
        b: usize,
        bar: &crate::progress::Progress,
    ) -> Result<()> {
        let stats = self.step(h, labels, epoch, b)?;
        let n = labels.len();
        self.state.sum_data_loss += stats.data_loss * n as f64;
        self.state.sum_penalty += stats.penalty * n as f64;
        self.state.correct += stats.correct;
        self.state.seen += n;
        self.state.batches_done = b + 1;
        let seen = self.state.seen as f64;
        bar.set_position((b + 1) as u64);
        bar.set_prefix(format!(
            "loss {:.4} acc {:.3}",
            (self.state.sum_data_loss + self.state.sum_penalty) / seen,
            self.state.correct as f64 / seen
        ));
        Ok(())
    }

    /// Unreadable files met so far (training and validation).
    pub fn bad_files(&self) -> Vec<(PathBuf, String)> {
        let mut v = self.train.bad_files();
        if let Some(val) = &self.val {
            v.extend(val.bad_files());
        }
        v
    }

    /// Seconds spent building the feature caches.
    pub fn cache_seconds(&self) -> f64 {
        self.cache_seconds
    }

    pub fn feature_caches(&self) -> (Option<&FeatureCache>, Option<&FeatureCache>) {
        (self.train_cache.as_ref(), self.val_cache.as_ref())
    }

    pub fn state(&self) -> &TrainState {
        &self.state
    }

    pub fn split_index(&self) -> usize {
        self.split
    }

    pub fn train_loader(&self) -> &Loader {
        &self.train
    }

    pub fn val_loader(&self) -> Option<&Loader> {
        self.val.as_ref()
    }
}

/// The image trainer as a [`Learner`] of the shared loop, with the run's options (Ctrl-C flag, log, quiet).
struct ImageRun<'t, 'o, 'a> {
    t: &'t mut Trainer,
    opts: &'o mut RunOptions<'a>,
}

impl Checkpointing for ImageRun<'_, '_, '_> {
    type Record = EpochRecord;

    fn keep_best(&mut self, epoch: usize, monitor: &Monitor, value: Option<f64>) -> Result<()> {
        self.t.save_best(epoch, monitor, value)
    }

    fn epoch_done(&mut self, epoch: usize, record: EpochRecord, last: bool) -> Result<()> {
        self.t.epoch_done(epoch, record, last, self.opts.log)
    }

    fn interrupted(&mut self, epoch: usize) -> Result<()> {
        self.t.save_interrupted(epoch, self.opts.log)
    }

    fn restore_best(&mut self, epoch: usize) -> Result<()> {
        self.t.restore_best(epoch, self.opts.log)
    }
}

impl Learner for ImageRun<'_, '_, '_> {
    fn next_epoch(&self) -> usize {
        self.t.state.epoch
    }

    fn callbacks(&mut self) -> &mut Callbacks {
        &mut self.t.state.callbacks
    }

    fn train_epoch(&mut self, epoch: usize, interrupter: Interrupter) -> Result<Batches> {
        self.t.train_epoch(epoch, interrupter, self.opts)
    }

    fn record(&mut self, epoch: usize) -> Result<EpochRecord> {
        if self.t.state.seen == 0 {
            return Err(Error::Data("no training image could be read".into()));
        }
        let rec = self.t.epoch_record(epoch)?;
        (self.opts.log)(&epoch_line(&rec, self.t.cfg.epochs));
        Ok(rec)
    }

    fn lr(&self) -> f64 {
        self.t.optimizer.lr()
    }

    fn set_lr(&mut self, lr: f64) {
        self.t.optimizer.set_lr(lr);
    }

    fn log(&mut self, line: &str) {
        (self.opts.log)(line)
    }
}

impl Monitored for EpochRecord {
    fn metric(&self, name: &str) -> Option<f64> {
        EpochRecord::metric(self, name)
    }
}

/// `Epoch 3/10 - 12.3 s - 41.2 img/s - loss 0.3120 - accuracy 0.8710 - val_loss 0.2980 - val_accuracy 0.8850`.
pub fn epoch_line(r: &EpochRecord, epochs: usize) -> String {
    let mut s = format!(
        "Epoch {}/{epochs} - {:.1} s - {:.1} img/s - loss {:.4} - accuracy {:.4}",
        r.epoch, r.seconds, r.images_per_s, r.loss, r.accuracy
    );
    if r.penalty > 0.0 {
        s.push_str(&format!(" (data {:.4} + penalty {:.4})", r.data_loss, r.penalty));
    }
    if let (Some(vl), Some(va)) = (r.val_loss, r.val_accuracy) {
        s.push_str(&format!(" - val_loss {vl:.4} - val_accuracy {va:.4}"));
    }
    s
}
