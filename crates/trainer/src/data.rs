//! The run's data: an ImageFolder, Oxford-102's native layout, or the built-in synthetic
//! flowers, turned into loaders, plus the eval transform applied to a packed batch.

use crate::config::{Cache, FineTuneConfig};
use crate::error::TrainError;
use burn::tensor::{Device, Tensor};
use petal_data::folder::ScanWarning;
use petal_data::{
    ClassList, EvalTransform, ImageFolder, Loader, LoaderConfig, Oxford102, PackedBatch,
    ScanOptions, Source, SyntheticFlowers,
};
use std::path::Path;

/// The splits of a run.
pub struct RunData {
    /// Class folders and display names, in label order.
    pub classes: ClassList,
    /// Training samples.
    pub train: Source,
    /// Validation samples.
    pub valid: Source,
    /// Test samples, where the data set has them.
    pub test: Option<Source>,
    /// Files the scan skipped.
    pub warnings: Vec<ScanWarning>,
    /// A one-line description (`ImageFolder /data/flowers: 102 classes, …`).
    pub description: String,
}

/// Opens `config.data` (or the synthetic set when unset). `data_override` replaces the
/// configured folder (`petal eval --data`).
pub fn open(config: &FineTuneConfig, data_override: Option<&Path>) -> Result<RunData, TrainError> {
    let root = data_override.or(config.data.as_deref());
    let Some(root) = root else {
        let s = &config.synthetic;
        let flowers = SyntheticFlowers::new(s.classes, s.image_size, config.seed);
        let train = (0..s.train as u64).collect::<Vec<_>>();
        let valid = (s.train as u64..(s.train + s.valid) as u64).collect::<Vec<_>>();
        return Ok(RunData {
            classes: flowers.classes(),
            description: format!(
                "synthetic flowers: {} classes, {} train / {} valid images of {}² (seed {})",
                s.classes, s.train, s.valid, s.image_size, config.seed
            ),
            train: Source::Synthetic {
                flowers,
                indices: train,
            },
            valid: Source::Synthetic {
                flowers,
                indices: valid,
            },
            test: None,
            warnings: Vec::new(),
        });
    };
    if Oxford102::is_native_layout(root) {
        let o = Oxford102::open(root)?;
        return Ok(RunData {
            description: format!(
                "Oxford-102 {}: 102 classes, {} train / {} valid / {} test images",
                root.display(),
                o.train.len(),
                o.valid.len(),
                o.test.len()
            ),
            classes: o.classes,
            train: Source::Files(o.train),
            valid: Source::Files(o.valid),
            test: Some(Source::Files(o.test)),
            warnings: Vec::new(),
        });
    }
    let opts = ScanOptions {
        valid_fraction: config.valid_fraction,
        seed: config.seed,
        max_pixels: config.max_pixels,
    };
    let f = ImageFolder::scan(root, &opts)?;
    Ok(RunData {
        description: format!(
            "ImageFolder {}: {} classes, {} train / {} valid{} images{}",
            root.display(),
            f.classes.names.len(),
            f.train.len(),
            f.valid.len(),
            f.test
                .as_ref()
                .map(|t| format!(" / {} test", t.len()))
                .unwrap_or_default(),
            if f.valid_is_split {
                format!(
                    " (valid = stratified {:.0}% of train/)",
                    config.valid_fraction * 100.0
                )
            } else {
                String::new()
            }
        ),
        classes: f.classes,
        train: Source::Files(f.train),
        valid: Source::Files(f.valid),
        test: f.test.map(Source::Files),
        warnings: f.warnings,
    })
}

