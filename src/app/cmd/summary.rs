//! `summary.md` of a run: a typed [`Summary`] gathered from the trainer, written by its `Display`.

use std::fmt;

use crate::data::folder::{ImageFolder, Splits};
use crate::model::classifier::TrainMode;
use crate::model::vgg16::LAYERS;
use crate::train::history::EpochRecord;
use crate::train::trainer::{Ending, Outcome, Trainer};
use anyhow::Result;

/// Writes `summary.md` into the run folder.
pub fn write(t: &Trainer, s: &Splits, o: &Outcome) -> Result<()> {
    let md = Summary::of(t, s, o).to_string();
    crate::io::atomic_write(&t.paths().summary(), md.as_bytes())?;
    Ok(())
}

/// What a run's summary says, section by section.
struct Summary<'a> {
    name: String,
    data: DataPart,
    model: ModelPart,
    training: TrainingPart,
    history: &'a [EpochRecord],
}

struct DataPart {
    train: String,
    validation: Option<String>,
    bad_files: usize,
    classes: String,
}

struct ModelPart {
    base: String,
    mode: String,
    head: String,
    input: String,
    augmentation: String,
}

struct TrainingPart {
    optimizer: String,
    /// The precision that ran, and fp16's loss scaling.
    precision: String,
    epochs_run: usize,
    epochs: usize,
    ending: String,
    best: Option<String>,
    cache: CacheUse,
}

/// How the frozen prefix ran.
enum CacheUse {
    /// Once per image, from the feature cache.
    On {
        prefix_end: &'static str,
        passes: usize,
        without: usize,
        epochs_run: usize,
        build_seconds: f64,
        shape: [usize; 3],
        bytes: usize,
        on_disk: bool,
    },
    /// Every step for training (`why`); validation from the cache when `val_passes` is (passes, passes without).
    Off {
        prefix_end: &'static str,
        why: &'static str,
        val_passes: Option<(usize, usize)>,
    },
}

impl<'a> Summary<'a> {
    fn of(t: &Trainer, s: &Splits, o: &'a Outcome) -> Self {
        Summary {
            name: o
                .run_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            data: DataPart::of(t, s, o),
            model: ModelPart::of(t),
            training: TrainingPart::of(t, o),
            history: &o.history.epochs,
        }
    }
}

