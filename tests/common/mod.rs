//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::Tensor;

/// `../shared/fixtures` beside the checkout (CI clones with `../shared` next to it).
pub fn fixtures() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    assert!(
        p.is_dir(),
        "golden fixtures not found at {}: the tests need ../shared beside the checkout",
        p.display()
    );
    p
}

/// `../shared/data/catdog-sample` (real photos), if present.
pub fn sample_data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/catdog-sample");
    p.is_dir().then_some(p)
}

/// Runs the catdog binary with an isolated Hugging Face cache and no network access to the hub.
pub fn catdog(args: &[&str], hf_home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_catdog"))
        .args(args)
        .env("HF_HOME", hf_home)
        .env_remove("HF_HUB_CACHE")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("CATDOG_HUB_TIMEOUT", "5")
        .output()
        .expect("the catdog binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// max |a − b| / max |b|.
pub fn rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Writes a small PNG or JPEG of one colour with a few bars (so that it is not uniform).
pub fn write_image(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        if (x / 4 + y / 5) % 3 == 0 {
            image::Rgb([rgb[0] / 2, rgb[1] / 2, rgb[2] / 2])
        } else {
            image::Rgb(rgb)
        }
    });
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    img.save(path).unwrap();
}
