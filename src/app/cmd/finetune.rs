use std::path::{Path, PathBuf};

use crate::data::folder::{resolve_splits, Splits};
use crate::data::preprocess::Preprocess;
use crate::kernels::Kernels;
use crate::model::classifier::TrainMode;
use crate::model::vgg16::{layer_index, Vgg16, LAYERS};
use crate::run;
use crate::train::early_stop::EarlyStoppingConfig;
use crate::train::features::{Expected, FeatureFiles};
use crate::train::optim::OptimConfig;
use crate::train::trainer::{Ending, ReduceLrSettings, Resume, RunOptions, TrainConfig, Trainer};
use anyhow::{bail, Context, Result};

use crate::app::cli::FinetuneArgs;

fn missing_data_hint(dir: &Path) -> String {
    format!(
        "{}: no such folder.\n  Ways out:\n  - point --data at a folder laid out as DIR/train/<class>/… (and \
         DIR/test/<class>/…)\n  - get Dogs-vs-Cats into it with `catdog data fetch --out {}`",
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
    let monitor = crate::train::monitor::Monitor::parse(&a.monitor, a.es_mode).map_err(usage)?;
    let early_stopping = a.patience.map(|patience| EarlyStoppingConfig {
        monitor: monitor.name.clone(),
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
        weights_path: None,
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
        monitor: monitor.name,
        early_stopping,
        reduce_lr: a.reduce_lr_patience.map(|patience| ReduceLrSettings {
            factor: a.reduce_lr_factor,
            patience,
            min_lr: a.min_lr,
        }),
        cache: a.cache,
        feature_cache_mb: a.feature_cache_mb,
        image_cache_mb: a.image_cache_mb,
        device: a.w.rt.device.clone(),
        kernels: Kernels::default(),
        precision: Default::default(),
        loss_scaling: None,
        strict: a.strict,
        init_from: None,
        features: a.features.clone(),
        tensorboard: a.tensorboard.clone(),
        catdog_version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

pub(in crate::app) fn splits_for(cfg: &TrainConfig) -> Result<Splits> {
    if !cfg.data.exists() {
        bail!(missing_data_hint(&cfg.data));
    }
    Ok(resolve_splits(&cfg.data, cfg.val_split, cfg.seed)?)
}

/// Loads the run in `dir` for `--resume`: refuses flags that would change its config.json (exit 2, listing them),
/// then applies the ones that may change (`--epochs`, `--patience`).
fn load_resume(
    a: &FinetuneArgs,
    explicit: &[String],
    dir: &Path,
    device: &candle_core::Device,
) -> Result<(TrainConfig, Vgg16, Option<Resume>)> {
    let (mut cfg, base, resume) = run::resume::load(dir, device).map_err(usage)?;
    let preprocess = a.w.preprocess.map_or(cfg.preprocess, Preprocess::from_mode);
    let now = build_config(a, preprocess, cfg.weights_revision.clone())?;
    let conflicts = super::resume_flags::conflicting_flags(explicit, &cfg, &now);
    if !conflicts.is_empty() {
        bail!(crate::app::UsageError(format!(
            "--resume continues the run as its config.json describes it, but {} would change it; drop them (only \
             {} may change on a resume), or start a new run with another --name",
            conflicts.join(", "),
            super::resume_flags::may_change_list()
        )));
    }
    if let Some(e) = a.epochs {
        cfg.epochs = e;
    }
    if explicit.iter().any(|f| f == "tensorboard") {
        cfg.tensorboard = a.tensorboard.clone();
    }
    if let Some(p) = a.patience {
        cfg.early_stopping
            .get_or_insert_with(EarlyStoppingConfig::default)
            .patience = p;
    }
    Ok((cfg, base, Some(resume)))
}

pub fn run(a: FinetuneArgs, quiet: bool, explicit: &[String]) -> Result<i32> {
    train(a, quiet, explicit).map(|(code, _)| code)
}

/// Trains (or resumes) a run; returns the exit code (128 + the signal when stopped) and the run folder, when one
/// was made.
pub fn train(a: FinetuneArgs, quiet: bool, explicit: &[String]) -> Result<(i32, Option<PathBuf>)> {
    let interrupt = crate::signals::install();
    let device = crate::device::parse_device(&a.w.rt.device)?;
    let mut log = |m: &str| eprintln!("{m}");
    let kernels = Kernels::resolve(a.w.rt.kernels, &device)?;
    let (mut cfg, base, folder, resume, init) = match &a.resume {
        Some(dir) => match open_resumed(&a, explicit, dir, &device)? {
            Some((cfg, base, folder, resume)) => (cfg, base, folder, resume, None),
            None => return Ok((0, Some(dir.clone()))),
        },
        None => {
            let (cfg, base, folder, init) = open_new(&a, explicit, quiet, &device, &mut log)?;
            (cfg, base, folder, None, init)
        }
    };
    // Like the device, the kernels say how a run computes, not what: a resume may change them.
    cfg.device = crate::device::resolved_name(&a.w.rt.device, &device);
    cfg.kernels = kernels;
    // The precision too; a resume keeps the run's unless --precision is given again.
    let asked = if a.resume.is_some() && !explicit.iter().any(|f| f == "precision") {
        cfg.precision.into()
    } else {
        a.w.rt.precision
    };
    let precision = asked.resolve(&device, kernels);
    if let (Some(notice), false) = (&precision.notice, quiet) {
        eprintln!("{notice}");
    }
    cfg.set_precision(precision.precision);
    let run_dir = folder.dir.clone();
    let splits = splits_for(&cfg)?;
    settle_monitor(&mut cfg, &splits, explicit)?;
    if cfg.val_split.is_some() && !splits.val_from_split {
        eprintln!(
            "warning: --val-split is not used: {} is the validation data",
            splits
                .val
                .as_ref()
                .map_or("nothing".into(), |v| v.root.display().to_string())
        );
    }
    check_run_memory(&cfg, &base, &splits)?;
    crate::io::write_json(&folder.paths().config(), &cfg)?;
    describe_start(&cfg, &splits, &run_dir, precision.kernel);
    let mut trainer = Trainer::new(cfg.clone(), base, &splits, &run_dir, resume, &device)?;
    if let Some(init) = &init {
        trainer
            .init_from(&init.path, &init.meta, &init.tensors)
            .map_err(usage)?;
    }
    if let Some(given) = &cfg.features {
        trainer.use_features(open_features(given, &cfg, quiet)?);
    }
    if let Some(dir) = &cfg.tensorboard {
        trainer
            .use_tensorboard(dir)
            .with_context(|| format!("--tensorboard {}", dir.display()))?;
    }
    let mut opts = RunOptions {
        quiet,
        interrupt,
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
            folder.paths().bad_files().display(),
            bad[0].0.display(),
            bad[0].1
        );
    }
    super::summary::write(&trainer, &splits, &outcome)?;
    match outcome.ending {
        Ending::Interrupted => Ok((crate::signals::exit_code(), Some(run_dir))),
        _ => {
            eprintln!(
                "done: {} (best epoch {}: best.safetensors; summary.md, curves.png, history.csv)",
                run_dir.display(),
                outcome.best_epoch.map_or("-".into(), |e| e.to_string())
            );
            Ok((0, Some(run_dir)))
        }
    }
}

/// `--features`: the files of `catdog extract`, checked against what this run's head takes.
fn open_features(given: &Path, cfg: &TrainConfig, quiet: bool) -> Result<FeatureFiles> {
    let files = FeatureFiles::open(given).map_err(usage)?;
    let weights = crate::model::weights::WeightsSpec::parse(&cfg.weights, cfg.seed)?.describe();
    let expected = Expected {
        layer: LAYERS[LAYERS.len() - 1].name,
        size: cfg.size,
        interpolation: cfg.interpolation,
        preprocess: cfg.preprocess,
        precision: cfg.precision.name(),
        weights: &weights,
    };
    for note in files.check(&expected).map_err(usage)? {
        if !quiet {
            eprintln!("{note}");
        }
    }
    Ok(files)
}

/// A run folder and what it holds: the configuration, the conv base, the folder (locked) and, on a resume, where
/// it stopped.
type Opened = (TrainConfig, Vgg16, run::RunFolder, Option<Resume>);

/// `--resume DIR`: the run as it stopped; `None` when it has already trained all its epochs (said on stderr).
fn open_resumed(
    a: &FinetuneArgs,
    explicit: &[String],
    dir: &Path,
    device: &candle_core::Device,
) -> Result<Option<Opened>> {
    let folder = run::RunFolder::open(dir)?;
    let (cfg, base, resume) = load_resume(a, explicit, dir, device)?;
    let state = &resume.as_ref().expect("resume state").state;
    if state.epoch >= cfg.epochs && state.batches_done == 0 {
        eprintln!(
            "{}: all {} done; pass --epochs N (a larger total) to train further",
            dir.display(),
            crate::progress::count(cfg.epochs, "epoch")
        );
        return Ok(None);
    }
    let batch = if state.batches_done > 0 {
        format!(", batch {}", state.batches_done + 1)
    } else {
        String::new()
    };
    eprintln!(
        "resuming {} at epoch {}{batch} of {}",
        dir.display(),
        state.epoch + 1,
        cfg.epochs
    );
    Ok(Some((cfg, base, folder, resume)))
}

/// The checkpoint a run starts from (`--init-from`): where it is, what it says of its model, its tensors.
pub(in crate::app) struct InitFrom {
    pub path: PathBuf,
    pub meta: crate::model::classifier::ModelMeta,
    pub tensors: crate::model::classifier::Tensors,
}

/// `--init-from RUN|CHECKPOINT`: a run folder's best.safetensors, or the checkpoint named; loaded onto `device`.
fn load_init(given: &Path, device: &candle_core::Device) -> Result<(Vgg16, InitFrom)> {
    let path = if given.is_dir() {
        run::RunPaths::new(given).best()
    } else {
        given.to_path_buf()
    };
    if !path.is_file() {
        bail!(crate::app::UsageError(format!(
            "--init-from {}: no such checkpoint; give a run folder (its best.safetensors is used) or a .safetensors \
             file that catdog finetune wrote",
            path.display()
        )));
    }
    let (model, tensors, _) = crate::model::classifier::Classifier::load(&path, device)
        .with_context(|| format!("--init-from {}", path.display()))?;
    let init = InitFrom {
        path,
        meta: model.meta,
        tensors,
    };
    Ok((model.base, init))
}

/// A new run: its flags checked, its data there (Dogs-vs-Cats fetched when the default folder is missing), its
/// folder made and locked, its model loaded ([`model_for`]).
fn open_new(
    a: &FinetuneArgs,
    explicit: &[String],
    quiet: bool,
    device: &candle_core::Device,
    log: &mut dyn FnMut(&str),
) -> Result<(TrainConfig, Vgg16, run::RunFolder, Option<InitFrom>)> {
    check_new(a, explicit)?;
    if let Some(name) = &a.name {
        run::validate_name(name).map_err(usage)?;
    }
    ensure_data(a, quiet)?;
    let folder = run::RunFolder::create(&a.runs_dir, a.name.as_deref(), log).map_err(usage)?;
    let (cfg, base, init) = model_for(a, explicit, quiet, device)?;
    Ok((cfg, base, folder, init))
}

/// The checks of a new run's flags that need no file: which apply together, the layer, the configuration.
pub(in crate::app) fn check_new(a: &FinetuneArgs, explicit: &[String]) -> Result<()> {
    check_flags_apply(a, explicit)?;
    if a.mode == TrainMode::Finetune {
        layer_index(&a.unfreeze_from)?;
    }
    build_config(a, Preprocess::imagenet(), None)?
        .validate()
        .map_err(usage)?;
    Ok(())
}

/// A new run's configuration and model: the conv base of `--weights` and a new head, or the conv base and head of
/// `--init-from`'s checkpoint (with its preprocessing unless `--preprocess` is given).
pub(in crate::app) fn model_for(
    a: &FinetuneArgs,
    explicit: &[String],
    quiet: bool,
    device: &candle_core::Device,
) -> Result<(TrainConfig, Vgg16, Option<InitFrom>)> {
    if let Some(given) = &a.init_from {
        if explicit.iter().any(|f| f == "weights") {
            bail!(crate::app::UsageError(
                "--init-from takes the conv base from its checkpoint: drop --weights".into()
            ));
        }
        let (base, init) = load_init(given, device)?;
        let preprocess = a.w.preprocess.map_or(init.meta.preprocess, Preprocess::from_mode);
        let mut cfg = build_config(a, preprocess, init.meta.weights_revision.clone())?;
        cfg.weights = init.meta.weights.clone();
        cfg.init_from = Some(init.path.clone());
        return Ok((cfg, base, Some(init)));
    }
    let loaded = super::load_weights(&a.w, quiet)?;
    let mut cfg = build_config(a, loaded.preprocess, loaded.revision.clone())?;
    if let Some(p) = &loaded.path {
        if a.w.weights.contains('/') && !Path::new(&a.w.weights).exists() {
            cfg.weights_path = Some(p.clone());
        }
    }
    Ok((cfg, loaded.model, None))
}

/// The data folder is there and whole: the default one is fetched (or its interrupted fetch completed); another
/// that is missing is an error with the ways out.
pub(in crate::app) fn ensure_data(a: &FinetuneArgs, quiet: bool) -> Result<()> {
    let unfinished = crate::data::fetch::unfinished(&a.data);
    if a.data.exists() && !unfinished {
        return Ok(());
    }
    if !is_default_data(&a.data) {
        if !a.data.exists() {
            bail!(missing_data_hint(&a.data));
        }
        eprintln!(
            "warning: {} holds a fetch that was interrupted; `catdog data fetch --out {}` with the same flags \
             completes it",
            a.data.display(),
            a.data.display()
        );
        return Ok(());
    }
    let state = if unfinished {
        "half-written (its fetch was interrupted)"
    } else {
        "missing"
    };
    eprintln!(
        "{} is {state}: getting Dogs-vs-Cats first (the same as `catdog data fetch --out {}`)",
        a.data.display(),
        a.data.display()
    );
    let selection = crate::data::fetch::Selection {
        test_split: 0.2,
        seed: 0,
        per_class: None,
    };
    // The hub's error says what failed and lists the ways out; this says what was being done.
    super::data::fetch(crate::data::fetch::DEFAULT_REPO, &a.data, selection, false, quiet)
        .with_context(|| format!("getting Dogs-vs-Cats into {} failed", a.data.display()))?;
    Ok(())
}

/// A library error that is about the user's flags becomes a usage error (exit code 2).
/// Whether `--data` names the default folder, however it is spelled (`./data/dogs-vs-cats/`, an absolute path
/// into the working directory): compared component by component, without touching the disk.
fn is_default_data(data: &Path) -> bool {
    use std::path::Component;
    let parts = |p: &Path| -> Vec<std::ffi::OsString> {
        p.components()
            .filter(|c| !matches!(c, Component::CurDir))
            .map(|c| c.as_os_str().to_os_string())
            .collect()
    };
    let default = parts(Path::new(crate::app::cli::DEFAULT_DATA));
    let relative = match std::env::current_dir() {
        Ok(cwd) if data.is_absolute() => data.strip_prefix(&cwd).map(Path::to_path_buf).unwrap_or_default(),
        _ => data.to_path_buf(),
    };
    parts(&relative) == default
}

/// Without validation data a `val_*` monitor has nothing to watch: the default one becomes `loss` (with a
/// warning, and so recorded in config.json); one given with --monitor is a usage error.
fn settle_monitor(cfg: &mut TrainConfig, splits: &Splits, explicit: &[String]) -> Result<()> {
    let monitor = cfg.monitor().map_err(usage)?;
    if splits.val.is_some() || !monitor.needs_validation() {
        return Ok(());
    }
    if explicit.iter().any(|f| f == "monitor") {
        bail!(crate::app::UsageError(format!(
            "--monitor {}: there is no validation data (no DIR/validation or DIR/test, no --val-split); add one or \
             use --monitor loss",
            monitor.name
        )));
    }
    eprintln!(
        "warning: no validation data, so the best checkpoint{} the training loss (monitor loss, not {})",
        if cfg.early_stopping.is_some() {
            " and early stopping follow"
        } else {
            " follows"
        },
        monitor.name
    );
    cfg.monitor = "loss".into();
    if let Some(es) = cfg.early_stopping.as_mut() {
        es.monitor = "loss".into();
    }
    Ok(())
}

/// Flags that do nothing in this run: a usage error rather than silently ignored.
fn check_flags_apply(a: &FinetuneArgs, explicit: &[String]) -> Result<()> {
    let given = |f: &str| explicit.iter().any(|e| e == f);
    if a.mode == TrainMode::Extract && given("unfreeze_from") {
        bail!(crate::app::UsageError(
            "--unfreeze-from applies to --mode finetune; feature extraction trains the head only".into()
        ));
    }
    if a.optimizer != crate::train::optim::OptimizerKind::Sgd && (given("momentum") || given("nesterov")) {
        bail!(crate::app::UsageError(format!(
            "--momentum and --nesterov apply to --optimizer sgd, not {}",
            a.optimizer.display_name()
        )));
    }
    Ok(())
}

fn usage(e: crate::Error) -> anyhow::Error {
    match e {
        crate::Error::InvalidArgument(m) => crate::app::UsageError(m).into(),
        other => other.into(),
    }
}

/// Refuses, before any work, a run whose memory estimate exceeds what the machine has available.
pub(in crate::app) fn check_run_memory(cfg: &TrainConfig, base: &Vgg16, splits: &Splits) -> Result<()> {
    let widths = base.widths();
    let trainable_block = crate::model::vgg16::LAYERS.get(cfg.split()?).map_or(5, |l| l.block - 1);
    let (peak, kept) = crate::limits::vgg_activation_bytes(&widths, cfg.size as usize, trainable_block);
    let batch = cfg.batch_size as u64;
    let act = batch * (peak + kept);
    let n_train = splits.train.samples.len() as u64;
    let n_val = splits.val.as_ref().map_or(0, |v| v.samples.len()) as u64;
    let (c, h, w) = base.output_shape(cfg.split()?.saturating_sub(1), cfg.size as usize);
    let feature_bytes = (c * h * w * 4) as u64;
    let mib = 1u64 << 20;
    let feature_cache = ((n_train + n_val) * feature_bytes).min(2 * cfg.feature_cache_mb as u64 * mib);
    let image_bytes = 3 * (cfg.size as u64).pow(2);
    let image_cache = (n_train * image_bytes).min(cfg.image_cache_mb as u64 * mib);
    // The head too: Flatten of block5_pool → Dense(hidden) → Dense(1) (134M weights at 1024 px).
    let (bc, bh, bw) = base.output_shape(crate::model::vgg16::LAYERS.len() - 1, cfg.size as usize);
    let head = (bc * bh * bw + 2) * cfg.hidden + 1;
    let weights = (base.parameter_count() + head) as u64 * 4 * 4; // values, gradients, two optimizer slots
    let threads = rayon::current_num_threads();
    let fp32 = cfg.precision == crate::kernels::precision::Precision::Fp32;
    let scratch = if cfg.device == "cpu" {
        crate::limits::kernel_scratch_bytes(&widths, trainable_block, threads, fp32)
    } else {
        0
    };
    use crate::limits::MemoryPart;
    let standard = widths == [64, 128, 256, 512, 512];
    let parts = [
        MemoryPart::new(
            format!("activations for batch {} at {}px", cfg.batch_size, cfg.size),
            act,
            if standard {
                "--batch-size or --size"
            } else {
                "--batch-size, --size or the random:W1,… widths of --weights"
            },
        ),
        MemoryPart::new("feature cache", feature_cache, "--feature-cache-mb"),
        MemoryPart::new("image cache", image_cache, "--image-cache-mb"),
        MemoryPart::new(
            "weights and optimizer",
            weights,
            "--hidden, --size or the random:W1,… widths of --weights",
        ),
        MemoryPart::new(format!("kernel buffers for {threads} threads"), scratch, "--threads"),
    ];
    crate::limits::check_memory("this run", &parts).map_err(usage)
}

fn describe_start(cfg: &TrainConfig, s: &Splits, run_dir: &Path, precision_kernel: &str) {
    let counts = |f: &crate::data::folder::ImageFolder| {
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
    // "precision bf16 on the avx512-bf16 kernel", or just "precision fp32".
    let precision = match precision_kernel {
        k if k == cfg.precision.name() => format!("precision {k}"),
        k => format!("precision {} on the {k} kernel", cfg.precision.name()),
    };
    eprintln!(
        "device {}, {} kernels, {} CPU threads; {precision}",
        cfg.device,
        cfg.kernels.name(),
        rayon::current_num_threads()
    );
    eprintln!("preprocessing: {}", cfg.preprocess.describe());
    eprintln!(
        "mode {}{}, {}, batch {}, {} lr {:e}, {}",
        cfg.mode.flag_name(),
        if cfg.mode == TrainMode::Finetune {
            format!(" from {}", cfg.unfreeze_from)
        } else {
            String::new()
        },
        crate::progress::count(cfg.epochs, "epoch"),
        cfg.batch_size,
        cfg.optimizer.kind.display_name(),
        cfg.optimizer.lr,
        cfg.augment
            .map_or("no augmentation".to_string(), |a| crate::data::preview::describe(&a))
    );
}

fn write_bad_files(dir: &Path, bad: &[(PathBuf, String)]) -> Result<()> {
    let mut s = String::new();
    for (p, r) in bad {
        s.push_str(&format!("{}\t{r}\n", p.display()));
    }
    crate::io::atomic_write(&run::RunPaths::new(dir).bad_files(), s.as_bytes())?;
    Ok(())
}
