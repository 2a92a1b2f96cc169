//! Kernel initialisations on a three-layer network: does it learn, and how large are the first epoch's gradients
//! layer by layer.

use super::format::{metric_name, num, pm};
use super::plots::{loss_curves, save};
use super::train::{summaries, train_all, Variant};
use super::{Context, Lab, VariantResult};
use crate::error::Result;
use crate::nn::Init as InitKind;
use crate::plot::{self, Series, Stroke, YAxis};
use crate::tabular::dataset::Task;
use crate::tabular::mlp::MlpConfig;

/// Three hidden layers, one more than the default network, so that gradients shrinking or growing with depth show.
const DEEP: [usize; 3] = [64, 64, 64];

pub(super) struct Init;

impl Lab for Init {
    fn measure(&self, cx: &mut Context) -> Result<Vec<VariantResult>> {
        let inits = [
            InitKind::Zeros,
            InitKind::Normal { std: 1.0 },
            InitKind::Glorot,
            InitKind::He,
        ];
        let deep = MlpConfig {
            layers: DEEP.to_vec(),
            ..cx.base.clone()
        };
        let variants = inits
            .iter()
            .map(|i| {
                Variant::new(
                    i.name(),
                    MlpConfig {
                        init: *i,
                        ..deep.clone()
                    },
                    cx.cfg.fit.clone(),
                )
            })
            .collect();
        let vs = summaries(&train_all(&cx.data, variants)?);
        save(cx.out, "grad_norms.png", &grad_norm_figure(&vs, LAYERS)?, &mut cx.plots)?;
        let curves = loss_curves("train vs validation loss by initialisation", &vs)?;
        save(cx.out, "curves.png", &curves, &mut cx.plots)?;
        Ok(vs)
    }

    fn caption(&self, _cx: &Context) -> String {
        format!(
            "Each initialisation on a {}-layer network ({}), one layer deeper than the default so that gradients \
             changing with depth show.",
            DEEP.len(),
            DEEP.map(|u| u.to_string()).join("-")
        )
    }

    fn table(&self, cx: &Context, vs: &[VariantResult]) -> (Vec<String>, Vec<Vec<String>>) {
        let mname = metric_name(cx.data[0].train.task);
        let mut columns: Vec<String> = vec![
            "init".into(),
            format!("val {mname}"),
            "learns?".into(),
            "val loss".into(),
        ];
        columns.extend((1..=LAYERS).map(|l| format!("‖∇W{l}‖ epoch 1")));
        let rows = vs
            .iter()
            .map(|v| {
                let mut r = vec![
                    v.variant.clone(),
                    pm(v, "val_metric", 4),
                    if learns(cx, v) { "yes".into() } else { "no".into() },
                    pm(v, "val_loss", 4),
                ];
                r.extend((1..=LAYERS).map(|l| format!("{:.3e}", v.extra[&format!("grad_norm_layer{l}")])));
                r
            })
            .collect();
        (columns, rows)
    }

    fn notes(&self, cx: &Context, vs: &[VariantResult]) -> Vec<String> {
        let learners: Vec<&str> = vs
            .iter()
            .filter(|v| learns(cx, v))
            .map(|v| v.variant.as_str())
            .collect();
        vec![
            format!(
                "Learns (better than the majority class, {}, by 0.05): {}.",
                num(cx.majority(), 3),
                if learners.is_empty() { "none".to_string() } else { learners.join(", ") }
            ),
            "Zeros make every unit of a layer the same (and with ReLU pass no gradient back), so nothing learns beyond \
             the biases; a large normal (σ = 1) starts with exploding activations."
                .into(),
        ]
    }
}

/// Dense layers of the deep network: its hidden layers and the output.
const LAYERS: usize = DEEP.len() + 1;

/// Classification: better than the majority class by 0.05; regression: the best validation loss is 20% under
/// the first epoch's.
fn learns(cx: &Context, v: &VariantResult) -> bool {
    match cx.data[0].train.task {
        Task::Classification => v.val_metric > cx.majority() + 0.05,
        Task::Regression => v.best_val_loss < v.history.first().map_or(f64::INFINITY, |r| r.val_loss) * 0.8,
    }
}

/// The first epoch's mean gradient norm per layer, one panel per initialisation, all on one log scale.
fn grad_norm_figure(vs: &[VariantResult], layers: usize) -> Result<image::RgbImage> {
    let norms: Vec<Vec<(f64, f64)>> = vs
        .iter()
        .map(|v| {
            (1..=layers)
                .map(|l| (l as f64, v.extra[&format!("grad_norm_layer{l}")]))
                .collect()
        })
        .collect();
    let positive: Vec<f64> = norms.iter().flatten().map(|p| p.1).filter(|v| *v > 0.0).collect();
    let axis = YAxis {
        log: true,
        ..YAxis::shared(&positive)
    };
    plot::panels(
        vs.len(),
        4,
        260,
        220,
        Some("mean gradient norm per layer, first epoch (log scale; zero norms not drawn)"),
        |a, i| {
            plot::line_chart_on(
                a,
                &vs[i].variant,
                "layer",
                "‖∇W‖",
                &[Series {
                    name: "gradient norm",
                    points: norms[i].clone(),
                    color: plot::color(0),
                    stroke: Stroke::Dots,
                }],
                axis,
            )
        },
    )
}
