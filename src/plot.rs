//! Pictures: image grids with labels, training curves, and the labs' plots. Everything is drawn with plotters
//! into an RGB buffer (the font is compiled in) and written as PNG atomically.

use std::path::Path;
use std::sync::OnceLock;

use image::RgbImage;
use plotters::prelude::*;

use crate::error::{Error, Result};

const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Registers the compiled-in font as "sans-serif" (once).
pub fn ensure_font() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if plotters::style::register_font("sans-serif", style, FONT).is_err() {
                panic!("the bundled font does not parse");
            }
        }
    });
}

pub(crate) fn plot_err<E: std::fmt::Display>(e: E) -> Error {
    Error::Other(format!("drawing failed: {e}"))
}

/// Writes an RGB image as PNG, atomically.
pub fn save_png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| Error::Other(format!("{}: cannot encode PNG: {e}", path.display())))?;
    crate::io::atomic_write(path, &bytes)
}

fn font() -> &'static ab_glyph::FontRef<'static> {
    static F: OnceLock<ab_glyph::FontRef<'static>> = OnceLock::new();
    F.get_or_init(|| ab_glyph::FontRef::try_from_slice(FONT).expect("the bundled font parses"))
}

/// Lays out `text` at `size` px with the top of the line at y = 0 and calls `put(x, y, coverage)` for every pixel;
/// returns the width and height of the line.
pub fn render_text(text: &str, size: f32, mut put: impl FnMut(i32, i32, f32)) -> (u32, u32) {
    use ab_glyph::{Font, ScaleFont};
    let f = font();
    let scaled = f.as_scaled(size);
    let ascent = scaled.ascent();
    let mut caret = 0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            caret += scaled.kern(p, id);
        }
        let g = id.with_scale_and_position(size, ab_glyph::point(caret, ascent));
        if let Some(o) = f.outline_glyph(g) {
            let b = o.px_bounds();
            o.draw(|x, y, cov| put(b.min.x as i32 + x as i32, b.min.y as i32 + y as i32, cov));
        }
        caret += scaled.h_advance(id);
        prev = Some(id);
    }
    (caret.ceil() as u32, (scaled.ascent() - scaled.descent()).ceil() as u32)
}

/// Size of `text` at `size` px.
pub fn text_size(text: &str, size: f32) -> (u32, u32) {
    render_text(text, size, |_, _, _| {})
}

/// A bitmap backend whose text is laid out on the font's baseline (plotters' own ab_glyph path places each glyph
/// by its bounding box, which lifts '.' and ',' off the line).
pub struct Canvas<'a> {
    inner: BitMapBackend<'a>,
}

impl<'a> plotters_backend::DrawingBackend for Canvas<'a> {
    type ErrorType = <BitMapBackend<'a> as plotters_backend::DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }
    fn ensure_prepared(&mut self) -> std::result::Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        self.inner.ensure_prepared()
    }
    fn present(&mut self) -> std::result::Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        self.inner.present()
    }
    fn draw_pixel(
        &mut self,
        p: plotters_backend::BackendCoord,
        c: plotters_backend::BackendColor,
    ) -> std::result::Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_pixel(p, c)
    }
    fn draw_line<S: plotters_backend::BackendStyle>(
        &mut self,
        from: plotters_backend::BackendCoord,
        to: plotters_backend::BackendCoord,
        style: &S,
    ) -> std::result::Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_line(from, to, style)
    }
    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        a: plotters_backend::BackendCoord,
        b: plotters_backend::BackendCoord,
        style: &S,
        fill: bool,
    ) -> std::result::Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_rect(a, b, style, fill)
    }
    fn blit_bitmap(
        &mut self,
        pos: plotters_backend::BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> std::result::Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        self.inner.blit_bitmap(pos, size, src)
    }
    fn draw_text<T: plotters_backend::BackendTextStyle>(
        &mut self,
        text: &str,
        style: &T,
        pos: plotters_backend::BackendCoord,
    ) -> std::result::Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        use plotters_backend::text_anchor::{HPos, VPos};
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let size = style.size() as f32;
        let (w, h) = text_size(text, size);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -(w as i32),
            HPos::Center => -(w as i32) / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -(h as i32) / 2,
            VPos::Bottom => -(h as i32),
        };
        let trans = style.transform();
        let mut pixels = Vec::new();
        render_text(text, size, |x, y, cov| pixels.push((x, y, cov)));
        for (x, y, cov) in pixels {
            let (x, y) = trans.transform(x + dx, y + dy);
            let c = plotters_backend::BackendColor {
                alpha: color.alpha * cov.clamp(0.0, 1.0) as f64,
                rgb: color.rgb,
            };
            self.inner.draw_pixel((pos.0 + x, pos.1 + y), c)?;
        }
        Ok(())
    }
    fn estimate_text_size<T: plotters_backend::BackendTextStyle>(
        &self,
        text: &str,
        style: &T,
    ) -> std::result::Result<(u32, u32), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        Ok(text_size(text, style.size() as f32))
    }
}