fn class_counts(f: &ImageFolder) -> String {
    f.classes
        .iter()
        .zip(f.class_counts())
        .map(|(c, n)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl DataPart {
    fn of(t: &Trainer, s: &Splits, o: &Outcome) -> Self {
        DataPart {
            train: format!("`{}` ({})", s.train.root.display(), class_counts(&s.train)),
            validation: s
                .val
                .as_ref()
                .map(|v| format!("{} ({})", s.val_source, class_counts(v))),
            bad_files: o.bad_files.len(),
            classes: t.model.meta.classes.join(", "),
        }
    }
}

impl ModelPart {
    fn of(t: &Trainer) -> Self {
        let cfg = &t.cfg;
        let counts = t.model.base.param_counts();
        let trainable_base: usize = counts.iter().map(|b| b.trainable).sum();
        let total_base: usize = counts.iter().map(|b| b.params).sum();
        let h = &t.model.meta.head;
        let hidden = if h.hidden > 0 {
            format!("Dense({}, relu) → ", h.hidden)
        } else {
            String::new()
        };
        ModelPart {
            base: format!(
                "{} ({}), widths {:?}, {total_base} parameters",
                cfg.weights,
                cfg.weights_revision.as_deref().unwrap_or("no revision recorded"),
                t.model.base.widths(),
            ),
            mode: match cfg.mode {
                TrainMode::Extract => "feature extraction (the whole conv base frozen)".to_string(),
                TrainMode::Finetune => format!(
                    "fine-tuning from {} ({trainable_base} base parameters train)",
                    cfg.unfreeze_from
                ),
            },
            head: format!(
                "{:?} {:?} → {hidden}Dropout({}) → Dense({}), {} parameters; L1 {}, L2 {} on its kernels",
                h.kind,
                h.in_shape,
                h.dropout,
                h.n_out,
                t.model.head.param_count(),
                cfg.l1,
                cfg.l2
            ),
            input: format!(
                "{}×{} ({:?} resize), {}",
                cfg.size,
                cfg.size,
                cfg.interpolation,
                cfg.preprocess.describe()
            ),
            augmentation: cfg
                .augment
                .map_or("none".to_string(), |a| crate::data::preview::describe(&a)),
        }
    }
}

impl TrainingPart {
    fn of(t: &Trainer, o: &Outcome) -> Self {
        let cfg = &t.cfg;
        let monitor = &cfg.monitor;
        let restored = cfg.early_stopping.as_ref().is_some_and(|e| e.restore_best_weights);
        let best = o.best_epoch.map(|b| {
            let v = o.history.epochs.get(b - 1).and_then(|r| r.metric(monitor));
            format!(
                "{b} ({monitor} {}) → `best.safetensors`{}",
                v.map_or("-".into(), |v| format!("{v:.4}")),
                if restored {
                    "; its weights were restored at the end"
                } else {
                    ""
                }
            )
        });
        TrainingPart {
            optimizer: format!(
                "{}, lr {:e}, batch {}, seed {}",
                cfg.optimizer.kind.display_name(),
                cfg.optimizer.lr,
                cfg.batch_size,
                cfg.seed
            ),
            precision: precision_line(t),
            epochs_run: o.history.epochs.len(),
            epochs: cfg.epochs,
            ending: match &o.ending {
                Ending::Completed => "completed".to_string(),
                Ending::EarlyStopped(e) => format!("early stopping after epoch {e}"),
                Ending::Interrupted => "interrupted (resume with `catdog finetune --resume <this folder>`)".to_string(),
            },
            best,
            cache: CacheUse::of(t, o.history.epochs.len()),
        }
    }
}

/// "fp32, fast kernels", or fp16's with what its loss scaler did.
fn precision_line(t: &Trainer) -> String {
    let cfg = &t.cfg;
    let ran = format!("{}, {} kernels", cfg.precision.name(), cfg.kernels.name());
    match &t.state().loss_scaler {
        Some(s) => format!(
            "{ran}; dynamic loss scaling: {} skipped (their gradients overflowed f16), loss scale now {}",
            crate::progress::count(s.skipped_steps as usize, "step"),
            s.scale
        ),
        None => ran,
    }
}

impl CacheUse {
    fn of(t: &Trainer, epochs_run: usize) -> Self {
        let (train_cache, val_cache) = t.feature_caches();
        let prefix_end = LAYERS[t.split_index().min(LAYERS.len()) - 1].name;
        let n_train = t.train_loader().good_len();
        let n_val = t.val_loader().map_or(0, |v| v.good_len());
        match train_cache {
            Some(c) => CacheUse::On {
                prefix_end,
                passes: n_train + n_val,
                without: (n_train + n_val) * epochs_run,
                epochs_run,
                build_seconds: t.cache_seconds(),
                shape: c.shape,
                bytes: c.bytes(),
                on_disk: c.on_disk(),
            },
            None => CacheUse::Off {
                prefix_end,
                why: if t.cfg.augment.is_some() {
                    "augmentation changes the input every epoch"
                } else {
                    "--cache off"
                },
                val_passes: val_cache.map(|_| (n_val, n_val * epochs_run)),
            },
        }
    }
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(
            f,
            "# catdog run `{}`\n\ncatdog {}\n",
            self.name,
            env!("CARGO_PKG_VERSION")
        )?;
        write!(f, "{}{}{}", self.data, self.model, self.training)?;
        writeln!(f, "\n## History\n")?;
        writeln!(
            f,
            "| epoch | loss | data loss | penalty | accuracy | val_loss | val_accuracy | lr | seconds | images/s |\n\
             |---|---|---|---|---|---|---|---|---|---|"
        )?;
        let opt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
        for e in self.history {
            writeln!(
                f,
                "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {} | {:e} | {:.1} | {:.1} |",
                e.epoch,
                e.loss,
                e.data_loss,
                e.penalty,
                e.accuracy,
                opt(e.val_loss),
                opt(e.val_accuracy),
                e.lr,
                e.seconds,
                e.images_per_s
            )?;
        }
        writeln!(
            f,
            "\n![training curves](curves.png)\n\nFiles: `config.json`, `history.csv`, `history.json`, `curves.png`, \
             `best.safetensors`, `last.safetensors`, `bad_files.txt`."
        )
    }
}

impl fmt::Display for DataPart {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(f, "## Data\n\n- training: {}", self.train)?;
        writeln!(f, "- validation: {}", self.validation.as_deref().unwrap_or("none"))?;
        writeln!(
            f,
            "- unreadable images skipped: {} (see `bad_files.txt`)\n- classes (index order): {}\n",
            self.bad_files, self.classes
        )
    }
}

impl fmt::Display for ModelPart {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(f, "## Model\n\n- conv base: {}\n- mode: {}", self.base, self.mode)?;
        writeln!(f, "- head: {}\n- input: {}", self.head, self.input)?;
        writeln!(f, "- augmentation: {}\n", self.augmentation)
    }
}

impl fmt::Display for TrainingPart {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(f, "## Training\n\n- optimizer: {}", self.optimizer)?;
        writeln!(f, "- precision: {}", self.precision)?;
        writeln!(f, "- epochs: {} of {} — {}", self.epochs_run, self.epochs, self.ending)?;
        if let Some(best) = &self.best {
            writeln!(f, "- best epoch: {best}")?;
        }
        writeln!(f, "{}", self.cache)
    }
}

impl fmt::Display for CacheUse {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            CacheUse::On {
                prefix_end,
                passes,
                without,
                epochs_run,
                build_seconds,
                shape,
                bytes,
                on_disk,
            } => write!(
                f,
                "- frozen-prefix cache: on. The frozen part (up to {prefix_end}) ran once per image — {passes} passes \
                 instead of {without} over {}; building the caches took {build_seconds:.1} s, so about {:.0} s of \
                 frozen-part compute were saved. Cached output {shape:?} per image, {:.1} MiB{}.",
                crate::progress::count(epochs_run, "epoch"),
                build_seconds * (epochs_run.saturating_sub(1)) as f64,
                bytes as f64 / 1048576.0,
                if on_disk { " on disk" } else { " in memory" }
            ),
            CacheUse::Off {
                prefix_end,
                why,
                val_passes,
            } => write!(
                f,
                "- frozen-prefix cache: off for training ({why}); the frozen part (up to {prefix_end}) ran every step \
                 without gradients{}.",
                val_passes.map_or(String::new(), |(with, without)| format!(
                    "; validation used the cache ({with} passes instead of {without})"
                ))
            ),
        }
    }
}
