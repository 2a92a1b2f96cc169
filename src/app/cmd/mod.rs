//! One function per subcommand.

mod augment;
mod bench;
pub(in crate::app) mod course;
mod data;
pub(in crate::app) mod evaluate;
mod explain;
pub(in crate::app) mod export;
mod extract;
pub(in crate::app) mod finetune;
pub(in crate::app) mod lab;
pub(in crate::app) mod lr_find;
mod resume_flags;
mod summary;
mod weights;

use anyhow::Result;

use crate::app::cli::{AugmentCmd, AugmentFlags, BenchCmd, Cli, Command};

/// Runs the parsed command; returns the exit code.
pub(in crate::app) fn run(cli: Cli, explicit: &[String]) -> Result<i32> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Weights(c) => weights::run(c, quiet),
        Command::Extract(a) => extract::run(a, quiet),
        Command::Finetune(a) => finetune::run(*a, quiet, explicit),
        Command::LrFind(a) => lr_find::run(*a, quiet, explicit),
        Command::Course(a) => course::run(a, quiet),
        Command::Evaluate(a) => evaluate::evaluate(a, quiet),
        Command::Predict(a) => evaluate::predict(a, quiet),
        Command::Export(a) => export::run(a),
        Command::Explain(a) => explain::run(a, quiet),
        Command::Lab(a) => lab::run(*a, quiet),
        Command::Data(c) => data::run(c, quiet),
        Command::Augment(AugmentCmd::Preview(a)) => augment::preview(a, quiet),
        Command::Augment(AugmentCmd::Apply(a)) => augment::apply(a),
        Command::Bench(BenchCmd::Forward(a)) => bench::forward(a, quiet),
        Command::Bench(BenchCmd::Loader(a)) => bench::loader(a, quiet),
        Command::Bench(BenchCmd::Train(a)) => bench::train(a, quiet),
        Command::Bench(BenchCmd::Mlp { epochs }) => bench::mlp(epochs),
        Command::Bench(BenchCmd::Kernels { iters, json }) => bench::kernels(iters, json, quiet),
        Command::Info { json } => info(json),
    }
}

/// `catdog info`.
fn info(json: bool) -> Result<i32> {
    let info = crate::info::gather();
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!("{info}");
    }
    Ok(0)
}

/// A limit check of the library as a usage error (exit code 2).
pub fn usage_check(r: crate::Result<()>) -> Result<()> {
    r.map_err(|e| crate::app::UsageError(e.to_string()).into())
}

/// Refuses, before any image is read, a forward pass of `base` (evaluate, predict, extract, a benchmark) at `size`
/// in batches of `batch` whose memory estimate exceeds what the machine has available.
pub fn check_forward_memory(what: &str, base: &crate::model::vgg16::Vgg16, size: u32, batch: usize) -> Result<()> {
    let threads = rayon::current_num_threads();
    let parts = crate::limits::forward_memory(&base.widths(), base.parameter_count(), size, batch, threads);
    usage_check(crate::limits::check_memory(what, &parts))
}

/// Says which input files were left out: names without an image extension, files that are not regular files, and
/// names that are not UTF-8 (shown lossily: they cannot go into JSON output or a run's config).
pub fn report_skipped(skipped: &[std::path::PathBuf]) {
    if skipped.is_empty() {
        return;
    }
    let odd: Vec<String> = skipped
        .iter()
        .filter(|p| p.to_str().is_none())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    eprintln!(
        "skipped {} files without an image extension, not regular files, or with names that are not UTF-8 (e.g. {})",
        skipped.len(),
        skipped[0].display()
    );
    for name in odd.iter().take(10) {
        eprintln!("skipped {name}: its name is not UTF-8 (its bad bytes shown as U+FFFD); rename it");
    }
}

/// Largest `augment preview --n`: versions per image in the grid.
const MAX_PREVIEW_VERSIONS: usize = 256;