/// Draws with plotters on a white `w × h` canvas and returns the picture.
pub fn draw<F>(w: u32, h: u32, f: F) -> Result<RgbImage>
where
    F: FnOnce(&DrawingArea<Canvas, plotters::coord::Shift>) -> Result<()>,
{
    ensure_font();
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = Canvas {
            inner: BitMapBackend::with_buffer(&mut buf, (w, h)),
        }
        .into_drawing_area();
        f(&root)?;
        root.present().map_err(plot_err)?;
    }
    Ok(RgbImage::from_raw(w, h, buf).expect("buffer of the right size"))
}

/// One cell of a grid: a picture and up to a few lines of caption.
pub struct Cell {
    pub image: RgbImage,
    pub caption: Vec<String>,
}

/// Lays out rows of cells (each row may have its own length) with captions under each picture.
pub fn image_grid(rows: &[Vec<Cell>], title: Option<&str>) -> Result<RgbImage> {
    const PAD: u32 = 6;
    const LINE: u32 = 13;
    let cell_w = rows
        .iter()
        .flatten()
        .map(|c| c.image.width())
        .max()
        .unwrap_or(64)
        .max(96);
    let cell_h = rows.iter().flatten().map(|c| c.image.height()).max().unwrap_or(64);
    let lines = rows.iter().flatten().map(|c| c.caption.len()).max().unwrap_or(0) as u32;
    let ncols = rows.iter().map(|r| r.len()).max().unwrap_or(1).max(1) as u32;
    let title_h = if title.is_some() { 22 } else { 0 };
    let row_h = cell_h + lines * LINE + 2 * PAD;
    let width = ncols * (cell_w + PAD) + PAD;
    let height = title_h + rows.len() as u32 * row_h + PAD;
    let mut canvas = draw(width, height, |root| {
        if let Some(t) = title {
            root.draw(&Text::new(
                t.to_string(),
                (PAD as i32, 4),
                ("sans-serif", 15).into_font().color(&BLACK),
            ))
            .map_err(plot_err)?;
        }
        for (ri, row) in rows.iter().enumerate() {
            for (ci, cell) in row.iter().enumerate() {
                let x = PAD + ci as u32 * (cell_w + PAD);
                let y = title_h + ri as u32 * row_h + PAD + cell_h + 2;
                for (li, line) in cell.caption.iter().enumerate() {
                    let text = fit(line, cell_w as usize);
                    root.draw(&Text::new(
                        text,
                        (x as i32, (y + li as u32 * LINE) as i32),
                        ("sans-serif", 11).into_font().color(&RGBColor(40, 40, 40)),
                    ))
                    .map_err(plot_err)?;
                }
            }
        }
        Ok(())
    })?;
    for (ri, row) in rows.iter().enumerate() {
        for (ci, cell) in row.iter().enumerate() {
            let x = PAD + ci as u32 * (cell_w + PAD);
            let y = title_h + ri as u32 * row_h + PAD;
            image::imageops::replace(&mut canvas, &cell.image, x as i64, y as i64);
        }
    }
    Ok(canvas)
}

/// Shortens a caption to the width of a cell at 11 px.
fn fit(s: &str, px: usize) -> String {
    if text_size(s, 11.0).0 as usize <= px {
        return s.to_string();
    }
    let mut t: String = s.to_string();
    while !t.is_empty() && text_size(&format!("{t}…"), 11.0).0 as usize > px {
        t.pop();
    }
    format!("{t}…")
}

