//! `petal bench pool`: the fused concat-pool kernel vs its stock-op reference.

use super::median_ms;
use anyhow::{Result, bail};
use burn::prelude::*;
use clap::Args;
use petal_core::device::{DeviceChoice, select_device};
use petal_kernels::concat_pool::{
    PoolOrder, concat_pool, concat_pool_reference, uses_fused_kernel,
};
use serde::Serialize;

/// Arguments of `petal bench pool`.
#[derive(Args, Debug)]
pub struct PoolArgs {
    /// Device: wgpu, vulkan, metal, dx12 (the fused kernel needs wgpu), or auto.
    #[arg(long, default_value = "wgpu")]
    device: String,
    /// Timed runs per measurement (the median is reported).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Untimed warm-up runs per measurement.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct PoolResult {
    shape: [usize; 4],
    pass: &'static str,
    fused_ms: f64,
    reference_ms: f64,
    speedup: f64,
    /// Effective bandwidth of the fused kernel: bytes read + written per run / time.
    gbps: f64,
}

#[derive(Serialize)]
struct PoolReport {
    device: String,
    runs: usize,
    results: Vec<PoolResult>,
}

/// Runs `petal bench pool`.
pub fn run(args: PoolArgs) -> Result<i32> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let selected = select_device(args.device.parse::<DeviceChoice>()?)?;
    let device = selected.device.clone();
    if !uses_fused_kernel(&device, burn::tensor::DType::F32) {
        bail!(
            "--device {}: {} has no fused concat-pool kernel (it runs on wgpu devices); use --device wgpu",
            args.device,
            selected.description
        );
    }
    let sync = |d: &Device| d.sync().expect("device sync");
    let mut results = Vec::new();
    for shape in [[64, 2208, 7, 7], [256, 1024, 7, 7]] {
        let [n, c, h, w] = shape;
        let x = Tensor::<4>::random(shape, burn::tensor::Distribution::Default, &device);
        let elems = (n * c * h * w) as f64;
        let pooled = (n * 2 * c) as f64;
        // Forward: read x, write [N, 2C].
        let fwd_bytes = 4.0 * (elems + pooled);
        let fwd = |fused: bool| {
            eprintln!(
                "  {shape:?} forward, {}…",
                if fused { "fused" } else { "reference" }
            );
            median_ms(args.warmup, args.runs, || {
                let out = if fused {
                    concat_pool(x.clone(), PoolOrder::AvgMax)
                } else {
                    concat_pool_reference(x.clone(), PoolOrder::AvgMax)
                };
                drop(out);
                sync(&device);
            })
        };
        let (f_ms, r_ms) = (fwd(true), fwd(false));
        results.push(PoolResult {
            shape,
            pass: "forward",
            fused_ms: f_ms,
            reference_ms: r_ms,
            speedup: r_ms / f_ms,
            gbps: fwd_bytes / (f_ms * 1e6),
        });
        // Forward + backward: forward as above, then read x and the [N, 2C] gradient and
        // write dx.
        let ad = device.clone().autodiff();
        let xa = x.clone().autodiff();
        let ones = Tensor::<2>::ones([n, 2 * c], &ad);
        let fb_bytes = fwd_bytes + 4.0 * (2.0 * elems + pooled);
        let fwd_bwd = |fused: bool| {
            eprintln!(
                "  {shape:?} forward+backward, {}…",
                if fused { "fused" } else { "reference" }
            );
            median_ms(args.warmup, args.runs, || {
                let xg = xa.clone().require_grad();
                let out = if fused {
                    concat_pool(xg.clone(), PoolOrder::AvgMax)
                } else {
                    concat_pool_reference(xg.clone(), PoolOrder::AvgMax)
                };
                let grads = (out * ones.clone()).sum().backward();
                let dx = xg.grad(&grads).expect("input gradient");
                drop(dx);
                sync(&device);
            })
        };
        let (f_ms, r_ms) = (fwd_bwd(true), fwd_bwd(false));
        results.push(PoolResult {
            shape,
            pass: "forward_backward",
            fused_ms: f_ms,
            reference_ms: r_ms,
            speedup: r_ms / f_ms,
            gbps: fb_bytes / (f_ms * 1e6),
        });
    }
    let report = PoolReport {
        device: selected.description,
        runs: args.runs,
        results,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "concat-pool on {} (median of {} runs after {} warm-up)",
            report.device, args.runs, args.warmup
        );
        println!(
            "{:<18} {:<17} {:>10} {:>13} {:>8} {:>10}",
            "shape", "pass", "fused ms", "reference ms", "speedup", "fused GB/s"
        );
        for r in &report.results {
            println!(
                "{:<18} {:<17} {:>10.3} {:>13.3} {:>7.2}x {:>10.2}",
                format!("{:?}", r.shape).replace(' ', ""),
                r.pass,
                r.fused_ms,
                r.reference_ms,
                r.speedup,
                r.gbps
            );
        }
    }
    Ok(0)
}
