//! `--weights FILE.onnx`: a VGG16 conv base read from ONNX models laid out as tf2onnx (Keras) and torch.onnx
//! write them (`tests/fixtures/onnx`, made by `scripts/make_onnx_fixtures.py` with the `onnx` package).

mod common;

use candle_core::Device;
use catdog::data::preprocess::Preprocess;
use catdog::model::weights::{self, HubOptions, WeightsSpec};

fn onnx_fixture(name: &str) -> std::path::PathBuf {
    common::fixtures().join("onnx").join(name)
}

#[test]
fn both_exporters_layouts_give_the_same_conv_tensors_as_the_safetensors_copy() {
    let (expected, _) = weights::read_safetensors(&onnx_fixture("conv_base.safetensors")).unwrap();
    for (file, preprocess) in [
        ("keras_like.onnx", Preprocess::caffe()),
        ("torch_like.onnx", Preprocess::imagenet()),
    ] {
        let spec = WeightsSpec::parse(onnx_fixture(file).to_str().unwrap(), 0).unwrap();
        let loaded = weights::load(&spec, &Device::Cpu, &HubOptions::default()).unwrap();
        assert_eq!(loaded.tensors.len(), 26, "{file}");
        for (name, want) in &expected {
            let got = &loaded.tensors[name];
            assert_eq!(got.dims(), want.dims(), "{file} {name}");
            let diff = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert_eq!(diff, 0.0, "{file} {name}");
        }
        assert_eq!(loaded.preprocess, preprocess, "{file}: the exporter's VGG16 convention");
        assert!(
            loaded.ignored.iter().any(|op| op == "Flatten"),
            "{file}: {:?}",
            loaded.ignored
        );
    }
}

#[test]
fn broken_or_foreign_onnx_files_are_refused_with_the_file_named() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = std::fs::read(onnx_fixture("keras_like.onnx")).unwrap();
    let cases = [
        ("truncated.onnx", whole[..whole.len() / 2].to_vec()),
        (
            "safetensors.onnx",
            std::fs::read(onnx_fixture("conv_base.safetensors")).unwrap(),
        ),
        ("empty.onnx", Vec::new()),
    ];
    for (name, bytes) in cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let o = common::catdog(&["weights", "inspect", path.to_str().unwrap()], tmp.path());
        let e = common::stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {e}");
        assert!(e.contains(name) && e.contains("ONNX"), "{name}: {e}");
        assert!(!e.contains("panicked"), "{name}: {e}");
    }
}

#[test]
fn a_conv_node_that_is_not_a_vgg16_convolution_is_refused_not_read_as_one() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = std::fs::read(onnx_fixture("keras_like.onnx")).unwrap();
    let pads_one = b"\n\x04pads@\x01@\x01@\x01@\x01";
    let at = whole.windows(pads_one.len()).position(|w| w == pads_one).unwrap();
    // The first convolution's padding 1 → 0 (same length, so the file stays well-formed).
    let mut unpadded = whole.clone();
    unpadded[at + 7..at + pads_one.len()].copy_from_slice(b"\x00@\x00@\x00@\x00");
    // The attribute renamed away: no pads, no auto_pad, so ONNX's default padding 0.
    let mut unnamed = whole.clone();
    unnamed[at + 2..at + 6].copy_from_slice(b"padz");
    for (name, bytes) in [("unpadded.onnx", unpadded), ("no-pads.onnx", unnamed)] {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let o = common::catdog(&["weights", "inspect", path.to_str().unwrap()], tmp.path());
        let e = common::stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {e}");
        assert!(e.contains("block1_conv1") && e.contains("padding 1"), "{name}: {e}");
    }
}
