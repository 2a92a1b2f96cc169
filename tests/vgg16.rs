//! VGG16 against PyTorch (tests/fixtures/vgg_tiny), weight loading and its errors.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use catdog::model::vgg16::{layer_index, Vgg16, LAYERS};
use catdog::model::weights::{self, read_safetensors, HubOptions, WeightsSpec};
use common::{catdog, fixtures, rel_diff, stderr, stdout, POOLS};

#[test]
fn every_pool_output_matches_pytorch_from_the_raw_input() {
    let dir = fixtures().join("vgg_tiny");
    let spec = WeightsSpec::parse(dir.join("weights.safetensors").to_str().unwrap(), 0).unwrap();
    let loaded = weights::load(&spec, &Device::Cpu, &HubOptions::default()).unwrap();
    assert_eq!(loaded.model.widths(), [8, 16, 32, 64, 64]);
    let (golden, _) = read_safetensors(&dir.join("outputs.safetensors")).unwrap();
    let wanted: Vec<usize> = POOLS.iter().map(|p| layer_index(p).unwrap()).collect();
    let outs = loaded.model.forward_collect(&golden["input"], &wanted).unwrap();
    for (name, out) in POOLS.iter().zip(&outs) {
        let d = rel_diff(out, &golden[*name]);
        assert!(d < 1e-4, "{name}: relative difference {d}");
    }
}

#[test]
fn extra_head_tensors_are_ignored() {
    let dir = fixtures().join("vgg_tiny");
    let (t, _) = read_safetensors(&dir.join("weights_with_head.safetensors")).unwrap();
    assert!(t.contains_key("head.fc1.weight"));
    let m = Vgg16::from_tensors(&t, "with head", &Device::Cpu).unwrap();
    assert_eq!(m.widths(), [8, 16, 32, 64, 64]);
}

