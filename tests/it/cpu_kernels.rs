//! petal's convolution and BatchNorm + ReLU kernels against Burn's own ops — the stock-op
//! references — value and gradient: the CPU kernels on Flex, the WGSL BatchNorm kernels on
//! wgpu (where convolution — pointwise ones as a matmul, within 1e-5 — and BatchNorm with
//! the kernels off, must be exactly the reference), with their dispatch count; and a whole DenseNet / ResNet training step whose
//! parameter gradients and BatchNorm statistics must match the step with the kernels
//! switched off.

use crate::common::*;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::ops::ConvOptions;
use petal::kernels::batch_norm::{
    Act, Stats, batch_norm, batch_norm_reference, set_gpu_kernels, uses_gpu_kernels,
};
use petal::kernels::conv::{conv2d, conv2d_reference, set_cpu_kernels, uses_cpu_kernels};
use petal::kernels::dispatch::{DispatchCount, count_dispatches};
use petal::models::head::PoolOrder;
use petal::models::{BackboneConfig, ClassifierConfig, HeadConfig};

type ClassifierRecord = burn::store::ModuleRecord;

/// Deterministic values in [-2, 2).
fn noise(len: usize, seed: u64) -> Vec<f32> {
    xorshift_values(
        len,
        0x9E37_79B9_7F4A_7C15u64 ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D),
    )
}

fn t4(shape: [usize; 4], seed: u64, device: &Device) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(noise(shape.iter().product(), seed), shape),
        device,
    )
}

fn t1(len: usize, seed: u64, device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(noise(len, seed), [len]), device)
}

/// Max |a − b| relative to max |b| (floored at 1).
fn rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
    max_abs_err(a, b) / scale
}

/// One convolution case: input shape, output channels, kernel, stride, padding, dilation,
/// groups.
struct Case {
    x: [usize; 4],
    o: usize,
    k: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dil: [usize; 2],
    groups: usize,
    bias: bool,
}

const fn case(x: [usize; 4], o: usize, k: usize, stride: usize, pad: usize, groups: usize) -> Case {
    Case {
        x,
        o,
        k: [k, k],
        stride: [stride, stride],
        pad: [pad, pad],
        dil: [1, 1],
        groups,
        bias: false,
    }
}

/// Every layer kind of petal's families, and the awkward corners: 1×1 (DenseNet
/// bottleneck / transition, ResNet projection, stride 2), 3×3 pad 1, the 7×7/2 stem, 3×3/2,
/// depthwise 3×3 and 5×5/2 (MobileNet / EfficientNet), ConvNeXt's 7×7 depthwise with bias,
/// grouped, dilated, non-square kernel and stride, odd sizes, a 1×1 spatial SE squeeze, and
/// a batch larger than one chunk of samples; stride-1 kernels on maps large enough for the
/// shifted gemms.
fn cases() -> Vec<Case> {
    let mut v = vec![
        case([3, 12, 9, 7], 8, 1, 1, 0, 1),
        case([2, 16, 8, 8], 6, 1, 2, 0, 1),
        case([3, 8, 9, 9], 5, 3, 1, 1, 1),
        case([2, 3, 19, 17], 8, 7, 2, 3, 1),
        case([2, 8, 11, 10], 8, 3, 2, 1, 1),
        case([3, 10, 9, 8], 10, 3, 1, 1, 10),
        case([2, 6, 13, 12], 6, 5, 2, 2, 6),
        case([2, 8, 6, 6], 12, 3, 1, 1, 4),
        case([2, 8, 1, 1], 4, 1, 1, 0, 1),
        // Stride-1 kernels on maps large enough for the shifted gemms (`conv::shifted`).
        case([3, 6, 16, 14], 5, 3, 1, 1, 1),
        case([2, 4, 30, 28], 3, 5, 1, 2, 1),
        case([2, 5, 20, 19], 4, 3, 1, 0, 1),
    ];
    v.push(Case {
        bias: true,
        ..case([2, 6, 10, 9], 6, 7, 1, 3, 6)
    });
    // More samples than one im2col chunk (dilated, so not the shifted gemms).
    v.push(Case {
        dil: [2, 2],
        ..case([70, 4, 64, 64], 4, 3, 1, 2, 1)
    });
    v.push(Case {
        k: [1, 3],
        pad: [0, 1],
        bias: true,
        ..case([2, 4, 12, 12], 6, 1, 1, 0, 1)
    });
    v.push(Case {
        dil: [2, 1],
        k: [3, 2],
        stride: [1, 2],
        pad: [2, 0],
        bias: true,
        ..case([2, 5, 10, 9], 7, 3, 1, 1, 1)
    });
    v
}