/// Splits a caption into lines of at most `max` characters at spaces.
pub fn wrap(s: &str, max: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in s.split(' ') {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > max {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stroke {
    Line,
    Dashed,
    /// Dots instead of a line (the course's 'bo' for training).
    Dots,
}

/// One series of a line chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub stroke: Stroke,
}

/// The y axis of a chart: its range (from the data when `None`, so that panels of one figure can share one), and
/// whether it is logarithmic (for values spanning more than 10×; non-positive values are left out).
#[derive(Debug, Clone, Copy, Default)]
pub struct YAxis {
    pub range: Option<(f64, f64)>,
    pub log: bool,
}

impl YAxis {
    /// One axis for every series of several panels: log when the positive values span more than 10×.
    pub fn shared<'a>(values: impl IntoIterator<Item = &'a f64>) -> YAxis {
        let (lo, hi) = values
            .into_iter()
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        if !lo.is_finite() {
            return YAxis::default();
        }
        let log = lo > 0.0 && hi / lo > 10.0;
        YAxis {
            range: Some((lo, hi)),
            log,
        }
    }

    fn map(&self, y: f64) -> Option<f64> {
        match self.log {
            true if y > 0.0 => Some(y.log10()),
            true => None,
            false => y.is_finite().then_some(y),
        }
    }
}

/// The corner of a chart with the fewest data points, for the legend, on the side (left or right half) that no
/// vertical marker at `marker_xs` crosses, where there is such a side.
fn emptiest_corner(
    pts: &[(f64, f64)],
    marker_xs: &[f64],
    (x0, x1, y0, y1): (f64, f64, f64, f64),
) -> SeriesLabelPosition {
    let fx = |x: f64| (x - x0) / (x1 - x0).max(1e-12);
    let fy = |y: f64| (y - y0) / (y1 - y0).max(1e-12);
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let crowd = |right: bool, upper: bool| {
        pts.iter()
            .filter(|p| {
                let (x, y) = (fx(p.0), fy(p.1));
                (if right { x > 0.55 } else { x < 0.45 }) && (if upper { y > 0.6 } else { y < 0.4 })
            })
            .count()
    };
    let crossed = |right: bool| marker_xs.iter().any(|x| (fx(*x) > 0.5) == right);
    let both_crossed = crossed(true) && crossed(false);
    corners
        .iter()
        .min_by_key(|(_, r, u)| (!both_crossed && crossed(*r), crowd(*r, *u)))
        .map(|c| c.0.clone())
        .unwrap_or(SeriesLabelPosition::UpperRight)
}

/// A line chart of several series over x, with a legend.
pub fn line_chart(
    root: &DrawingArea<Canvas, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    line_chart_on(root, title, x_label, y_label, series, YAxis::default())
}

/// [`line_chart`] on a given y axis.
pub fn line_chart_on(
    root: &DrawingArea<Canvas, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    axis: YAxis,
) -> Result<()> {
    let mapped: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .filter_map(|&(x, y)| axis.map(y).map(|y| (x, y)))
                .collect()
        })
        .collect();
    let pts: Vec<(f64, f64)> = mapped.iter().flatten().copied().collect();
    let (x0, x1, y0, y1) = ranges(&pts, &axis);
    // A dashed series is a marker line across the whole height (the best epoch): the legend keeps to the other side.
    let markers: Vec<f64> = series
        .iter()
        .zip(&mapped)
        .filter(|(s, _)| s.stroke == Stroke::Dashed)
        .flat_map(|(_, m)| m.iter().map(|p| p.0))
        .collect();
    let legend_at = emptiest_corner(&pts, &markers, (x0, x1, y0, y1));
    let y_format = |y: &f64| tick_label(*y, axis.log);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(58)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .light_line_style(RGBColor(248, 248, 248))
        .bold_line_style(RGBColor(215, 215, 215))
        .label_style(("sans-serif", 12))
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-9 {
                format!("{}", x.round() as i64)
            } else {
                String::new()
            }
        })
        .y_label_formatter(&y_format)
        .draw()
        .map_err(plot_err)?;
    for (s, points) in series.iter().zip(&mapped) {
        let color = s.color;
        match s.stroke {
            Stroke::Dots => {
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(plot_err)?
                    .label(s.name)
                    .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
            }
            Stroke::Line => {
                chart
                    .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
                    .map_err(plot_err)?
                    .label(s.name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
            Stroke::Dashed => {
                chart
                    .draw_series(DashedLineSeries::new(
                        points.iter().copied(),
                        6,
                        4,
                        color.stroke_width(2),
                    ))
                    .map_err(plot_err)?
                    .label(s.name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 7, y)], color.stroke_width(2)));
            }
        }
    }
    chart
        .configure_series_labels()
        .position(legend_at)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// The chart's ranges `(x0, x1, y0, y1)`: the points' (or the axis's fixed y range), x padded by 0.3 and y by 8%;
