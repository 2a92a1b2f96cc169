//! Tabular data for the labs: any CSV (numeric columns as they are, text columns one-hot), the built-in 2-D and
//! 1-D sets of the course's pictures, the shipped breast-cancer data, splits and input scaling.

use std::collections::BTreeSet;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Classification (binary or multi-class) or regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Classification,
    Regression,
}

/// A table of features and a target.
#[derive(Debug, Clone)]
pub struct Table {
    /// Row-major `rows × features`.
    pub x: Vec<f32>,
    pub features: Vec<String>,
    pub task: Task,
    /// Class index per row (classification) or value (regression), as f32.
    pub y: Vec<f32>,
    /// Class names in index order (classification).
    pub classes: Vec<String>,
    /// Where the data came from, for tables and titles.
    pub name: String,
}

impl Table {
    pub fn rows(&self) -> usize {
        self.y.len()
    }
    pub fn dims(&self) -> usize {
        self.features.len()
    }
    pub fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.dims()..(i + 1) * self.dims()]
    }
    /// The rows `idx` as a new table.
    pub fn select(&self, idx: &[usize]) -> Table {
        let mut x = Vec::with_capacity(idx.len() * self.dims());
        for &i in idx {
            x.extend_from_slice(self.row(i));
        }
        Table {
            x,
            y: idx.iter().map(|&i| self.y[i]).collect(),
            features: self.features.clone(),
            task: self.task,
            classes: self.classes.clone(),
            name: self.name.clone(),
        }
    }
    /// Number of model outputs: 1 for two classes and for regression, K for K classes.
    pub fn outputs(&self) -> usize {
        match self.task {
            Task::Regression => 1,
            Task::Classification if self.classes.len() <= 2 => 1,
            Task::Classification => self.classes.len(),
        }
    }
}

/// Longest CSV line accepted, in bytes: a table for the labs has short lines, and a huge one (a binary file, a
/// whole document in one cell) would otherwise be read into memory whole.
pub const MAX_CSV_LINE: usize = 1 << 20;

/// A reader that fails once a line grows past [`MAX_CSV_LINE`], so memory stays bounded whatever the file holds,
/// and at the end of a file whose last quoted field never closes: the csv crate would read every row after the
/// opening quote as one field and lose them without a word.
struct LineLimit<R> {
    inner: R,
    line: usize,
    in_line: usize,
    quotes: QuoteState,
}

/// Where the reader stands in the CSV quoting rules (RFC 4180: a quote opens a field only at its start; `""`
/// inside a quoted field is a quote).
#[derive(Debug, Clone, Copy, PartialEq)]
enum QuoteState {
    FieldStart,
    Unquoted,
    /// Inside a quoted field opened on this line.
    Quoted(usize),
    /// A quote inside a quoted field: it closes the field unless another follows.
    QuoteInQuoted(usize),
}

impl QuoteState {
    fn next(self, b: u8, line: usize) -> QuoteState {
        use QuoteState::*;
        match (self, b) {
            (Quoted(at), b'"') => QuoteInQuoted(at),
            (Quoted(at), _) | (QuoteInQuoted(at), b'"') => Quoted(at),
            (FieldStart, b'"') => Quoted(line),
            (_, b',' | b'\n') => FieldStart,
            _ => Unquoted,
        }
    }
}