/// `(y, dx, dw, db)` of `sum(conv(x, w, b) · r)` with `conv` = petal's or the reference.
fn conv_grads(c: &Case, device: &Device, petal: bool) -> [Vec<f32>; 4] {
    let options = ConvOptions::new(c.stride, c.pad, c.dil, c.groups);
    let x = t4(c.x, 1, device).require_grad();
    let w = t4([c.o, c.x[1] / c.groups, c.k[0], c.k[1]], 2, device).require_grad();
    let b = c.bias.then(|| t1(c.o, 3, device).require_grad());
    let y = if petal {
        conv2d(x.clone(), w.clone(), b.clone(), options)
    } else {
        conv2d_reference(x.clone(), w.clone(), b.clone(), options)
    };
    let r = t4(y.dims(), 4, device);
    let grads = (y.clone() * r).sum().backward();
    let grad = |t: Option<Vec<f32>>| t.unwrap_or_default();
    [
        values(y.inner()),
        grad(x.grad(&grads).map(values)),
        grad(w.grad(&grads).map(values)),
        grad(b.and_then(|b| b.grad(&grads)).map(values)),
    ]
}

/// Output and gradients of [`conv_grads`] within 1e-5 of the reference's.
fn assert_conv_grads_close(petal: &[Vec<f32>; 4], reference: &[Vec<f32>; 4], c: &Case) {
    let names = [
        "output",
        "input gradient",
        "weight gradient",
        "bias gradient",
    ];
    for ((what, a), b) in names.iter().zip(petal).zip(reference) {
        let err = rel(a, b);
        assert!(
            err <= 1e-5,
            "{what} of x {:?} o {} k {:?} s {:?} p {:?} d {:?} g {}: error {err:e}",
            c.x,
            c.o,
            c.k,
            c.stride,
            c.pad,
            c.dil,
            c.groups
        );
    }
}

#[test]
fn conv2d_matches_burns_conv_value_and_gradients_flex() {
    let device = flex().autodiff();
    assert!(uses_cpu_kernels(&device, burn::tensor::DType::F32));
    for c in cases() {
        let petal = conv_grads(&c, &device, true);
        let reference = conv_grads(&c, &device, false);
        assert_conv_grads_close(&petal, &reference, &c);
        // Inference (no autodiff): the same forward.
        let options = ConvOptions::new(c.stride, c.pad, c.dil, c.groups);
        let plain = flex();
        let x = t4(c.x, 1, &plain);
        let w = t4([c.o, c.x[1] / c.groups, c.k[0], c.k[1]], 2, &plain);
        let b = c.bias.then(|| t1(c.o, 3, &plain));
        let a = values(conv2d(x.clone(), w.clone(), b.clone(), options.clone()));
        let r = values(conv2d_reference(x, w, b, options));
        assert!(rel(&a, &r) <= 1e-5, "inference output of x {:?}", c.x);
    }
}

