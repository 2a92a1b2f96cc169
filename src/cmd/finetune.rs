use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use catdog::data::folder::{resolve_splits, Splits};
use catdog::data::preprocess::Preprocess;
use catdog::model::classifier::TrainMode;
use catdog::model::vgg16::{layer_index, Vgg16};
use catdog::model::weights::read_safetensors;
use catdog::train::early_stop::EarlyStoppingConfig;
use catdog::train::history::History;
use catdog::train::optim::OptimConfig;
use catdog::train::trainer::{Ending, ReduceLrSettings, RunOptions, TrainConfig, TrainState, Trainer};

use crate::cli::FinetuneArgs;

/// `YYYYMMDD-HHMMSS` in UTC.
fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn missing_data_hint(dir: &Path) -> String {
    format!(
        "{}: no such folder. Get Dogs-vs-Cats with `catdog data fetch --out {}`, or point --data at a folder laid \
         out as DIR/train/<class>/… (+ DIR/test/<class>/…)",
        dir.display(),
        dir.display()
    )
}

fn build_config(a: &FinetuneArgs, preprocess: Preprocess, weights_revision: Option<String>) -> Result<TrainConfig> {
    let aug = super::augment_config(&a.aug)?;
    let lr = a.lr.unwrap_or(match a.mode {
        TrainMode::Extract => 2e-5,
        TrainMode::Finetune => 1e-5,
    });
    let mut optimizer = OptimConfig::new(a.optimizer, lr);
    optimizer.momentum = a.momentum;
    optimizer.nesterov = a.nesterov;
    let early_stopping = a.patience.map(|patience| EarlyStoppingConfig {
        monitor: a.monitor.clone(),
        patience,
        min_delta: a.min_delta,
        baseline: a.baseline,
        start_from_epoch: a.start_from_epoch,
        restore_best_weights: a.restore_best_weights,
        mode: a.es_mode,
    });
    if early_stopping.is_none() && a.restore_best_weights {
        bail!("--restore-best-weights belongs to early stopping: add --patience N");
    }
    Ok(TrainConfig {
        data: a.data.clone(),
        mode: a.mode,
        unfreeze_from: a.unfreeze_from.clone(),
        weights: a.w.weights.clone(),
        weights_revision,
        preprocess,
        size: a.img.size,
        interpolation: a.img.interpolation,
        epochs: a.epochs.unwrap_or(30),
        batch_size: a.batch_size,
        seed: a.w.seed,
        optimizer,
        head: a.head,
        hidden: a.hidden,
        dropout: a.dropout,
        l1: a.l1,
        l2: a.l2,
        augment: (!aug.is_identity()).then_some(aug),
        val_split: a.val_split,
        early_stopping,
        reduce_lr: a.reduce_lr_patience.map(|patience| ReduceLrSettings {
            factor: a.reduce_lr_factor,
            patience,
            min_lr: a.min_lr,
        }),
        cache: a.cache,
        feature_cache_mb: a.feature_cache_mb,
        image_cache_mb: a.image_cache_mb,
        device: a.w.device.clone(),
        strict: a.strict,
        catdog_version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

fn splits_for(cfg: &TrainConfig) -> Result<Splits> {
    if !cfg.data.exists() {
        bail!(missing_data_hint(&cfg.data));
    }
    Ok(resolve_splits(&cfg.data, cfg.val_split, cfg.seed)?)
}

pub fn run(a: FinetuneArgs, quiet: bool) -> Result<i32> {
    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupt.clone();
        // A second Ctrl-C while the batch finishes exits at once.
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\nCtrl-C: finishing the batch and saving last.safetensors (press again to quit at once)");
        });
    }
    let device = catdog::device::parse_device(&a.w.device)?;
    let (cfg, base, run_dir, resume) = if let Some(dir) = &a.resume {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path)
            .with_context(|| format!("{}: cannot resume: no config.json (is it a run folder?)", dir.display()))?;
        let mut cfg: TrainConfig =
            serde_json::from_str(&text).with_context(|| format!("reading {}", cfg_path.display()))?;
        if let Some(e) = a.epochs {
            cfg.epochs = e;
        }
        let last = dir.join("last.safetensors");
        let (tensors, meta) = read_safetensors(&last).with_context(|| format!("{}: cannot resume", dir.display()))?;
        let state: TrainState = serde_json::from_str(
            meta.get("train_state")
                .with_context(|| format!("{}: no train_state metadata", last.display()))?,
        )?;
        let history = History::read(dir).unwrap_or_default();
        let base = Vgg16::from_tensors(&tensors, &last.display().to_string(), &device)?;
        if state.epoch >= cfg.epochs && state.batches_done == 0 {
            eprintln!(
                "{}: all {} epochs are done; pass --epochs N (a larger total) to train further",
                dir.display(),
                cfg.epochs
            );
            return Ok(0);
        }
        eprintln!(
            "resuming {} at epoch {}{} of {}",
            dir.display(),
            state.epoch + 1,
            if state.batches_done > 0 {
                format!(", batch {}", state.batches_done + 1)
            } else {
                String::new()
            },
            cfg.epochs
        );
        (cfg, base, dir.clone(), Some((tensors, state, history)))
    } else {
        if a.mode == TrainMode::Finetune {
            layer_index(&a.unfreeze_from)?;
        }
        if !a.data.exists() {
            if a.data == Path::new(crate::cli::DEFAULT_DATA) {
                eprintln!(
                    "{} is missing: getting Dogs-vs-Cats first (the same as `catdog data fetch --out {}`)",
                    a.data.display(),
                    a.data.display()
                );
                super::data::fetch(catdog::data::fetch::DEFAULT_REPO, &a.data, 0.2, a.w.seed, quiet)
                    .with_context(|| missing_data_hint(&a.data))?;
            } else {
                bail!(missing_data_hint(&a.data));
            }
        }
        let name = a.name.clone().unwrap_or_else(timestamp);
        let run_dir = a.runs_dir.join(&name);
        if run_dir.join("last.safetensors").exists() || run_dir.join("config.json").exists() {
            bail!(
                "{} already holds a run; continue it with --resume {} or choose another --name",
                run_dir.display(),
                run_dir.display()
            );
        }
        let cfg0 = build_config(&a, Preprocess::imagenet(), None)?;
        cfg0.validate()?;
        let loaded = super::load_weights(&a.w, quiet)?;
        let mut cfg = build_config(&a, loaded.preprocess, loaded.revision.clone())?;
        if let Some(p) = &loaded.path {
            if a.w.weights.contains('/') && !Path::new(&a.w.weights).exists() {
                cfg.weights = format!("{} ({})", a.w.weights, p.display());
            }
        }
        (cfg, loaded.model, run_dir, None)
    };
    let splits = splits_for(&cfg)?;
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    catdog::io::write_json(&run_dir.join("config.json"), &cfg)?;
    describe_start(&cfg, &splits, &run_dir);
    let mut trainer = Trainer::new(cfg.clone(), base, &splits, &run_dir, resume, &device)?;
    let mut log = |m: &str| eprintln!("{m}");
    let mut opts = RunOptions {
        quiet,
        interrupt: &interrupt,
        log: &mut log,
    };
    let outcome = trainer.run(&mut opts);
    // Whatever happened, list the bad files met so far.
    let bad = trainer.bad_files();
    write_bad_files(&run_dir, &bad)?;
    let outcome = outcome?;
    if !bad.is_empty() {
        eprintln!(
            "skipped {} unreadable images (listed in {}), e.g. {}: {}",
            bad.len(),
            run_dir.join("bad_files.txt").display(),
            bad[0].0.display(),
            bad[0].1
        );
    }
    super::summary::write(&trainer, &splits, &outcome)?;
    match outcome.ending {
        Ending::Interrupted => Ok(130),
        _ => {
            eprintln!(
                "done: {} (best epoch {}: best.safetensors; summary.md, curves.png, history.csv)",
                run_dir.display(),
                outcome.best_epoch.map_or("-".into(), |e| e.to_string())
            );
            Ok(0)
        }
    }
}

