//! No scaling vs standardisation vs min-max: how many epochs to a target training loss, and the final metrics.

use super::format::{metric_name, num, pm};
use super::plots::{loss_curves, save};
use super::train::{load_seeds, summaries, train_all, Variant};
use super::{headers, Context, Lab, VariantResult};
use crate::error::Result;
use crate::tabular::dataset::Scaling as ScalingKind;
use crate::tabular::fit::FitConfig;

const SCALINGS: [(ScalingKind, &str); 3] = [
    (ScalingKind::None, "none"),
    (ScalingKind::Standard, "standard"),
    (ScalingKind::Minmax, "minmax"),
];

pub(super) struct Scaling;

impl Lab for Scaling {
    fn measure(&self, cx: &mut Context) -> Result<Vec<VariantResult>> {
        let target = cx.cfg.target_loss;
        let fit = FitConfig {
            early_stopping: None,
            ..cx.cfg.fit.clone()
        };
        let mut vs = Vec::new();
        for (scaling, name) in SCALINGS {
            let data = load_seeds(&cx.source, cx.cfg, scaling)?;
            let mut trained = train_all(&data, vec![Variant::new(name, cx.base.clone(), fit.clone())])?;
            for run in trained[0].runs.iter_mut() {
                let reach = run.v.history.iter().find(|r| r.data_loss <= target).map(|r| r.epoch);
                let v = &mut run.v;
                v.extra
                    .insert("epochs_to_target".into(), reach.map_or(f64::NAN, |e| e as f64));
                v.extra
                    .insert("reached_target".into(), if reach.is_some() { 1.0 } else { 0.0 });
            }
            vs.extend(summaries(&trained));
        }
        let curves = loss_curves("train vs validation loss by input scaling", &vs)?;
        save(cx.out, "curves.png", &curves, &mut cx.plots)?;
        Ok(vs)
    }

    fn caption(&self, _cx: &Context) -> String {
        "The default network on the same data, its inputs unscaled, standardised or min-max scaled (scalers fitted \
         on the training split only and applied to both)."
            .into()
    }

    fn table(&self, cx: &Context, vs: &[VariantResult]) -> (Vec<String>, Vec<Vec<String>>) {
        let mname = metric_name(cx.data[0].train.task);
        let columns = headers(&[
            "scaling",
            &format!("epochs to train loss ≤ {}", cx.cfg.target_loss),
            "final train loss",
            "final val loss",
            &format!("val {mname}"),
        ]);
        let rows = vs
            .iter()
            .map(|v| {
                vec![
                    v.variant.clone(),
                    epochs_cell(v),
                    pm(v, "train_loss", 4),
                    pm(v, "val_loss", 4),
                    pm(v, "val_metric", 4),
                ]
            })
            .collect();
        (columns, rows)
    }

    fn notes(&self, cx: &Context, vs: &[VariantResult]) -> Vec<String> {
        vec![note(vs, cx.cfg.target_loss)]
    }
}

/// "5.3 ± 0.6", "12 (2 of 3 seeds)", "not in 100".
fn epochs_cell(v: &VariantResult) -> String {
    let n = v.seeds.len();
    let reached = (v.extra["reached_target"] * n as f64).round() as usize;
    match reached {
        0 => format!("not in {}", num(v.epochs_run, 0)),
        r if r == n => super::format::count(v, "epochs_to_target"),
        r => format!("{} ({r} of {n} seeds)", num(v.extra["epochs_to_target"], 1)),
    }
}

fn note(vs: &[VariantResult], target: f64) -> String {
    let parts: Vec<String> = vs.iter().map(|v| format!("{} {}", v.variant, epochs_cell(v))).collect();
    let fastest = vs
        .iter()
        .filter(|v| v.extra["reached_target"] > 0.0)
        .min_by(|a, b| a.extra["epochs_to_target"].total_cmp(&b.extra["epochs_to_target"]));
    match fastest {
        Some(f) => format!(
            "Epochs to a training loss ≤ {target}: {}. {} gets there first.",
            parts.join(", "),
            f.variant
        ),
        None => format!("No scaling reached a training loss ≤ {target} in these epochs: raise --epochs."),
    }
}
