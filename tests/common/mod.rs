//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod mock_hub;
pub mod protobuf;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::Tensor;

/// The golden fixtures shipped in `tests/fixtures` (see its README; `scripts/make_fixtures.py` regenerates them).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The five pooling layers, whose outputs the PyTorch fixture holds.
pub const POOLS: [&str; 5] = [
    "block1_pool",
    "block2_pool",
    "block3_pool",
    "block4_pool",
    "block5_pool",
];

/// A hub repository in the Hugging Face cache under `hf_home`, laid out as huggingface_hub does it:
/// `hub/<kind>s--org--name/refs/main` holding `commit`, and the returned snapshot folder
/// `snapshots/<commit>/` for the files. `kind` is "model" or "dataset".
pub fn cached_repo(hf_home: &Path, kind: &str, repo: &str, commit: &str) -> PathBuf {
    let dir = hf_home.join(format!("hub/{kind}s--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(dir.join("refs")).unwrap();
    std::fs::write(dir.join("refs/main"), commit).unwrap();
    let snapshot = dir.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    snapshot
}

/// The vgg_tiny fixture as the hub model `someone/tiny-vgg` (commit `0123…4567`) in the cache under `hf_home`;
/// returns its snapshot folder.
pub fn cached_tiny_vgg(hf_home: &Path) -> PathBuf {
    let snap = cached_repo(
        hf_home,
        "model",
        "someone/tiny-vgg",
        "0123456789abcdef0123456789abcdef01234567",
    );
    std::fs::copy(
        fixtures().join("vgg_tiny/weights.safetensors"),
        snap.join("model.safetensors"),
    )
    .unwrap();
    snap
}

/// Runs the catdog binary with an isolated Hugging Face cache and no network access to the hub.
pub fn catdog(args: &[&str], hf_home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_catdog"))
        .args(args)
        // On NVIDIA GPUs since Ampere, cuDNN runs fp32 convolutions in TF32 unless told not to (as PyTorch's and
        // Keras's defaults do, and catdog keeps): about 1e-3 apart from fp32, which broke the GPU-against-CPU
        // parity of a 3-epoch run (val_loss 1.8e-3 apart on an H200). The tests compare the arithmetic in fp32.
        .env("NVIDIA_TF32_OVERRIDE", "0")
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

/// A synthetic two-class data set that a small network separates easily: "cats" are warm with horizontal
/// stripes, "dogs" cool with vertical stripes; sizes and shades vary per image (seeded).
pub fn make_dataset(root: &Path, per_class: usize, seed: u64) {
    let mut s = seed.wrapping_mul(2862933555777941757).wrapping_add(3037000493);
    let mut next = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 33) as u32
    };
    for (class, warm) in [("cats", true), ("dogs", false)] {
        for i in 0..per_class {
            let (w, h) = (40 + next() % 40, 40 + next() % 40);
            let shade = (next() % 60) as u8;
            let period = 4 + next() % 4;
            let img = image::RgbImage::from_fn(w, h, |x, y| {
                let stripe = if warm {
                    (y / period) % 2 == 0
                } else {
                    (x / period) % 2 == 0
                };
                let base = if warm {
                    [200 - shade, 90, 40 + shade / 2]
                } else {
                    [40 + shade / 2, 90, 200 - shade]
                };
                if stripe {
                    image::Rgb(base)
                } else {
                    image::Rgb([base[0] / 3, base[1] / 3, base[2] / 3])
                }
            });
            let dir = root.join(class);
            std::fs::create_dir_all(&dir).unwrap();
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            img.save(dir.join(format!("{class}.{i:03}.{ext}"))).unwrap();
        }
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// Writes one file of each kind of bad image into `dir` and returns their names: zero bytes, truncated JPEG, not
/// an image, unsupported codec (GIF), over the pixel limit (a PNG header claiming 20000×20000). Also drops two
/// non-image files that must be skipped by extension.
pub fn add_bad_files(dir: &Path) -> Vec<&'static str> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("zero.jpg"), b"").unwrap();
    let mut jpg = Vec::new();
    image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 3, y as u8 * 3, 7]))
        .write_to(&mut std::io::Cursor::new(&mut jpg), image::ImageFormat::Jpeg)
        .unwrap();
    std::fs::write(dir.join("truncated.jpg"), &jpg[..jpg.len() / 3]).unwrap();
    std::fs::write(
        dir.join("notimage.png"),
        b"this is a text file that pretends to be a PNG",
    )
    .unwrap();
    let gif: &[u8] = &[
        0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 1, 0, 1, 0, 0x80, 0, 0, 0xff, 0xff, 0xff, 0, 0, 0, 0x21, 0xf9, 4, 1, 0, 0,
        0, 0, 0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3b,
    ];
    std::fs::write(dir.join("unsupported.jpg"), gif).unwrap();
    let mut png = Vec::new();
    image::RgbImage::new(1, 1)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png[16..20].copy_from_slice(&20000u32.to_be_bytes());
    png[20..24].copy_from_slice(&20000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(dir.join("huge.png"), &png).unwrap();
    std::fs::write(dir.join("Thumbs.db"), b"junk").unwrap();
    std::fs::write(dir.join("notes.txt"), b"junk").unwrap();
    vec![
        "zero.jpg",
        "truncated.jpg",
        "notimage.png",
        "unsupported.jpg",
        "huge.png",
    ]
}
