//! `catdog lab NAME`: each lab trains a few MLPs that differ in one thing, on the same split and seed, and
//! writes a comparison table (`table.md`, `table.csv`), `results.json` and PNG plots into its folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::dataset::{self, Builtin, Scaler, Scaling, Table, Task};
use super::fit::{self, EpochRow, FitConfig, Tensors};
use super::mlp::{Activation, Init, Mlp, MlpConfig, Norm, NormDefaults};
use crate::error::{Error, Result};
use crate::plot::{self, Series};
use crate::train::early_stop::{EarlyStoppingConfig, Mode};

/// The labs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LabName {
    /// A too-large network on little data: train and validation curves diverge.
    Overfit,
    /// Increasing L1 penalties: metrics, gap, near-zero weights, weight histograms.
    L1,
    /// Increasing L2 penalties.
    L2,
    /// L1 and L2 together.
    Elastic,
    /// Dropout 0 … 0.5 on classification and on the 1-D regression, with decision maps and fitted lines.
    Dropout,
    /// No scaling vs standard vs min-max: epochs to a target loss, final metrics.
    Scaling,
    /// sigmoid, tanh, relu, leaky_relu, elu, selu, prelu: metrics and dead units; each function and derivative.
    Activations,
    /// zeros, large normal, glorot, he: does it learn, and the first epoch's gradient norms per layer.
    Init,
    /// none vs batch norm vs layer norm.
    Normalization,
    /// The same run with and without early stopping.
    EarlyStopping,
    /// Baseline, each regularizer alone and all combined.
    Ablation,
    /// Every lab, each in its folder, with an index.
    All,
}

impl LabName {
    pub fn slug(self) -> &'static str {
        match self {
            LabName::Overfit => "overfit",
            LabName::L1 => "l1",
            LabName::L2 => "l2",
            LabName::Elastic => "elastic",
            LabName::Dropout => "dropout",
            LabName::Scaling => "scaling",
            LabName::Activations => "activations",
            LabName::Init => "init",
            LabName::Normalization => "normalization",
            LabName::EarlyStopping => "early-stopping",
            LabName::Ablation => "ablation",
            LabName::All => "all",
        }
    }

    /// Every lab but `all`.
    pub fn each() -> [LabName; 11] {
        [
            LabName::Overfit,
            LabName::L1,
            LabName::L2,
            LabName::Elastic,
            LabName::Dropout,
            LabName::Scaling,
            LabName::Activations,
            LabName::Init,
            LabName::Normalization,
            LabName::EarlyStopping,
            LabName::Ablation,
        ]
    }
}

/// Where the data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DataSource {
    Csv {
        path: PathBuf,
        target: String,
        drop: Vec<String>,
        task: Option<Task>,
    },
    Builtin {
        kind: Builtin,
        n: usize,
        noise: f64,
    },
}

/// Settings shared by every variant of a lab (flags of `catdog lab`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabConfig {
    /// Data given by the user (`None`: each lab's default — breast cancer, moons, the sine).
    pub data: Option<DataSource>,
    pub val_split: f64,
    pub scaling: Scaling,
    pub layers: Vec<usize>,
    pub activation: Activation,
    pub dropout: f64,
    pub norm: Norm,
    pub norm_defaults: NormDefaults,
    pub init: Init,
    pub fit: FitConfig,
    /// Target training loss of the scaling lab.
    pub target_loss: f64,
    pub patience: usize,
}

/// One trained variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantResult {
    pub variant: String,
    pub model: String,
    pub data: String,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub train_metric: f64,
    pub val_metric: f64,
    /// Extra per-lab figures (near-zero weight fraction, dead units, epochs to target, gradient norms…).
    pub extra: BTreeMap<String, f64>,
    pub history: Vec<EpochRow>,
}

/// A lab's result (`results.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabResult {
    pub lab: String,
    pub data: String,
    pub task: Task,
    /// "accuracy" or "mse".
    pub metric: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub variants: Vec<VariantResult>,
    pub notes: Vec<String>,
    pub plots: Vec<String>,
    pub seconds: f64,
}

