//! Fixture loading and comparison helpers.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use petal::models::device::{DeviceChoice, select_device};
use std::path::PathBuf;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

fn manifest() -> serde_json::Value {
    let text =
        std::fs::read_to_string(fixture("manifest.json")).expect("tests/fixtures/manifest.json");
    serde_json::from_str(&text).expect("manifest.json is JSON")
}

pub fn manifest_entry(name: &str) -> serde_json::Value {
    manifest()[name].clone()
}

/// A fixture tensor: (shape, raw bytes).
fn raw(name: &str) -> (Vec<usize>, Vec<u8>) {
    let m = manifest();
    let entry = &m["tensors"][name];
    let file = entry["file"]
        .as_str()
        .unwrap_or_else(|| panic!("no fixture tensor `{name}`"));
    let shape = entry["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    (shape, std::fs::read(fixture(file)).unwrap())
}

pub fn f32s(name: &str) -> (Vec<usize>, Vec<f32>) {
    let (shape, bytes) = raw(name);
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(v.len(), shape.iter().product::<usize>(), "{name}");
    (shape, v)
}

pub fn u8s(name: &str) -> (Vec<usize>, Vec<u8>) {
    raw(name)
}

pub fn tensor4(name: &str, device: &Device) -> Tensor<4> {
    let (shape, v) = f32s(name);
    Tensor::from_data(
        TensorData::new(v, [shape[0], shape[1], shape[2], shape[3]]),
        device,
    )
}

pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec_as::<f32>().unwrap()
}

/// `len` deterministic values in [-2, 2) from a xorshift64 generator started at `state`.
pub fn xorshift_values(len: usize, mut state: u64) -> Vec<f32> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// Largest |value| over every named tensor.
pub fn global_max(tensors: &[(String, Vec<f32>)]) -> f32 {
    tensors
        .iter()
        .flat_map(|(_, t)| t.iter())
        .fold(0f32, |m, v| m.max(v.abs()))
}

/// Worst error of `actual` against `expected`, tensor by tensor (same names, same order),
/// each relative to its expected tensor's largest |value| floored at `floor` (so tensors
/// that are mathematically near zero do not compare rounding noise with rounding noise):
/// `(error, name)`.
pub fn worst_error(
    actual: &[(String, Vec<f32>)],
    expected: &[(String, Vec<f32>)],
    floor: f32,
) -> (f32, String) {
    assert_eq!(actual.len(), expected.len(), "tensor counts differ");
    let mut worst = (0f32, String::new());
    for ((path, a), (path_e, e)) in actual.iter().zip(expected) {
        assert_eq!(path, path_e);
        let scale = e.iter().fold(0f32, |m, v| m.max(v.abs())).max(floor);
        let err = max_abs_err(a, e) / scale;
        // A NaN error is the worst.
        if err.is_nan() || err > worst.0 {
            worst = (err, path.clone());
        }
    }
    worst
}

/// max |a − b| (NaN on either side counts as infinite).
pub fn max_abs_err(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "lengths differ");
    actual
        .iter()
        .zip(expected)
        .map(|(a, b)| {
            if a.is_nan() || b.is_nan() {
                f32::INFINITY
            } else {
                (a - b).abs()
            }
        })
        .fold(0f32, f32::max)
}

/// max |a − b| / max |b|: the error relative to the reference's scale.
pub fn max_rel_err(actual: &[f32], expected: &[f32]) -> f32 {
    let scale = expected
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    max_abs_err(actual, expected) / scale
}

pub fn assert_close(actual: &[f32], expected: &[f32], tol: f32, what: &str) {
    let err = max_rel_err(actual, expected);
    // Shown with --nocapture; BENCHMARKS.md records these figures.
    println!("{what}: max relative error {err:.2e}");
    assert!(
        err <= tol,
        "{what}: max relative error {err:e} > {tol:e}\n actual[..4]   {:?}\n expected[..4] {:?}",
        &actual[..actual.len().min(4)],
        &expected[..expected.len().min(4)]
    );
}

pub fn flex() -> Device {
    Device::flex()
}

/// The wgpu device. Fails (never skips) when no adapter is available: CI installs lavapipe.
pub fn wgpu() -> Device {
    match select_device(DeviceChoice::Wgpu) {
        Ok(d) => d.device,
        Err(e) => panic!("wgpu test needs a wgpu adapter (CI installs lavapipe): {e}"),
    }
}

/// One float parameter of a model after a backward pass.
pub struct ParamGrad {
    pub id: ParamId,
    /// Module path (`backbone.DenseNet.conv0.weight`).
    pub path: String,
    /// Whether it requires a gradient (false for frozen parameters and BatchNorm buffers).
    pub trainable: bool,
    /// Its gradient, if `grads` holds one.
    pub grad: Option<Vec<f32>>,
    /// Its value.
    pub value: Vec<f32>,
}

/// Every float parameter of `model` (buffers included), in visiting order, with its gradient.
pub fn param_grads(model: &impl Module, grads: &GradientsParams) -> Vec<ParamGrad> {
    struct V<'a> {
        grads: &'a GradientsParams,
        path: Vec<String>,
        out: Vec<ParamGrad>,
    }
    impl ModuleVisitor for V<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.out.push(ParamGrad {
                id: p.id,
                path: self.path.join("."),
                trainable: p.val().is_require_grad(),
                grad: self.grads.get::<D>(p.id).map(values),
                value: values(p.val()),
            });
        }
    }
    let mut v = V {
        grads,
        path: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut v);
    v.out
}

/// BatchNorm running statistics: buffers, not parameters.
pub fn is_buffer(path: &str) -> bool {
    path.ends_with("running_mean") || path.ends_with("running_var")
}

/// A tiny DenseNet (growth 4, `blocks` layers per block, 4 initial features, bottleneck 1×):
/// the tests' smallest real backbone.
pub fn tiny_densenet(blocks: &[usize]) -> petal::models::BackboneConfig {
    petal::models::BackboneConfig::DenseNet(petal::models::densenet::DenseNetConfig {
        growth_rate: 4,
        block_config: blocks.to_vec(),
        num_init_features: 4,
        bn_size: 1,
        drop_rate: 0.0,
    })
}
