//! `petal bench conv`: petal's two CPU paths for stride-1 convolutions larger than 1×1 —
//! im2col + gemm and the shifted gemms (`petal_kernels::conv::shifted`) — per layer shape,
//! forward and both gradients, alternating run by run in one process.

use super::rayon_threads;
use anyhow::{Context, Result, bail};
use clap::Args;
use petal_kernels::conv::cpu::{self, Geometry};
use petal_kernels::conv::shifted::{self, Path};
use serde::Serialize;
use std::time::Instant;

/// densenet121's 3×3 layers (128 → 32) and resnet50's (C → C) on the maps of a 64² and a
/// 224² input.
const DEFAULT_LAYERS: &[&str] = &[
    "128:32:56",
    "128:32:28",
    "128:32:16",
    "128:32:14",
    "128:32:8",
    "128:32:7",
    "128:32:4",
    "64:64:56",
    "128:128:28",
    "64:64:16",
    "128:128:8",
    "256:256:14",
    "512:512:7",
    "256:256:4",
];

/// Arguments of `petal bench conv`.
#[derive(Args, Debug)]
pub struct ConvArgs {
    /// Layers as `C:O:S` (input channels, output channels, side of the square map),
    /// comma-separated; default: the 3×3 layers of densenet121 and resnet50 at 64² and
    /// 224² inputs.
    #[arg(long = "layers", value_delimiter = ',')]
    layers: Vec<String>,
    /// Samples per batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Square kernel side (2 or more; the padding keeps the map's size: `kernel / 2`).
    #[arg(long, default_value_t = 3)]
    kernel: usize,
    /// Timed runs per path and pass (the fastest is reported: this VM's drift only slows).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct PassTimes {
    im2col_ms: f64,
    shifted_ms: f64,
    /// `im2col_ms / shifted_ms`: > 1, the shifted gemms are faster.
    speedup: f64,
}

#[derive(Serialize)]
struct LayerResult {
    layer: String,
    /// Whether petal's default (`Path::Auto`) takes the shifted gemms for this layer.
    auto_shifted: bool,
    forward: PassTimes,
    weight_grad: PassTimes,
    input_grad: PassTimes,
}

#[derive(Serialize)]
struct ConvReport {
    engine: &'static str,
    batch: usize,
    kernel: usize,
    runs: usize,
    cpu_threads: usize,
    results: Vec<LayerResult>,
}

/// Parses `C:O:S`.
fn parse_layer(text: &str) -> Result<[usize; 3]> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    let [c, o, s] = parts.as_slice() else {
        bail!(
            "--layers {text:?}: expected C:O:S (input channels, output channels, map side), e.g. 128:32:56"
        );
    };
    let num = |what: &str, v: &str| -> Result<usize> {
        let n: usize = v
            .parse()
            .with_context(|| format!("--layers {text:?}: {what} {v:?} is not a whole number"))?;
        if !(1..=4096).contains(&n) {
            bail!("--layers {text:?}: {what} {n} is out of range: allowed 1..=4096");
        }
        Ok(n)
    };
    Ok([
        num("input channels", c)?,
        num("output channels", o)?,
        num("map side", s)?,
    ])
}

/// Wall time of one call of `f`, in ms.
fn time_ms(f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

/// Runs `petal bench conv`.
pub fn run(args: ConvArgs) -> Result<i32> {
    crate::check_range("runs", args.runs, 1, 1_000)?;
    // 1×1 convolutions have no im2col to avoid.
    crate::check_range("kernel", args.kernel, 2, 15)?;
    crate::check_range("batch", args.batch, 1, 256)?;
    let texts: Vec<String> = if args.layers.is_empty() {
        DEFAULT_LAYERS.iter().map(|s| s.to_string()).collect()
    } else {
        args.layers.clone()
    };
    let layers = texts
        .iter()
        .map(|t| parse_layer(t))
        .collect::<Result<Vec<_>>>()?;
    let mut results = Vec::new();
    for (text, &[c, o, side]) in texts.iter().zip(&layers) {
        let g = Geometry {
            n: args.batch,
            c,
            h: side,
            w: side,
            o,
            kernel: [args.kernel; 2],
            stride: [1, 1],
            padding: [args.kernel / 2; 2],
            dilation: [1, 1],
            groups: 1,
        };
        let [ho, wo] = g
            .output_size()
            .context("the kernel does not fit the padded map")?;
        let elements = [
            g.n * c * side * side,
            o * c * args.kernel * args.kernel,
            g.n * o * ho * wo,
        ];
        let bytes = elements.iter().sum::<usize>() as u64 * 4 * 3;
        if bytes > 4 << 30 {
            bail!(
                "--layers {text:?} with --batch {}: the tensors take {:.1} GiB, more than this bench's 4 GiB; use a smaller batch or map",
                args.batch,
                bytes as f64 / (1u64 << 30) as f64
            );
        }
        let noise = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| (((i * 7919 + seed * 104729) % 2001) as f32 - 1000.0) / 1000.0)
                .collect()
        };
        let (x, w, dy) = (
            noise(elements[0], 1),
            noise(elements[1], 2),
            noise(elements[2], 3),
        );
        let auto_shifted = shifted::serves(&g);
        let pass = |f: &mut dyn FnMut()| {
            let paths = [Path::Im2col, Path::Shifted];
            // One untimed call per path (scratch buffers, page faults), then the paths
            // alternate, one timed call each per round.
            for path in paths {
                shifted::set_path(path);
                f();
            }
            let mut best = [f64::INFINITY; 2];
            for _ in 0..args.runs {
                for (i, path) in paths.into_iter().enumerate() {
                    shifted::set_path(path);
                    best[i] = best[i].min(time_ms(f));
                }
            }
            PassTimes {
                im2col_ms: best[0],
                shifted_ms: best[1],
                speedup: best[0] / best[1],
            }
        };
        let forward = pass(&mut || drop(cpu::forward(&g, &x, &w, None)));
        let weight_grad = pass(&mut || drop(cpu::weight_grad(&g, &x, &dy)));
        let input_grad = pass(&mut || drop(cpu::input_grad(&g, &w, &dy)));
        shifted::set_path(Path::Auto);
        results.push(LayerResult {
            layer: text.trim().to_string(),
            auto_shifted,
            forward,
            weight_grad,
            input_grad,
        });
    }
    let report = ConvReport {
        engine: "petal",
        batch: args.batch,
        kernel: args.kernel,
        runs: args.runs,
        cpu_threads: rayon_threads(),
        results,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    println!(
        "conv {k}×{k} stride 1, batch {}, fastest of {} runs, ms (im2col / shifted = speedup):",
        report.batch,
        report.runs,
        k = report.kernel
    );
    println!(
        "  {:<12} {:>26} {:>26} {:>26}  default",
        "C:O:S", "forward", "weight grad", "input grad"
    );
    for r in &report.results {
        let cell = |p: &PassTimes| {
            format!(
                "{:.3} / {:.3} = {:.2}×",
                p.im2col_ms, p.shifted_ms, p.speedup
            )
        };
        println!(
            "  {:<12} {:>26} {:>26} {:>26}  {}",
            r.layer,
            cell(&r.forward),
            cell(&r.weight_grad),
            cell(&r.input_grad),
            if r.auto_shifted { "shifted" } else { "im2col" }
        );
    }
    Ok(0)
}