/// `0..1` where there is nothing to span.
fn ranges(pts: &[(f64, f64)], axis: &YAxis) -> (f64, f64, f64, f64) {
    let span = |f: fn(&(f64, f64)) -> f64| {
        pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(f(p)), b.max(f(p)))
        })
    };
    let (x0, x1) = span(|p| p.0);
    let (y0, y1) = match axis.range {
        Some((lo, hi)) => (axis.map(lo).unwrap_or(lo), axis.map(hi).unwrap_or(hi)),
        None => span(|p| p.1),
    };
    let (x0, x1) = if pts.is_empty() {
        (0.0, 1.0)
    } else {
        (x0 - 0.3, x1 + 0.3)
    };
    let (y0, y1) = if !y0.is_finite() || !y1.is_finite() {
        (0.0, 1.0)
    } else {
        let pad = ((y1 - y0) * 0.08).max(1e-3);
        (y0 - pad, y1 + pad)
    };
    (x0, x1, y0, y1)
}

/// A y tick's label: the value (10^y on a log axis) with at most three decimals, trailing zeros dropped, and very
/// small values in exponent form.
fn tick_label(y: f64, log: bool) -> String {
    let v = if log { 10f64.powf(y) } else { y };
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    if s == "-0" {
        "0".into()
    } else if v.abs() < 1e-3 && v != 0.0 {
        format!("{v:.0e}")
    } else {
        s
    }
}

/// The course's two plots side by side: training and validation loss, training and validation accuracy.
/// `best`: the 1-based epoch of `best.safetensors` (or the restored one), marked on both panels by a dashed
/// vertical line.
pub fn curves(h: &crate::train::history::History, best: Option<usize>) -> Result<RgbImage> {
    let blue = RGBColor(31, 90, 200);
    let orange = RGBColor(230, 120, 20);
    let grey = RGBColor(90, 90, 90);
    let ep = |f: &dyn Fn(&crate::train::history::EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        h.epochs
            .iter()
            .filter_map(|e| f(e).map(|v| (e.epoch as f64, v)))
            .collect()
    };
    let best_name = best.map(|b| format!("best epoch {b}")).unwrap_or_default();
    // A vertical line at the best epoch over the range of the panel's other series.
    let marker = |series: &[&Vec<(f64, f64)>]| -> Vec<(f64, f64)> {
        let Some(b) = best else { return Vec::new() };
        let (lo, hi) = series
            .iter()
            .flat_map(|s| s.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, c), v| (a.min(v), c.max(v)));
        if lo.is_finite() {
            vec![(b as f64, lo), (b as f64, hi)]
        } else {
            Vec::new()
        }
    };
    draw(1100, 420, |root| {
        let (left, right) = root.split_horizontally(550);
        let s = |name, points, color, dots: bool| Series {
            name,
            points,
            color,
            stroke: if dots { Stroke::Dots } else { Stroke::Line },
        };
        let (loss, val_loss) = (ep(&|e| Some(e.loss)), ep(&|e| e.val_loss));
        let mut left_series = vec![
            s("training loss", loss.clone(), blue, true),
            s("validation loss", val_loss.clone(), orange, false),
        ];
        let (acc, val_acc) = (ep(&|e| Some(e.accuracy)), ep(&|e| e.val_accuracy));
        let mut right_series = vec![
            s("training accuracy", acc.clone(), blue, true),
            s("validation accuracy", val_acc.clone(), orange, false),
        ];
        if best.is_some() {
            let dashed = |points| Series {
                name: &best_name,
                points,
                color: grey,
                stroke: Stroke::Dashed,
            };
            left_series.push(dashed(marker(&[&loss, &val_loss])));
            right_series.push(dashed(marker(&[&acc, &val_acc])));
        }
        line_chart(&left, "Training and validation loss", "epoch", "loss", &left_series)?;
        line_chart(
            &right,
            "Training and validation accuracy",
            "epoch",
            "accuracy",
            &right_series,
        )
    })
}

