//! The same run with and without early stopping (validation loss, `--patience`, best weights restored).

use super::format::{count, metric_name, num, pm, seeds_phrase};
use super::plots::{loss_curves, save};
use super::train::{early_stopping, summaries, train_all, Variant};
use super::{headers, Context, Lab, VariantResult};
use crate::error::Result;
use crate::tabular::fit::FitConfig;

pub(super) struct EarlyStopping;

impl Lab for EarlyStopping {
    fn measure(&self, cx: &mut Context) -> Result<Vec<VariantResult>> {
        let full = FitConfig {
            early_stopping: None,
            ..cx.cfg.fit.clone()
        };
        let with = FitConfig {
            early_stopping: Some(early_stopping(cx.cfg)),
            ..cx.cfg.fit.clone()
        };
        let name = format!("early stopping (patience {}, restore best)", cx.cfg.patience);
        let variants = vec![
            Variant::new("full run", cx.base.clone(), full),
            Variant::new(name, cx.base.clone(), with),
        ];
        let vs = summaries(&train_all(&cx.data, variants)?);
        let curves = loss_curves("with and without early stopping", &vs)?;
        save(cx.out, "curves.png", &curves, &mut cx.plots)?;
        Ok(vs)
    }

    fn caption(&self, _cx: &Context) -> String {
        "The default network, trained for all epochs and with early stopping on the validation loss.".into()
    }

    fn table(&self, cx: &Context, vs: &[VariantResult]) -> (Vec<String>, Vec<Vec<String>>) {
        let mname = metric_name(cx.data[0].train.task);
        let columns = headers(&[
            "run",
            "epochs run",
            "best epoch",
            "best val loss",
            "final val loss",
            &format!("val {mname}"),
        ]);
        let rows = vs
            .iter()
            .map(|v| {
                vec![
                    v.variant.clone(),
                    count(v, "epochs_run"),
                    count(v, "best_epoch"),
                    pm(v, "best_val_loss", 4),
                    pm(v, "val_loss", 4),
                    pm(v, "val_metric", 4),
                ]
            })
            .collect();
        (columns, rows)
    }

    fn notes(&self, _cx: &Context, vs: &[VariantResult]) -> Vec<String> {
        let (full, stopped) = (&vs[0], &vs[1]);
        vec![format!(
            "Early stopping ran {} of {} epochs and ended with a validation loss of {} against the full run's {} \
             ({}); with restore_best_weights the model ends at its best epoch.",
            num(stopped.epochs_run, 1),
            num(full.epochs_run, 0),
            num(stopped.val_loss, 4),
            num(full.val_loss, 4),
            seeds_phrase(&full.seeds)
        )]
    }
}