#[test]
fn conv2d_on_wgpu_is_burns_conv_or_a_pointwise_matmul() {
    let device = wgpu().autodiff();
    assert!(!uses_cpu_kernels(&device, burn::tensor::DType::F32));
    // Neither pointwise nor a small "same" convolution: Burn's conv2d itself.
    for c in [
        case([2, 4, 7, 6], 5, 3, 1, 0, 1), // 3×3 without padding
        case([2, 4, 7, 6], 5, 3, 2, 1, 1), // 3×3 with stride 2
        case([2, 6, 9, 9], 6, 3, 2, 1, 6),
        case([2, 16, 8, 8], 6, 1, 2, 0, 1), // 1×1 with stride 2
    ] {
        let petal = conv_grads(&c, &device, true);
        let reference = conv_grads(&c, &device, false);
        assert_eq!(petal, reference, "conv2d on wgpu is Burn's conv2d");
    }
    // Pointwise (1×1, stride 1, no padding, one group): one batched matmul, the same values
    // up to float order; with the GPU paths off, Burn's conv2d again.
    // Pointwise (1×1, stride 1, no padding, one group): one batched matmul. Small stride-1
    // "same" convolutions (3×3 pad 1, 5×5 pad 2): petal's direct kernels.
    let petal_paths = [
        case([3, 12, 9, 7], 8, 1, 1, 0, 1),
        case([2, 8, 1, 1], 4, 1, 1, 0, 1),
        Case {
            bias: true,
            ..case([2, 6, 5, 4], 7, 1, 1, 0, 1)
        },
        case([2, 4, 7, 6], 5, 3, 1, 1, 1),
        case([3, 6, 9, 8], 4, 5, 1, 2, 1),
        case([2, 3, 1, 2], 4, 3, 1, 1, 1), // maps smaller than the kernel
        Case {
            bias: true,
            ..case([2, 5, 6, 6], 3, 3, 1, 1, 1)
        },
    ];
    for c in &petal_paths {
        let petal = conv_grads(c, &device, true);
        let reference = conv_grads(c, &device, false);
        assert_conv_grads_close(&petal, &reference, c);
        set_gpu_kernels(false);
        let off = conv_grads(c, &device, true);
        set_gpu_kernels(true);
        assert_eq!(
            off, reference,
            "pointwise and direct with the GPU paths off are Burn's conv2d"
        );
    }
}

/// A small 3×3 "same" convolution on wgpu trains in three dispatches of petal's direct
/// kernels (forward, input gradient, weight gradient), none of Burn's convolution
/// machinery (about eleven dispatches with its layout copies).
#[test]
fn direct_conv_training_dispatches_wgpu() {
    let c = case([2, 16, 8, 8], 8, 3, 1, 1, 1);
    conv_training_dispatches(&c, "direct conv", |counts| {
        let kinds = counts.by_kind();
        counts.of("ConvDirect") == 3
            && ["copy", "conv", "matmul"]
                .iter()
                .all(|k| !kinds.contains_key(*k))
    });
}

/// `(y, dx, dγ, dβ, mean, var)` of `sum(bn(x) · r)`.
fn bn_grads(
    shape: [usize; 4],
    device: &Device,
    petal: bool,
    running: bool,
    act: Act,
) -> Vec<Vec<f32>> {
    let c = shape[1];
    // An offset and scale per channel, so the statistics are not trivially 0 / 1.
    let x = (t4(shape, 5, device) * 1.5 + t1(c, 6, device).reshape([1, c, 1, 1]) * 3.0)
        .detach()
        .require_grad();
    let gamma = t1(c, 7, device).require_grad();
    let beta = (t1(c, 8, device) * 0.5).require_grad();
    let stats = if running {
        Stats::Running(Box::new((
            t1(c, 9, device) * 0.1,
            t1(c, 10, device).abs() + 0.5,
        )))
    } else {
        Stats::Batch
    };
    let f = if petal {
        batch_norm
    } else {
        batch_norm_reference
    };
    let out = f(x.clone(), gamma.clone(), beta.clone(), stats, 1e-5, act);
    let r = t4(shape, 11, device);
    let grads = (out.output.clone() * r).sum().backward();
    let mut v = vec![
        values(out.output.inner()),
        values(x.grad(&grads).expect("x grad")),
        values(gamma.grad(&grads).expect("gamma grad")),
        values(beta.grad(&grads).expect("beta grad")),
    ];
    if let Some((m, var)) = out.batch_stats {
        v.push(values(m.inner()));
        v.push(values(var.inner()));
    }
    v
}

