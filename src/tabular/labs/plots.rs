//! The labs' figures: loss curves on one shared scale, decision maps, fitted regression lines.

use std::path::Path;

use candle_core::{Device, Tensor};

use super::train::{Prepared, Trained};
use super::VariantResult;
use crate::error::Result;
use crate::plot::{self, Series, Stroke, YAxis};
use crate::tabular::dataset::Task;
use crate::tabular::fit::{self, EpochRow};

/// Writes a figure into the lab's folder and lists it.
pub(super) fn save(dir: &Path, name: &str, img: &image::RgbImage, plots: &mut Vec<String>) -> Result<()> {
    plot::save_png(&dir.join(name), img)?;
    plots.push(name.to_string());
    Ok(())
}

/// Train and validation loss of each variant (its first seed), one panel each, all on one y scale (logarithmic
/// when the losses span more than 10×), so that panels compare at a glance.
pub(super) fn loss_curves(title: &str, vs: &[VariantResult]) -> Result<image::RgbImage> {
    let all: Vec<f64> = vs
        .iter()
        .flat_map(|v| v.history.iter().flat_map(|r| [r.loss, r.val_loss]))
        .collect();
    let axis = YAxis::shared(&all);
    let title = format!("{title}{}", if axis.log { " (log scale)" } else { "" });
    plot::panels(vs.len(), 4, 300, 240, Some(&title), |area, i| {
        let v = &vs[i];
        let pts = |f: &dyn Fn(&EpochRow) -> f64| v.history.iter().map(|r| (r.epoch as f64, f(r))).collect::<Vec<_>>();
        plot::line_chart_on(
            area,
            &v.variant,
            "epoch",
            "loss",
            &[
                Series {
                    name: "train",
                    points: pts(&|r| r.loss),
                    color: plot::color(0),
                    stroke: Stroke::Line,
                },
                Series {
                    name: "validation",
                    points: pts(&|r| r.val_loss),
                    color: plot::color(1),
                    stroke: Stroke::Line,
                },
            ],
            axis,
        )
    })
}

/// The decision map of each model (its first seed) over the data's 2-D range (unscaled axes), with the training
/// points filled and the validation points as rings.
pub(super) fn decision_maps(
    title: &str,
    p: &Prepared,
    trained: &[Trained],
    vs: &[VariantResult],
) -> Result<image::RgbImage> {
    let points = |t: &crate::tabular::dataset::Table| -> Vec<(f64, f64, usize)> {
        let inv = |v: f32, j: usize| (v / p.scaler.scale[j] + p.scaler.shift[j]) as f64;
        (0..t.rows())
            .map(|i| (inv(t.row(i)[0], 0), inv(t.row(i)[1], 1), t.y[i] as usize))
            .collect()
    };
    let (raw, val) = (points(&p.train), points(&p.val));
    let (mut x0, mut x1, mut y0, mut y1) = raw.iter().chain(&val).fold(
        (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY),
        |a, p| (a.0.min(p.0), a.1.max(p.0), a.2.min(p.1), a.3.max(p.1)),
    );
    let (px, py) = ((x1 - x0) * 0.1, (y1 - y0) * 0.1);
    (x0, x1, y0, y1) = (x0 - px, x1 + px, y0 - py, y1 + py);
    let n = 60;
    let mut grid_x = Vec::with_capacity(n * n * 2);
    for j in 0..n {
        for i in 0..n {
            let mut row = [
                (x0 + (i as f64 + 0.5) * (x1 - x0) / n as f64) as f32,
                (y0 + (j as f64 + 0.5) * (y1 - y0) / n as f64) as f32,
            ];
            p.scaler.apply_row(&mut row);
            grid_x.extend_from_slice(&row);
        }
    }
    let gx = Tensor::from_vec(grid_x, (n * n, 2), &Device::Cpu)?;
    let maps: Vec<Vec<Vec<f32>>> = trained
        .iter()
        .map(|t| {
            let probs = fit::predict(t.model(), &gx, Task::Classification)?;
            Ok(probs.chunks(n).map(|row| row.iter().map(|p| p[1]).collect()).collect())
        })
        .collect::<Result<_>>()?;
    plot::panels(trained.len(), 3, 320, 300, Some(title), |area, i| {
        let first = &trained[i].runs[0].v;
        plot::decision_map(
            area,
            &format!(
                "{} (val acc {:.3}, seed {})",
                vs[i].variant, first.val_metric, first.seeds[0]
            ),
            (x0, x1, y0, y1),
            &maps[i],
            &raw,
            &val,
        )
    })
}

/// The fitted line of each 1-D regression model (its first seed), with the training points (filled) and the
/// validation points (hollow).
pub(super) fn regression_lines(
    title: &str,
    p: &Prepared,
    trained: &[Trained],
    vs: &[VariantResult],
) -> Result<image::RgbImage> {
    let inv = |v: f32| (v / p.scaler.scale[0] + p.scaler.shift[0]) as f64;
    let points = |t: &crate::tabular::dataset::Table| -> Vec<(f64, f64)> {
        (0..t.rows()).map(|i| (inv(t.row(i)[0]), t.y[i] as f64)).collect()
    };
    let (train_pts, val_pts) = (points(&p.train), points(&p.val));
    let (lo, hi) = train_pts
        .iter()
        .chain(&val_pts)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |a, q| (a.0.min(q.0), a.1.max(q.0)));
    let xs: Vec<f64> = (0..200).map(|k| lo + (hi - lo) * k as f64 / 199.0).collect();
    let scaled: Vec<f32> = xs
        .iter()
        .map(|&x| {
            let mut r = [x as f32];
            p.scaler.apply_row(&mut r);
            r[0]
        })
        .collect();
    let gx = Tensor::from_vec(scaled, (200, 1), &Device::Cpu)?;
    let lines: Vec<Vec<(f64, f64)>> = trained
        .iter()
        .map(|t| {
            let ys = fit::predict(t.model(), &gx, Task::Regression)?;
            Ok(xs.iter().copied().zip(ys.iter().map(|v| v[0] as f64)).collect())
        })
        .collect::<Result<_>>()?;
    // One y range for every panel.
    let (ylo, yhi) = train_pts
        .iter()
        .chain(&val_pts)
        .chain(lines.iter().flatten())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |a, q| (a.0.min(q.1), a.1.max(q.1)));
    plot::panels(trained.len(), 3, 320, 260, Some(title), |area, i| {
        let first = &trained[i].runs[0].v;
        plot::scatter_with_line(
            area,
            &format!(
                "{} (val mse {:.3}, seed {})",
                vs[i].variant, first.val_metric, first.seeds[0]
            ),
            (lo, hi, ylo, yhi),
            &[
                plot::PointSet {
                    name: "train",
                    points: &train_pts,
                    filled: true,
                },
                plot::PointSet {
                    name: "validation",
                    points: &val_pts,
                    filled: false,
                },
            ],
            ("fit", &lines[i]),
        )
    })
}