impl<R: std::io::Read> std::io::Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let (0, QuoteState::Quoted(at)) = (n, self.quotes) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the quote that opens a field on line {at} is never closed, so every line after it would be \
                     read as one field; close it, or remove the stray quote"
                ),
            ));
        }
        for &b in &buf[..n] {
            self.quotes = self.quotes.next(b, self.line);
            if b == b'\n' {
                self.line += 1;
                self.in_line = 0;
            } else {
                self.in_line += 1;
                if self.in_line > MAX_CSV_LINE {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "line {} is longer than {} MiB; is this a CSV table?",
                            self.line,
                            MAX_CSV_LINE >> 20
                        ),
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// A user value as it may appear in a message: at most 60 characters, with the full length said when cut.
pub fn shorten(v: &str) -> String {
    const MAX: usize = 60;
    if v.chars().count() <= MAX {
        return v.to_string();
    }
    let head: String = v.chars().take(MAX).collect();
    format!("{head}… ({} bytes)", v.len())
}

/// Reads a CSV with a header: `target` is the label column, `drop` columns are left out; numeric columns stay as
/// they are and text columns are one-hot encoded (sorted categories). Missing or unparsable values are an error
/// naming the row (1-based, header = row 1) and the column. `task` forces classification or regression (else: a
/// text target, or an integer target with at most 20 values, is classification).
pub fn read_csv(path: &Path, target: &str, drop: &[String], task: Option<Task>) -> Result<Table> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let name = path.display().to_string();
    let mut t = parse_csv(file, &name, target, drop, task)?;
    t.name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or(name);
    Ok(t)
}

/// [`read_csv`] on any reader; `source` names it in errors.
pub fn parse_csv(
    input: impl std::io::Read,
    source: &str,
    target: &str,
    drop: &[String],
    task: Option<Task>,
) -> Result<Table> {
    let (headers, rows) = read_rows(input, source)?;
    let t = headers.iter().position(|h| h == target).ok_or_else(|| {
        Error::invalid(format!(
            "{source}: no column '{}' for --target; columns: {}",
            shorten(target),
            shorten(&headers.join(", "))
        ))
    })?;
    if let Some(d) = drop.iter().find(|d| !headers.contains(d)) {
        return Err(Error::invalid(format!(
            "{source}: --drop {}: no such column",
            shorten(d)
        )));
    }
    let (features, x) = encode_features(&headers, &rows, t, drop, source)?;
    if features.is_empty() {
        return Err(Error::invalid(format!(
            "{source}: no feature columns are left (the only columns are the target '{}' and those given to --drop); \
             keep at least one column",
            shorten(target)
        )));
    }
    let (task, y, classes) = encode_target(&rows, t, target, task, source)?;
    Ok(Table {
        x,
        features,
        task,
        y,
        classes,
        name: source.to_string(),
    })
}

/// A missing value as tables write it: empty, `na`, `nan` or `?`.
fn missing(s: &str) -> bool {
    s.is_empty() || s.eq_ignore_ascii_case("na") || s.eq_ignore_ascii_case("nan") || s == "?"
}

/// A finite number, if the cell is one.
fn numeric(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The header and the data rows (at least 4, each as wide as the header), read through [`LineLimit`].
fn read_rows(input: impl std::io::Read, source: &str) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let input = LineLimit {
        inner: input,
        line: 1,
        in_line: 0,
        quotes: QuoteState::FieldStart,
    };
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(input);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| Error::Data(format!("{source}: no header row: {e}")))?
        .iter()
        .map(String::from)
        .collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| Error::Data(format!("{source}: row {}: {e}", i + 2)))?;
        if rec.len() != headers.len() {
            return Err(Error::Data(format!(
                "{source}: row {} has {} fields, the header has {}",
                i + 2,
                rec.len(),
                headers.len()
            )));
        }
        rows.push(rec.iter().map(String::from).collect());
    }
    if rows.len() < 4 {
        return Err(Error::Data(format!("{source}: only {} data rows", rows.len())));
    }
    Ok((headers, rows))
}

/// The feature names and the row-major feature matrix: every used column checked cell by cell (no missing value; a
/// mostly numeric column must be numeric throughout), numeric columns as they are, text columns one-hot.
fn encode_features(
    headers: &[String],
    rows: &[Vec<String>],
    t: usize,
    drop: &[String],
    source: &str,
) -> Result<(Vec<String>, Vec<f32>)> {
    let mut features = Vec::new();
    let mut cols: Vec<(usize, Option<Vec<String>>)> = Vec::new();
    for (c, name) in headers.iter().enumerate() {
        if c == t || drop.contains(name) {
            continue;
        }
        if let Some(r) = rows.iter().position(|row| missing(&row[c])) {
            return Err(Error::Data(format!(
                "{source}: row {}, column '{name}': missing value; fill it in, or leave the column out with --drop {name}",
                r + 2
            )));
        }
        let n_num = rows.iter().filter(|row| numeric(&row[c]).is_some()).count();
        let n_text = rows.len() - n_num;
        if n_text > 0 && n_num > n_text {
            let (r, v) = first_non_number(rows, c);
            return Err(Error::Data(format!(
                "{source}: row {}, column '{}': '{}' is not a number in a numeric column",
                r + 2,
                shorten(name),
                shorten(&v)
            )));
        }
        if n_text > 0 {
            let cats: BTreeSet<String> = rows.iter().map(|row| row[c].clone()).collect();
            features.extend(cats.iter().map(|cat| format!("{name}={cat}")));
            cols.push((c, Some(cats.into_iter().collect())));
        } else {
            features.push(name.clone());
            cols.push((c, None));
        }
    }
    let mut x = Vec::with_capacity(rows.len() * features.len());
    for row in rows {
        for (c, cats) in &cols {
            match cats {
                None => x.push(numeric(&row[*c]).expect("checked") as f32),
                Some(cats) => x.extend(cats.iter().map(|k| if *k == row[*c] { 1.0 } else { 0.0 })),
            }
        }
    }
    Ok((features, x))
}

