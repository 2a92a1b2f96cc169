//! On-the-fly augmentation with Keras `ImageDataGenerator` semantics.
//!
//! Applied to the resized 0–255 float image (HWC, RGB), in Keras' order: affine warp (rotation, shift, shear, zoom,
//! bilinear sampling, fill mode) → channel shift → flips → brightness. Rescaling and normalisation come after, in
//! [`super::preprocess`].
//!
//! The warp maps each output pixel back to an input position about the centre `c = ((h−1)/2, (w−1)/2)`; with
//! rotation θ, shear s, zoom (zx, zy) and Keras' shift (tx on columns, ty on rows), in (row, col):
//!
//! ```text
//! row_in − c_r = zy·cos(θ+s)·Δr + zx·sin θ·Δc + (sin θ·tx + cos θ·ty)
//! col_in − c_c = −zy·sin(θ+s)·Δr + zx·cos θ·Δc + (cos θ·tx − sin θ·ty)
//! ```
//!
//! which is Keras' `Rot(θ)·T(tx, ty)·Shear(s)·Zoom(zx, zy)` with its x/y swap. A zoom factor above 1 zooms out.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What to do with samples that fall outside the input (scipy.ndimage names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FillMode {
    /// Repeat the edge pixel (Keras' default).
    #[default]
    Nearest,
    /// `cval` for any sample outside the image.
    Constant,
    /// Mirror about the edge, edge pixel repeated (d c b a | a b c d | d c b a).
    Reflect,
    /// Wrap around to the opposite edge (scipy's `wrap`: period size − 1).
    Wrap,
}

/// Random augmentation ranges (Keras `ImageDataGenerator` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Rotation drawn from U(−r, r), degrees.
    pub rotation: f64,
    /// Column shift: a fraction of the width if < 1, else pixels; drawn from U(−s, s).
    pub width_shift: f64,
    /// Row shift: a fraction of the height if < 1, else pixels; drawn from U(−s, s).
    pub height_shift: f64,
    /// Shear angle drawn from U(−s, s), degrees (Keras' `shear_range` is in degrees).
    pub shear: f64,
    /// zx and zy drawn independently from U(lo, hi).
    pub zoom: (f64, f64),
    pub horizontal_flip: bool,
    pub vertical_flip: bool,
    /// Brightness factor drawn from U(lo, hi) (1 = unchanged).
    pub brightness: Option<(f64, f64)>,
    /// Channel shift drawn from U(−s, s), added to every channel (0–255 scale).
    pub channel_shift: f64,
    pub fill_mode: FillMode,
    /// Fill value for `constant`, 0–255 scale.
    pub cval: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            rotation: 0.0,
            width_shift: 0.0,
            height_shift: 0.0,
            shear: 0.0,
            zoom: (1.0, 1.0),
            horizontal_flip: false,
            vertical_flip: false,
            brightness: None,
            channel_shift: 0.0,
            fill_mode: FillMode::Nearest,
            cval: 0.0,
        }
    }
}

impl AugmentConfig {
    /// The course's set (`--augment`): shear 0.2°, zoom 0.2, horizontal flip — Keras `ImageDataGenerator(
    /// shear_range=0.2, zoom_range=0.2, horizontal_flip=True)`. Note that Keras reads the shear in degrees, so
    /// 0.2 is almost no shear at all.
    pub fn course() -> Self {
        AugmentConfig {
            shear: 0.2,
            zoom: (0.8, 1.2),
            horizontal_flip: true,
            ..Default::default()
        }
    }

    /// True when no parameter can change an image.
    pub fn is_identity(&self) -> bool {
        self.rotation == 0.0
            && self.width_shift == 0.0
            && self.height_shift == 0.0
            && self.shear == 0.0
            && self.zoom == (1.0, 1.0)
            && !self.horizontal_flip
            && !self.vertical_flip
            && self.brightness.is_none()
            && self.channel_shift == 0.0
    }