fn describe_start(cfg: &TrainConfig, s: &Splits, run_dir: &Path) {
    let counts = |f: &catdog::data::folder::ImageFolder| {
        f.classes
            .iter()
            .zip(f.class_counts())
            .map(|(c, n)| format!("{n} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!("run folder: {}", run_dir.display());
    eprintln!("training: {} ({})", s.train.root.display(), counts(&s.train));
    match &s.val {
        Some(v) => eprintln!("validation: {} ({})", s.val_source, counts(v)),
        None => eprintln!("validation: none (add DIR/test, DIR/validation or --val-split 0.2)"),
    }
    eprintln!(
        "mode {:?}{}, {} epochs, batch {}, {:?} lr {:e}, {}",
        cfg.mode,
        if cfg.mode == TrainMode::Finetune {
            format!(" from {}", cfg.unfreeze_from)
        } else {
            String::new()
        },
        cfg.epochs,
        cfg.batch_size,
        cfg.optimizer.kind,
        cfg.optimizer.lr,
        cfg.augment
            .map_or("no augmentation".to_string(), |a| catdog::data::preview::describe(&a))
    );
}

fn write_bad_files(dir: &Path, bad: &[(PathBuf, String)]) -> Result<()> {
    let mut s = String::new();
    for (p, r) in bad {
        s.push_str(&format!("{}\t{r}\n", p.display()));
    }
    catdog::io::atomic_write(&dir.join("bad_files.txt"), s.as_bytes())?;
    Ok(())
}