/// A loader over `source` with the run's settings.
pub fn loader(config: &FineTuneConfig, source: Source, train: bool) -> Loader {
    let n = source.len();
    Loader::new(
        source,
        LoaderConfig {
            batch_size: config.batch_size,
            shuffle: train,
            balanced: train && config.sampler == crate::config::Sampler::Balanced,
            seed: config.seed,
            // A last batch of one image cannot be batch-normalised; fastai drops it too.
            drop_last: train && n > config.batch_size,
            prefetch: config.prefetch.max(1),
            max_shorter_side: config.max_shorter_side,
            cache: config.cache == Cache::Ram,
            max_pixels: config.max_pixels,
            threads: config.threads,
            // Validation counts every image once: a bad one leaves its batch short.
            replace_bad: train,
            ..LoaderConfig::default()
        },
    )
}

/// The run's eval transform (resize shorter side, center crop, normalise).
pub fn eval_transform(config: &FineTuneConfig) -> EvalTransform {
    EvalTransform {
        resize: config.eval_resize() as u32,
        crop: config.augment.size as u32,
        mean: config.augment.mean,
        std: config.augment.std,
    }
}

/// A packed batch through the eval transform (and optionally mirrored): `[N, 3, S, S]`
/// (on a GPU in one kernel pass: [`petal_data::augment::eval_preprocess`]).
pub fn eval_batch(
    t: &EvalTransform,
    batch: &PackedBatch,
    flip: bool,
    device: &Device,
) -> Tensor<4> {
    petal_data::augment::eval_preprocess(t, batch, flip, device)
}

/// `--class-weights`: `auto` gives `n / (K · n_c)` (scikit-learn's "balanced"; 0 for a class
/// without training images); otherwise `spec` is a JSON file holding K weights in label
/// order, or an object from class name (display or folder name) to weight, the classes it
/// leaves out weighing 1. Every weight must be finite and ≥ 0, and one > 0.
pub fn class_weights(
    spec: &str,
    counts: &[usize],
    classes: &ClassList,
) -> Result<Vec<f32>, TrainError> {
    let k = counts.len();
    let fail = |reason: String| TrainError::Config {
        what: format!("--class-weights {spec} (config key class_weights)"),
        reason,
    };
    let weights: Vec<f32> = if spec == "auto" {
        let n: usize = counts.iter().sum();
        counts
            .iter()
            .map(|&c| {
                if c == 0 {
                    0.0
                } else {
                    (n as f64 / (k as f64 * c as f64)) as f32
                }
            })
            .collect()
    } else {
        let path = Path::new(spec);
        let text = std::fs::read_to_string(path).map_err(|e| {
            fail(format!(
                "cannot read the file: {e} (use `auto` or a JSON file)"
            ))
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))?;
        match value {
            serde_json::Value::Array(items) => {
                if items.len() != k {
                    return Err(fail(format!(
                        "{} weights for {k} classes (one per class, in label order)",
                        items.len()
                    )));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_f64()
                            .map(|x| x as f32)
                            .ok_or_else(|| fail(format!("entry {i} is not a number: {v}")))
                    })
                    .collect::<Result<_, _>>()?
            }
            serde_json::Value::Object(map) => {
                let mut w = vec![1.0f32; k];
                for (name, v) in &map {
                    let i = classes
                        .names
                        .iter()
                        .position(|n| n == name)
                        .or_else(|| classes.folders.iter().position(|n| n == name))
                        .ok_or_else(|| fail(format!("no class called `{name}`")))?;
                    w[i] = v
                        .as_f64()
                        .ok_or_else(|| fail(format!("`{name}`: not a number: {v}")))?
                        as f32;
                }
                w
            }
            _ => {
                return Err(fail(
                    "expected a list of weights or an object {\"class\": weight}".into(),
                ));
            }
        }
    };
    if let Some((i, w)) = weights
        .iter()
        .enumerate()
        .find(|(_, w)| !w.is_finite() || **w < 0.0)
    {
        return Err(fail(format!(
            "weight {w} of class {i} must be finite and >= 0"
        )));
    }
    if weights.iter().all(|&w| w == 0.0) {
        return Err(fail("every weight is 0".into()));
    }
    Ok(weights)
}