/// The first row (0-based) whose column `c` is not a number, and its value.
fn first_non_number(rows: &[Vec<String>], c: usize) -> (usize, String) {
    rows.iter()
        .enumerate()
        .find(|(_, row)| numeric(&row[c]).is_none())
        .map(|(r, row)| (r, row[c].clone()))
        .unwrap_or_default()
}

/// The task (given, else: a text target or one of at most 20 integer values is classification) and the target:
/// numbers for regression, class indices (classes sorted by name, or by value when numeric) for classification.
fn encode_target(
    rows: &[Vec<String>],
    t: usize,
    target: &str,
    task: Option<Task>,
    source: &str,
) -> Result<(Task, Vec<f32>, Vec<String>)> {
    if let Some(r) = rows.iter().position(|row| missing(&row[t])) {
        return Err(Error::Data(format!(
            "{source}: row {}, column '{target}': missing target",
            r + 2
        )));
    }
    let all_numeric = rows.iter().all(|row| numeric(&row[t]).is_some());
    let task = task.unwrap_or_else(|| {
        let ints: Option<BTreeSet<i64>> = rows
            .iter()
            .map(|row| numeric(&row[t]).filter(|v| v.fract() == 0.0).map(|v| v as i64))
            .collect();
        match ints {
            Some(values) if values.len() <= 20 => Task::Classification,
            Some(_) => Task::Regression,
            None if all_numeric => Task::Regression,
            None => Task::Classification,
        }
    });
    match task {
        Task::Regression => {
            if !all_numeric {
                let (r, v) = first_non_number(rows, t);
                return Err(Error::Data(format!(
                    "{source}: row {}, column '{target}': '{v}' is not a number (regression target)",
                    r + 2
                )));
            }
            let y = rows
                .iter()
                .map(|row| numeric(&row[t]).expect("checked") as f32)
                .collect();
            Ok((task, y, Vec::new()))
        }
        Task::Classification => {
            let mut names: Vec<String> = rows
                .iter()
                .map(|row| row[t].clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if all_numeric {
                names.sort_by(|a, b| numeric(a).unwrap_or(0.0).total_cmp(&numeric(b).unwrap_or(0.0)));
            }
            if names.len() < 2 {
                return Err(Error::Data(format!("{source}: column '{target}' has one value only")));
            }
            let y = rows
                .iter()
                .map(|row| names.iter().position(|n| *n == row[t]).expect("a class") as f32)
                .collect();
            Ok((task, y, names))
        }
    }
}

/// The shipped breast-cancer data (`data/breast_cancer.csv`, compiled in).
pub fn breast_cancer() -> Table {
    const CSV: &str = include_str!("../../data/breast_cancer.csv");
    parse_csv(
        CSV.as_bytes(),
        "breast_cancer (UCI WDBC)",
        "diagnosis",
        &[],
        Some(Task::Classification),
    )
    .expect("the shipped CSV parses")
}

/// Built-in data sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    /// The shipped UCI breast-cancer data (569 × 30, two classes, features of very different ranges).
    BreastCancer,
    /// Two interleaving half circles (2-D, two classes).
    Moons,
    /// A circle inside a circle (2-D, two classes).
    Circles,
    /// Two interleaved spirals (2-D, two classes).
    Spirals,
    /// A noisy sine on [−3, 3] with few points (1-D regression, easy to overfit).
    Sine,
}

