//! `summary.md` of a run.

use crate::data::folder::Splits;
use crate::model::classifier::TrainMode;
use crate::model::vgg16::LAYERS;
use crate::train::trainer::{Ending, Outcome, Trainer};
use anyhow::Result;

pub fn write(t: &Trainer, s: &Splits, o: &Outcome) -> Result<()> {
    let cfg = &t.cfg;
    let mut md = String::new();
    let name = o
        .run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    md.push_str(&format!(
        "# catdog run `{name}`\n\ncatdog {}\n\n## Data\n\n",
        env!("CARGO_PKG_VERSION")
    ));
    let counts = |f: &crate::data::folder::ImageFolder| {
        f.classes
            .iter()
            .zip(f.class_counts())
            .map(|(c, n)| format!("{n} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    md.push_str(&format!(
        "- training: `{}` ({})\n",
        s.train.root.display(),
        counts(&s.train)
    ));
    match &s.val {
        Some(v) => md.push_str(&format!("- validation: {} ({})\n", s.val_source, counts(v))),
        None => md.push_str("- validation: none\n"),
    }
    md.push_str(&format!(
        "- unreadable images skipped: {} (see `bad_files.txt`)\n- classes (index order): {}\n\n## Model\n\n",
        o.bad_files.len(),
        t.model.meta.classes.join(", ")
    ));
    let h = &t.model.meta.head;
    let trainable_base: usize = t.model.base.param_counts().iter().map(|b| b.trainable).sum();
    let total_base: usize = t.model.base.param_counts().iter().map(|b| b.params).sum();
    md.push_str(&format!(
        "- conv base: {} ({}), widths {:?}, {} parameters\n",
        cfg.weights,
        cfg.weights_revision.as_deref().unwrap_or("no revision recorded"),
        t.model.base.widths(),
        total_base
    ));
    md.push_str(&format!(
        "- mode: {}\n",
        match cfg.mode {
            TrainMode::Extract => "feature extraction (the whole conv base frozen)".to_string(),
            TrainMode::Finetune => format!(
                "fine-tuning from {} ({trainable_base} base parameters train)",
                cfg.unfreeze_from
            ),
        }
    ));
    md.push_str(&format!(
        "- head: {:?} {:?} → {}Dropout({}) → Dense({}), {} parameters; L1 {}, L2 {} on its kernels\n",
        h.kind,
        h.in_shape,
        if h.hidden > 0 {
            format!("Dense({}, relu) → ", h.hidden)
        } else {
            String::new()
        },
        h.dropout,
        h.n_out,
        t.model.head.param_count(),
        cfg.l1,
        cfg.l2
    ));
    md.push_str(&format!(
        "- input: {}×{} ({:?} resize), {}\n- augmentation: {}\n\n## Training\n\n",
        cfg.size,
        cfg.size,
        cfg.interpolation,
        cfg.preprocess.describe(),
        cfg.augment
            .map_or("none".to_string(), |a| crate::data::preview::describe(&a))
    ));
    md.push_str(&format!(
        "- optimizer: {}, lr {:e}, batch {}, seed {}\n",
        cfg.optimizer.kind.display_name(),
        cfg.optimizer.lr,
        cfg.batch_size,
        cfg.seed
    ));
    let ran = o.history.epochs.len();
    md.push_str(&format!(
        "- epochs: {ran} of {} — {}\n",
        cfg.epochs,
        match &o.ending {
            Ending::Completed => "completed".to_string(),
            Ending::EarlyStopped(e) => format!("early stopping after epoch {e}"),
            Ending::Interrupted => "interrupted (resume with `catdog finetune --resume <this folder>`)".to_string(),
        }
    ));
    let monitor = cfg.monitor.clone();
    if let Some(b) = o.best_epoch {
        let v = o.history.epochs.get(b - 1).and_then(|r| r.metric(&monitor));
        md.push_str(&format!(
            "- best epoch: {b} ({monitor} {}) → `best.safetensors`{}\n",
            v.map_or("-".into(), |v| format!("{v:.4}")),
            if cfg.early_stopping.as_ref().is_some_and(|e| e.restore_best_weights) {
                "; its weights were restored at the end"
            } else {
                ""
            }
        ));
    }
    let (train_cache, val_cache) = t.feature_caches();
    let prefix_end = LAYERS[t.split_index().min(LAYERS.len()) - 1].name;
    let n_train = t.train_loader().good_len();
    let n_val = t.val_loader().map_or(0, |v| v.good_len());
    let cache_s = t.cache_seconds();
    match train_cache {
        Some(c) => {
            let without = (n_train + n_val) * ran;
            md.push_str(&format!(
                "- frozen-prefix cache: on. The frozen part (up to {prefix_end}) ran once per image — {} passes instead of {without} \
                 over {}; building the caches took {cache_s:.1} s, so about {:.0} s of frozen-part compute were saved. \
                 Cached output {:?} per image, {:.1} MiB{}.\n",
                n_train + n_val,
                crate::progress::count(ran, "epoch"),
                cache_s * (ran.saturating_sub(1)) as f64,
                c.shape,
                c.bytes() as f64 / 1048576.0,
                if c.on_disk() { " on disk" } else { " in memory" }
            ));
        }
        None => {
            md.push_str(&format!(
                "- frozen-prefix cache: off for training ({}); the frozen part (up to {prefix_end}) ran every step without gradients{}.\n",
                if cfg.augment.is_some() { "augmentation changes the input every epoch" } else { "--cache off" },
                if val_cache.is_some() {
                    format!("; validation used the cache ({n_val} passes instead of {})", n_val * ran)
                } else {
                    String::new()
                }
            ));
        }
    }
    md.push_str("\n## History\n\n| epoch | loss | data loss | penalty | accuracy | val_loss | val_accuracy | lr | seconds | images/s |\n|---|---|---|---|---|---|---|---|---|---|\n");
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
    for e in &o.history.epochs {
        md.push_str(&format!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {} | {:e} | {:.1} | {:.1} |\n",
            e.epoch,
            e.loss,
            e.data_loss,
            e.penalty,
            e.accuracy,
            f(e.val_loss),
            f(e.val_accuracy),
            e.lr,
            e.seconds,
            e.images_per_s
        ));
    }
    md.push_str("\n![training curves](curves.png)\n\nFiles: `config.json`, `history.csv`, `history.json`, `curves.png`, `best.safetensors`, `last.safetensors`, `bad_files.txt`.\n");
    crate::io::atomic_write(&crate::run::RunPaths::new(&o.run_dir).summary(), md.as_bytes())?;
    Ok(())
}
