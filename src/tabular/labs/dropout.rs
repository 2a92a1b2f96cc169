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
        let metric = metric_name(cx.data[0].train.task);
        let mut notes = vec![trend_note(&classification, metric, "")];
        notes.extend(spread_note(&classification, metric, ""));
        if !regression.is_empty() {
            notes.push(trend_note(&regression, "mse", " on the regression"));
            notes.extend(spread_note(&regression, "mse", " on the regression"));
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

/// Whether the rates can be told apart: the validation metric's order when it does not go one way from the
/// lowest rate to the highest, and whether the differences are within the seeds' spread (±1 sd ranges that
/// overlap); with one seed, that the spread is unknown.
fn spread_note(vs: &[VariantResult], metric: &str, on: &str) -> Option<String> {
    let values: Vec<f64> = vs.iter().map(|v| v.val_metric).collect();
    let rising = values.windows(2).all(|w| w[1] >= w[0]);
    let falling = values.windows(2).all(|w| w[1] <= w[0]);
    let rate = |v: &VariantResult| v.variant.trim_end_matches(REGRESSION).to_string();
    let (lo, hi) = (
        vs.iter().min_by(|a, b| a.val_metric.total_cmp(&b.val_metric))?,
        vs.iter().max_by(|a, b| a.val_metric.total_cmp(&b.val_metric))?,
    );
    let mut parts = Vec::new();
    if !(rising || falling) {
        parts.push(format!(
            "The rates between do not go one way{on}: the validation {metric} is highest at {} ({}) and lowest at {} \
             ({}).",
            rate(hi),
            pm(hi, "val_metric", 4),
            rate(lo),
            pm(lo, "val_metric", 4)
        ));
    }
    let sd = |v: &VariantResult| v.sd.get("val_metric").copied().filter(|s| s.is_finite());
    match (sd(lo), sd(hi)) {
        _ if vs[0].seeds.len() < 2 => parts.push(
            "With one seed the spread is unknown: differences this size may be chance (--seeds 3 measures it).".into(),
        ),
        (Some(a), Some(b)) if hi.val_metric - lo.val_metric <= a + b => parts.push(format!(
            "Every rate's validation {metric}{on} is within the seeds' spread of the others (the highest and \
             lowest ± 1 sd overlap): these seeds do not tell the rates apart."
        )),
        (Some(_), Some(_)) if within(&vs[0], &vs[vs.len() - 1]) => parts.push(format!(
            "The two ends' validation {metric}{on} are within the seeds' spread of each other (± 1 sd overlap)."
        )),
        _ => {}
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// True when the ±1 sd ranges of two variants' validation metric overlap.
fn within(a: &VariantResult, b: &VariantResult) -> bool {
    match (a.sd.get("val_metric"), b.sd.get("val_metric")) {
        (Some(x), Some(y)) => (a.val_metric - b.val_metric).abs() <= x + y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(rate: f64, val_metric: f64, sd: f64, seeds: usize) -> VariantResult {
        VariantResult {
            variant: format!("dropout {rate}"),
            model: String::new(),
            data: String::new(),
            epochs_run: 1.0,
            best_epoch: 1.0,
            best_val_loss: 0.5,
            train_loss: 0.4,
            val_loss: 0.5,
            train_metric: 0.9,
            val_metric,
            extra: [("gap_loss".to_string(), 0.1)].into(),
            seeds: (0..seeds as u64).collect(),
            sd: [("val_metric".to_string(), sd)].into(),
            history: Vec::new(),
        }
    }

    #[test]
    fn overlapping_spreads_and_a_non_monotone_order_are_said() {
        // The measured shape: not monotone, every difference within the spread.
        let vs = [
            variant(0.0, 0.80, 0.03, 3),
            variant(0.2, 0.84, 0.03, 3),
            variant(0.5, 0.81, 0.02, 3),
        ];
        let note = spread_note(&vs, "accuracy", "").unwrap();
        assert!(note.contains("do not go one way"), "{note}");
        assert!(note.contains("highest at dropout 0.2"), "{note}");
        assert!(note.contains("do not tell the rates apart"), "{note}");
        // Monotone and far apart: nothing to add.
        let vs = [
            variant(0.0, 0.70, 0.01, 3),
            variant(0.2, 0.80, 0.01, 3),
            variant(0.5, 0.90, 0.01, 3),
        ];
        assert_eq!(spread_note(&vs, "accuracy", ""), None);
        // The ends overlap, the middle stands out.
        let vs = [
            variant(0.0, 0.80, 0.02, 3),
            variant(0.2, 0.95, 0.01, 3),
            variant(0.5, 0.82, 0.02, 3),
        ];
        let note = spread_note(&vs, "accuracy", "").unwrap();
        assert!(note.contains("two ends") && !note.contains("apart"), "{note}");
        // One seed: the spread is unknown, said.
        let vs = [variant(0.0, 0.70, f64::NAN, 1), variant(0.5, 0.90, f64::NAN, 1)];
        assert!(spread_note(&vs, "accuracy", "").unwrap().contains("one seed"));
    }
}