/// Panels laid out in a grid, each drawn by `f(area, index)`.
pub fn panels<F>(n: usize, cols: usize, panel_w: u32, panel_h: u32, title: Option<&str>, mut f: F) -> Result<RgbImage>
where
    F: FnMut(&DrawingArea<Canvas, plotters::coord::Shift>, usize) -> Result<()>,
{
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols).max(1);
    let top = if title.is_some() { 28 } else { 0 };
    draw(cols as u32 * panel_w, rows as u32 * panel_h + top, |root| {
        let body = if let Some(t) = title {
            root.draw(&Text::new(
                t.to_string(),
                (8, 6),
                ("sans-serif", 16).into_font().color(&BLACK),
            ))
            .map_err(plot_err)?;
            root.margin(top as i32, 0, 0, 0)
        } else {
            root.clone()
        };
        let areas = body.split_evenly((rows, cols));
        for (i, a) in areas.iter().enumerate().take(n) {
            f(a, i)?;
        }
        Ok(())
    })
}

/// A palette for several series.
pub fn color(i: usize) -> RGBColor {
    const C: [(u8, u8, u8); 8] = [
        (31, 90, 200),
        (230, 120, 20),
        (40, 160, 60),
        (200, 40, 40),
        (140, 80, 190),
        (120, 80, 60),
        (220, 100, 180),
        (100, 100, 100),
    ];
    let (r, g, b) = C[i % C.len()];
    RGBColor(r, g, b)
}

/// The counts of `values` in `bins` equal bins over [lo, hi] (values outside go to the end bins).
pub fn histogram_counts(values: &[f32], lo: f64, hi: f64, bins: usize) -> Vec<usize> {
    let mut counts = vec![0usize; bins.max(1)];
    for &v in values {
        let k = (((v as f64 - lo) / (hi - lo)) * counts.len() as f64).floor();
        let last = counts.len() - 1;
        counts[(k.max(0.0) as usize).min(last)] += 1;
    }
    counts
}

/// The count axis the histograms of one figure share: up to the largest bin of them all, logarithmic when the
/// panels' largest bins differ more than 10× (a collapsed model's spike would flatten the others otherwise).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountAxis {
    pub top: usize,
    pub log: bool,
}

impl CountAxis {
    pub fn shared(panels: &[Vec<usize>]) -> CountAxis {
        let tops: Vec<usize> = panels.iter().map(|c| c.iter().copied().max().unwrap_or(0)).collect();
        let top = tops.iter().copied().max().unwrap_or(0).max(1);
        let low = tops.iter().copied().min().unwrap_or(0).max(1);
        CountAxis {
            top,
            log: top > 10 * low,
        }
    }

    /// Where a count goes on the axis (log10 on a log axis; a count of 1 stands above the floor).
    fn y(&self, count: usize) -> f64 {
        if self.log {
            (count.max(1) as f64).log10()
        } else {
            count as f64
        }
    }

    /// The axis' range.
    fn range(&self) -> std::ops::Range<f64> {
        if self.log {
            LOG_FLOOR..(self.top as f64 * 1.5).log10()
        } else {
            0.0..self.top as f64 * 1.05
        }
    }
}

/// The bottom of a logarithmic count axis: log10(0.5), so that bins of one count show.
const LOG_FLOOR: f64 = -std::f64::consts::LOG10_2;

/// A histogram's bins (`counts` over [lo, hi]) on one panel, against `axis`.
pub fn histogram(
    area: &DrawingArea<Canvas, plotters::coord::Shift>,
    title: &str,
    counts: &[usize],
    (lo, hi): (f64, f64),
    axis: CountAxis,
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 14))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(44)
        .build_cartesian_2d(lo..hi, axis.range())
        .map_err(plot_err)?;
    let count_label = |v: &f64| {
        let whole = |x: f64| (x - x.round()).abs() < 1e-6;
        // Counts are integers; a log axis labels its powers of ten.
        match axis.log {
            true if whole(*v) && *v >= 0.0 => format!("{}", 10f64.powi(v.round() as i32) as i64),
            false if whole(*v) => format!("{}", v.round() as i64),
            _ => String::new(),
        }
    };
    chart
        .configure_mesh()
        .x_desc("weight")
        .y_desc(if axis.log { "count (log)" } else { "count" })
        .x_labels(5)
        .y_labels(if axis.log { 40 } else { 5 })
        .y_label_formatter(&count_label)
        .x_label_formatter(&|v| {
            let s = format!("{v:.2}");
            if s == "-0.00" {
                "0".into()
            } else {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            }
        })
        .label_style(("sans-serif", 11))
        .light_line_style(RGBColor(248, 248, 248))
        .draw()
        .map_err(plot_err)?;
    let w = (hi - lo) / counts.len().max(1) as f64;
    let floor = axis.range().start;
    chart
        .draw_series(counts.iter().enumerate().filter(|(_, &c)| c > 0).map(|(i, &c)| {
            let x0 = lo + i as f64 * w;
            Rectangle::new([(x0, floor), (x0 + w * 0.95, axis.y(c))], color(0).filled())
        }))
        .map_err(plot_err)?;
    Ok(())
}

