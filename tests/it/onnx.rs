//! `petal export --format onnx`: the ONNX file, run by an independent runtime (tract, pure
//! Rust), gives petal's logits — every family of the zoo fixtures with torchvision's head,
//! the seed's concat-pool head, and a concat-pool head in fastai's order with two hidden
//! layers — at two batch sizes through the file's dynamic batch axis.

use crate::common::*;
use burn::module::Module;
use burn::tensor::{Distribution, Tensor, TensorData};
use petal::models::head::PoolOrder;
use petal::models::onnx::{InputNorm, OPSET, classifier_to_onnx, proto};
use petal::models::weights::load_classifier;
use petal::models::{Classifier, ClassifierConfig, HeadConfig};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SIZE: usize = 64;
/// A run's own normalisation, recorded in the metadata.
const NORM: InputNorm = InputNorm {
    mean: [0.5, 0.25, 0.125],
    std: [0.5, 0.5, 2.0],
};

/// Runs `bytes` in tract on `x` (`[n, 3, SIZE, SIZE]`); returns (logits, probabilities).
fn tract_run(bytes: &[u8], n: usize, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    use tract_onnx::prelude::*;
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .expect("tract reads the file")
        .with_input_fact(0, f32::fact([n, 3, SIZE, SIZE]).into())
        .unwrap()
        .into_optimized()
        .expect("tract optimises the graph")
        .into_runnable()
        .unwrap();
    let input = tract_ndarray::Array4::from_shape_vec((n, 3, SIZE, SIZE), x.to_vec()).unwrap();
    let out = model.run(tvec!(Tensor::from(input).into())).unwrap();
    let v = |i: usize| -> Vec<f32> {
        out[i]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    };
    (v(0), v(1))
}

fn check(model: &Classifier, arch: &str, what: &str) {
    let device = flex();
    let k = model.num_classes();
    let classes: Vec<String> = (0..k).map(|i| format!("class {i}")).collect();
    let onnx = classifier_to_onnx(model, arch, &classes, SIZE, NORM, &[]).unwrap();
    let bytes = onnx.encode_to_vec();

    // The file as written: opset, dynamic batch, outputs, class names.
    let back = proto::ModelProto::decode(&bytes[..]).unwrap();
    assert_eq!(back.opset_import[0].version, OPSET);
    let graph = back.graph.as_ref().unwrap();
    let dims = |v: &proto::ValueInfoProto| {
        let t = v.r#type.as_ref().unwrap().tensor_type.as_ref().unwrap();
        t.shape.as_ref().unwrap().dim.clone()
    };
    let input = dims(&graph.input[0]);
    assert_eq!(input[0].dim_param.as_deref(), Some("batch"), "{what}");
    assert_eq!(
        input[1..].iter().map(|d| d.dim_value).collect::<Vec<_>>(),
        [Some(3), Some(SIZE as i64), Some(SIZE as i64)]
    );
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, ["logits", "probabilities"]);
    let meta = |key: &str| {
        back.metadata_props
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.clone())
    };
    let names: Vec<String> = serde_json::from_str(&meta("petal.classes").unwrap()).unwrap();
    assert_eq!(names, classes);
    assert_eq!(meta("petal.mean").unwrap(), "[0.5,0.25,0.125]");
    assert_eq!(meta("petal.std").unwrap(), "[0.5,0.5,2.0]");
    assert_eq!(meta("petal.image_size").unwrap(), SIZE.to_string());

    for n in [2, 3] {
        // A seeded host-side input: the same numbers whatever other tests draw.
        let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
        let xs: Vec<f32> = (0..n * 3 * SIZE * SIZE)
            .map(|_| rng.random_range(-2.0f32..2.0))
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(xs.clone(), [n, 3, SIZE, SIZE]), &device);
        let want = values(model.forward(x));
        let (logits, probs) = tract_run(&bytes, n, &xs);
        assert_close(
            &logits,
            &want,
            1e-4,
            &format!("{what}: tract logits, batch {n}"),
        );
        // The softmax output: rows sum to 1 and follow the logits.
        let mut want_p = Vec::new();
        for row in want.chunks(k) {
            let m = row.iter().fold(f32::MIN, |a, &b| a.max(b));
            let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
            let s: f32 = e.iter().sum();
            want_p.extend(e.iter().map(|v| v / s));
        }
        // Softmax moves each probability by at most ½·max |Δlogit| (to first order).
        let (dp, dz) = (max_abs_err(&probs, &want_p), max_abs_err(&logits, &want));
        assert!(
            dp <= 0.5 * dz + 1e-6,
            "{what}: probabilities differ by {dp:e} (logits by {dz:e})"
        );
    }
}

#[test]
fn onnx_export_runs_in_tract_with_petals_logits_for_every_family() {
    let zoo: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("zoo").join("manifest.json")).unwrap(),
    )
    .unwrap();
    let mut files: Vec<String> = zoo["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("zoo/{}", m["pth"].as_str().unwrap()))
        .collect();
    files.extend([
        "densenet_tiny_seedhead.pth".into(),
        "mobilenet_v2_w025.pth".into(),
    ]);
    for f in &files {
        let (model, config, _) = load_classifier(fixture(f), None, &flex()).unwrap();
        check(&model, &config.backbone.name(), f);
    }
}

#[test]
fn onnx_export_of_a_concat_pool_head_in_fastais_order() {
    // A ResNet with a two-hidden-layer concat-pool head, max then avg; one training-mode
    // forward on autodiff gives every BatchNorm running statistics that are not 0 and 1.
    let (_, base, _) =
        load_classifier(fixture("zoo/resnext_bottleneck.pth"), None, &flex()).unwrap();
    let config = ClassifierConfig::new(
        base.backbone,
        HeadConfig::ConcatPool {
            hidden: vec![16, 8],
            dropout: vec![0.1],
            pool_order: PoolOrder::MaxAvg,
        },
        5,
    );
    let device = flex().autodiff();
    let model = config.init(&device);
    let x = Tensor::<4>::random([4, 3, SIZE, SIZE], Distribution::Normal(0.5, 2.0), &device);
    let _ = model.forward(x);
    check(
        &model.valid(),
        "resnet(custom)",
        "resnet + concat-pool head (max, avg)",
    );
}
