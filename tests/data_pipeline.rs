//! Folders, decoding, bad files, the loader's determinism, and the data/augment commands.

mod common;

use std::path::Path;

use catdog::data::augment::AugmentConfig;
use catdog::data::decode::{decode_rgb, DecodeLimits};
use catdog::data::folder::{resolve_splits, walk_images, ImageFolder};
use catdog::data::loader::{Loader, LoaderConfig};
use catdog::data::preprocess::Preprocess;
use common::{add_bad_files, catdog, make_dataset, stderr, stdout, write_image};

fn assets() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/assets")
}

#[test]
fn classes_are_sorted_subfolders_and_files_walk_in_keras_order() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    write_image(&r.join("dogs/b.PNG"), 8, 8, [1, 2, 3]);
    write_image(&r.join("dogs/a.jpeg"), 8, 8, [1, 2, 3]);
    write_image(&r.join("dogs/sub/c.png"), 8, 8, [1, 2, 3]);
    write_image(&r.join("cats/z.bmp"), 8, 8, [1, 2, 3]);
    write_image(&r.join("cats/y.tiff"), 8, 8, [1, 2, 3]);
    std::fs::write(r.join("cats/Thumbs.db"), b"x").unwrap();
    let f = ImageFolder::scan(r).unwrap();
    assert_eq!(f.classes, ["cats", "dogs"]);
    let names: Vec<String> = f
        .samples
        .iter()
        .map(|s| s.path.strip_prefix(r).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "cats/y.tiff",
            "cats/z.bmp",
            "dogs/a.jpeg",
            "dogs/b.PNG",
            "dogs/sub/c.png"
        ]
    );
    assert_eq!(f.samples.iter().map(|s| s.label).collect::<Vec<_>>(), [0, 0, 1, 1, 1]);
    assert_eq!(f.skipped.len(), 1);
    let (imgs, _) = walk_images(&r.join("dogs")).unwrap();
    assert_eq!(imgs.len(), 3);
}

#[test]
fn empty_class_single_class_and_no_images_are_clear_errors_naming_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    let e = ImageFolder::scan(r).unwrap_err().to_string();
    assert!(
        e.contains("no class sub-folders") && e.contains(&r.display().to_string()),
        "{e}"
    );
    write_image(&r.join("cats/a.png"), 8, 8, [1, 2, 3]);
    let e = ImageFolder::scan(r).unwrap_err().to_string();
    assert!(e.contains("one class") && e.contains("cats"), "{e}");
    std::fs::create_dir_all(r.join("dogs")).unwrap();
    std::fs::write(r.join("dogs/readme.txt"), b"x").unwrap();
    let e = ImageFolder::scan(r).unwrap_err().to_string();
    assert!(e.contains("dogs") && e.contains("no images"), "{e}");
}

#[test]
fn val_split_is_stratified_and_seeded_and_the_course_layout_uses_test_as_validation() {
    let tmp = tempfile::tempdir().unwrap();
    make_dataset(tmp.path(), 10, 1);
    let s = resolve_splits(tmp.path(), Some(0.2), 7).unwrap();
    let val = s.val.unwrap();
    assert_eq!(val.class_counts(), [2, 2]);
    assert_eq!(s.train.class_counts(), [8, 8]);
    let again = resolve_splits(tmp.path(), Some(0.2), 7).unwrap().val.unwrap();
    assert_eq!(val.samples, again.samples);
    let other = resolve_splits(tmp.path(), Some(0.2), 8).unwrap().val.unwrap();
    assert_ne!(val.samples, other.samples);

    let course = tempfile::tempdir().unwrap();
    make_dataset(&course.path().join("train"), 6, 2);
    make_dataset(&course.path().join("test"), 3, 3);
    let s = resolve_splits(course.path(), None, 0).unwrap();
    assert_eq!(s.train.samples.len(), 12);
    assert_eq!(s.val.as_ref().unwrap().samples.len(), 6);
    assert!(s.val_source.contains("test"));
}