/// Loads the weights named by the common flags, with the preprocessing resolved (flag over the weights' own).
pub fn load_weights(w: &crate::app::cli::WeightsFlag, quiet: bool) -> Result<crate::model::weights::LoadedWeights> {
    use crate::data::preprocess::Preprocess;
    use crate::model::weights::{self, HubOptions, WeightsSpec};
    use anyhow::Context;
    let device = crate::device::parse_device(&w.rt.device)?;
    let spec = WeightsSpec::parse(&w.weights, w.seed)?;
    let opts = HubOptions {
        progress: !quiet,
        ..HubOptions::from_env()?
    };
    let mut loaded =
        weights::load(&spec, &device, &opts).with_context(|| format!("loading weights {}", spec.describe()))?;
    // A warning, shown with --quiet too: the head that is dropped is usually the point of naming the file.
    if loaded.metadata.contains_key("model") {
        eprintln!(
            "warning: {} is a catdog checkpoint; --weights uses only its conv base (its trained head is dropped). To \
             start from its head too, as the book's second stage does, use --init-from {} instead",
            spec.describe(),
            spec.describe()
        );
    }
    if let Some(mode) = w.preprocess {
        loaded.preprocess = Preprocess::from_mode(mode);
    }
    let kernels = crate::kernels::Kernels::resolve(w.rt.kernels, &device)?;
    loaded.model.set_kernels(kernels);
    set_precision(&mut loaded.model, w.rt.precision, &device, quiet);
    Ok(loaded)
}

/// Applies `--precision` to a conv base: what runs is bf16 where a kernel for it exists (else fp32, with the
/// notice printed unless `quiet`). Returns what runs.
pub fn set_precision(
    base: &mut crate::model::vgg16::Vgg16,
    asked: crate::kernels::PrecisionChoice,
    device: &candle_core::Device,
    quiet: bool,
) -> crate::kernels::precision::Resolved {
    let resolved = asked.resolve(device, base.kernels());
    if let (Some(notice), false) = (&resolved.notice, quiet) {
        eprintln!("{notice}");
    }
    base.set_precision(resolved.precision);
    resolved
}

/// Parses `A,B` (or a single `A`, returned as `(A, A)`) for `flag`.
pub fn parse_pair(s: &str, flag: &str) -> Result<(f64, f64)> {
    let parts: Vec<&str> = s.split(',').map(|p| p.trim()).collect();
    let num = |p: &str| {
        p.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| anyhow::anyhow!("{flag} {s}: '{p}' is not a number"))
    };
    match parts.as_slice() {
        [a] => {
            let a = num(a)?;
            Ok((a, a))
        }
        [a, b] => Ok((num(a)?, num(b)?)),
        _ => anyhow::bail!("{flag} {s}: expected one number or two separated by a comma"),
    }
}

/// The augmentation ranges from the flags (`--augment` gives the course's set; explicit flags override it).
pub fn augment_config(f: &AugmentFlags) -> Result<crate::data::augment::AugmentConfig> {
    use crate::data::augment::AugmentConfig;
    let mut a = if f.augment {
        AugmentConfig::course()
    } else {
        AugmentConfig::default()
    };
    if let Some(v) = f.rotation {
        a.rotation = v.abs();
    }
    if let Some(v) = f.width_shift {
        a.width_shift = v.abs();
    }
    if let Some(v) = f.height_shift {
        a.height_shift = v.abs();
    }
    if let Some(v) = f.shear {
        a.shear = v.abs();
    }
    if let Some(z) = &f.zoom {
        a.zoom = if z.contains(',') {
            parse_pair(z, "--zoom")?
        } else {
            let (v, _) = parse_pair(z, "--zoom")?;
            if !(0.0..1.0).contains(&v) {
                anyhow::bail!(
                    "--zoom {z}: a single value Z gives [1−Z, 1+Z] and must be in [0, 1); give LO,HI otherwise"
                );
            }
            (1.0 - v, 1.0 + v)
        };
    }
    if f.horizontal_flip {
        a.horizontal_flip = true;
    }
    if f.vertical_flip {
        a.vertical_flip = true;
    }
    if let Some(b) = &f.brightness {
        a.brightness = Some(parse_pair(b, "--brightness")?);
    }
    if let Some(v) = f.channel_shift {
        a.channel_shift = v.abs();
    }
    a.fill_mode = f.fill_mode;
    a.cval = f.cval;
    a.validate()?;
    Ok(a)
}
