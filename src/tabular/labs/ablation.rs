//! The baseline, each regularizer alone, and all of them together.

use super::format::{count, metric_name, num, pm};
use super::plots::{loss_curves, save};
use super::train::{early_stopping, summaries, train_all, Variant};
use super::{headers, Context, Lab, VariantResult};
use crate::error::Result;
use crate::nn::Norm;
use crate::tabular::fit::FitConfig;
use crate::tabular::mlp::MlpConfig;

pub(super) struct Ablation;

impl Lab for Ablation {
    fn measure(&self, cx: &mut Context) -> Result<Vec<VariantResult>> {
        let plain = FitConfig {
            l1: 0.0,
            l2: 0.0,
            early_stopping: None,
            ..cx.cfg.fit.clone()
        };
        let m0 = MlpConfig {
            dropout: 0.0,
            norm: Norm::None,
            ..cx.base.clone()
        };
        let es = Some(early_stopping(cx.cfg));
        let fit = |l1: f64, l2: f64, stop: bool| FitConfig {
            l1,
            l2,
            early_stopping: if stop { es.clone() } else { None },
            ..plain.clone()
        };
        let net = |dropout: f64, norm: Norm| MlpConfig {
            dropout,
            norm,
            ..m0.clone()
        };
        let variants = vec![
            Variant::new("baseline", m0.clone(), plain.clone()),
            Variant::new("L2 1e-3", m0.clone(), fit(0.0, 1e-3, false)),
            Variant::new("L1 1e-4", m0.clone(), fit(1e-4, 0.0, false)),
            Variant::new("dropout 0.3", net(0.3, Norm::None), plain.clone()),
            Variant::new("batch norm", net(0.0, Norm::Batch), plain.clone()),
            Variant::new("early stopping", m0.clone(), fit(0.0, 0.0, true)),
            Variant::new("all combined", net(0.3, Norm::Batch), fit(1e-4, 1e-3, true)),
        ];
        let mut vs = summaries(&train_all(&cx.data, variants)?);
        let curves = loss_curves("ablation: train vs validation loss", &vs)?;
        save(cx.out, "curves.png", &curves, &mut cx.plots)?;
        let base = vs[0].val_metric;
        for v in vs.iter_mut() {
            let delta = v.val_metric - base;
            v.extra.insert("delta_val_metric".into(), delta);
        }
        Ok(vs)
    }

    fn caption(&self, _cx: &Context) -> String {
        "The default network without regularization, with each regularizer alone, and with all of them; the same \
         splits, seeds and optimizer everywhere."
            .into()
    }

    fn table(&self, cx: &Context, vs: &[VariantResult]) -> (Vec<String>, Vec<Vec<String>>) {
        let mname = metric_name(cx.data[0].train.task);
        let columns = headers(&[
            "variant",
            &format!("val {mname}"),
            "Δ vs baseline",
            "val loss",
            "best val loss",
            &format!("gap (train − val {mname})"),
            "epochs",
        ]);
        let rows = vs
            .iter()
            .map(|v| {
                let delta = v.extra["delta_val_metric"];
                vec![
                    v.variant.clone(),
                    pm(v, "val_metric", 4),
                    format!("{}{}", if delta > 0.0 { "+" } else { "" }, num(delta, 4)),
                    pm(v, "val_loss", 4),
                    pm(v, "best_val_loss", 4),
                    pm(v, "gap_metric", 4),
                    count(v, "epochs_run"),
                ]
            })
            .collect();
        (columns, rows)
    }

    fn notes(&self, _cx: &Context, _vs: &[VariantResult]) -> Vec<String> {
        vec!["Δ is the difference of the mean validation metric from the baseline's.".into()]
    }
}