#[test]
fn every_colour_layout_decodes_to_rgb() {
    let tmp = tempfile::tempdir().unwrap();
    let l = DecodeLimits::default();
    for name in ["cmyk.jpg", "palette.png", "gray_alpha.png"] {
        let img = decode_rgb(&assets().join(name), &l).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((img.width(), img.height()), (12, 10), "{name}");
    }
    // The CMYK JPEG keeps its two colour halves apart after conversion.
    let cmyk = decode_rgb(&assets().join("cmyk.jpg"), &l).unwrap();
    assert!(cmyk.get_pixel(1, 5)[0] > cmyk.get_pixel(10, 5)[0] + 100);
    let gray16 = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(5, 4, |x, _| image::Luma([x as u16 * 9000]));
    gray16.save(tmp.path().join("g16.png")).unwrap();
    let rgba = image::RgbaImage::from_fn(5, 4, |_, _| image::Rgba([10, 20, 30, 0]));
    rgba.save(tmp.path().join("rgba.png")).unwrap();
    let rgb16 = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(5, 4, |_, _| image::Rgb([65535, 0, 32768]));
    rgb16.save(tmp.path().join("rgb16.tiff")).unwrap();
    for (name, px) in [
        ("g16.png", None),
        ("rgba.png", Some([10u8, 20, 30])),
        ("rgb16.tiff", Some([255, 0, 128])),
    ] {
        let img = decode_rgb(&tmp.path().join(name), &l).unwrap();
        assert_eq!((img.width(), img.height()), (5, 4));
        if let Some(p) = px {
            assert_eq!(img.get_pixel(0, 0).0, p, "{name}");
        }
    }
}

#[test]
fn each_kind_of_bad_file_has_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    add_bad_files(tmp.path());
    let l = DecodeLimits::default();
    let reason = |n: &str| decode_rgb(&tmp.path().join(n), &l).unwrap_err().to_string();
    assert!(reason("zero.jpg").contains("empty file"));
    assert!(reason("truncated.jpg").contains("corrupt or truncated"));
    assert!(reason("notimage.png").contains("not an image"));
    assert!(reason("unsupported.jpg").contains("unsupported image format"));
    assert!(reason("huge.png").contains("decoding limit"));
}

fn mixed_folder(root: &Path) -> Vec<&'static str> {
    make_dataset(root, 6, 3);
    add_bad_files(&root.join("dogs"))
}

#[test]
fn data_check_reports_each_bad_file_and_strict_sets_the_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let bad = mixed_folder(&data);
    let o = catdog(&["data", "check", data.to_str().unwrap(), "--json"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["bad"], 5);
    assert_eq!(j["images"], 17);
    let listed = j["splits"][0]["classes"][1]["bad"].to_string();
    for b in &bad {
        assert!(listed.contains(b), "{b} not reported: {listed}");
    }
    let o = catdog(&["data", "check", data.to_str().unwrap(), "--strict"], tmp.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("truncated.jpg"));
}

#[test]
fn the_loader_skips_and_reports_bad_files_without_panicking() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = mixed_folder(tmp.path());
    let f = ImageFolder::scan(tmp.path()).unwrap();
    let mut cfg = LoaderConfig::new(4, 32, Preprocess::imagenet());
    cfg.augment = Some(AugmentConfig::course());
    cfg.shuffle = true;
    let loader = Loader::new(f.samples, cfg).unwrap();
    let seen: usize = loader.epoch(0).map(|b| b.unwrap().labels.len()).sum();
    assert_eq!(seen, 12);
    let reported = loader.bad_files();
    assert_eq!(reported.len(), bad.len());
    for b in bad {
        assert!(reported.iter().any(|(p, _)| p.ends_with(b)));
    }
    // Known-bad files are left out of later epochs.
    assert_eq!(loader.batches_per_epoch(), 3);
    let mut strict = loader.config().clone();
    strict.strict = true;
    let f = ImageFolder::scan(tmp.path()).unwrap();
    let l2 = Loader::new(f.samples, strict).unwrap();
    assert!(l2.epoch(0).any(|b| b.is_err()));
}

