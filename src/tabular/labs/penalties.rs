//! L1, L2 and both (elastic net) at increasing strengths: metrics, the gap, and what each does to the weights.

use super::format::{best_by_val_metric, metric_name, num, percent, pm, seeds_phrase};
use super::plots::{loss_curves, save};
use super::train::{regularized_weights, summaries, train_all, Variant};
use super::{headers, Context, Lab, LabName, VariantResult};
use crate::error::Result;
use crate::plot;
use crate::tabular::dataset::Task;
use crate::tabular::fit::FitConfig;

const STRENGTHS: [f64; 5] = [0.0, 1e-4, 1e-3, 1e-2, 1e-1];

/// |w| below this counts as zero.
const NEAR_ZERO: f32 = 1e-3;

pub(super) struct Penalties;

impl Lab for Penalties {
    fn measure(&self, cx: &mut Context) -> Result<Vec<VariantResult>> {
        let lab = cx.lab;
        let variants: Vec<Variant> = STRENGTHS
            .iter()
            .map(|&s| {
                let (l1, l2) = match lab {
                    LabName::L1 => (s, 0.0),
                    LabName::L2 => (0.0, s),
                    _ => (s, s),
                };
                let fit = FitConfig {
                    l1,
                    l2,
                    ..cx.cfg.fit.clone()
                };
                Variant::new(format!("λ = {s}"), cx.base.clone(), fit)
            })
            .collect();
        let mut trained = train_all(&cx.data, variants)?;
        let regularize = cx.cfg.fit.regularize;
        for run in trained.iter_mut().flat_map(|t| t.runs.iter_mut()) {
            let w = regularized_weights(&run.model, regularize)?;
            let small = w.iter().filter(|v| v.abs() < NEAR_ZERO).count() as f64 / w.len().max(1) as f64;
            let mean = w.iter().map(|v| v.abs() as f64).sum::<f64>() / w.len().max(1) as f64;
            run.v.extra.insert("near_zero_fraction".into(), small);
            run.v.extra.insert("mean_abs_weight".into(), mean);
        }
        let ws: Vec<Vec<f32>> = trained
            .iter()
            .map(|t| regularized_weights(t.model(), regularize))
            .collect::<Result<_>>()?;
        let lim = ws.iter().flatten().fold(0f32, |m, v| m.max(v.abs())).max(1e-3) as f64;
        let vs = summaries(&trained);
        let counts: Vec<Vec<usize>> = ws.iter().map(|w| plot::histogram_counts(w, -lim, lim, 41)).collect();
        let axis = plot::CountAxis::shared(&counts);
        let hist = plot::panels(
            trained.len(),
            5,
            260,
            220,
            Some("regularized kernel weights (first seed)"),
            |a, i| plot::histogram(a, &vs[i].variant, &counts[i], (-lim, lim), axis),
        )?;
        save(cx.out, "histograms.png", &hist, &mut cx.plots)?;
        save(
            cx.out,
            "curves.png",
            &loss_curves("train vs validation loss", &vs)?,
            &mut cx.plots,
        )?;
        Ok(vs)
    }

    fn caption(&self, cx: &Context) -> String {
        let what = match cx.lab {
            LabName::L1 => "L1 (λ·Σ|w|)",
            LabName::L2 => "L2 (λ·Σw²)",
            _ => "L1 + L2 (elastic net, the same λ for both)",
        };
        format!("{what} at increasing λ on the default network.")
    }

    fn table(&self, cx: &Context, vs: &[VariantResult]) -> (Vec<String>, Vec<Vec<String>>) {
        let mname = metric_name(cx.data[0].train.task);
        let columns = headers(&[
            "λ",
            &format!("train {mname}"),
            &format!("val {mname}"),
            "gap (train − val)",
            "val loss",
            "|w| < 1e-3",
            "mean |w|",
        ]);
        let rows = vs
            .iter()
            .map(|v| {
                vec![
                    v.variant.trim_start_matches("λ = ").to_string(),
                    pm(v, "train_metric", 4),
                    pm(v, "val_metric", 4),
                    pm(v, "gap_metric", 4),
                    pm(v, "val_loss", 4),
                    percent(v, "near_zero_fraction"),
                    pm(v, "mean_abs_weight", 5),
                ]
            })
            .collect();
        (columns, rows)
    }

    fn notes(&self, cx: &Context, vs: &[VariantResult]) -> Vec<String> {
        let task = cx.data[0].train.task;
        let mut notes = notes(vs, task);
        if task == Task::Classification {
            notes.extend(collapsed(vs, cx.majority()));
        }
        notes
    }
}

/// What the table shows, read from it: how the weights and the validation metric move from λ = 0 to the largest λ.
fn notes(vs: &[VariantResult], task: Task) -> Vec<String> {
    let (none, most) = (&vs[0], &vs[vs.len() - 1]);
    let best = best_by_val_metric(vs, task);
    vec![
        format!(
            "From λ = 0 to {}: mean |w| goes from {} to {} and the share of weights below {NEAR_ZERO} from {}% to {}% \
             ({}).",
            most.variant.trim_start_matches("λ = "),
            num(none.extra["mean_abs_weight"], 4),
            num(most.extra["mean_abs_weight"], 4),
            num(100.0 * none.extra["near_zero_fraction"], 1),
            num(100.0 * most.extra["near_zero_fraction"], 1),
            seeds_phrase(&none.seeds)
        ),
        format!(
            "The best validation metric is at {} ({}); the gap (train − validation metric) goes from {} at λ = 0 to {}.",
            best.variant,
            num(best.val_metric, 4),
            num(none.extra["gap_metric"], 4),
            num(most.extra["gap_metric"], 4)
        ),
        "Losses include the penalty, as Keras reports them.".into(),
    ]
}

/// A note for each penalty under which the network stopped learning: its validation accuracy is the share of the
/// most common class (within 0.005) — it answers that class whatever the input — and a table that only shows the gap
/// shrinking would read as a success.
fn collapsed(vs: &[VariantResult], majority: f64) -> Vec<String> {
    vs.iter()
        .filter(|v| (v.val_metric - majority).abs() <= 0.005)
        .map(|v| {
            format!(
                "At {} the network collapsed to the majority class: its validation accuracy {} is the share of the \
                 most common class, and {}% of its weights are below {NEAR_ZERO} — the penalty outweighs the data \
                 loss, so the small gap there is not better generalisation.",
                v.variant,
                num(v.val_metric, 4),
                num(
                    100.0 * v.extra.get("near_zero_fraction").copied().unwrap_or(f64::NAN),
                    1
                )
            )
        })
        .collect()
}