/// petal's BatchNorm (+ReLU, +SiLU) vs Burn's ops on `device`, every shape, both kinds of
/// statistics, each activation: output, the three gradients and the batch statistics
/// within `tol` (relative to each tensor's scale).
fn batch_norm_matches_burns_ops(device: &Device, tol: f32) {
    for shape in [[4, 5, 7, 6], [3, 16, 1, 1], [70, 3, 16, 16], [2, 40, 2, 2]] {
        for running in [false, true] {
            for act in [Act::Identity, Act::Relu, Act::Silu] {
                let petal = bn_grads(shape, device, true, running, act);
                let reference = bn_grads(shape, device, false, running, act);
                assert_eq!(petal.len(), reference.len());
                let names = ["output", "dx", "dgamma", "dbeta", "mean", "variance"];
                for ((a, b), what) in petal.iter().zip(&reference).zip(names) {
                    let err = rel(a, b);
                    assert!(
                        err <= tol,
                        "{what} of {shape:?} running {running} {act:?}: error {err:e}"
                    );
                }
            }
        }
    }
}

#[test]
fn batch_norm_activations_match_burns_ops_value_and_gradients_flex() {
    batch_norm_matches_burns_ops(&flex().autodiff(), 2e-5);
}

#[test]
fn batch_norm_activations_match_burns_ops_value_and_gradients_wgpu() {
    let device = wgpu().autodiff();
    assert!(uses_gpu_kernels(&device, burn::tensor::DType::F32));
    batch_norm_matches_burns_ops(&device, 2e-5);
}

/// Channels-last views (what Burn's convolutions return on wgpu) as `x` and as the output
/// gradient: the WGSL kernels read them through their strides, and must agree with Burn's ops.
#[test]
fn batch_norm_reads_channels_last_views_wgpu() {
    let device = wgpu().autodiff();
    let (n, c, h, w) = (3, 5, 4, 6);
    let run = |petal: bool| {
        let x = t4([n, h, w, c], 21, &device).require_grad();
        let gamma = t1(c, 22, &device).require_grad();
        let beta = t1(c, 23, &device).require_grad();
        let f = if petal {
            batch_norm
        } else {
            batch_norm_reference
        };
        let xv = x.clone().permute([0, 3, 1, 2]);
        let out = f(
            xv,
            gamma.clone(),
            beta.clone(),
            Stats::Batch,
            1e-5,
            Act::Relu,
        );
        // An output gradient that is itself a channels-last view.
        let r = t4([n, h, w, c], 24, &device).permute([0, 3, 1, 2]);
        let y = out.output * 1.0;
        let grads = (y.clone() * r).sum().backward();
        [
            values(y.inner()),
            values(x.grad(&grads).expect("dx")),
            values(gamma.grad(&grads).expect("dgamma")),
            values(beta.grad(&grads).expect("dbeta")),
        ]
    };
    let (petal, reference) = (run(true), run(false));
    for ((a, b), what) in petal
        .iter()
        .zip(&reference)
        .zip(["output", "dx", "dgamma", "dbeta"])
    {
        let err = rel(a, b);
        assert!(err <= 2e-5, "{what}: error {err:e}");
    }
}

/// Channel 0 = {1, 2, 3, 6} (mean 3, biased variance 3.5), channel 1 = {-1, -1, -1, -1}.
// `(3. - 3.)` spells out the hand computation for the value equal to the mean.
#[allow(clippy::eq_op)]
fn batch_norm_statistics_by_hand(device: &Device) {
    let x = Tensor::<4>::from_data(
        TensorData::new(vec![1., 2., -1., -1., 3., 6., -1., -1.], [2, 2, 1, 2]),
        device,
    );
    let out = batch_norm(
        x,
        Tensor::from_data([2.0, 1.0], device),
        Tensor::from_data([0.5, 0.0], device),
        Stats::Batch,
        0.0,
        Act::Relu,
    );
    let (m, v) = out.batch_stats.expect("batch statistics");
    assert_eq!(values(m.inner()), vec![3.0, -1.0]);
    assert_eq!(values(v.inner()), vec![3.5, 0.0]);
    let s = 3.5f32.sqrt();
    let want = [
        (1. - 3.) / s * 2. + 0.5,
        (2. - 3.) / s * 2. + 0.5,
        (3. - 3.) / s * 2. + 0.5,
        (6. - 3.) / s * 2. + 0.5,
    ]
    .map(|v: f32| v.max(0.0));
    let y = values(out.output.inner());
    assert_close(&[y[0], y[1], y[4], y[5]], &want, 1e-6, "channel 0 by hand");
}