fn batches_with_threads(threads: usize, loader: &Loader) -> Vec<(Vec<u32>, Vec<f32>)> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut out = Vec::new();
        for epoch in 0..2 {
            let order = loader.order(epoch);
            for chunk in order.chunks(loader.config().batch_size) {
                let b = loader.make_batch(chunk, epoch).unwrap().unwrap();
                out.push((b.labels, b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap()));
            }
        }
        out
    })
}

#[test]
fn the_loader_is_deterministic_under_a_seed_with_one_and_two_threads() {
    let tmp = tempfile::tempdir().unwrap();
    make_dataset(tmp.path(), 9, 5);
    let f = ImageFolder::scan(tmp.path()).unwrap();
    let mut cfg = LoaderConfig::new(5, 40, Preprocess::imagenet());
    cfg.augment = Some(AugmentConfig {
        rotation: 20.0,
        shear: 10.0,
        zoom: (0.8, 1.2),
        width_shift: 0.1,
        horizontal_flip: true,
        ..Default::default()
    });
    cfg.shuffle = true;
    cfg.seed = 42;
    let loader = Loader::new(f.samples.clone(), cfg.clone()).unwrap();
    let one = batches_with_threads(1, &loader);
    let two = batches_with_threads(2, &Loader::new(f.samples.clone(), cfg.clone()).unwrap());
    assert_eq!(one.len(), 8);
    assert!(one == two, "batches differ between 1 and 2 threads");
    // The background iterator gives the same batches, and the last partial batch is kept.
    let bg: Vec<(Vec<u32>, Vec<f32>)> = (0..2)
        .flat_map(|e| loader.epoch(e).map(|b| b.unwrap()).collect::<Vec<_>>())
        .map(|b| (b.labels, b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    assert!(bg == one);
    assert_eq!(one[3].0.len(), 3);
    // Epochs differ, another seed differs.
    assert_ne!(one[0].1, one[4].1);
    cfg.seed = 43;
    let other = batches_with_threads(2, &Loader::new(f.samples, cfg).unwrap());
    assert_ne!(one[0].1, other[0].1);
}

#[test]
fn the_image_cache_serves_later_epochs_within_its_budget() {
    let tmp = tempfile::tempdir().unwrap();
    make_dataset(tmp.path(), 4, 6);
    let f = ImageFolder::scan(tmp.path()).unwrap();
    let files: Vec<std::path::PathBuf> = f.samples.iter().map(|s| s.path.clone()).collect();
    let mut cfg = LoaderConfig::new(3, 20, Preprocess::imagenet());
    cfg.cache_bytes = 5 * 20 * 20 * 3;
    let loader = Loader::new(f.samples, cfg).unwrap();
    let per_image = |epoch: usize| -> Vec<Vec<f32>> {
        loader
            .epoch(epoch)
            .flat_map(|b| {
                let v = b.unwrap().images.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                v.chunks(3 * 20 * 20).map(|c| c.to_vec()).collect::<Vec<_>>()
            })
            .collect()
    };
    let first = per_image(0);
    assert_eq!(loader.cached_bytes(), 5 * 1200);
    // Every file changes on disk after the first epoch: only the images served from the cache keep their pixels.
    for path in &files {
        write_image(path, 30, 30, [10, 200, 10]);
    }
    let second = per_image(1);
    assert_eq!(first.len(), second.len());
    let same = first.iter().zip(&second).filter(|(a, b)| a == b).count();
    assert_eq!(same, 5, "5 images fit the cache budget; {same} came back unchanged");
}

#[test]
fn preview_and_apply_write_pngs_and_accept_negative_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    mixed_folder(&data);
    let out = tmp.path().join("grid.png");
    let o = catdog(
        &[
            "augment",
            "preview",
            "--data",
            data.to_str().unwrap(),
            "--augment",
            "--n",
            "3",
            "--samples",
            "4",
            "--size",
            "48",
            "--out",
            out.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let grid = image::open(&out).unwrap();
    assert!(grid.width() > 4 * 48 && grid.height() > 4 * 48);

    // Bad sources given by name are reported, not fatal.
    let o = catdog(
        &[
            "augment",
            "preview",
            "--image",
            data.join("cats/cats.000.png").to_str().unwrap(),
            data.join("dogs/truncated.jpg").to_str().unwrap(),
            "--n",
            "2",
            "--shear",
            "-7.5",
            "--out",
            out.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("truncated.jpg"));

    // `augment apply` reproduces the Keras fixture case with a shift (img0.case9: shift 3 rows down, 5 cols left).
    let fx = common::fixtures().join("augment");
    let applied = tmp.path().join("applied.png");
    let o = catdog(
        &[
            "augment",
            "apply",
            "--image",
            fx.join("img0.png").to_str().unwrap(),
            "--shift",
            "3,-5",
            "--out",
            applied.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let got = image::open(&applied).unwrap().to_rgb8();
    let (t, _) = catdog::model::weights::read_safetensors(&fx.join("augment.safetensors")).unwrap();
    let want = t["img0.case9"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (a, b) in got.as_raw().iter().zip(&want) {
        assert!((*a as f32 - b).abs() <= 0.51, "{a} vs {b}");
    }
    let o = catdog(
        &[
            "augment",
            "apply",
            "--image",
            fx.join("img0.png").to_str().unwrap(),
            "--shear",
            "-7.5",
            "--shift",
            "-4,6",
            "--rotation",
            "-10",
            "--out",
            applied.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A JPEG of noise (so that its scan data is long) as bytes.
fn noisy_jpeg(w: u32, h: u32) -> Vec<u8> {
    let mut s = 12345u32;
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
        image::Rgb([(s >> 16) as u8, (s >> 8) as u8, (s >> 24) as u8])
    });
    let mut jpg = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut jpg), image::ImageFormat::Jpeg)
        .unwrap();
    jpg
}

#[test]
fn a_jpeg_cut_short_in_its_scan_data_is_a_bad_file_as_in_pil() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_dataset(&data, 3, 1);
    let full = noisy_jpeg(120, 90);
    let cut = &full[..full.len() * 7 / 10];
    // The decoder alone fills the missing rows with grey and reports success: the check must be ours.
    assert!(image::load_from_memory(cut).is_ok());
    std::fs::write(data.join("cats/cut.jpg"), cut).unwrap();
    // Complete files stay good, also with bytes after the end marker (some cameras append data).
    let mut trailing = full.clone();
    trailing.extend_from_slice(b"trailing data after EOI");
    std::fs::write(data.join("cats/trailing.jpg"), &trailing).unwrap();
    let l = DecodeLimits::default();
    let reason = decode_rgb(&data.join("cats/cut.jpg"), &l).unwrap_err().to_string();
    assert!(reason.contains("truncated"), "{reason}");
    decode_rgb(&data.join("cats/trailing.jpg"), &l).unwrap();
    let o = catdog(&["data", "check", data.to_str().unwrap(), "--json"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["bad"], 1, "{j}");
    assert!(j.to_string().contains("cut.jpg"), "{j}");
    let o = catdog(&["data", "check", data.to_str().unwrap(), "--strict"], tmp.path());
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn without_a_terminal_progress_comes_as_plain_lines_and_quiet_silences_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_dataset(&data, 10, 8);
    let out = tmp.path().join("f.safetensors");
    let run = |quiet: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_catdog"));
        c.args([
            "extract",
            "--weights",
            "random:4,4,4,4,4",
            "--size",
            "32",
            "--batch-size",
            "2",
        ])
        .args(["--layer", "block5_pool", "--out"])
        .arg(&out)
        .arg(&data)
        .env("HF_HOME", tmp.path())
        // Every 10% without waiting, so that a test-sized job shows its lines.
        .env("CATDOG_PROGRESS_SECS", "0");
        if quiet {
            c.arg("--quiet");
        }
        c.output().unwrap()
    };
    // The test's stderr is a pipe, as in a notebook: no bar can draw there.
    let o = run(false);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("extract: ")).collect();
    assert!(lines.len() >= 5, "{e}");
    assert!(lines.iter().any(|l| l.contains("/20 (50%)")), "{e}");
    assert!(lines.last().unwrap().contains("done, 20 images in"), "{e}");
    let o = run(true);
    assert!(!stderr(&o).contains("extract: "), "{}", stderr(&o));
}
