//! Grad-CAM pictures: the map upsampled bilinearly onto the (resized) input in a perceptual colour map (viridis),
//! a colour bar beside it, the class and probability under it; several images in one grid.

use image::{Rgb, RgbImage};

use crate::error::Result;
use crate::plot::{self, Cell};

/// Viridis at `t` in [0, 1] (Matt Zucker's polynomial fit of matplotlib's table).
pub fn viridis(t: f32) -> Rgb<u8> {
    const C: [[f32; 3]; 7] = [
        [0.277_727_33, 0.005_407_344_5, 0.334_099_8],
        [0.105_093_04, 1.404_613_5, 1.384_590_2],
        [-0.330_861_83, 0.214_847_56, 0.095_095_16],
        [-4.634_230_5, -5.799_101, -19.332_441],
        [6.228_27, 14.179_933, 56.690_55],
        [4.776_385, -13.745_145, -65.353_03],
        [-5.435_456, 4.645_852_6, 26.312_435],
    ];
    let t = t.clamp(0.0, 1.0);
    Rgb(std::array::from_fn(|k| {
        let v = C.iter().rev().fold(0.0, |acc, c| acc * t + c[k]);
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }))
}

/// `map` (H × W) resized to `size` × `size` bilinearly, sampling at pixel centres (as `tf.image.resize` and
/// PIL do when enlarging).
pub fn upsample(map: &[Vec<f32>], size: u32) -> Vec<f32> {
    let (h, w) = (map.len(), map.first().map_or(0, Vec::len));
    let at = |y: isize, x: isize| map[y.clamp(0, h as isize - 1) as usize][x.clamp(0, w as isize - 1) as usize];
    let mut out = Vec::with_capacity((size * size) as usize);
    for py in 0..size {
        let fy = ((py as f32 + 0.5) * h as f32 / size as f32 - 0.5).max(0.0);
        let (y0, ty) = (fy.floor() as isize, fy.fract());
        for px in 0..size {
            let fx = ((px as f32 + 0.5) * w as f32 / size as f32 - 0.5).max(0.0);
            let (x0, tx) = (fx.floor() as isize, fx.fract());
            let top = at(y0, x0) * (1.0 - tx) + at(y0, x0 + 1) * tx;
            let bottom = at(y0 + 1, x0) * (1.0 - tx) + at(y0 + 1, x0 + 1) * tx;
            out.push(top * (1.0 - ty) + bottom * ty);
        }
    }
    out
}

/// Width of the colour bar and the gap before it, in pixels.
const BAR: u32 = 10;
const GAP: u32 = 6;

/// The input with the map laid over it (half and half), and the colour bar (1 at the top, 0 at the bottom).
pub fn overlay(input: &RgbImage, map: &[Vec<f32>]) -> RgbImage {
    let size = input.width();
    let up = upsample(map, size);
    let mut out = RgbImage::from_pixel(size + GAP + BAR, size, Rgb([255, 255, 255]));
    for (x, y, p) in input.enumerate_pixels() {
        let c = viridis(up[(y * size + x) as usize]);
        out.put_pixel(
            x,
            y,
            Rgb(std::array::from_fn(|k| ((u16::from(p[k]) + u16::from(c[k])) / 2) as u8)),
        );
    }
    for y in 0..size {
        let c = viridis(1.0 - y as f32 / (size - 1).max(1) as f32);
        for x in 0..BAR {
            out.put_pixel(size + GAP + x, y, c);
        }
    }
    out
}

/// One picture per image (its caption: the file, the class and probability, the layer), in one grid of up to
/// `columns` per row.
pub fn grid(cells: Vec<(RgbImage, Vec<String>)>, columns: usize, title: &str) -> Result<RgbImage> {
    let cells: Vec<Cell> = cells
        .into_iter()
        .map(|(image, caption)| Cell { image, caption })
        .collect();
    let mut rows = Vec::new();
    let mut it = cells.into_iter().peekable();
    while it.peek().is_some() {
        rows.push(it.by_ref().take(columns.max(1)).collect());
    }
    plot::image_grid(&rows, Some(title))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_runs_from_dark_purple_to_yellow_and_upsampling_keeps_a_constant_map() {
        let (lo, hi) = (viridis(0.0), viridis(1.0));
        assert!(lo[2] > lo[1] && lo[0] < 90, "{lo:?}");
        assert!(hi[0] > 200 && hi[1] > 200 && hi[2] < 60, "{hi:?}");
        let flat = upsample(&vec![vec![0.25; 3]; 3], 10);
        assert!(flat.iter().all(|v| (v - 0.25).abs() < 1e-6));
        // A single bright cell of 2 × 2 spreads to its side of the picture, its corner pixel at full value.
        let up = upsample(&[vec![1.0, 0.0], vec![0.0, 0.0]], 8);
        assert_eq!(up[0], 1.0);
        assert!(up[63] < 1e-6 && up[3] > up[4]);
    }
}