impl LabResult {
    pub fn markdown(&self) -> String {
        let mut s = format!("### {} — {}\n\n", self.lab, self.data);
        s.push_str(&format!(
            "| {} |\n|{}|\n",
            self.columns.join(" | "),
            vec!["---"; self.columns.len()].join("|")
        ));
        for r in &self.rows {
            s.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        for n in &self.notes {
            s.push_str(&format!("\n{n}\n"));
        }
        s
    }

    pub fn csv(&self) -> String {
        let q = |c: &String| {
            if c.contains(',') || c.contains('"') {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.clone()
            }
        };
        let mut s = self.columns.iter().map(q).collect::<Vec<_>>().join(",") + "\n";
        for r in &self.rows {
            s.push_str(&(r.iter().map(q).collect::<Vec<_>>().join(",") + "\n"));
        }
        s
    }

    pub fn variant(&self, name: &str) -> Option<&VariantResult> {
        self.variants.iter().find(|v| v.variant == name)
    }
}

/// Prepared data: the split, scaled with the training part's statistics.
#[derive(Clone)]
struct Prepared {
    train: Table,
    val: Table,
    scaler: Scaler,
    name: String,
}

fn load(source: &DataSource, cfg: &LabConfig, scaling: Scaling) -> Result<Prepared> {
    let t = match source {
        DataSource::Csv {
            path,
            target,
            drop,
            task,
        } => dataset::read_csv(path, target, drop, *task)?,
        DataSource::Builtin { kind, n, noise } => dataset::builtin(*kind, *n, *noise, cfg.fit.seed),
    };
    let (train, val) = dataset::split(&t, cfg.val_split, cfg.fit.seed)?;
    let scaler = Scaler::fit(scaling, &train);
    Ok(Prepared {
        train: scaler.apply(&train),
        val: scaler.apply(&val),
        scaler,
        name: format!(
            "{} ({} train / {} validation rows, {} features, scaling {:?})",
            t.name,
            train.rows(),
            val.rows(),
            t.dims(),
            scaling
        )
        .replace("Standard", "standard")
        .replace("Minmax", "minmax")
        .replace("None)", "none)"),
    })
}

/// One variant to train.
#[derive(Clone)]
struct Variant {
    name: String,
    mlp: MlpConfig,
    fit: FitConfig,
}

fn base_mlp(cfg: &LabConfig, p: &Prepared) -> MlpConfig {
    MlpConfig {
        inputs: p.train.dims(),
        layers: cfg.layers.clone(),
        outputs: p.train.outputs(),
        activation: cfg.activation,
        dropout: cfg.dropout,
        norm: cfg.norm,
        norm_defaults: cfg.norm_defaults,
        init: cfg.init,
    }
}

struct Trained {
    v: VariantResult,
    model: Mlp,
}

/// Trains the variants in parallel (each is single-threaded and seeded: the results do not depend on it).
fn run(p: &Prepared, variants: Vec<Variant>) -> Result<Vec<Trained>> {
    let dev = Device::Cpu;
    variants
        .into_par_iter()
        .map(|var| {
            let train = Tensors::new(&p.train, &dev)?;
            let val = Tensors::new(&p.val, &dev)?;
            let model = Mlp::new(var.mlp.clone(), var.fit.seed, &dev)?;
            let f = fit::fit(model, &train, &val, &var.fit)?;
            let (best_epoch, best_val_loss) = f
                .history
                .iter()
                .map(|r| (r.epoch, r.val_loss))
                .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
            Ok(Trained {
                v: VariantResult {
                    variant: var.name.clone(),
                    model: var.mlp.describe(),
                    data: p.name.clone(),
                    epochs_run: f.history.len(),
                    best_epoch,
                    best_val_loss,
                    train_loss: f.final_train.0,
                    val_loss: f.final_val.0,
                    train_metric: f.final_train.1,
                    val_metric: f.final_val.1,
                    extra: {
                        let mut e = BTreeMap::new();
                        for (l, g) in f.first_epoch_grad_norms.iter().enumerate() {
                            e.insert(format!("grad_norm_layer{}", l + 1), *g);
                        }
                        if let Some(s) = f.stopped_epoch {
                            e.insert("stopped_epoch".into(), s as f64);
                        }
                        if let Some(r) = f.restored_epoch {
                            e.insert("restored_epoch".into(), r as f64);
                        }
                        e
                    },
                    history: f.history,
                },
                model: f.model,
            })
        })
        .collect()
}

fn metric_name(t: Task) -> &'static str {
    match t {
        Task::Classification => "accuracy",
        Task::Regression => "mse",
    }
}

fn f4(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "-".into()
    }
}

