//! A too-large network on little data against a small one: the training loss keeps falling while the validation
//! loss turns up.

use super::format::{count, metric_name, num, pm, seeds_phrase};
use super::plots::{decision_maps, loss_curves, save};
use super::train::{summaries, train_all, Variant};
use super::{headers, Context, Lab, VariantResult};
use crate::error::Result;
use crate::tabular::dataset::Task;
use crate::tabular::fit::FitConfig;
use crate::tabular::mlp::MlpConfig;

/// The too-large network of this lab and of the dropout lab: three layers of 256 on a hundred points.
pub(super) const LARGE: [usize; 3] = [256, 256, 256];

pub(super) struct Overfit;

impl Lab for Overfit {
    fn measure(&self, cx: &mut Context) -> Result<Vec<VariantResult>> {
        let big = MlpConfig {
            layers: LARGE.to_vec(),
            dropout: 0.0,
            ..cx.base.clone()
        };
        let small = MlpConfig {
            layers: vec![8],
            dropout: 0.0,
            ..cx.base.clone()
        };
        let fit = FitConfig {
            l1: 0.0,
            l2: 0.0,
            early_stopping: None,
            ..cx.cfg.fit.clone()
        };
        let variants = vec![
            Variant::new("large 256-256-256", big, fit.clone()),
            Variant::new("small 8", small, fit),
        ];
        let trained = train_all(&cx.data, variants)?;
        let vs = summaries(&trained);
        save(
            cx.out,
            "curves.png",
            &loss_curves("train vs validation loss", &vs)?,
            &mut cx.plots,
        )?;
        if cx.data[0].train.dims() == 2 && cx.data[0].train.task == Task::Classification {
            let img = decision_maps("decision maps", &cx.data[0], &trained, &vs)?;
            save(cx.out, "boundaries.png", &img, &mut cx.plots)?;
        }
        Ok(vs)
    }

    fn caption(&self, cx: &Context) -> String {
        format!(
            "A network far too large for the data ({}) against a small one (8), without any regularization, {} \
             epochs (long enough for the large one to overfit).",
            LARGE.map(|u| u.to_string()).join("-"),
            cx.cfg.fit.epochs
        )
    }

    fn table(&self, cx: &Context, vs: &[VariantResult]) -> (Vec<String>, Vec<Vec<String>>) {
        let mname = metric_name(cx.data[0].train.task);
        let columns = headers(&[
            "model",
            "best epoch (min val loss)",
            "best val loss",
            "final train loss",
            "final val loss",
            "gap (val − train loss)",
            &format!("val {mname}"),
        ]);
        let rows = vs
            .iter()
            .map(|v| {
                vec![
                    v.variant.clone(),
                    count(v, "best_epoch"),
                    pm(v, "best_val_loss", 4),
                    pm(v, "train_loss", 4),
                    pm(v, "val_loss", 4),
                    pm(v, "gap_loss", 4),
                    pm(v, "val_metric", 4),
                ]
            })
            .collect();
        (columns, rows)
    }

    fn notes(&self, _cx: &Context, vs: &[VariantResult]) -> Vec<String> {
        let (large, small) = (&vs[0], &vs[1]);
        let mut notes = vec![format!(
            "The large network's validation loss is lowest at epoch {} ({}) and ends at {} while its training loss \
             falls to {} ({}).",
            num(large.best_epoch, if large.seeds.len() > 1 { 1 } else { 0 }),
            num(large.best_val_loss, 4),
            num(large.val_loss, 4),
            num(large.train_loss, 4),
            seeds_phrase(&large.seeds)
        )];
        notes.push(if large.extra["gap_loss"] > small.extra["gap_loss"] {
            format!(
                "Its gap (validation − training loss) is {} against the small network's {}: it learns the training \
                 points, not the pattern.",
                num(large.extra["gap_loss"], 4),
                num(small.extra["gap_loss"], 4)
            )
        } else {
            format!(
                "Here its gap (validation − training loss, {}) is not larger than the small network's ({}): this data \
                 or these epochs do not make it overfit.",
                num(large.extra["gap_loss"], 4),
                num(small.extra["gap_loss"], 4)
            )
        });
        notes
    }
}