    /// Checks the ranges; the message names the flag.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        for (name, v) in [
            ("--rotation", self.rotation),
            ("--width-shift", self.width_shift),
            ("--height-shift", self.height_shift),
            ("--shear", self.shear),
            ("--channel-shift", self.channel_shift),
        ] {
            if !v.is_finite() {
                return bad(format!("{name} must be a finite number, got {v}"));
            }
        }
        if !(self.zoom.0 > 0.0 && self.zoom.1 >= self.zoom.0 && self.zoom.1.is_finite()) {
            return bad(format!(
                "--zoom: the range {:?} must satisfy 0 < lo ≤ hi (give Z for [1−Z, 1+Z] with Z < 1, or LO,HI)",
                self.zoom
            ));
        }
        if let Some((lo, hi)) = self.brightness {
            if !(lo >= 0.0 && hi >= lo && hi.is_finite()) {
                return bad(format!("--brightness: the range {lo},{hi} must satisfy 0 ≤ lo ≤ hi"));
            }
        }
        if !(0.0..=255.0).contains(&self.cval) {
            return bad(format!("--cval must be on the 0–255 scale, got {}", self.cval));
        }
        Ok(())
    }

    /// Draws one transform for an `h × w` image, in Keras' order of draws.
    pub fn sample<R: Rng>(&self, rng: &mut R, h: usize, w: usize) -> Transform {
        let sym = |rng: &mut R, r: f64| if r > 0.0 { rng.random_range(-r..=r) } else { 0.0 };
        let rotation = sym(rng, self.rotation.abs());
        let scale = |r: f64, size: usize| if r.abs() < 1.0 { size as f64 } else { 1.0 };
        let shift_rows = sym(rng, self.height_shift.abs()) * scale(self.height_shift, h);
        let shift_cols = sym(rng, self.width_shift.abs()) * scale(self.width_shift, w);
        let shear = sym(rng, self.shear.abs());
        let (zx, zy) = if self.zoom == (1.0, 1.0) {
            (1.0, 1.0)
        } else {
            let d = |rng: &mut R| {
                if self.zoom.1 > self.zoom.0 {
                    rng.random_range(self.zoom.0..self.zoom.1)
                } else {
                    self.zoom.0
                }
            };
            let zx = d(rng);
            (zx, d(rng))
        };
        let flip_horizontal = self.horizontal_flip && rng.random::<f64>() < 0.5;
        let flip_vertical = self.vertical_flip && rng.random::<f64>() < 0.5;
        let channel_shift = (self.channel_shift != 0.0).then(|| sym(rng, self.channel_shift.abs()));
        let brightness = self
            .brightness
            .map(|(lo, hi)| if hi > lo { rng.random_range(lo..hi) } else { lo });
        Transform {
            rotation,
            shift_rows,
            shift_cols,
            shear,
            zx,
            zy,
            flip_horizontal,
            flip_vertical,
            channel_shift,
            brightness,
            fill_mode: self.fill_mode,
            cval: self.cval,
        }
    }
}

/// One concrete transform (the deterministic form used by `catdog augment apply`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Transform {
    /// Degrees; positive turns the content counter-clockwise.
    pub rotation: f64,
    /// Content displacement in pixels: positive moves it down.
    pub shift_rows: f64,
    /// Content displacement in pixels: positive moves it right.
    pub shift_cols: f64,
    /// Degrees.
    pub shear: f64,
    pub zx: f64,
    pub zy: f64,
    pub flip_horizontal: bool,
    pub flip_vertical: bool,
    pub channel_shift: Option<f64>,
    pub brightness: Option<f64>,
    pub fill_mode: FillMode,
    pub cval: f32,
}

impl Default for Transform {
    fn default() -> Self {
        Transform {
            rotation: 0.0,
            shift_rows: 0.0,
            shift_cols: 0.0,
            shear: 0.0,
            zx: 1.0,
            zy: 1.0,
            flip_horizontal: false,
            flip_vertical: false,
            channel_shift: None,
            brightness: None,
            fill_mode: FillMode::Nearest,
            cval: 0.0,
        }
    }
}

impl Transform {
    fn has_affine(&self) -> bool {
        self.rotation != 0.0
            || self.shift_rows != 0.0
            || self.shift_cols != 0.0
            || self.shear != 0.0
            || self.zx != 1.0
            || self.zy != 1.0
    }

