//! Hidden activations on the default network: metrics, dead units, and each function with its derivative.

use candle_core::Device;

use super::format::{best_by_val_metric, metric_name, num, percent, pm, seeds_phrase};
use super::plots::{loss_curves, save};
use super::train::{summaries, train_all, Variant};
use super::{headers, Context, Lab, VariantResult};
use crate::error::Result;
use crate::nn::Activation;
use crate::plot::{self, Series, Stroke};
use crate::tabular::fit::{self, Tensors};
use crate::tabular::mlp::MlpConfig;

const ACTIVATIONS: [Activation; 7] = [
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Relu,
    Activation::LeakyRelu { alpha: 0.3 },
    Activation::Elu { alpha: 1.0 },
    Activation::Selu,
    Activation::Prelu,
];

pub(super) struct Activations;

impl Lab for Activations {
    fn measure(&self, cx: &mut Context) -> Result<Vec<VariantResult>> {
        let variants = ACTIVATIONS
            .iter()
            .map(|a| {
                Variant::new(
                    a.name(),
                    MlpConfig {
                        activation: *a,
                        ..cx.base.clone()
                    },
                    cx.cfg.fit.clone(),
                )
            })
            .collect();
        let mut trained = train_all(&cx.data, variants)?;
        for (seed, run) in trained.iter_mut().flat_map(|t| t.runs.iter_mut().enumerate()) {
            let val = Tensors::new(&cx.data[seed].val, &Device::Cpu)?;
            let dead = fit::dead_fractions(&run.model, &val)?;
            for (l, d) in dead.iter().enumerate() {
                run.v.extra.insert(format!("dead_layer{}", l + 1), *d);
            }
            let mean = dead.iter().sum::<f64>() / dead.len().max(1) as f64;
            run.v.extra.insert("dead_fraction".into(), mean);
        }
        save(cx.out, "activations.png", &functions_figure()?, &mut cx.plots)?;
        let vs = summaries(&trained);
        let curves = loss_curves("train vs validation loss by activation", &vs)?;
        save(cx.out, "curves.png", &curves, &mut cx.plots)?;
        Ok(vs)
    }

    fn caption(&self, _cx: &Context) -> String {
        "Each hidden activation on the default network (the same network as every other lab's baseline).".into()
    }

    fn table(&self, cx: &Context, vs: &[VariantResult]) -> (Vec<String>, Vec<Vec<String>>) {
        let mname = metric_name(cx.data[0].train.task);
        let columns = headers(&[
            "activation",
            &format!("train {mname}"),
            &format!("val {mname}"),
            "val loss",
            "dead units (never active on validation)",
        ]);
        let rows = vs
            .iter()
            .map(|v| {
                vec![
                    v.variant.clone(),
                    pm(v, "train_metric", 4),
                    pm(v, "val_metric", 4),
                    pm(v, "val_loss", 4),
                    percent(v, "dead_fraction"),
                ]
            })
            .collect();
        (columns, rows)
    }

    fn notes(&self, cx: &Context, vs: &[VariantResult]) -> Vec<String> {
        let task = cx.data[0].train.task;
        let best = best_by_val_metric(vs, task);
        let relu = vs
            .iter()
            .find(|v| v.variant == "relu")
            .expect("relu is one of the variants");
        vec![
            format!(
                "Best validation {}: {} ({}, {}). ReLU leaves {}% of its units dead on the validation rows.",
                metric_name(task),
                best.variant,
                num(best.val_metric, 4),
                seeds_phrase(&best.seeds),
                num(100.0 * relu.extra["dead_fraction"], 1)
            ),
            "A unit is dead when its pre-activation is ≤ 0 for every validation row (for ReLU it then outputs 0 and \
             gets no gradient). leaky_relu uses 0.3, the default of Keras' LeakyReLU layer (Keras' \
             activation=\"leaky_relu\" uses 0.2, PyTorch 0.01); PReLU learns its slope per unit, starting at 0 as in \
             Keras."
                .into(),
        ]
    }
}

/// Each function (solid) and its derivative (dashed) over [−4, 4].
fn functions_figure() -> Result<image::RgbImage> {
    let xs: Vec<f64> = (0..121).map(|k| -4.0 + k as f64 / 15.0).collect();
    plot::panels(
        ACTIVATIONS.len(),
        4,
        260,
        220,
        Some("activation functions (solid) and their derivatives (dashed); PReLU at its starting slope 0"),
        |a, i| {
            let f = ACTIVATIONS[i];
            plot::line_chart(
                a,
                &f.name(),
                "x",
                "",
                &[
                    Series {
                        name: "f(x)",
                        points: xs.iter().map(|&x| (x, f.value(x))).collect(),
                        color: plot::color(0),
                        stroke: Stroke::Line,
                    },
                    Series {
                        name: "f′(x)",
                        points: xs.iter().map(|&x| (x, f.derivative(x))).collect(),
                        color: plot::color(1),
                        stroke: Stroke::Dashed,
                    },
                ],
            )
        },
    )
}
