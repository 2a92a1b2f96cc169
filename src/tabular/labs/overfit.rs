//! A too-large network on little data against a small one: the training loss keeps falling while the validation
//! loss turns up.

use super::format::{count, metric_name, num, pm, seeds_phrase};
use super::plots::{decision_maps, loss_curves, save};
use super::train::{summaries, train_all, Variant};
use super::{Context, Table};
use crate::error::Result;
use crate::tabular::dataset::Task;
use crate::tabular::fit::FitConfig;
use crate::tabular::mlp::MlpConfig;

/// The too-large network of this lab and of the dropout lab: three layers of 256 on a hundred points.
pub(super) const LARGE: [usize; 3] = [256, 256, 256];

pub(super) fn run(cx: &mut Context) -> Result<Table> {
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
    let trained = train_all(
        &cx.data,
        vec![
            Variant::new("large 256-256-256", big, fit.clone()),
            Variant::new("small 8", small, fit),
        ],
    )?;
    let vs = summaries(&trained);
    save(
        cx.out,
        "curves.png",
        &loss_curves("train vs validation loss", &vs)?,
        &mut cx.plots,
    )?;
    let task = cx.data[0].train.task;
    if cx.data[0].train.dims() == 2 && task == Task::Classification {
        let img = decision_maps("decision maps", &cx.data[0], &trained, &vs)?;
        save(cx.out, "boundaries.png", &img, &mut cx.plots)?;
    }
    let (large, small) = (&vs[0], &vs[1]);
    let mut notes = vec![format!(
        "The large network's validation loss is lowest at epoch {} ({}) and ends at {} while its training loss falls \
         to {} ({}).",
        num(large.best_epoch, if large.seeds.len() > 1 { 1 } else { 0 }),
        num(large.best_val_loss, 4),
        num(large.val_loss, 4),
        num(large.train_loss, 4),
        seeds_phrase(&large.seeds)
    )];
    notes.push(if large.extra["gap_loss"] > small.extra["gap_loss"] {
        format!(
            "Its gap (validation − training loss) is {} against the small network's {}: it learns the training points, \
             not the pattern.",
            num(large.extra["gap_loss"], 4),
            num(small.extra["gap_loss"], 4)
        )
    } else {
        format!(
            "Here its gap (validation − training loss, {}) is not larger than the small network's ({}): this data or \
             these epochs do not make it overfit.",
            num(large.extra["gap_loss"], 4),
            num(small.extra["gap_loss"], 4)
        )
    });
    let mname = metric_name(task);
    let columns = [
        "model",
        "best epoch (min val loss)",
        "best val loss",
        "final train loss",
        "final val loss",
        "gap (val − train loss)",
        &format!("val {mname}"),
    ];
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
    Ok(Table {
        caption: format!(
            "A network far too large for the data ({}) against a small one (8), without any regularization, {} \
             epochs (long enough for the large one to overfit).",
            LARGE.map(|u| u.to_string()).join("-"),
            cx.cfg.fit.epochs
        ),
        columns: columns.iter().map(|s| s.to_string()).collect(),
        rows,
        variants: vs,
        notes,
    })
}
