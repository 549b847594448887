//! The fused concat-pool kernel (wgpu) against the stock-op reference and hand-computed
//! values: forward and input gradient, edge shapes, ties, NaN; and a whole DenseNet +
//! head training step whose parameter gradients must match the reference path.

use crate::common::*;
use burn::module::Param;
use burn::optim::GradientsParams;
use burn::prelude::*;
use petal::kernels::concat_pool::{
    PoolOrder, concat_pool, concat_pool_reference, set_grid_row_limit, uses_fused_kernel,
};
use petal::models::densenet::DenseNetConfig;
use petal::models::head::PoolOrder as HeadPoolOrder;
use petal::models::{Backbone, BackboneConfig, ClassifierConfig, Head, HeadConfig};

const TOL: f32 = 1e-5;

/// A deterministic pseudo-random input with controlled ties and NaNs.
fn input(shape: [usize; 4], ties: bool, nan_at: Option<usize>) -> Vec<f32> {
    let len: usize = shape.iter().product();
    let mut v = xorshift_values(len, 0x9E37_79B9_7F4A_7C15u64 ^ len as u64);
    if ties {
        // Quantise so that each plane has repeated maxima.
        v.iter_mut().for_each(|x| *x = (*x * 2.0).round() / 2.0);
    }
    if let Some(i) = nan_at {
        v[i] = f32::NAN;
    }
    v
}

/// Hand-computed forward and input gradient of `sum(out · w)` (avg then max; first index
/// on ties; a NaN is the max and the first NaN takes the gradient).
fn by_hand(x: &[f32], shape: [usize; 4], w: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let [n, c, h, wd] = shape;
    let hw = h * wd;
    let mut out = vec![0f32; n * 2 * c];
    let mut dx = vec![0f32; x.len()];
    for b in 0..n {
        for ch in 0..c {
            let plane = &x[(b * c + ch) * hw..(b * c + ch + 1) * hw];
            let sum: f64 = plane.iter().map(|&v| v as f64).sum();
            let mut arg = 0;
            for (i, &v) in plane.iter().enumerate() {
                let m = plane[arg];
                // `v > m` is false for a NaN v; a NaN m is never replaced.
                if !m.is_nan() && (v.is_nan() || v > m) {
                    arg = i;
                }
            }
            out[b * 2 * c + ch] = (sum / hw as f64) as f32;
            out[b * 2 * c + c + ch] = plane[arg];
            let (wa, wm) = (w[b * 2 * c + ch], w[b * 2 * c + c + ch]);
            for i in 0..hw {
                dx[(b * c + ch) * hw + i] = wa / hw as f32 + if i == arg { wm } else { 0.0 };
            }
        }
    }
    (out, dx)
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            if x.is_nan() && y.is_nan() {
                0.0
            } else {
                (x - y).abs()
            }
        })
        .fold(
            0f32,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        )
}

/// Forward and input gradient of `sum(concat_pool(x) · w)` on `device`.
fn run(
    device: &Device,
    data: &[f32],
    shape: [usize; 4],
    w: &[f32],
    fused: bool,
) -> (Vec<f32>, Vec<f32>) {
    let device = device.clone().autodiff();
    let x = Tensor::<4>::from_data(TensorData::new(data.to_vec(), shape), &device).require_grad();
    let out = if fused {
        concat_pool(x.clone(), PoolOrder::AvgMax)
    } else {
        concat_pool_reference(x.clone(), PoolOrder::AvgMax)
    };
    let weights = Tensor::<2>::from_data(
        TensorData::new(w.to_vec(), [shape[0], 2 * shape[1]]),
        &device,
    );
    let grads = (out.clone() * weights).sum().backward();
    let dx = x.grad(&grads).expect("x receives a gradient");
    (values(out), values(dx))
}