#[test]
fn batch_norm_statistics_by_hand_flex() {
    batch_norm_statistics_by_hand(&flex().autodiff());
}

#[test]
fn batch_norm_statistics_by_hand_wgpu() {
    batch_norm_statistics_by_hand(&wgpu().autodiff());
}

#[test]
fn batch_norm_with_the_kernels_off_is_burns_on_wgpu() {
    let device = wgpu().autodiff();
    set_gpu_kernels(false);
    for running in [false, true] {
        let petal = bn_grads([2, 3, 5, 4], &device, true, running, Act::Silu);
        let reference = bn_grads([2, 3, 5, 4], &device, false, running, Act::Silu);
        assert_eq!(
            petal, reference,
            "batch_norm with the kernels off is Burn's ops"
        );
    }
    set_gpu_kernels(true);
}

/// A training BatchNorm+ReLU on wgpu is two kernels forward (statistics with the
/// running-statistics update, for 64 channels read as views; normalise + ReLU) and two
/// backward (channel sums; input gradient), and none of Burn's reductions (Burn's ops:
/// about seventeen dispatches for the pair, and one more for the update).
#[test]
fn batch_norm_training_layer_is_four_dispatches_wgpu() {
    // The launch observer is process-wide, and other tests may run GPU work meanwhile: an
    // attempt counts when it saw exactly this layer's kernels. A path that issued other
    // kernels fails every attempt.
    let mut last = String::new();
    for _ in 0..10 {
        match batch_norm_dispatches() {
            Ok(()) => return,
            Err(e) => last = e,
        }
    }
    panic!("{last}");
}

fn batch_norm_dispatches() -> Result<(), String> {
    let device = wgpu().autodiff();
    let sync = || device.sync().expect("sync");
    let (c, shape) = (64, [3, 64, 5, 4]);
    let x = t4(shape, 1, &device).require_grad();
    let gamma = t1(c, 2, &device).require_grad();
    let beta = t1(c, 3, &device).require_grad();
    let (mean, var) = (t1(c, 5, &device), t1(c, 6, &device).abs());
    let r = t4(shape, 4, &device);
    sync();
    let ((y, running), forward) = count_dispatches(|| {
        let stats = Stats::BatchUpdating(Box::new((mean.clone(), var.clone(), 0.1)));
        let out = batch_norm(
            x.clone(),
            gamma.clone(),
            beta.clone(),
            stats,
            1e-5,
            Act::Relu,
        );
        let running = out.running.expect("running statistics");
        // Materialise the running statistics: a copy would show here.
        let running = (running.0 + 0.0, running.1 + 0.0);
        sync();
        (out.output, running)
    });
    // The two kernels and the two additions above, nothing for the update (a slice that
    // is not a view would be a copy).
    let kinds = forward.by_kind();
    if forward.of("BatchNorm") != 2
        || kinds.contains_key("reduce")
        || kinds.contains_key("copy")
        || forward.total() > 4
    {
        return Err(format!("forward: {:?}", forward.by_kernel));
    }
    assert_eq!(values(running.0.inner()).len(), c);
    let loss = (y * r).sum();
    sync();
    let (grads, backward) = count_dispatches(|| {
        let grads = loss.backward();
        sync();
        grads
    });
    if backward.of("BatchNorm") != 2 || backward.by_kind().contains_key("reduce") {
        return Err(format!("backward: {:?}", backward.by_kernel));
    }
    let dgamma = values(gamma.grad(&grads).expect("dgamma"));
    let dbeta = values(beta.grad(&grads).expect("dbeta"));
    assert_eq!((dgamma.len(), dbeta.len()), (c, c));
    Ok(())
}

