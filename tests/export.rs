//! `catdog export --format onnx`: the file is read back here (its structure, initializers and metadata with a
//! protobuf decoder of the tests' own, and its conv base through catdog's ONNX reader, as `--weights model.onnx`
//! loads it). `scripts/check_onnx_export.py` runs it in onnxruntime against `catdog predict`.

mod common;

use std::path::Path;

use catdog::model::onnx::read_onnx_conv_base;
use catdog::model::weights::read_safetensors;
use common::protobuf::{all, bytes, fields, get, int, string, Field};
use common::{catdog, make_dataset, stderr};

fn train(root: &Path, extra: &[&str]) -> std::path::PathBuf {
    let data = root.join("data");
    if !data.exists() {
        make_dataset(&data.join("train"), 8, 1);
        make_dataset(&data.join("test"), 4, 2);
    }
    let runs = root.join("runs");
    let name = format!("r{}", extra.len());
    let mut args = vec![
        "finetune",
        "--data",
        data.to_str().unwrap(),
        "--weights",
        "random:4,4,4,4,4",
    ];
    args.extend([
        "--size",
        "32",
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--quiet",
        "--name",
        &name,
    ]);
    args.extend(["--runs-dir", runs.to_str().unwrap()]);
    args.extend_from_slice(extra);
    let o = catdog(&args, root);
    assert!(o.status.success(), "{}", stderr(&o));
    runs.join(name).join("best.safetensors")
}

fn export(root: &Path, ck: &Path, out: &Path) {
    let o = catdog(
        &[
            "export",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
        root,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let printed: serde_json::Value = serde_json::from_str(&common::stdout(&o)).unwrap();
    assert_eq!(printed["opset"], 17);
    assert_eq!(printed["bytes"], std::fs::metadata(out).unwrap().len());
}

/// The dims of a graph input or output (`-1` for a named one).
fn dims(value_info: &[(u64, Field)]) -> Vec<i64> {
    let ty = fields(bytes(get(value_info, 2)));
    let tensor = fields(bytes(get(&ty, 1)));
    assert_eq!(int(&tensor, 1), 1, "float32");
    let shape = fields(bytes(get(&tensor, 2)));
    all(&shape, 1)
        .into_iter()
        .map(|d| {
            let Field::Bytes(d) = d else { panic!() };
            let d = fields(d);
            if get(&d, 2).is_some() {
                -1
            } else {
                int(&d, 1) as i64
            }
        })
        .collect()
}

#[test]
fn the_onnx_export_holds_the_whole_classifier_and_its_conv_base_loads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = train(tmp.path(), &[]);
    let out = tmp.path().join("model.onnx");
    export(tmp.path(), &ck, &out);

    let model = fields(&std::fs::read(&out).unwrap());
    assert_eq!(int(&model, 1), 8, "IR version");
    assert_eq!(string(&model, 2), "catdog");
    let Some(Field::Bytes(opset)) = get(&model, 8) else {
        panic!()
    };
    assert_eq!(int(&fields(opset), 2), 17);
    let meta: std::collections::HashMap<String, String> = all(&model, 14)
        .into_iter()
        .map(|e| {
            let Field::Bytes(e) = e else { panic!() };
            let e = fields(e);
            (string(&e, 1), string(&e, 2))
        })
        .collect();
    assert_eq!(meta["classes"], r#"["cats","dogs"]"#);
    assert_eq!(meta["size"], "32");
    assert!(meta["preprocess"].starts_with("imagenet"), "{meta:?}");

    let graph = fields(bytes(get(&model, 7)));
    let ops: Vec<String> = all(&graph, 1)
        .into_iter()
        .map(|n| {
            let Field::Bytes(n) = n else { panic!() };
            string(&fields(n), 4)
        })
        .collect();
    let block = |convs: usize| {
        let mut v = ["Conv", "Relu"].repeat(convs);
        v.push("MaxPool");
        v
    };
    let mut want: Vec<&str> = vec!["Mul", "Add"];
    for convs in [2, 2, 3, 3, 3] {
        want.extend(block(convs));
    }
    want.extend(["Flatten", "Gemm", "Relu", "Gemm", "Sigmoid", "Sub", "Concat"]);
    assert_eq!(ops, want);
    let input = fields(bytes(get(&graph, 11)));
    assert_eq!(
        (string(&input, 1), dims(&input)),
        ("pixels".to_string(), vec![-1, 3, 32, 32])
    );
    let output = fields(bytes(get(&graph, 12)));
    assert_eq!(
        (string(&output, 1), dims(&output)),
        ("probabilities".to_string(), vec![-1, 2])
    );

    // Every conv weight and bias, as catdog's ONNX reader (--weights model.onnx) reads them, is the checkpoint's.
    let base = read_onnx_conv_base(&out).unwrap();
    assert_eq!(base.producer, "catdog");
    let (saved, _) = read_safetensors(&ck).unwrap();
    assert_eq!(base.tensors.len(), 26);
    for (name, t) in &base.tensors {
        let a = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = saved[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b, "{name}");
    }
    assert!(base.ignored.iter().any(|s| s.contains("Gemm")), "{:?}", base.ignored);
}

#[test]
fn caffe_preprocessing_reorders_the_channels_and_three_classes_end_in_a_softmax() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_dataset(&data.join("train"), 8, 1);
    make_dataset(&data.join("test"), 4, 2);
    for split in ["train", "test"] {
        // A third class: copies of the cats.
        let (from, to) = (data.join(split).join("cats"), data.join(split).join("foxes"));
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(&from).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
    let ck = train(tmp.path(), &["--preprocess", "caffe", "--head", "gap", "--hidden", "0"]);
    let out = tmp.path().join("model.onnx");
    export(tmp.path(), &ck, &out);
    let model = fields(&std::fs::read(&out).unwrap());
    let graph = fields(bytes(get(&model, 7)));
    let ops: Vec<String> = all(&graph, 1)
        .into_iter()
        .map(|n| {
            let Field::Bytes(n) = n else { panic!() };
            string(&fields(n), 4)
        })
        .collect();
    assert_eq!(ops[..3], ["Gather", "Mul", "Add"]);
    assert_eq!(
        ops[ops.len() - 4..],
        ["GlobalAveragePool", "Flatten", "Gemm", "Softmax"]
    );
    let output = fields(bytes(get(&graph, 12)));
    assert_eq!(dims(&output), vec![-1, 3]);
    // `--weights model.onnx` takes its conv base with the checkpoint's preprocessing, from the file's metadata.
    let features = tmp.path().join("features.safetensors");
    let image = data.join("test/cats");
    let o = catdog(
        &[
            "extract",
            "--weights",
            out.to_str().unwrap(),
            "--size",
            "32",
            "--out",
            features.to_str().unwrap(),
            image.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("caffe: BGR"), "{}", stderr(&o));
}

#[test]
fn a_file_that_is_not_a_checkpoint_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("not.safetensors");
    std::fs::write(&bad, b"hello").unwrap();
    let out = tmp.path().join("model.onnx");
    let o = catdog(
        &[
            "export",
            "--checkpoint",
            bad.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not.safetensors"), "{}", stderr(&o));
    assert!(!out.exists());
}