#[test]
fn concat_pool_matches_reference() {
    let gpu = wgpu();
    assert!(uses_fused_kernel(&gpu, burn::tensor::DType::F32));
    assert!(!uses_fused_kernel(&flex(), burn::tensor::DType::F32));
    let shapes: [[usize; 4]; 5] = [
        [1, 1, 1, 1],
        [2, 3, 7, 7],
        [3, 5, 13, 17],
        [8, 2208, 7, 7],
        [2, 64, 64, 64],
    ];
    for shape in shapes {
        for (ties, nan) in [(false, false), (true, false), (true, true)] {
            let len: usize = shape.iter().product();
            let x = input(shape, ties, nan.then_some(len / 3));
            let w = input([shape[0], 2 * shape[1], 1, 1], false, None);
            let (out_hand, dx_hand) = by_hand(&x, shape, &w);
            let (out_gpu, dx_gpu) = run(&gpu, &x, shape, &w, true);
            let what = format!("{shape:?} ties={ties} nan={nan}");
            let e_out = max_abs(&out_gpu, &out_hand);
            let e_dx = max_abs(&dx_gpu, &dx_hand);
            assert!(e_out <= TOL, "{what}: forward vs by hand {e_out:e}");
            assert!(e_dx <= TOL, "{what}: gradient vs by hand {e_dx:e}");
            if nan {
                let plane = (len / 3) / (shape[2] * shape[3]);
                let (b, c) = (plane / shape[1], plane % shape[1]);
                assert!(
                    out_gpu[b * 2 * shape[1] + shape[1] + c].is_nan(),
                    "{what}: NaN max"
                );
                assert!(out_gpu[b * 2 * shape[1] + c].is_nan(), "{what}: NaN mean");
            }
            if !ties && !nan {
                // Without ties the reference's gradient is unambiguous: compare to it too.
                let (out_ref, dx_ref) = run(&flex(), &x, shape, &w, false);
                let e_out = max_abs(&out_gpu, &out_ref);
                let e_dx = max_abs(&dx_gpu, &dx_ref);
                println!(
                    "concat_pool {what}: |fused - reference| forward {e_out:.1e}, gradient {e_dx:.1e}"
                );
                assert!(e_out <= TOL, "{what}: forward vs reference {e_out:e}");
                assert!(e_dx <= TOL, "{what}: gradient vs reference {e_dx:e}");
            }
        }
    }
}

#[test]
fn concat_pool_max_avg_order_and_non_contiguous_input() {
    let gpu = wgpu();
    let shape = [2, 3, 5, 4];
    let x = input(shape, false, None);
    let t = Tensor::<4>::from_data(TensorData::new(x.clone(), shape), &gpu);
    let r = Tensor::<4>::from_data(TensorData::new(x, shape), &flex());
    let fused = values(concat_pool(t.clone(), PoolOrder::MaxAvg));
    let reference = values(concat_pool_reference(r.clone(), PoolOrder::MaxAvg));
    assert!(max_abs(&fused, &reference) <= TOL);
    // A transposed view (H and W swapped) is made contiguous first.
    let fused = values(concat_pool(t.swap_dims(2, 3), PoolOrder::AvgMax));
    let reference = values(concat_pool_reference(r.swap_dims(2, 3), PoolOrder::AvgMax));
    assert!(max_abs(&fused, &reference) <= TOL);
}