/// All kernel weights of a model.
fn weights(m: &Mlp) -> Result<Vec<f32>> {
    let mut w = Vec::new();
    for k in m.kernels() {
        w.extend(k.as_tensor().flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(w)
}

fn loss_curves(title: &str, vs: &[VariantResult]) -> Result<image::RgbImage> {
    plot::panels(vs.len(), 4, 300, 240, Some(title), |area, i| {
        let v = &vs[i];
        let pts = |f: &dyn Fn(&EpochRow) -> f64| v.history.iter().map(|r| (r.epoch as f64, f(r))).collect::<Vec<_>>();
        plot::line_chart(
            area,
            &v.variant,
            "epoch",
            "loss",
            &[
                Series {
                    name: "train",
                    points: pts(&|r| r.loss),
                    color: plot::color(0),
                    dots: false,
                },
                Series {
                    name: "validation",
                    points: pts(&|r| r.val_loss),
                    color: plot::color(1),
                    dots: false,
                },
            ],
        )
    })
}

/// The decision map of each model over the data's 2-D range (unscaled axes).
fn decision_maps(title: &str, p: &Prepared, trained: &[Trained]) -> Result<image::RgbImage> {
    let raw: Vec<(f64, f64, usize)> = {
        let inv = |v: f32, j: usize| (v / p.scaler.scale[j] + p.scaler.shift[j]) as f64;
        (0..p.train.rows())
            .map(|i| {
                (
                    inv(p.train.row(i)[0], 0),
                    inv(p.train.row(i)[1], 1),
                    p.train.y[i] as usize,
                )
            })
            .collect()
    };
    let (mut x0, mut x1, mut y0, mut y1) = raw.iter().fold(
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
            let probs = fit::predict(&t.model, &gx, Task::Classification)?;
            Ok(probs.chunks(n).map(|row| row.iter().map(|p| p[1]).collect()).collect())
        })
        .collect::<Result<_>>()?;
    plot::panels(trained.len(), 3, 320, 300, Some(title), |area, i| {
        let t = &trained[i];
        plot::decision_map(
            area,
            &format!("{} (val acc {:.3})", t.v.variant, t.v.val_metric),
            (x0, x1, y0, y1),
            &maps[i],
            &raw,
        )
    })
}

/// The fitted line of each 1-D regression model, with the training points.
fn regression_lines(title: &str, p: &Prepared, trained: &[Trained]) -> Result<image::RgbImage> {
    let inv = |v: f32| (v / p.scaler.scale[0] + p.scaler.shift[0]) as f64;
    let pts: Vec<(f64, f64)> = (0..p.train.rows())
        .map(|i| (inv(p.train.row(i)[0]), p.train.y[i] as f64))
        .collect();
    let (lo, hi) = pts
        .iter()
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
            Ok(xs
                .iter()
                .copied()
                .zip(
                    fit::predict(&t.model, &gx, Task::Regression)?
                        .iter()
                        .map(|v| v[0] as f64),
                )
                .collect())
        })
        .collect::<Result<_>>()?;
    plot::panels(trained.len(), 3, 320, 260, Some(title), |area, i| {
        let t = &trained[i];
        let (ylo, yhi) = pts
            .iter()
            .chain(lines[i].iter())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |a, q| (a.0.min(q.1), a.1.max(q.1)));
        let mut chart = ChartBuilderExt::new(
            area,
            &format!("{} (val mse {:.3})", t.v.variant, t.v.val_metric),
            lo,
            hi,
            ylo,
            yhi,
        )?;
        chart.points(&pts)?;
        chart.line(&lines[i])?;
        Ok(())
    })
}

/// A small helper for scatter + line panels.
struct ChartBuilderExt<'a, 'b> {
    chart: plotters::chart::ChartContext<
        'a,
        plot::Canvas<'b>,
        plotters::coord::cartesian::Cartesian2d<
            plotters::coord::types::RangedCoordf64,
            plotters::coord::types::RangedCoordf64,
        >,
    >,
}

impl<'a, 'b> ChartBuilderExt<'a, 'b> {
    fn new(
        area: &'a plotters::drawing::DrawingArea<plot::Canvas<'b>, plotters::coord::Shift>,
        title: &str,
        x0: f64,
        x1: f64,
        y0: f64,
        y1: f64,
    ) -> Result<Self> {
        use plotters::prelude::*;
        let pad = ((y1 - y0) * 0.08).max(1e-3);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(40)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
            .map_err(plot::plot_err)?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 10))
            .light_line_style(RGBColor(248, 248, 248))
            .draw()
            .map_err(plot::plot_err)?;
        Ok(ChartBuilderExt { chart })
    }
    fn points(&mut self, pts: &[(f64, f64)]) -> Result<()> {
        use plotters::prelude::*;
        self.chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, plot::color(1).filled())))
            .map_err(plot::plot_err)?;
        Ok(())
    }
    fn line(&mut self, pts: &[(f64, f64)]) -> Result<()> {
        use plotters::prelude::*;
        self.chart
            .draw_series(LineSeries::new(pts.iter().copied(), plot::color(0).stroke_width(2)))
            .map_err(plot::plot_err)?;
        Ok(())
    }
}

fn save(dir: &Path, name: &str, img: &image::RgbImage, plots: &mut Vec<String>) -> Result<()> {
    plot::save_png(&dir.join(name), img)?;
    plots.push(name.to_string());
    Ok(())
}

fn default_source(lab: LabName) -> DataSource {
    match lab {
        LabName::Overfit | LabName::Dropout => DataSource::Builtin {
            kind: Builtin::Moons,
            n: 100,
            noise: 0.3,
        },
        _ => DataSource::Builtin {
            kind: Builtin::BreastCancer,
            n: 0,
            noise: 0.0,
        },
    }
}