/// The colour of class `c`'s points on a decision map (the map runs from class 0's warm to class 1's cool).
pub fn class_point_color(c: usize) -> RGBColor {
    if c == 0 {
        RGBColor(200, 60, 20)
    } else {
        RGBColor(20, 60, 200)
    }
}

/// A classifier's probability of class 1 over a grid (`grid[j][i]`, row j from `y0`), with the training points
/// (filled) and the validation points (rings) coloured by class, and a legend saying which is which.
pub fn decision_map(
    area: &DrawingArea<Canvas, plotters::coord::Shift>,
    title: &str,
    (x0, x1, y0, y1): (f64, f64, f64, f64),
    grid: &[Vec<f32>],
    train: &[(f64, f64, usize)],
    val: &[(f64, f64, usize)],
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 14))
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(36)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .label_style(("sans-serif", 10))
        .draw()
        .map_err(plot_err)?;
    let (ny, nx) = (grid.len(), grid.first().map_or(0, |r| r.len()));
    let (dx, dy) = ((x1 - x0) / nx.max(1) as f64, (y1 - y0) / ny.max(1) as f64);
    chart
        .draw_series(grid.iter().enumerate().flat_map(|(j, row)| {
            row.iter().enumerate().map(move |(i, &p)| {
                let p = p.clamp(0.0, 1.0) as f64;
                let c = RGBColor(
                    (255.0 - 80.0 * p) as u8,
                    (235.0 - 60.0 * (p - 0.5).abs()) as u8,
                    (175.0 + 80.0 * p) as u8,
                );
                let (xa, ya) = (x0 + i as f64 * dx, y0 + j as f64 * dy);
                Rectangle::new([(xa, ya), (xa + dx, ya + dy)], c.filled())
            })
        }))
        .map_err(plot_err)?;
    let key = RGBColor(60, 60, 60);
    for (name, points, filled) in [("training", train, true), ("validation", val, false)] {
        if points.is_empty() {
            continue;
        }
        let style = move |c: RGBColor| if filled { c.filled() } else { c.stroke_width(1) };
        chart
            .draw_series(
                points
                    .iter()
                    .map(move |&(x, y, c)| Circle::new((x, y), 3, style(class_point_color(c)))),
            )
            .map_err(plot_err)?
            .label(name)
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, style(key)));
    }
    let all: Vec<(f64, f64)> = train.iter().chain(val).map(|&(x, y, _)| (x, y)).collect();
    chart
        .configure_series_labels()
        .position(emptiest_corner(&all, &[], (x0, x1, y0, y1)))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 10))
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// A named set of points for [`scatter_with_line`], drawn filled or hollow.
pub struct PointSet<'a> {
    pub name: &'a str,
    pub points: &'a [(f64, f64)],
    pub filled: bool,
}