/// Generates a built-in set: `n` points (per set; the sine uses `n` as given), Gaussian `noise`, seeded.
pub fn builtin(kind: Builtin, n: usize, noise: f64, seed: u64) -> Table {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xDA7A);
    let gauss = Normal::new(0.0, noise.max(0.0)).expect("valid normal");
    let mut x = Vec::new();
    let mut y = Vec::new();
    let two_d = |x: &mut Vec<f32>, y: &mut Vec<f32>, a: f64, b: f64, c: f32, rng: &mut rand::rngs::StdRng| {
        x.push((a + gauss.sample(rng)) as f32);
        x.push((b + gauss.sample(rng)) as f32);
        y.push(c);
    };
    match kind {
        Builtin::BreastCancer => return breast_cancer(),
        Builtin::Moons => {
            for i in 0..n {
                let t = std::f64::consts::PI * (i / 2) as f64 / ((n / 2).max(2) - 1) as f64;
                if i % 2 == 0 {
                    two_d(&mut x, &mut y, t.cos(), t.sin(), 0.0, &mut rng);
                } else {
                    two_d(&mut x, &mut y, 1.0 - t.cos(), 0.5 - t.sin(), 1.0, &mut rng);
                }
            }
        }
        Builtin::Circles => {
            for i in 0..n {
                let t = 2.0 * std::f64::consts::PI * rng.random::<f64>();
                let r = if i % 2 == 0 { 1.0 } else { 0.5 };
                two_d(&mut x, &mut y, r * t.cos(), r * t.sin(), (i % 2) as f32, &mut rng);
            }
        }
        Builtin::Spirals => {
            for i in 0..n {
                let k = (i / 2) as f64 / (n / 2).max(1) as f64;
                let t = 0.5 + 3.0 * std::f64::consts::PI * k;
                let r = 0.2 + 0.8 * k;
                let s = if i % 2 == 0 { 1.0 } else { -1.0 };
                two_d(
                    &mut x,
                    &mut y,
                    s * r * t.cos(),
                    s * r * t.sin(),
                    (i % 2) as f32,
                    &mut rng,
                );
            }
        }
        Builtin::Sine => {
            for _ in 0..n {
                let v = rng.random_range(-3.0..3.0f64);
                x.push(v as f32);
                y.push((v.sin() + gauss.sample(&mut rng)) as f32);
            }
        }
    }
    let (features, task, classes, name) = match kind {
        Builtin::Sine => (
            vec!["x".to_string()],
            Task::Regression,
            vec![],
            format!("sine (n {n}, noise {noise})"),
        ),
        _ => (
            vec!["x1".to_string(), "x2".to_string()],
            Task::Classification,
            vec!["0".to_string(), "1".to_string()],
            format!("{kind:?} (n {n}, noise {noise})").to_lowercase(),
        ),
    };
    Table {
        x,
        features,
        task,
        y,
        classes,
        name,
    }
}

/// Train/validation split: `fraction` of the rows (of each class for classification) to validation, seeded.
pub fn split(t: &Table, fraction: f64, seed: u64) -> Result<(Table, Table)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::invalid(format!("--val-split must be in (0, 1), got {fraction}")));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5917);
    let mut val = Vec::new();
    let groups: Vec<Vec<usize>> = match t.task {
        Task::Classification => (0..t.classes.len())
            .map(|c| (0..t.rows()).filter(|&i| t.y[i] as usize == c).collect())
            .collect(),
        Task::Regression => vec![(0..t.rows()).collect()],
    };
    for mut g in groups {
        g.shuffle(&mut rng);
        let k = ((g.len() as f64 * fraction).round() as usize)
            .min(g.len().saturating_sub(1))
            .max(usize::from(g.len() > 1));
        val.extend_from_slice(&g[..k]);
    }
    val.sort_unstable();
    let in_val: BTreeSet<usize> = val.iter().copied().collect();
    let train: Vec<usize> = (0..t.rows()).filter(|i| !in_val.contains(i)).collect();
    if train.is_empty() || val.is_empty() {
        return Err(Error::Data(format!("{}: too few rows ({}) to split", t.name, t.rows())));
    }
    Ok((t.select(&train), t.select(&val)))
}

/// Input scaling, fitted on the training split only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scaling {
    /// The features as they are.
    None,
    /// (x − mean) / std per feature.
    #[default]
    Standard,
    /// (x − min) / (max − min) per feature, to [0, 1].
    Minmax,
}

