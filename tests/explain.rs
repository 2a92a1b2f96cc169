//! `catdog explain`: Grad-CAM against PyTorch autograd on a committed fixture (`tests/fixtures/gradcam`, made by
//! `scripts/gradcam_torch.py`), on the fast kernels and the portable path; the overlays and their grid.

mod common;

use common::{catdog, fixtures, stderr, stdout};

fn explain(extra: &[&str]) -> std::process::Output {
    let dir = fixtures().join("gradcam");
    let ck = dir.join("checkpoint.safetensors");
    let image = dir.join("image.png");
    let mut args = vec![
        "explain",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--json",
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    args.push(image.to_str().unwrap());
    catdog(&args, &dir)
}

#[test]
fn grad_cam_matches_pytorch_autograd_on_both_kernel_paths() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("gradcam/expected.json")).unwrap()).unwrap();
    for kernels in ["fast", "portable"] {
        for case in expected["cases"].as_array().unwrap() {
            let layer = case["layer"].as_str().unwrap();
            let mut extra = vec!["--layer", layer, "--kernels", kernels];
            if let Some(c) = case["asked_class"].as_str() {
                extra.extend(["--class", c]);
            }
            let o = explain(&extra);
            assert!(o.status.success(), "{}", stderr(&o));
            let got: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
            assert_eq!(got["class"], case["class"], "{layer} {kernels}");
            assert_eq!(got["layer"], layer);
            let p = (got["probability"].as_f64().unwrap() - case["probability"].as_f64().unwrap()).abs();
            assert!(p < 1e-5, "{layer} {kernels}: probability {p}");
            let (a, b) = (got["cam"].as_array().unwrap(), case["cam"].as_array().unwrap());
            assert_eq!(a.len(), b.len(), "{layer}: rows");
            let mut worst = 0f64;
            for (ra, rb) in a.iter().zip(b) {
                for (x, y) in ra.as_array().unwrap().iter().zip(rb.as_array().unwrap()) {
                    worst = worst.max((x.as_f64().unwrap() - y.as_f64().unwrap()).abs());
                }
            }
            assert!(
                worst <= 1e-4,
                "{layer} {kernels} class {:?}: CAM differs by {worst}",
                case["asked_class"]
            );
        }
    }
}

#[test]
fn overlays_and_a_grid_are_written_and_a_wrong_class_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixtures().join("gradcam");
    let (ck, image) = (dir.join("checkpoint.safetensors"), dir.join("image.png"));
    let copy = tmp.path().join("second.png");
    std::fs::copy(&image, &copy).unwrap();
    let out = tmp.path().join("explain");
    let args = [
        "explain",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        image.to_str().unwrap(),
        copy.to_str().unwrap(),
    ];
    let o = catdog(&args, tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["image.png", "second.png", "grid.png"] {
        let png = std::fs::read(out.join(f)).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{f}");
    }
    let o = explain(&["--class", "foxes"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cats, dogs"), "{}", stderr(&o));
}

#[test]
fn evaluate_lays_grad_cam_over_the_misclassified_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixtures().join("gradcam");
    let data = tmp.path().join("data");
    // The same picture as a cat and as a dog: one of the two is misclassified whatever the model says.
    for class in ["cats", "dogs"] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        std::fs::copy(dir.join("image.png"), data.join(class).join("image.png")).unwrap();
    }
    let ck = dir.join("checkpoint.safetensors");
    let grid = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let mut args = vec![
            "evaluate",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ];
        args.extend([
            "--misclassified",
            out.to_str().unwrap(),
            "--quiet",
            "--precision",
            "fp32",
        ]);
        args.extend_from_slice(extra);
        let o = catdog(&args, tmp.path());
        assert!(o.status.success(), "{}", stderr(&o));
        image::open(&out).unwrap().to_rgb8()
    };
    let (plain, cam) = (grid("plain.png", &[]), grid("cam.png", &["--gradcam"]));
    // The overlay changes the picture's colours and adds its colour bar beside it: a run of 10 pixels of
    // viridis' top colour (the bar's first row) is in the Grad-CAM grid only.
    assert_ne!(cam.as_raw(), plain.as_raw());
    let top = catdog::explain::overlay::viridis(1.0);
    let bar = |img: &image::RgbImage| {
        img.rows().any(|row| {
            row.collect::<Vec<_>>()
                .windows(10)
                .any(|w| w.iter().all(|p| **p == top))
        })
    };
    assert!(bar(&cam) && !bar(&plain));
    let o = catdog(
        &["evaluate", "--checkpoint", ck.to_str().unwrap(), "--gradcam"],
        tmp.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "--gradcam without --misclassified: {}",
        stderr(&o)
    );
}