#[test]
fn densenet_training_step_gradients_match_the_reference_path_wgpu() {
    let device = wgpu().autodiff();
    let backbone = BackboneConfig::DenseNet(DenseNetConfig::new(4, vec![2, 2], 8).with_bn_size(2));
    let head = HeadConfig::ConcatPool {
        hidden: vec![16],
        dropout: vec![0.0],
        pool_order: HeadPoolOrder::AvgMax,
    };
    let mut model = ClassifierConfig::new(backbone, head, 3).init(&device);
    // Shift norm5 so the final ReLU is (almost surely) the identity: a randomly initialised
    // net otherwise has planes that are all zero after it, where max pooling has ties and
    // every index is a valid subgradient (the kernel picks the first, Burn's reference
    // another), which would make the comparison meaningless.
    if let Backbone::DenseNet(d) = &mut model.backbone {
        let c = d.num_features();
        d.norm5.beta = Param::from_tensor(Tensor::full([c], 4.0, &device));
    }
    let Head::ConcatPool(h) = &model.head else {
        unreachable!()
    };
    const N: usize = 8;
    let x_data = input([N, 3, 32, 32], false, None);
    let step = |fused: bool| {
        let x = Tensor::<4>::from_data(TensorData::new(x_data.clone(), [N, 3, 32, 32]), &device);
        let f = model.forward_features(x);
        let pooled = if fused {
            concat_pool(f, PoolOrder::AvgMax)
        } else {
            concat_pool_reference(f, PoolOrder::AvgMax)
        };
        let logits = h.forward_pooled(pooled);
        let loss = burn::tensor::activation::log_softmax(logits, 1)
            .slice([0..N, 0..1])
            .mean()
            .neg();
        param_grads(
            &model,
            &GradientsParams::from_grads(loss.backward(), &model),
        )
        .into_iter()
        .filter_map(|p| p.grad.map(|g| (p.path, g)))
        .collect::<Vec<_>>()
    };
    let fused = step(true);
    let reference = step(false);
    assert_eq!(fused.len(), reference.len());
    assert!(fused.len() > 20, "every parameter has a gradient");
    // Relative to each gradient's own scale, floored at 10 % of the largest gradient in the
    // model: gradients that are mathematically zero (norm5's beta only shifts what the head's
    // train-mode BatchNorm re-centres) are rounding noise (1e-8…1e-6 here) on both paths, and
    // a ratio of two noises means nothing.
    let (worst, at) = worst_error(&fused, &reference, 0.1 * global_max(&reference));
    assert!(worst <= 1e-4, "{at}: gradient error {worst:e}");
    println!(
        "DenseNet step on wgpu: worst parameter-gradient relative error fused vs reference {worst:.1e}"
    );
}

#[test]
fn concat_pool_f16_wgpu() {
    use burn::tensor::DType;
    let gpu = wgpu();
    assert!(uses_fused_kernel(&gpu, DType::F16));
    let shape = [2, 3, 9, 7];
    let x = input(shape, false, None);
    let w = vec![0f32; 2 * 2 * 3];
    let (want, _) = by_hand(&x, shape, &w);
    let t = Tensor::<4>::from_data(TensorData::new(x, shape), &gpu).cast(DType::F16);
    let out = concat_pool(t, PoolOrder::AvgMax);
    assert_eq!(out.dtype(), DType::F16);
    let got = values(out);
    // f16 keeps 11 significant bits: inputs in [-2, 2] round by ≤ 2^-10.
    let err = max_abs(&got, &want);
    assert!(err <= 2e-3, "f16 forward error {err:e}");
}

#[test]
fn concat_pool_grid_wraps_onto_a_second_dimension_wgpu() {
    // Past 65,535 workgroups the grid wraps onto rows. Shapes that large exceed lavapipe's
    // 128 MiB buffers, so the row limit is lowered instead (geometry only: results are the
    // same for any limit, which also keeps concurrently running tests correct).
    let gpu = wgpu();
    set_grid_row_limit(3);
    // 1,100 planes: 5 workgroups of 256 for the thread-per-plane layout (H·W = 3·5) and
    // 1,100 workgroups for the workgroup-per-plane layout (H·W = 23·25).
    for shape in [[4, 275, 3, 5], [4, 275, 23, 25]] {
        let x = input(shape, false, None);
        let w = input([shape[0], 2 * shape[1], 1, 1], false, None);
        let (out_hand, dx_hand) = by_hand(&x, shape, &w);
        let (out, dx) = run(&gpu, &x, shape, &w, true);
        assert!(max_abs(&out, &out_hand) <= TOL, "{shape:?} forward");
        assert!(max_abs(&dx, &dx_hand) <= TOL, "{shape:?} gradient");
    }
    set_grid_row_limit(65_535);
}