/// A fitted scaler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub kind: Scaling,
    pub shift: Vec<f32>,
    pub scale: Vec<f32>,
}

impl Scaler {
    pub fn fit(kind: Scaling, t: &Table) -> Scaler {
        let d = t.dims();
        let n = t.rows().max(1) as f64;
        let (mut shift, mut scale) = (vec![0f32; d], vec![1f32; d]);
        for j in 0..d {
            let col = (0..t.rows()).map(|i| t.row(i)[j] as f64);
            match kind {
                Scaling::None => {}
                Scaling::Standard => {
                    let mean = col.clone().sum::<f64>() / n;
                    let var = col.map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                    shift[j] = mean as f32;
                    scale[j] = if var > 1e-24 { (1.0 / var.sqrt()) as f32 } else { 1.0 };
                }
                Scaling::Minmax => {
                    let (lo, hi) = col.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
                    shift[j] = lo as f32;
                    scale[j] = if hi > lo { (1.0 / (hi - lo)) as f32 } else { 1.0 };
                }
            }
        }
        Scaler { kind, shift, scale }
    }

    pub fn apply(&self, t: &Table) -> Table {
        let d = t.dims();
        let mut out = t.clone();
        for (i, v) in out.x.iter_mut().enumerate() {
            let j = i % d;
            *v = (*v - self.shift[j]) * self.scale[j];
        }
        out
    }

    /// Scales one row (for plotting grids).
    pub fn apply_row(&self, row: &mut [f32]) {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (*v - self.shift[j]) * self.scale[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, s: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, s).unwrap();
        p
    }

    #[test]
    fn numeric_and_text_columns_and_targets() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "a.csv",
            "age,city,id,label\n30,paris,1,yes\n40,rome,2,no\n50,paris,3,yes\n60,oslo,4,no\n",
        );
        let t = read_csv(&p, "label", &["id".to_string()], None).unwrap();
        assert_eq!(t.features, ["age", "city=oslo", "city=paris", "city=rome"]);
        assert_eq!(t.classes, ["no", "yes"]);
        assert_eq!(t.y, [1.0, 0.0, 1.0, 0.0]);
        assert_eq!(t.row(1), &[40.0, 0.0, 0.0, 1.0]);
        let p = write(dir.path(), "r.csv", "x,y\n1,0.5\n2,1.7\n3,2.2\n4,3.9\n");
        assert_eq!(read_csv(&p, "y", &[], None).unwrap().task, Task::Regression);
    }

    #[test]
    fn missing_and_unparsable_values_name_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "m.csv", "a,b,t\n1,2,0\n3,,1\n5,6,0\n7,8,1\n");
        let e = read_csv(&p, "t", &[], None).unwrap_err().to_string();
        assert!(
            e.contains("row 3") && e.contains("'b'") && e.contains("--drop b"),
            "{e}"
        );
        let p = write(dir.path(), "u.csv", "a,b,t\n1,2,0\n3,x,1\n5,6,0\n7,8,1\n");
        let e = read_csv(&p, "t", &[], None).unwrap_err().to_string();
        assert!(e.contains("row 3") && e.contains("'x'"), "{e}");
        assert!(read_csv(&p, "nope", &[], None)
            .unwrap_err()
            .to_string()
            .contains("--target"));
    }

    #[test]
    fn split_is_stratified_and_scaling_uses_train_only() {
        let t = breast_cancer();
        assert_eq!((t.rows(), t.dims()), (569, 30));
        let (a, b) = split(&t, 0.2, 1).unwrap();
        assert_eq!(a.rows() + b.rows(), 569);
        let frac = |t: &Table| t.y.iter().filter(|&&v| v == 0.0).count() as f64 / t.rows() as f64;
        assert!((frac(&a) - frac(&b)).abs() < 0.02);
        let s = Scaler::fit(Scaling::Standard, &a);
        let sa = s.apply(&a);
        let mean0: f32 = (0..sa.rows()).map(|i| sa.row(i)[0]).sum::<f32>() / sa.rows() as f32;
        assert!(mean0.abs() < 1e-4);
        let m = Scaler::fit(Scaling::Minmax, &a).apply(&a);
        assert!(m.x.iter().all(|&v| (-1e-6..=1.0 + 1e-6).contains(&v)));
    }
}
