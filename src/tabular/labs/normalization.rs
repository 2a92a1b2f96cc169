//! No normalization vs batch norm vs layer norm between each hidden Dense layer and its activation.

use super::format::{best_by_val_metric, count, metric_name, num, pm, seeds_phrase};
use super::plots::{loss_curves, save};
use super::train::{summaries, train_all, Variant};
use super::{headers, Context, Lab, VariantResult};
use crate::error::Result;
use crate::nn::Norm;
use crate::tabular::mlp::MlpConfig;

pub(super) struct Normalization;

impl Lab for Normalization {
    fn measure(&self, cx: &mut Context) -> Result<Vec<VariantResult>> {
        let variants = [(Norm::None, "none"), (Norm::Batch, "batch"), (Norm::Layer, "layer")]
            .iter()
            .map(|(n, name)| {
                Variant::new(
                    *name,
                    MlpConfig {
                        norm: *n,
                        ..cx.base.clone()
                    },
                    cx.cfg.fit.clone(),
                )
            })
            .collect();
        let vs = summaries(&train_all(&cx.data, variants)?);
        let curves = loss_curves("train vs validation loss by normalization", &vs)?;
        save(cx.out, "curves.png", &curves, &mut cx.plots)?;
        Ok(vs)
    }

    fn caption(&self, _cx: &Context) -> String {
        "Normalization between each hidden Dense layer of the default network and its activation.".into()
    }

    fn table(&self, cx: &Context, vs: &[VariantResult]) -> (Vec<String>, Vec<Vec<String>>) {
        let mname = metric_name(cx.data[0].train.task);
        let columns = headers(&[
            "normalization",
            &format!("train {mname}"),
            &format!("val {mname}"),
            "train loss",
            "val loss",
            "best epoch",
        ]);
        let rows = vs
            .iter()
            .map(|v| {
                vec![
                    v.variant.clone(),
                    pm(v, "train_metric", 4),
                    pm(v, "val_metric", 4),
                    pm(v, "train_loss", 4),
                    pm(v, "val_loss", 4),
                    count(v, "best_epoch"),
                ]
            })
            .collect();
        (columns, rows)
    }

    fn notes(&self, cx: &Context, vs: &[VariantResult]) -> Vec<String> {
        let task = cx.data[0].train.task;
        let best = best_by_val_metric(vs, task);
        vec![
            format!(
                "Best validation {}: {} ({}, {}); lowest validation loss reached at epoch {} without normalization, \
                 {} with batch norm, {} with layer norm.",
                metric_name(task),
                best.variant,
                num(best.val_metric, 4),
                seeds_phrase(&best.seeds),
                num(vs[0].best_epoch, 0),
                num(vs[1].best_epoch, 0),
                num(vs[2].best_epoch, 0)
            ),
            format!(
                "{:?} defaults (Keras: momentum 0.99, ε 1e-3; PyTorch: momentum 0.1, ε 1e-5; `--norm-defaults`).",
                cx.cfg.norm_defaults
            ),
        ]
    }
}
