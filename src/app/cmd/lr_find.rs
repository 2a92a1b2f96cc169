//! `catdog lr-find`: fastai's learning-rate finder on a run that is never saved — the same data and model flags
//! as `finetune`, a sweep of the learning rate over `--iters` steps, the suggestions printed and marked on a plot.

use std::path::Path;

use anyhow::{bail, Result};
use plotters::style::RGBColor;

use crate::app::cli::LrFindArgs;
use crate::plot::{Series, Stroke};
use crate::train::lr_find::{schedule, suggest, Suggestions};
use crate::train::trainer::Trainer;

/// Most steps of one sweep.
const MAX_ITERS: usize = 10_000;

pub fn run(a: LrFindArgs, quiet: bool, explicit: &[String]) -> Result<i32> {
    let s = find_and_plot(&a, quiet, explicit)?;
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(0);
    }
    let default = match a.train.mode {
        crate::model::classifier::TrainMode::Extract => 2e-5,
        crate::model::classifier::TrainMode::Finetune => 1e-5,
    };
    println!("suggested learning rate (valley): {:.2e}", s.suggestion);
    println!("steepest fall:                    {:.2e}", s.steepest);
    println!(
        "(finetune's default for --mode {}: {default:.0e})",
        a.train.mode.flag_name()
    );
    eprintln!("wrote {}", a.out.display());
    Ok(0)
}

/// The sweep and its plot (`--out`).
pub fn find_and_plot(a: &LrFindArgs, quiet: bool, explicit: &[String]) -> Result<Suggestions> {
    let s = find(a, quiet, explicit)?;
    plot(&s, &a.out)?;
    Ok(s)
}

/// The sweep: a trainer on a scratch folder that is removed afterwards, so no run or checkpoint changes.
pub fn find(a: &LrFindArgs, quiet: bool, explicit: &[String]) -> Result<Suggestions> {
    if !(a.start_lr > 0.0 && a.end_lr > a.start_lr && a.end_lr.is_finite()) {
        bail!(crate::app::UsageError(format!(
            "--start-lr {} --end-lr {}: give 0 < start < end",
            a.start_lr, a.end_lr
        )));
    }
    if !(20..=MAX_ITERS).contains(&a.iters) {
        bail!(crate::app::UsageError(format!(
            "--iters {}: use 20..={MAX_ITERS}",
            a.iters
        )));
    }
    let f = &a.train;
    if f.resume.is_some() {
        bail!(crate::app::UsageError(
            "lr-find starts from --weights or --init-from; --resume continues a run instead".into()
        ));
    }
    let device = crate::device::parse_device(&f.w.rt.device)?;
    super::finetune::check_new(f, explicit)?;
    super::finetune::ensure_data(f, quiet)?;
    let (mut cfg, base, init) = super::finetune::model_for(f, explicit, quiet, &device)?;
    cfg.kernels = crate::kernels::Kernels::resolve(f.w.rt.kernels, &device)?;
    cfg.set_precision(f.w.rt.precision.resolve(&device, cfg.kernels).precision);
    let splits = super::finetune::splits_for(&cfg)?;
    super::finetune::check_run_memory(&cfg, &base, &splits)?;
    let scratch = std::env::temp_dir().join(format!("catdog-lr-find-{}", std::process::id()));
    let steps = (|| -> Result<_> {
        let mut trainer = Trainer::new(cfg, base, &splits, &scratch, None, &device)?;
        if let Some(init) = &init {
            trainer.init_from(&init.path, &init.meta, &init.tensors)?;
        }
        let mut log = |m: &str| eprintln!("{m}");
        Ok(trainer.lr_sweep(&schedule(a.start_lr, a.end_lr, a.iters), quiet, &mut log)?)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    let steps = steps?;
    suggest(&steps).ok_or_else(|| {
        anyhow::anyhow!(
            "the loss diverged after {} steps, too few to suggest a learning rate: lower --start-lr or raise --iters",
            steps.len()
        )
    })
}

/// `lr_find.png`: the smoothed loss against the learning rate (log scale), the two suggestions marked.
fn plot(s: &Suggestions, out: &Path) -> Result<()> {
    let points: Vec<(f64, f64)> = s.points.iter().map(|(lr, l)| (lr.log10(), *l)).collect();
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let marker = |lr: f64| vec![(lr.log10(), lo), (lr.log10(), hi)];
    let (valley, steep) = (
        format!("valley {:.1e}", s.suggestion),
        format!("steepest {:.1e}", s.steepest),
    );
    let series = [
        Series {
            name: "smoothed loss",
            points,
            color: RGBColor(31, 90, 200),
            stroke: Stroke::Line,
        },
        Series {
            name: &valley,
            points: marker(s.suggestion),
            color: RGBColor(230, 120, 20),
            stroke: Stroke::Dashed,
        },
        Series {
            name: &steep,
            points: marker(s.steepest),
            color: RGBColor(90, 90, 90),
            stroke: Stroke::Dashed,
        },
    ];
    let img = crate::plot::draw(700, 420, |root| {
        crate::plot::line_chart(root, "Learning-rate finder", "learning rate (log10)", "loss", &series)
    })?;
    crate::plot::save_png(out, &img)?;
    Ok(())
}