/// `Stats::BatchUpdating`: the output and the moved running statistics equal the reference
/// path's (Burn's `batch_norm_train` and update), for 64 channels (the statistics kernel's
/// update, read as views) and 40 (Burn's update chain on the batch's statistics).
fn batch_norm_running_update_matches_burns(device: &Device) {
    for c in [64, 40] {
        let shape = [3, c, 4, 5];
        let x = t4(shape, 1, device) * 2.0 + 1.0;
        let (gamma, beta) = (t1(c, 2, device), t1(c, 3, device));
        let (mean, var) = (t1(c, 4, device), t1(c, 5, device).abs() + 0.5);
        let run = |petal: bool| {
            let stats = Stats::BatchUpdating(Box::new((mean.clone(), var.clone(), 0.1)));
            let f = if petal {
                batch_norm
            } else {
                batch_norm_reference
            };
            let out = f(
                x.clone(),
                gamma.clone(),
                beta.clone(),
                stats,
                1e-5,
                Act::Silu,
            );
            assert!(out.batch_stats.is_none());
            let (m, v) = out.running.expect("running statistics");
            [
                values(out.output.inner()),
                values(m.inner()),
                values(v.inner()),
            ]
        };
        let (petal, reference) = (run(true), run(false));
        for ((a, b), (what, tol)) in petal.iter().zip(&reference).zip([
            ("output", 2e-5),
            ("running mean", 1e-6),
            ("running variance", 1e-6),
        ]) {
            assert_eq!(a.len(), b.len());
            let err = rel(a, b);
            assert!(err <= tol, "{what} with {c} channels: error {err:e}");
        }
        // By hand for one channel: 0.9·r + 0.1·batch.
        let xs = values(x.clone().inner());
        let batch_mean: f64 = (0..3)
            .flat_map(|n| xs[(n * c) * 20..(n * c + 1) * 20].to_vec())
            .map(f64::from)
            .sum::<f64>()
            / 60.0;
        let r0 = f64::from(values(mean.clone().inner())[0]);
        let want = 0.9 * r0 + 0.1 * batch_mean;
        assert!(
            (f64::from(petal[1][0]) - want).abs() < 1e-5,
            "{} vs {want}",
            petal[1][0]
        );
    }
}

#[test]
fn batch_norm_running_update_matches_burns_flex() {
    batch_norm_running_update_matches_burns(&flex().autodiff());
}

#[test]
fn batch_norm_running_update_matches_burns_wgpu() {
    batch_norm_running_update_matches_burns(&wgpu().autodiff());
}

/// How [`step`] runs: petal's CPU kernels in f32, Burn's ops in f32, Burn's ops in f64.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    Kernels,
    Burn,
    BurnF64,
}

/// Every parameter gradient and BatchNorm running statistic after one training step of
/// `config` from `record`.
fn step(
    config: &ClassifierConfig,
    record: &ClassifierRecord,
    path: Path,
) -> Vec<(String, Vec<f32>)> {
    let device = flex().autodiff();
    set_cpu_kernels(path == Path::Kernels);
    let mut model = config.init(&device).load_record(record.clone());
    let mut x = t4([4, 3, 64, 64], 12, &device);
    if path == Path::BurnF64 {
        model = petal::trainer::optim::cast_model(model, DType::F64);
        x = x.cast(DType::F64);
    }
    let logits = model.forward(x);
    let loss = burn::tensor::activation::log_softmax(logits, 1)
        .slice([0..4, 0..1])
        .mean()
        .neg();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    set_cpu_kernels(true);
    let mut out: Vec<(String, Vec<f32>)> = Vec::new();
    for p in param_grads(&model, &grads) {
        if is_buffer(&p.path) {
            out.push((p.path, p.value));
        } else if let Some(g) = p.grad {
            out.push((p.path, g));
        }
    }
    out
}

