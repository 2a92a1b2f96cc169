//! Dropout 0 … 0.5 on the overfit lab's too-large network: the classification's gap and decision maps, and on
//! the default data also a 1-D regression with few points and its fitted lines.

use super::format::{metric_name, num, pm, seeds_phrase};
use super::overfit::LARGE;
use super::plots::{decision_maps, loss_curves, regression_lines, save};
use super::train::{load_seeds, summaries, train_all, Variant};
use super::{headers, Context, DataSource, Lab, VariantResult};
use crate::error::Result;
use crate::tabular::dataset::{Builtin, Scaling, Task};
use crate::tabular::fit::FitConfig;
use crate::tabular::mlp::MlpConfig;

const RATES: [f64; 6] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5];

/// The default two-moons data of this lab and the overfit lab: few points and much noise, so that the too-large
/// network overfits and dropout has something to fix.
pub(super) const MOONS_N: usize = 100;
pub(super) const MOONS_NOISE: f64 = 0.3;

/// The 1-D regression: a noisy sine with few points.
const SINE_N: usize = 30;
const SINE_NOISE: f64 = 0.3;

pub(super) struct Dropout;

/// The suffix of the regression's variants.
const REGRESSION: &str = " (regression)";

impl Lab for Dropout {
    fn measure(&self, cx: &mut Context) -> Result<Vec<VariantResult>> {
        let big = MlpConfig {
            layers: LARGE.to_vec(),
            ..cx.base.clone()
        };
        let fit = FitConfig {
            early_stopping: None,
            ..cx.cfg.fit.clone()
        };
        let variants = |m: &MlpConfig| -> Vec<Variant> {
            RATES
                .iter()
                .map(|&r| {
                    Variant::new(
                        format!("dropout {r}"),
                        MlpConfig {
                            dropout: r,
                            ..m.clone()
                        },
                        fit.clone(),
                    )
                })
                .collect()
        };
        let trained = train_all(&cx.data, variants(&big))?;
        let mut vs = summaries(&trained);
        save(
            cx.out,
            "curves.png",
            &loss_curves("train vs validation loss", &vs)?,
            &mut cx.plots,
        )?;
        if cx.data[0].train.dims() == 2 && cx.data[0].train.task == Task::Classification {
            let img = decision_maps("decision maps by dropout rate", &cx.data[0], &trained, &vs)?;
            save(cx.out, "boundaries.png", &img, &mut cx.plots)?;
        }
        if cx.cfg.data.is_none() {
            let sine = DataSource::Builtin {
                kind: Builtin::Sine,
                n: SINE_N,
                noise: SINE_NOISE,
            };
            let data = load_seeds(&sine, cx.cfg, Scaling::Standard)?;
            let net = MlpConfig {
                inputs: 1,
                outputs: 1,
                ..big.clone()
            };
            let tq = train_all(&data, variants(&net))?;
            let mut qs = summaries(&tq);
            let img = regression_lines("fitted lines by dropout rate (1-D regression)", &data[0], &tq, &qs)?;
            save(cx.out, "regression.png", &img, &mut cx.plots)?;
            for q in qs.iter_mut() {
                q.variant.push_str(REGRESSION);
            }
            vs.extend(qs);
        }
        Ok(vs)
    }

    fn caption(&self, cx: &Context) -> String {
        format!(
            "Dropout after each hidden layer of the overfit lab's too-large network ({}), trained {} epochs, where \
             there is overfitting to fix; default data: {MOONS_N} two-moons points with noise {MOONS_NOISE}, and a \
             {SINE_N}-point noisy sine.",
            LARGE.map(|u| u.to_string()).join("-"),
            cx.cfg.fit.epochs
        )
    }

    fn table(&self, _cx: &Context, vs: &[VariantResult]) -> (Vec<String>, Vec<Vec<String>>) {
        let columns = headers(&[
            "variant",
            "data",
            "train loss",
            "val loss",
            "gap (val − train loss)",
            "val metric",
        ]);
        let rows = vs
            .iter()
            .map(|v| {
                vec![
                    v.variant.clone(),
                    v.data.split(" (").next().unwrap_or("").to_string(),
                    pm(v, "train_loss", 4),
                    pm(v, "val_loss", 4),
                    pm(v, "gap_loss", 4),
                    pm(v, "val_metric", 4),
                ]
            })
            .collect();
        (columns, rows)
    }

    fn notes(&self, cx: &Context, vs: &[VariantResult]) -> Vec<String> {
        let (regression, classification): (Vec<VariantResult>, Vec<VariantResult>) =
            vs.iter().cloned().partition(|v| v.variant.ends_with(REGRESSION));
        let mut notes = vec![trend_note(&classification, metric_name(cx.data[0].train.task), "")];
        if !regression.is_empty() {
            notes.push(trend_note(&regression, "mse", " on the regression"));
        }
        notes.push(
            "Dropout is inverted: kept units are scaled by 1/(1−p) in training and nothing is dropped at inference."
                .into(),
        );
        notes
    }
}

/// How the gap and the validation metric move from no dropout to the highest rate, as measured.
fn trend_note(vs: &[VariantResult], metric: &str, on: &str) -> String {
    let (none, most) = (&vs[0], &vs[vs.len() - 1]);
    let direction = |a: f64, b: f64| if b < a { "falls" } else { "rises" };
    format!(
        "From dropout 0 to {}{on}: the gap (validation − training loss) {} from {} to {}, and the validation {metric} \
         {} from {} to {} ({}).",
        most.variant.trim_start_matches("dropout ").trim_end_matches(REGRESSION),
        direction(none.extra["gap_loss"], most.extra["gap_loss"]),
        num(none.extra["gap_loss"], 4),
        num(most.extra["gap_loss"], 4),
        direction(none.val_metric, most.val_metric),
        num(none.val_metric, 4),
        num(most.val_metric, 4),
        seeds_phrase(&none.seeds)
    )
}