    /// A compact description for preview labels, e.g. `shear 0.13° zoom 0.91,1.07 flip`.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if self.rotation != 0.0 {
            parts.push(format!("rot {:.1}°", self.rotation));
        }
        if self.shift_rows != 0.0 || self.shift_cols != 0.0 {
            parts.push(format!("shift {:.1},{:.1}", self.shift_rows, self.shift_cols));
        }
        if self.shear != 0.0 {
            parts.push(format!("shear {:.2}°", self.shear));
        }
        if self.zx != 1.0 || self.zy != 1.0 {
            parts.push(format!("zoom {:.2},{:.2}", self.zx, self.zy));
        }
        if self.flip_horizontal {
            parts.push("hflip".into());
        }
        if self.flip_vertical {
            parts.push("vflip".into());
        }
        if let Some(c) = self.channel_shift {
            parts.push(format!("chan {c:+.1}"));
        }
        if let Some(b) = self.brightness {
            parts.push(format!("bright {b:.2}"));
        }
        if parts.is_empty() {
            "identity".into()
        } else {
            parts.join(" ")
        }
    }

    /// Applies the transform to an HWC RGB image on the 0–255 scale; `out` has the same size.
    pub fn apply(&self, img: &[f32], h: usize, w: usize, out: &mut [f32]) {
        assert_eq!(img.len(), h * w * 3);
        assert_eq!(out.len(), h * w * 3);
        if self.has_affine() {
            self.warp(img, h, w, out);
        } else {
            out.copy_from_slice(img);
        }
        if let Some(shift) = self.channel_shift {
            let (lo, hi) = out
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            for v in out.iter_mut() {
                *v = (*v + shift as f32).clamp(lo, hi);
            }
        }
        if self.flip_horizontal {
            for row in out.chunks_exact_mut(w * 3) {
                for x in 0..w / 2 {
                    for c in 0..3 {
                        row.swap(x * 3 + c, (w - 1 - x) * 3 + c);
                    }
                }
            }
        }
        if self.flip_vertical {
            for y in 0..h / 2 {
                let (top, bottom) = out.split_at_mut((h - 1 - y) * w * 3);
                top[y * w * 3..(y + 1) * w * 3].swap_with_slice(&mut bottom[..w * 3]);
            }
        }
        if let Some(b) = self.brightness {
            // Keras goes through an 8-bit PIL image: truncate, scale, clip, truncate.
            for v in out.iter_mut() {
                let u = v.clamp(0.0, 255.0).trunc();
                *v = (u as f64 * b).clamp(0.0, 255.0).trunc() as f32;
            }
        }
    }

    /// The affine part: output (row, col) → input position, bilinear sampling with the fill mode.
    fn warp(&self, img: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let (th, sh) = (self.rotation.to_radians(), self.shear.to_radians());
        // Keras' shift arguments: tx acts on columns, ty on rows; a content displacement is their negative.
        let (tx, ty) = (-self.shift_cols, -self.shift_rows);
        let (a_rr, a_rc) = (self.zy * (th + sh).cos(), self.zx * th.sin());
        let (a_cr, a_cc) = (-self.zy * (th + sh).sin(), self.zx * th.cos());
        let (b_r, b_c) = (th.sin() * tx + th.cos() * ty, th.cos() * tx - th.sin() * ty);
        let (cr, cc) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
        for r in 0..h {
            let dr = r as f64 - cr;
            // Input position of column 0 of this row; each step right adds (a_rc, a_cc).
            let r_base = a_rr * dr - a_rc * cc + b_r + cr;
            let c_base = a_cr * dr - a_cc * cc + b_c + cc;
            for c in 0..w {
                let ri = r_base + a_rc * c as f64;
                let ci = c_base + a_cc * c as f64;
                let px = &mut out[(r * w + c) * 3..(r * w + c) * 3 + 3];
                let (rf, cf) = (ri.floor(), ci.floor());
                // Fast path: all four neighbours inside the image.
                if rf >= 0.0 && cf >= 0.0 && rf + 1.0 <= (h - 1) as f64 && cf + 1.0 <= (w - 1) as f64 {
                    let (y, x) = (rf as usize, cf as usize);
                    let (fr, fc) = ((ri - rf) as f32, (ci - cf) as f32);
                    let p00 = &img[(y * w + x) * 3..(y * w + x) * 3 + 6];
                    let p10 = &img[((y + 1) * w + x) * 3..((y + 1) * w + x) * 3 + 6];
                    let (w00, w01, w10, w11) = ((1.0 - fr) * (1.0 - fc), (1.0 - fr) * fc, fr * (1.0 - fc), fr * fc);
                    for k in 0..3 {
                        px[k] = w00 * p00[k] + w01 * p00[k + 3] + w10 * p10[k] + w11 * p10[k + 3];
                    }
                } else {
                    sample_bilinear(img, h, w, ri, ci, self.fill_mode, self.cval, px);
                }
            }
        }
    }
}

/// Index of integer position `i` in an axis of length `n` under the fill mode; `None` means "use cval".
#[inline]
fn map_index(i: i64, n: usize, mode: FillMode) -> Option<usize> {
    let n = n as i64;
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    Some(match mode {
        FillMode::Nearest => i.clamp(0, n - 1) as usize,
        FillMode::Constant => return None,
        FillMode::Reflect => {
            let p = 2 * n;
            let m = i.rem_euclid(p);
            (if m < n { m } else { p - 1 - m }) as usize
        }
        FillMode::Wrap => {
            if n <= 1 {
                0
            } else {
                i.rem_euclid(n - 1) as usize
            }
        }
    })
}

