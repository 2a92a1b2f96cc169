//! Pixel parity with Keras' ImageDataGenerator geometry (tests/fixtures/augment).

mod common;

use catdog::data::augment::{FillMode, Transform};
use catdog::model::weights::read_safetensors;
use common::fixtures;

#[derive(serde::Deserialize)]
struct Case {
    key: String,
    image: String,
    shear_deg: f64,
    zx: f64,
    zy: f64,
    rotation_deg: f64,
    shift_rows: f64,
    shift_cols: f64,
    flip_horizontal: bool,
    fill_mode: String,
    cval: f32,
}

#[derive(serde::Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

fn transform(c: &Case) -> Transform {
    Transform {
        rotation: c.rotation_deg,
        shift_rows: c.shift_rows,
        shift_cols: c.shift_cols,
        shear: c.shear_deg,
        zx: c.zx,
        zy: c.zy,
        flip_horizontal: c.flip_horizontal,
        fill_mode: match c.fill_mode.as_str() {
            "nearest" => FillMode::Nearest,
            "constant" => FillMode::Constant,
            "reflect" => FillMode::Reflect,
            "wrap" => FillMode::Wrap,
            other => panic!("unknown fill mode {other}"),
        },
        cval: c.cval,
        ..Default::default()
    }
}

#[test]
fn every_keras_case_is_reproduced_within_0_01() {
    let dir = fixtures().join("augment");
    let cases: Cases = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let (t, _) = read_safetensors(&dir.join("augment.safetensors")).unwrap();
    assert!(cases.cases.len() >= 24);
    let mut worst = (0f32, String::new());
    for c in &cases.cases {
        let input = &t[&format!("{}.input", c.image)];
        let (h, w, _) = input.dims3().unwrap();
        let x = input.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let expected = t[&c.key].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut out = vec![0f32; x.len()];
        transform(c).apply(&x, h, w, &mut out);
        let err = out.iter().zip(&expected).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        if err > worst.0 {
            worst = (err, c.key.clone());
        }
        assert!(err < 0.01, "{}: max abs error {err} on the 0–255 scale", c.key);
    }
    eprintln!("worst case {} with {}", worst.1, worst.0);
}

#[test]
fn the_png_inputs_are_the_fixture_inputs() {
    // The PNGs decode to the same pixels the cases start from, so `augment apply` on them is the same path.
    let dir = fixtures().join("augment");
    let (t, _) = read_safetensors(&dir.join("augment.safetensors")).unwrap();
    for name in ["img0", "img1"] {
        let img = catdog::data::decode::decode_rgb(&dir.join(format!("{name}.png")), &Default::default()).unwrap();
        let px: Vec<f32> = img.as_raw().iter().map(|&v| v as f32).collect();
        assert_eq!(
            px,
            t[&format!("{name}.input")]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        );
    }
}