#[test]
fn training_steps_with_the_cpu_kernels_are_as_accurate_as_burns_ops_flex() {
    // The tiny DenseNet is well conditioned (wide BatchNorm reductions): the two f32 paths
    // must agree closely. ResNet-18 at 64² ends in 2×2 maps, where BatchNorm over 16 values
    // amplifies rounding (Burn's own f32 path is 6e-5 off f64 there): the kernels must be no
    // less accurate than Burn's f32 path. (Depthwise convolutions are covered op by op
    // above: a whole MobileNetV2 step is no fair judge, its ReLU6 saturates at exactly 6 and
    // the head's max pooling then routes the gradient by ties that rounding can flip.)
    for (backbone, strict) in [
        (tiny_densenet(&[2, 2]), Some(1e-4)),
        (
            BackboneConfig::from_name("resnet18").expect("resnet18"),
            None,
        ),
    ] {
        let name = format!("{backbone:?}").chars().take(24).collect::<String>();
        // No dropout: every run must see the same network.
        let head = HeadConfig::ConcatPool {
            hidden: vec![16],
            dropout: vec![0.0],
            pool_order: PoolOrder::AvgMax,
        };
        let config = ClassifierConfig::new(backbone, head, 5);
        let device = flex().autodiff();
        device.seed(16);
        let record = config.init(&device).into_record();
        let kernels = step(&config, &record, Path::Kernels);
        let burn = step(&config, &record, Path::Burn);
        let truth = step(&config, &record, Path::BurnF64);
        assert!(
            kernels.len() > 20,
            "{name}: gradients and statistics present"
        );
        // Each tensor relative to its own scale, floored at 10 % of the largest value
        // (capped at 1): near-zero tensors would compare rounding noise with noise.
        let floor = 0.1 * global_max(&truth).min(1.0);
        let (k, k_at) = worst_error(&kernels, &truth, floor);
        let (b, b_at) = worst_error(&burn, &truth, floor);
        let (d, d_at) = worst_error(&kernels, &burn, floor);
        println!(
            "{name}: worst relative error vs f64 — CPU kernels {k:.1e} ({k_at}), Burn's ops {b:.1e} ({b_at}); kernels vs Burn {d:.1e} ({d_at})"
        );
        if let Some(tol) = strict {
            assert!(d <= tol, "{name}: kernels vs Burn's ops {d:e} at {d_at}");
        }
        assert!(
            k <= 2.0 * b + 2e-5,
            "{name}: kernels {k:e} ({k_at}) vs Burn's f32 {b:e} ({b_at}), both against f64"
        );
    }
}

/// The dispatches of one training step of `conv2d` for `c` on wgpu (forward, `sum(y·r)`,
/// backward), counted until `ok` accepts them: the launch observer is process-wide, and
/// other tests may run GPU work meanwhile. A path that issued other kernels fails all ten
/// attempts.
fn conv_training_dispatches(c: &Case, what: &str, ok: impl Fn(&DispatchCount) -> bool) {
    let device = wgpu().autodiff();
    let sync = || device.sync().expect("sync");
    let options = ConvOptions::new(c.stride, c.pad, c.dil, c.groups);
    let x = t4(c.x, 1, &device).require_grad();
    let w = t4([c.o, c.x[1] / c.groups, c.k[0], c.k[1]], 2, &device).require_grad();
    let r = t4([c.x[0], c.o, c.x[2], c.x[3]], 4, &device);
    sync();
    let mut last = String::new();
    for _ in 0..10 {
        let (_, counts) = count_dispatches(|| {
            let y = conv2d(x.clone(), w.clone(), None, options.clone());
            let grads = (y * r.clone()).sum().backward();
            sync();
            grads
        });
        if ok(&counts) {
            return;
        }
        last = format!("{:?}", counts.by_kernel);
    }
    panic!("{what}: {last}");
}

/// A pointwise convolution on wgpu is one matmul forward and, backward, two matmuls and the
/// weight gradient's sum over the batch, with no layout copies (Burn's conv2d wraps its
/// gemm in copies to and from channels-last).
#[test]
fn pointwise_conv_training_dispatches_wgpu() {
    let c = case([4, 24, 6, 5], 16, 1, 1, 0, 1);
    conv_training_dispatches(&c, "pointwise conv", |counts| {
        let kinds = counts.by_kind();
        kinds.get("matmul") == Some(&3)
            && !kinds.contains_key("copy")
            && !kinds.contains_key("conv")
    });
}