#[allow(clippy::too_many_arguments)]
#[inline]
fn sample_bilinear(img: &[f32], h: usize, w: usize, r: f64, c: f64, mode: FillMode, cval: f32, px: &mut [f32]) {
    let (mut r, mut c) = (r, c);
    match mode {
        // scipy's `constant`: any position outside [0, n−1] is cval, no blending at the border.
        FillMode::Constant if r < 0.0 || c < 0.0 || r > (h - 1) as f64 || c > (w - 1) as f64 => {
            px.fill(cval);
            return;
        }
        FillMode::Wrap => {
            // scipy maps the coordinate itself with period n − 1.
            let wrap = |v: f64, n: usize| {
                let p = (n as f64 - 1.0).max(1.0);
                if v < 0.0 || v > n as f64 - 1.0 {
                    v.rem_euclid(p)
                } else {
                    v
                }
            };
            r = wrap(r, h);
            c = wrap(c, w);
        }
        _ => {}
    }
    let (r0, c0) = (r.floor(), c.floor());
    let (fr, fc) = ((r - r0) as f32, (c - c0) as f32);
    let (r0, c0) = (r0 as i64, c0 as i64);
    let rows = [map_index(r0, h, mode), map_index(r0 + 1, h, mode)];
    let cols = [map_index(c0, w, mode), map_index(c0 + 1, w, mode)];
    let wr = [1.0 - fr, fr];
    let wc = [1.0 - fc, fc];
    let mut acc = [0f32; 3];
    for (ri, row) in rows.iter().enumerate() {
        for (ci, col) in cols.iter().enumerate() {
            let wgt = wr[ri] * wc[ci];
            if wgt == 0.0 {
                continue;
            }
            match (row, col) {
                (Some(y), Some(x)) => {
                    let p = &img[(y * w + x) * 3..(y * w + x) * 3 + 3];
                    for k in 0..3 {
                        acc[k] += wgt * p[k];
                    }
                }
                _ => {
                    for a in acc.iter_mut() {
                        *a += wgt * cval;
                    }
                }
            }
        }
    }
    px.copy_from_slice(&acc);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(h: usize, w: usize) -> Vec<f32> {
        (0..h * w * 3).map(|i| (i % 251) as f32).collect()
    }

    #[test]
    fn identity_is_exact() {
        let img = ramp(5, 7);
        let mut out = vec![0.0; img.len()];
        Transform::default().apply(&img, 5, 7, &mut out);
        assert_eq!(img, out);
    }

    #[test]
    fn shift_moves_content_down_and_right() {
        let (h, w) = (6, 6);
        let img = ramp(h, w);
        let mut out = vec![0.0; img.len()];
        let t = Transform {
            shift_rows: 2.0,
            shift_cols: 1.0,
            fill_mode: FillMode::Constant,
            ..Default::default()
        };
        t.apply(&img, h, w, &mut out);
        // Output (3, 4) shows input (1, 3).
        assert_eq!(
            &out[(3 * w + 4) * 3..(3 * w + 4) * 3 + 3],
            &img[(w + 3) * 3..(w + 3) * 3 + 3]
        );
        assert_eq!(&out[0..3], &[0.0, 0.0, 0.0]);
    }

    #[test]
    fn flips_reverse_columns_and_rows() {
        let (h, w) = (3, 4);
        let img = ramp(h, w);
        let mut out = vec![0.0; img.len()];
        Transform {
            flip_horizontal: true,
            flip_vertical: true,
            ..Default::default()
        }
        .apply(&img, h, w, &mut out);
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    assert_eq!(out[(y * w + x) * 3 + c], img[((h - 1 - y) * w + (w - 1 - x)) * 3 + c]);
                }
            }
        }
    }

    #[test]
    fn reflect_index_is_half_sample_symmetric() {
        let m: Vec<usize> = (-4..8).map(|i| map_index(i, 4, FillMode::Reflect).unwrap()).collect();
        assert_eq!(m, vec![3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0]);
    }

    #[test]
    fn sampling_is_reproducible_and_within_ranges() {
        use rand::SeedableRng;
        let cfg = AugmentConfig {
            rotation: 10.0,
            shear: 5.0,
            zoom: (0.8, 1.2),
            width_shift: 0.1,
            height_shift: 3.0,
            horizontal_flip: true,
            ..Default::default()
        };
        let a = cfg.sample(&mut rand::rngs::StdRng::seed_from_u64(4), 50, 60);
        let b = cfg.sample(&mut rand::rngs::StdRng::seed_from_u64(4), 50, 60);
        assert_eq!(a, b);
        for s in 0..200 {
            let t = cfg.sample(&mut rand::rngs::StdRng::seed_from_u64(s), 50, 60);
            assert!(t.rotation.abs() <= 10.0 && t.shear.abs() <= 5.0);
            assert!((0.8..1.2).contains(&t.zx) && (0.8..1.2).contains(&t.zy));
            assert!(t.shift_cols.abs() <= 6.0 && t.shift_rows.abs() <= 3.0);
        }
    }
}