#[test]
fn loading_a_conv_base_reads_only_its_tensors_and_names_the_rest() {
    let file = fixtures().join("vgg_tiny/weights_with_head.safetensors");
    let spec = WeightsSpec::parse(file.to_str().unwrap(), 0).unwrap();
    let loaded = weights::load(&spec, &Device::Cpu, &HubOptions::default()).unwrap();
    assert!(
        loaded.tensors.keys().all(|k| k.starts_with("features.")),
        "{:?}",
        loaded.tensors.keys()
    );
    assert_eq!(loaded.tensors.len(), 26);
    assert!(
        loaded.ignored.iter().any(|n| n == "head.fc1.weight"),
        "{:?}",
        loaded.ignored
    );
    let tmp = tempfile::tempdir().unwrap();
    let o = catdog(&["weights", "inspect", file.to_str().unwrap(), "--json"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let ignored: Vec<&str> = j["ignored_tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(ignored.contains(&"head.fc1.weight"), "{ignored:?}");
}

#[test]
fn every_pool_output_matches_pytorch_through_catdog_extract_on_the_pngs() {
    let dir = fixtures().join("vgg_tiny");
    let tmp = tempfile::tempdir().unwrap();
    let (golden, _) = read_safetensors(&dir.join("outputs.safetensors")).unwrap();
    for name in POOLS {
        let out = tmp.path().join(format!("{name}.safetensors"));
        let o = catdog(
            &[
                "extract",
                "--weights",
                dir.join("weights.safetensors").to_str().unwrap(),
                "--layer",
                name,
                "--size",
                "64",
                "--precision",
                "fp32",
                "--out",
                out.to_str().unwrap(),
                dir.join("image0.png").to_str().unwrap(),
                dir.join("image1.png").to_str().unwrap(),
            ],
            tmp.path(),
        );
        assert!(o.status.success(), "extract failed: {}", stderr(&o));
        let (t, meta) = read_safetensors(&out).unwrap();
        let d = rel_diff(&t["features"], &golden[name]);
        assert!(d < 1e-4, "{name}: relative difference {d}");
        assert_eq!(meta["layer"], name);
        assert_eq!(meta["precision"], "fp32");
        let files: Vec<String> = serde_json::from_str(&meta["files"]).unwrap();
        assert!(files[0].ends_with("image0.png") && files[1].ends_with("image1.png"));
    }
}

#[test]
fn full_width_random_weights_give_512x4x4_at_150_and_the_vgg16_parameter_count() {
    let m = Vgg16::random([64, 128, 256, 512, 512], 7, &Device::Cpu).unwrap();
    let x = Tensor::zeros((1, 3, 150, 150), DType::F32, &Device::Cpu).unwrap();
    let y = m.forward(&x).unwrap();
    assert_eq!(y.dims(), &[1, 512, 4, 4]);
    let total: usize = m.param_counts().iter().map(|b| b.params).sum();
    assert_eq!(total, 14_714_688);

    let tmp = tempfile::tempdir().unwrap();
    let o = catdog(
        &[
            "weights",
            "inspect",
            "random",
            "--unfreeze-from",
            "block5_conv1",
            "--json",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["total_params"], 14_714_688);
    // block5: 3 × (512·512·9 + 512) = 7,079,424 trainable.
    assert_eq!(j["trainable_params"], 7_079_424);
    let o = catdog(&["weights", "inspect", "random"], tmp.path());
    assert!(stdout(&o).contains("14,714,688"), "{}", stdout(&o));
}

#[test]
fn split_freezes_the_prefix_and_trains_the_suffix() {
    let mut m = Vgg16::random([4, 4, 8, 8, 8], 1, &Device::Cpu).unwrap();
    m.set_trainable_from(layer_index("block5_conv1").unwrap()).unwrap();
    let names: Vec<String> = m.trainable_vars().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "features.24.weight",
            "features.24.bias",
            "features.26.weight",
            "features.26.bias",
            "features.28.weight",
            "features.28.bias"
        ]
    );
    let x = Tensor::ones((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
    let h = m.forward_frozen(&x).unwrap();
    assert_eq!(h.dims(), &[2, 8, 2, 2]);
    assert!(!h.track_op());
    let y = m.forward_trainable(&h).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    for (name, v) in m.trainable_vars() {
        assert!(grads.get(&v).is_some(), "{name} has no gradient");
    }
    assert_eq!(
        layer_index("features.24").unwrap(),
        layer_index("block5_conv1").unwrap()
    );
    assert!(layer_index("block6_conv1")
        .unwrap_err()
        .to_string()
        .contains("block5_pool"));
    assert_eq!(LAYERS.len(), 18);
}

fn fixture_tensors() -> HashMap<String, Tensor> {
    read_safetensors(&fixtures().join("vgg_tiny/weights.safetensors"))
        .unwrap()
        .0
}

fn write(path: &std::path::Path, t: &HashMap<String, Tensor>) {
    let v: Vec<(String, Tensor)> = t.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    catdog::io::write_safetensors(path, &v, HashMap::new()).unwrap();
}

#[test]
fn a_missing_tensor_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = fixture_tensors();
    t.remove("features.24.weight");
    let p = tmp.path().join("missing.safetensors");
    write(&p, &t);
    let o = catdog(&["weights", "inspect", p.to_str().unwrap()], tmp.path());
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("features.24.weight") && e.contains("block5_conv1") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn a_wrong_shape_names_tensor_expected_and_found() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = fixture_tensors();
    t.insert(
        "features.5.weight".into(),
        Tensor::zeros((16, 4, 3, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    let p = tmp.path().join("shape.safetensors");
    write(&p, &t);
    let o = catdog(&["weights", "inspect", p.to_str().unwrap()], tmp.path());
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("features.5.weight") && e.contains("[16, 4, 3, 3]") && e.contains("[out_channels, 8, 3, 3]"),
        "{e}"
    );
}

#[test]
fn a_truncated_file_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixtures().join("vgg_tiny/weights.safetensors")).unwrap();
    let p = tmp.path().join("truncated.safetensors");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let o = catdog(&["weights", "inspect", p.to_str().unwrap()], tmp.path());
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("truncated.safetensors") && e.contains("not a readable safetensors file"),
        "{e}"
    );
}

#[test]
fn offline_hub_error_names_the_model_the_cache_and_the_ways_out() {
    let tmp = tempfile::tempdir().unwrap();
    // No network to the hub (HF_ENDPOINT points at a closed local port), empty cache.
    let o = catdog(&["weights", "inspect", "timm/vgg16.tv_in1k"], tmp.path());
    assert!(!o.status.success());
    let e = stderr(&o);
    for needle in [
        "timm/vgg16.tv_in1k",
        tmp.path().join("hub").to_str().unwrap(),
        "--weights random",
        ".safetensors",
    ] {
        assert!(e.contains(needle), "missing '{needle}' in: {e}");
    }
    // HF_HUB_OFFLINE is honoured without touching the network.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_catdog"))
        .args(["weights", "inspect", "timm/vgg16.tv_in1k"])
        .env("HF_HOME", tmp.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(stderr(&o).contains("HF_HUB_OFFLINE"), "{}", stderr(&o));
}

#[test]
fn a_file_already_in_the_hf_cache_is_used_without_network() {
    // Lay out the cache as huggingface_hub does: refs/main → commit, snapshots/<commit>/model.safetensors.
    let tmp = tempfile::tempdir().unwrap();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snap = common::cached_tiny_vgg(tmp.path());
    std::fs::write(
        snap.join("config.json"),
        r#"{"pretrained_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}"#,
    )
    .unwrap();
    let o = catdog(&["weights", "inspect", "someone/tiny-vgg", "--json"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["revision"], commit);
    assert_eq!(j["preprocess"]["mean"][0], 0.5);
    assert_eq!(j["widths"][4], 64);
}