/// Points (filled or hollow, each set with its legend name) and one fitted line, on fixed ranges
/// `(x0, x1, y0, y1)`; the legend goes to the emptiest corner.
pub fn scatter_with_line(
    area: &DrawingArea<Canvas, plotters::coord::Shift>,
    title: &str,
    (x0, x1, y0, y1): (f64, f64, f64, f64),
    points: &[PointSet],
    (line_name, line): (&str, &[(f64, f64)]),
) -> Result<()> {
    let pad = ((y1 - y0) * 0.08).max(1e-3);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 14))
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(40)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .label_style(("sans-serif", 10))
        .light_line_style(RGBColor(248, 248, 248))
        .draw()
        .map_err(plot_err)?;
    for (k, set) in points.iter().enumerate() {
        let c = color(k + 1);
        let style = if set.filled { c.filled() } else { c.stroke_width(1) };
        chart
            .draw_series(set.points.iter().map(move |&p| Circle::new(p, 3, style)))
            .map_err(plot_err)?
            .label(set.name)
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, style));
    }
    chart
        .draw_series(LineSeries::new(line.iter().copied(), color(0).stroke_width(2)))
        .map_err(plot_err)?
        .label(line_name)
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color(0).stroke_width(2)));
    let all: Vec<(f64, f64)> = points
        .iter()
        .flat_map(|set| set.points.iter().copied())
        .chain(line.iter().copied())
        .collect();
    chart
        .configure_series_labels()
        .position(emptiest_corner(&all, &[], (x0, x1, y0, y1)))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 11))
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::history::{EpochRecord, History};

    #[test]
    fn the_legend_keeps_off_a_vertical_best_epoch_marker() {
        // A loss falling from the upper left to the lower right, and one flat along the lower left: the upper
        // right is the emptiest corner.
        let mut pts: Vec<(f64, f64)> = (1..=10).map(|e| (e as f64, 1.1 - 0.1 * e as f64)).collect();
        pts.extend((1..=4).map(|e| (e as f64, 0.15)));
        let range = (0.7, 10.3, 0.0, 1.1);
        assert!(matches!(
            emptiest_corner(&pts, &[], range),
            SeriesLabelPosition::UpperRight
        ));
        // The best epoch marked at 8 from bottom to top (its two ends alone leave the upper right the emptiest):
        // the legend goes to the left half.
        pts.extend([(8.0, 0.1), (8.0, 1.0)]);
        let at = emptiest_corner(&pts, &[8.0, 8.0], range);
        assert!(matches!(
            at,
            SeriesLabelPosition::LowerLeft | SeriesLabelPosition::UpperLeft
        ));
    }

    #[test]
    fn decision_maps_draw_training_points_filled_and_validation_points_as_rings() {
        let grid = vec![vec![0.5f32; 4]; 4];
        let map = |train: &[(f64, f64, usize)], val: &[(f64, f64, usize)]| {
            let img = panels(1, 1, 300, 300, None, |area, _| {
                decision_map(area, "t", (0.0, 1.0, 0.0, 1.0), &grid, train, val)
            })
            .unwrap();
            let c = class_point_color(0);
            img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count()
        };
        let point = [(0.3, 0.3, 0)];
        let (filled, ring) = (map(&point, &[]), map(&[], &point));
        assert!(filled > 0 && ring > 0, "filled {filled}, ring {ring}");
        assert!(
            ring < filled,
            "a validation ring ({ring} px) must show less colour than a filled point ({filled})"
        );
    }

    #[test]
    fn the_histograms_of_a_figure_share_one_count_axis() {
        let counts = histogram_counts(&[-1.0, -0.9, 0.0, 0.05, 0.9, 5.0], -1.0, 1.0, 4);
        assert_eq!(counts, vec![2, 0, 2, 2]);
        let near = CountAxis::shared(&[vec![1, 5, 2], vec![2, 9, 3]]);
        assert_eq!(near, CountAxis { top: 9, log: false });
        // One collapsed panel (every weight in one bin): a log axis, so the others keep their shape.
        let spiky = CountAxis::shared(&[vec![0, 500, 0], vec![20, 30, 25]]);
        assert_eq!(spiky, CountAxis { top: 500, log: true });
        assert!(spiky.y(1) > spiky.range().start && spiky.y(500) < spiky.range().end);
    }

    #[test]
    fn curves_mark_the_best_epoch() {
        let rec = |epoch: usize, val: f64| EpochRecord {
            epoch,
            loss: 1.0 / epoch as f64,
            data_loss: 1.0 / epoch as f64,
            penalty: 0.0,
            accuracy: 0.5 + 0.1 * epoch as f64,
            val_loss: Some(val),
            val_data_loss: Some(val),
            val_accuracy: Some(0.6),
            lr: 1e-3,
            seconds: 1.0,
            images_per_s: 1.0,
        };
        let h = History {
            epochs: vec![rec(1, 0.9), rec(2, 0.5), rec(3, 0.7), rec(4, 0.8)],
        };
        let plain = curves(&h, None).unwrap();
        let marked = curves(&h, Some(2)).unwrap();
        let differing = plain.pixels().zip(marked.pixels()).filter(|(a, b)| a != b).count();
        // A dashed line over both panels plus its legend entries: hundreds of pixels, not a stray one.
        assert!(differing > 200, "only {differing} pixels differ");
    }
}