fn es_config(cfg: &LabConfig) -> EarlyStoppingConfig {
    EarlyStoppingConfig {
        monitor: "val_loss".into(),
        patience: cfg.patience,
        min_delta: 0.0,
        baseline: None,
        start_from_epoch: 0,
        restore_best_weights: true,
        mode: Mode::Auto,
    }
}

/// Runs one lab (not `all`) and writes its folder.
pub fn run_lab(lab: LabName, cfg: &LabConfig, out: &Path) -> Result<LabResult> {
    let start = std::time::Instant::now();
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let source = cfg.data.clone().unwrap_or_else(|| default_source(lab));
    let p = load(&source, cfg, cfg.scaling)?;
    let task = p.train.task;
    let mname = metric_name(task);
    let base = base_mlp(cfg, &p);
    let variant = |name: &str, mlp: MlpConfig, fit: FitConfig| Variant {
        name: name.to_string(),
        mlp,
        fit,
    };
    let mut plots = Vec::new();
    let mut notes = Vec::new();
    let (columns, rows, variants): (Vec<String>, Vec<Vec<String>>, Vec<VariantResult>) = match lab {
        LabName::All => return Err(Error::invalid("run_lab takes one lab; use run_all for `all`")),
        LabName::Overfit => {
            let big = MlpConfig {
                layers: vec![256, 256, 256],
                dropout: 0.0,
                ..base.clone()
            };
            let small = MlpConfig {
                layers: vec![8],
                dropout: 0.0,
                ..base.clone()
            };
            let fitc = FitConfig {
                l1: 0.0,
                l2: 0.0,
                early_stopping: None,
                ..cfg.fit.clone()
            };
            let trained = run(
                &p,
                vec![
                    variant("large 256-256-256", big, fitc.clone()),
                    variant("small 8", small, fitc),
                ],
            )?;
            let vs: Vec<VariantResult> = trained.iter().map(|t| t.v.clone()).collect();
            save(
                out,
                "curves.png",
                &loss_curves("train vs validation loss", &vs)?,
                &mut plots,
            )?;
            if p.train.dims() == 2 && task == Task::Classification {
                save(
                    out,
                    "boundaries.png",
                    &decision_maps("decision maps", &p, &trained)?,
                    &mut plots,
                )?;
            }
            let large = &vs[0];
            notes.push(format!(
                "The large network's validation loss is lowest at epoch {} ({:.4}) and ends at {:.4} while its training loss \
                 falls to {:.4}: from there on it learns the training points, not the pattern.",
                large.best_epoch, large.best_val_loss, large.val_loss, large.train_loss
            ));
            let cols = [
                "model",
                "best epoch (min val loss)",
                "best val loss",
                "final train loss",
                "final val loss",
                "gap (val − train)",
                &format!("val {mname}"),
            ];
            let rows = vs
                .iter()
                .map(|v| {
                    vec![
                        v.variant.clone(),
                        v.best_epoch.to_string(),
                        f4(v.best_val_loss),
                        f4(v.train_loss),
                        f4(v.val_loss),
                        f4(v.val_loss - v.train_loss),
                        f4(v.val_metric),
                    ]
                })
                .collect();
            (cols.iter().map(|s| s.to_string()).collect(), rows, vs)
        }
        LabName::L1 | LabName::L2 | LabName::Elastic => {
            let strengths = [0.0, 1e-4, 1e-3, 1e-2, 1e-1];
            let vars: Vec<Variant> = strengths
                .iter()
                .map(|&s| {
                    let (l1, l2) = match lab {
                        LabName::L1 => (s, 0.0),
                        LabName::L2 => (0.0, s),
                        _ => (s, s),
                    };
                    variant(
                        &format!("λ = {s}"),
                        base.clone(),
                        FitConfig {
                            l1,
                            l2,
                            ..cfg.fit.clone()
                        },
                    )
                })
                .collect();
            let mut trained = run(&p, vars)?;
            for t in trained.iter_mut() {
                let w = weights(&t.model)?;
                let small = w.iter().filter(|v| v.abs() < 1e-3).count() as f64 / w.len() as f64;
                let mean = w.iter().map(|v| v.abs() as f64).sum::<f64>() / w.len() as f64;
                t.v.extra.insert("near_zero_fraction".into(), small);
                t.v.extra.insert("mean_abs_weight".into(), mean);
            }
            let ws: Vec<Vec<f32>> = trained.iter().map(|t| weights(&t.model)).collect::<Result<_>>()?;
            let lim = ws.iter().flatten().fold(0f32, |m, v| m.max(v.abs())).max(1e-3) as f64;
            save(
                out,
                "histograms.png",
                &plot::panels(trained.len(), 5, 260, 220, Some("kernel weights"), |a, i| {
                    plot::histogram(a, &trained[i].v.variant, &ws[i], -lim, lim, 41)
                })?,
                &mut plots,
            )?;
            let vs: Vec<VariantResult> = trained.into_iter().map(|t| t.v).collect();
            save(
                out,
                "curves.png",
                &loss_curves("train vs validation loss", &vs)?,
                &mut plots,
            )?;
            let cols = [
                "λ",
                &format!("train {mname}"),
                &format!("val {mname}"),
                "gap",
                "val loss",
                "|w| < 1e-3",
                "mean |w|",
            ];
            let rows = vs
                .iter()
                .map(|v| {
                    vec![
                        v.variant.trim_start_matches("λ = ").to_string(),
                        f4(v.train_metric),
                        f4(v.val_metric),
                        f4(v.train_metric - v.val_metric),
                        f4(v.val_loss),
                        format!("{:.1}%", 100.0 * v.extra["near_zero_fraction"]),
                        format!("{:.5}", v.extra["mean_abs_weight"]),
                    ]
                })
                .collect();
            notes.push(match lab {
                LabName::L1 => {
                    "L1 (λ·Σ|w|) pushes weights to zero itself: the share of near-zero weights grows with λ.".into()
                }
                LabName::L2 => {
                    "L2 (λ·Σw²) shrinks every weight in proportion, so weights get small but rarely reach zero.".into()
                }
                _ => "Elastic net adds both: L1's sparsity and L2's shrinkage.".into(),
            });
            notes.push(
                "Losses include the penalty, as Keras reports them; the gap is train minus validation metric.".into(),
            );
            (cols.iter().map(|s| s.to_string()).collect(), rows, vs)
        }
        LabName::Dropout => {
            let rates = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5];
            // The overfit lab's too-large network, where dropout has something to fix.
            let big = MlpConfig {
                layers: vec![256, 256, 256],
                ..base.clone()
            };
            let fitc = FitConfig {
                early_stopping: None,
                ..cfg.fit.clone()
            };
            let mk = |m: &MlpConfig| -> Vec<Variant> {
                rates
                    .iter()
                    .map(|&r| {
                        variant(
                            &format!("dropout {r}"),
                            MlpConfig {
                                dropout: r,
                                ..m.clone()
                            },
                            fitc.clone(),
                        )
                    })
                    .collect()
            };
            let trained = run(&p, mk(&big))?;
            let mut vs: Vec<VariantResult> = trained.iter().map(|t| t.v.clone()).collect();
            save(
                out,
                "curves.png",
                &loss_curves("train vs validation loss", &vs)?,
                &mut plots,
            )?;
            if p.train.dims() == 2 && task == Task::Classification {
                save(
                    out,
                    "boundaries.png",
                    &decision_maps("decision maps by dropout rate", &p, &trained)?,
                    &mut plots,
                )?;
            }
            if cfg.data.is_none() {
                // The same rates on the 1-D regression with few points.
                let q = load(
                    &DataSource::Builtin {
                        kind: Builtin::Sine,
                        n: 30,
                        noise: 0.3,
                    },
                    cfg,
                    Scaling::Standard,
                )?;
                let qb = MlpConfig {
                    inputs: 1,
                    outputs: 1,
                    ..big.clone()
                };
                let tq = run(&q, mk(&qb))?;
                save(
                    out,
                    "regression.png",
                    &regression_lines("fitted lines by dropout rate (1-D regression)", &q, &tq)?,
                    &mut plots,
                )?;
                for mut t in tq.into_iter().map(|t| t.v) {
                    t.variant = format!("{} (regression)", t.variant);
                    vs.push(t);
                }
            }
            let cols = [
                "variant",
                "data",
                "train loss",
                "val loss",
                "gap (val − train loss)",
                "val metric",
            ];
            let rows = vs
                .iter()
                .map(|v| {
                    vec![
                        v.variant.clone(),
                        v.data.split(" (").next().unwrap_or("").to_string(),
                        f4(v.train_loss),
                        f4(v.val_loss),
                        f4(v.val_loss - v.train_loss),
                        f4(v.val_metric),
                    ]
                })
                .collect();
            notes.push("Dropout is inverted: kept units are scaled by 1/(1−p) in training and nothing is dropped at inference.".into());
            (cols.iter().map(|s| s.to_string()).collect(), rows, vs)
        }
        LabName::Scaling => {
            let mut all = Vec::new();
            let mut trained_all = Vec::new();
            for s in [Scaling::None, Scaling::Standard, Scaling::Minmax] {
                let q = load(&source, cfg, s)?;
                let mut t = run(
                    &q,
                    vec![variant(
                        &format!("{s:?}").to_lowercase(),
                        base_mlp(cfg, &q),
                        FitConfig {
                            early_stopping: None,
                            ..cfg.fit.clone()
                        },
                    )],
                )?;
                let v = &mut t[0].v;
                let reach = v
                    .history
                    .iter()
                    .find(|r| r.data_loss <= cfg.target_loss)
                    .map(|r| r.epoch);
                v.extra
                    .insert("epochs_to_target".into(), reach.map_or(f64::NAN, |e| e as f64));
                all.push(v.clone());
                trained_all.extend(t);
            }
            save(
                out,
                "curves.png",
                &loss_curves("train vs validation loss by input scaling", &all)?,
                &mut plots,
            )?;
            let cols = [
                "scaling",
                &format!("epochs to train loss ≤ {}", cfg.target_loss),
                "final train loss",
                "final val loss",
                &format!("val {mname}"),
            ];
            let rows = all
                .iter()
                .map(|v| {
                    vec![
                        v.variant.clone(),
                        if v.extra["epochs_to_target"].is_finite() {
                            format!("{}", v.extra["epochs_to_target"])
                        } else {
                            format!("not in {}", v.epochs_run)
                        },
                        f4(v.train_loss),
                        f4(v.val_loss),
                        f4(v.val_metric),
                    ]
                })
                .collect();
            notes.push("Scalers are fitted on the training split only and applied to both splits.".into());
            let _ = trained_all;
            (cols.iter().map(|s| s.to_string()).collect(), rows, all)
        }
        LabName::Activations => {
            let acts = [
                Activation::Sigmoid,
                Activation::Tanh,
                Activation::Relu,
                Activation::LeakyRelu { alpha: 0.3 },
                Activation::Elu { alpha: 1.0 },
                Activation::Selu,
                Activation::Prelu,
            ];
            let deep = MlpConfig {
                layers: vec![64, 64, 64],
                ..base.clone()
            };
            let vars = acts
                .iter()
                .map(|a| {
                    variant(
                        &a.name(),
                        MlpConfig {
                            activation: *a,
                            ..deep.clone()
                        },
                        cfg.fit.clone(),
                    )
                })
                .collect();
            let mut trained = run(&p, vars)?;
            let val = Tensors::new(&p.val, &Device::Cpu)?;
            for t in trained.iter_mut() {
                let dead = fit::dead_fractions(&t.model, &val)?;
                for (l, d) in dead.iter().enumerate() {
                    t.v.extra.insert(format!("dead_layer{}", l + 1), *d);
                }
                t.v.extra.insert(
                    "dead_fraction".into(),
                    dead.iter().sum::<f64>() / dead.len().max(1) as f64,
                );
            }
            save(
                out,
                "activations.png",
                &plot::panels(
                    acts.len(),
                    4,
                    260,
                    220,
                    Some("activation functions (solid) and their derivatives (dashed)"),
                    |a, i| {
                        let xs: Vec<f64> = (0..121).map(|k| -4.0 + k as f64 / 15.0).collect();
                        plot::line_chart(
                            a,
                            &acts[i].name(),
                            "x",
                            "",
                            &[
                                Series {
                                    name: "f(x)",
                                    points: xs.iter().map(|&x| (x, acts[i].value(x))).collect(),
                                    color: plot::color(0),
                                    dots: false,
                                },
                                Series {
                                    name: "f′(x)",
                                    points: xs.iter().map(|&x| (x, acts[i].derivative(x))).collect(),
                                    color: plot::color(1),
                                    dots: false,
                                },
                            ],
                        )
                    },
                )?,
                &mut plots,
            )?;
            let vs: Vec<VariantResult> = trained.into_iter().map(|t| t.v).collect();
            save(
                out,
                "curves.png",
                &loss_curves("train vs validation loss by activation", &vs)?,
                &mut plots,
            )?;
            let cols = [
                "activation",
                &format!("train {mname}"),
                &format!("val {mname}"),
                "val loss",
                "dead units (never active on validation)",
            ];
            let rows = vs
                .iter()
                .map(|v| {
                    vec![
                        v.variant.clone(),
                        f4(v.train_metric),
                        f4(v.val_metric),
                        f4(v.val_loss),
                        format!("{:.1}%", 100.0 * v.extra["dead_fraction"]),
                    ]
                })
                .collect();
            notes.push(
                "A unit is dead when its pre-activation is ≤ 0 for every validation row (for ReLU it then outputs 0 and gets no \
                 gradient). Keras' LeakyReLU slope is 0.3 (PyTorch's 0.01); PReLU learns its slope, starting at 0.25."
                    .into(),
            );
            (cols.iter().map(|s| s.to_string()).collect(), rows, vs)
        }
        LabName::Init => {
            let inits = [Init::Zeros, Init::Normal { std: 1.0 }, Init::Glorot, Init::He];
            let deep = MlpConfig {
                layers: vec![64, 64, 64],
                ..base.clone()
            };
            let vars = inits
                .iter()
                .map(|i| {
                    variant(
                        &i.name(),
                        MlpConfig {
                            init: *i,
                            ..deep.clone()
                        },
                        cfg.fit.clone(),
                    )
                })
                .collect();
            let trained = run(&p, vars)?;
            let vs: Vec<VariantResult> = trained.into_iter().map(|t| t.v).collect();
            let majority = {
                let mut counts = BTreeMap::new();
                for y in &p.val.y {
                    *counts.entry(*y as i64).or_insert(0usize) += 1;
                }
                counts.values().copied().max().unwrap_or(0) as f64 / p.val.rows().max(1) as f64
            };
            let layers = deep.layers.len() + 1;
            save(
                out,
                "grad_norms.png",
                &plot::panels(
                    vs.len(),
                    4,
                    260,
                    220,
                    Some("mean gradient norm per layer, first epoch"),
                    |a, i| {
                        let g: Vec<(f64, f64)> = (1..=layers)
                            .map(|l| {
                                (
                                    l as f64,
                                    vs[i].extra.get(&format!("grad_norm_layer{l}")).copied().unwrap_or(0.0),
                                )
                            })
                            .collect();
                        plot::line_chart(
                            a,
                            &vs[i].variant,
                            "layer",
                            "‖∇W‖",
                            &[Series {
                                name: "gradient norm",
                                points: g,
                                color: plot::color(0),
                                dots: true,
                            }],
                        )
                    },
                )?,
                &mut plots,
            )?;
            save(
                out,
                "curves.png",
                &loss_curves("train vs validation loss by initialisation", &vs)?,
                &mut plots,
            )?;
            let mut cols: Vec<String> = vec![
                "init".into(),
                format!("val {mname}"),
                "learns?".into(),
                "val loss".into(),
            ];
            cols.extend((1..=layers).map(|l| format!("‖∇W{l}‖ epoch 1")));
            let rows = vs
                .iter()
                .map(|v| {
                    let learns = match task {
                        Task::Classification => v.val_metric > majority + 0.05,
                        Task::Regression => {
                            v.best_val_loss < v.history.first().map_or(f64::INFINITY, |r| r.val_loss) * 0.8
                        }
                    };
                    let mut r = vec![
                        v.variant.clone(),
                        f4(v.val_metric),
                        if learns { "yes".into() } else { "no".into() },
                        f4(v.val_loss),
                    ];
                    r.extend((1..=layers).map(|l| {
                        format!(
                            "{:.3e}",
                            v.extra.get(&format!("grad_norm_layer{l}")).copied().unwrap_or(0.0)
                        )
                    }));
                    r
                })
                .collect();
            notes.push(format!(
                "Zeros make every unit of a layer the same (and with ReLU pass no gradient back), so nothing learns beyond the \
                 biases; a large normal (σ = 1) starts with exploding activations. \"learns\" means better than predicting the \
                 majority class ({majority:.3}) by 0.05."
            ));
            (cols, rows, vs)
        }
        LabName::Normalization => {
            let vars = [Norm::None, Norm::Batch, Norm::Layer]
                .iter()
                .map(|n| {
                    variant(
                        &format!("{n:?}").to_lowercase(),
                        MlpConfig {
                            norm: *n,
                            ..base.clone()
                        },
                        cfg.fit.clone(),
                    )
                })
                .collect();
            let vs: Vec<VariantResult> = run(&p, vars)?.into_iter().map(|t| t.v).collect();
            save(
                out,
                "curves.png",
                &loss_curves("train vs validation loss by normalization", &vs)?,
                &mut plots,
            )?;
            let cols = [
                "normalization",
                &format!("train {mname}"),
                &format!("val {mname}"),
                "train loss",
                "val loss",
                "best epoch",
            ];
            let rows = vs
                .iter()
                .map(|v| {
                    vec![
                        v.variant.clone(),
                        f4(v.train_metric),
                        f4(v.val_metric),
                        f4(v.train_loss),
                        f4(v.val_loss),
                        v.best_epoch.to_string(),
                    ]
                })
                .collect();
            notes.push(format!(
                "Normalization sits between each hidden Dense layer and its activation, with {:?} defaults \
                 (Keras: momentum 0.99, ε 1e-3; PyTorch: momentum 0.1, ε 1e-5).",
                cfg.norm_defaults
            ));
            (cols.iter().map(|s| s.to_string()).collect(), rows, vs)
        }
        LabName::EarlyStopping => {
            let fitc = FitConfig {
                early_stopping: None,
                ..cfg.fit.clone()
            };
            let with = FitConfig {
                early_stopping: Some(es_config(cfg)),
                ..cfg.fit.clone()
            };
            let vs: Vec<VariantResult> = run(
                &p,
                vec![
                    variant("full run", base.clone(), fitc),
                    variant(
                        &format!("early stopping (patience {}, restore best)", cfg.patience),
                        base.clone(),
                        with,
                    ),
                ],
            )?
            .into_iter()
            .map(|t| t.v)
            .collect();
            save(
                out,
                "curves.png",
                &loss_curves("with and without early stopping", &vs)?,
                &mut plots,
            )?;
            let cols = [
                "run",
                "epochs run",
                "best epoch",
                "best val loss",
                "final val loss",
                &format!("val {mname}"),
            ];
            let rows = vs
                .iter()
                .map(|v| {
                    vec![
                        v.variant.clone(),
                        v.epochs_run.to_string(),
                        v.best_epoch.to_string(),
                        f4(v.best_val_loss),
                        f4(v.val_loss),
                        f4(v.val_metric),
                    ]
                })
                .collect();
            notes.push(format!(
                "Early stopping saved {} of {} epochs; with restore_best_weights the model ends at its best epoch.",
                vs[0].epochs_run.saturating_sub(vs[1].epochs_run),
                vs[0].epochs_run
            ));
            (cols.iter().map(|s| s.to_string()).collect(), rows, vs)
        }
        LabName::Ablation => {
            let plain = FitConfig {
                l1: 0.0,
                l2: 0.0,
                early_stopping: None,
                ..cfg.fit.clone()
            };
            let m0 = MlpConfig {
                dropout: 0.0,
                norm: Norm::None,
                ..base.clone()
            };
            let es = Some(es_config(cfg));
            let vars = vec![
                variant("baseline", m0.clone(), plain.clone()),
                variant(
                    "L2 1e-3",
                    m0.clone(),
                    FitConfig {
                        l2: 1e-3,
                        ..plain.clone()
                    },
                ),
                variant(
                    "L1 1e-4",
                    m0.clone(),
                    FitConfig {
                        l1: 1e-4,
                        ..plain.clone()
                    },
                ),
                variant(
                    "dropout 0.3",
                    MlpConfig {
                        dropout: 0.3,
                        ..m0.clone()
                    },
                    plain.clone(),
                ),
                variant(
                    "batch norm",
                    MlpConfig {
                        norm: Norm::Batch,
                        ..m0.clone()
                    },
                    plain.clone(),
                ),
                variant(
                    "early stopping",
                    m0.clone(),
                    FitConfig {
                        early_stopping: es.clone(),
                        ..plain.clone()
                    },
                ),
                variant(
                    "all combined",
                    MlpConfig {
                        dropout: 0.3,
                        norm: Norm::Batch,
                        ..m0.clone()
                    },
                    FitConfig {
                        l1: 1e-4,
                        l2: 1e-3,
                        early_stopping: es,
                        ..plain.clone()
                    },
                ),
            ];
            let vs: Vec<VariantResult> = run(&p, vars)?.into_iter().map(|t| t.v).collect();
            save(
                out,
                "curves.png",
                &loss_curves("ablation: train vs validation loss", &vs)?,
                &mut plots,
            )?;
            let b = vs[0].val_metric;
            let cols = [
                "variant",
                &format!("val {mname}"),
                "Δ vs baseline",
                "val loss",
                "best val loss",
                &format!("gap (train − val {mname})"),
                "epochs",
            ];
            let rows = vs
                .iter()
                .map(|v| {
                    vec![
                        v.variant.clone(),
                        f4(v.val_metric),
                        format!("{:+.4}", v.val_metric - b),
                        f4(v.val_loss),
                        f4(v.best_val_loss),
                        f4(v.train_metric - v.val_metric),
                        v.epochs_run.to_string(),
                    ]
                })
                .collect();
            notes.push(
                "Every variant uses the same split, seed, network and optimizer; only the regularizer changes.".into(),
            );
            (cols.iter().map(|s| s.to_string()).collect(), rows, vs)
        }
    };
    let result = LabResult {
        lab: lab.slug().to_string(),
        data: p.name.clone(),
        task,
        metric: mname.to_string(),
        columns,
        rows,
        variants,
        notes,
        plots,
        seconds: start.elapsed().as_secs_f64(),
    };
    crate::io::atomic_write(&out.join("table.md"), result.markdown().as_bytes())?;
    crate::io::atomic_write(&out.join("table.csv"), result.csv().as_bytes())?;
    crate::io::write_json(&out.join("results.json"), &result)?;
    Ok(result)
}

/// Every lab into `out/<lab>/`, plus `out/index.md`.
pub fn run_all(cfg: &LabConfig, out: &Path, mut on_lab: impl FnMut(&LabResult)) -> Result<Vec<LabResult>> {
    let mut results = Vec::new();
    for lab in LabName::each() {
        let r = run_lab(lab, cfg, &out.join(lab.slug()))?;
        on_lab(&r);
        results.push(r);
    }
    let mut md = String::from("# catdog regularization labs\n\n");
    for r in &results {
        md.push_str(&format!(
            "## [{}]({}/table.md)\n\n{}\nPlots: {}\n\n",
            r.lab,
            r.lab,
            r.markdown().split_once('\n').map(|x| x.1).unwrap_or(""),
            r.plots
                .iter()
                .map(|p| format!("[{p}]({}/{p})", r.lab))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    crate::io::atomic_write(&out.join("index.md"), md.as_bytes())?;
    crate::io::write_json(&out.join("results.json"), &results)?;
    Ok(results)
}
