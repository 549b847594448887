//! `petal eval`: a trained run on its validation or test split — loss, top-1, top-5,
//! per-class accuracy, the confusion matrix (CSV + PNG) and the worst predictions.

use crate::checkpoint::load_checkpoint_model;
use crate::config::FineTuneConfig;
use crate::data::{self, RunData};
use crate::error::TrainError;
use crate::metrics::{Tally, argmax, cross_entropy, write_atomic};
use crate::plot;
use crate::train::{device_of, files, predict_loader};
use petal_core::inference::softmax;
use petal_data::ClassList;
use petal_data::folder::Skipped;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Which split to evaluate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The validation split.
    Valid,
    /// The test split (`test/` or Oxford-102's `tstid`).
    Test,
}

/// One of the worst predictions (highest loss).
#[derive(Clone, Debug, Serialize)]
pub struct Mistake {
    /// The image.
    pub file: String,
    /// True class name.
    pub label: String,
    /// Predicted class name.
    pub predicted: String,
    /// Probability given to the prediction.
    pub probability: f64,
    /// Probability given to the true class.
    pub label_probability: f64,
    /// The sample's loss.
    pub loss: f64,
    /// The image shrunk to fit [`EvalOptions::thumbnails`] pixels (when asked for).
    #[serde(skip)]
    pub thumbnail: Option<image::RgbImage>,
}

/// Per-class line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct ClassAccuracy {
    /// Class name.
    pub class: String,
    /// Images of the class in the split.
    pub count: u64,
    /// Fraction classified correctly.
    pub accuracy: Option<f64>,
}

/// What `petal eval` reports (also written as `eval_<split>.json`).
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// `valid` or `test`.
    pub split: String,
    /// The checkpoint evaluated.
    pub checkpoint: String,
    /// Its architecture (`densenet161`, or a custom configuration's description).
    pub arch: String,
    /// Its model configuration (backbone, head, classes).
    #[serde(skip)]
    pub model: petal_core::ClassifierConfig,
    /// Images evaluated.
    pub images: u64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Top-1 accuracy.
    pub top1: f64,
    /// Top-5 accuracy.
    pub top5: f64,
    /// Per-class accuracy.
    pub per_class: Vec<ClassAccuracy>,
    /// The worst predictions, highest loss first.
    pub worst: Vec<Mistake>,
    /// The confusion matrix: `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    /// Where the confusion matrix went.
    pub confusion_csv: PathBuf,
    /// Where its picture went.
    pub confusion_png: PathBuf,
    /// Unreadable images of the split skipped (each counted once: by the folder scan or at
    /// batch time).
    pub skipped: usize,
    /// Those images (path, reason).
    pub skipped_files: Vec<(String, String)>,
}

/// Evaluation settings.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Run directory.
    pub run: PathBuf,
    /// Replacement data folder (default: the run's).
    pub data: Option<PathBuf>,
    /// The split.
    pub split: Split,
    /// `best.ckpt` (default) or `last.ckpt`.
    pub checkpoint: String,
    /// Mistakes to list.
    pub worst: usize,
    /// Average with the mirrored image.
    pub tta: bool,
    /// Device override.
    pub device: Option<String>,
    /// Batch size override.
    pub batch_size: Option<usize>,
    /// Attach to each of the worst predictions a thumbnail of at most this side (0: none).
    pub thumbnails: u32,
}

impl EvalOptions {
    /// The run's validation split with its best checkpoint, 10 worst predictions, no TTA,
    /// the run's device and batch size.
    pub fn new(run: impl Into<PathBuf>) -> Self {
        Self {
            run: run.into(),
            data: None,
            split: Split::Valid,
            checkpoint: "best.ckpt".into(),
            worst: 10,
            tta: false,
            device: None,
            batch_size: None,
            thumbnails: 0,
        }
    }
}

/// Reads a run's `config.json` and `classes.json`.
pub fn read_run(run: &Path) -> Result<(FineTuneConfig, ClassList), TrainError> {
    if !run.join(files::CONFIG).is_file() {
        return Err(TrainError::Config {
            what: format!("--run {}", run.display()),
            reason: "not a petal run directory (no config.json): give the --out folder of a `petal train`".into(),
        });
    }
    let config = FineTuneConfig::from_file(run.join(files::CONFIG))?;
    let path = run.join(files::CLASSES);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let classes: ClassList = serde_json::from_str(&text).map_err(|e| TrainError::Config {
        what: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok((config, classes))
}

/// Evaluates a run; writes `confusion.csv`, `confusion.png` and `eval_<split>.json` into it.
pub fn evaluate(opts: &EvalOptions) -> Result<EvalReport, TrainError> {
    let (config, classes) = read_run(&opts.run)?;
    let run_data = data::open(&config, opts.data.as_deref())?;
    evaluate_with(opts, config, &classes, &run_data)
}

/// [`evaluate`] on data already opened (`data::open` of the run's `config` and
/// `opts.data`; `petal report` also needs the training split and opens the data once).
pub fn evaluate_with(
    opts: &EvalOptions,
    mut config: FineTuneConfig,
    classes: &ClassList,
    run_data: &RunData,
) -> Result<EvalReport, TrainError> {
    if let Some(d) = &opts.device {
        config.device = d.clone();
    }
    if let Some(b) = opts.batch_size {
        config.batch_size = b;
    }
    let (device, _) = device_of(&config)?;
    let ckpt = opts.run.join(&opts.checkpoint);
    let (model, mconf) = load_checkpoint_model(&ckpt, &device)?;
    if run_data.classes.folders != classes.folders {
        return Err(TrainError::Config {
            what: "data".into(),
            reason: format!(
                "the folder's classes ({}) differ from the run's classes.json ({})",
                run_data.classes.folders.len(),
                classes.folders.len()
            ),
        });
    }
    let (name, source) = match opts.split {
        Split::Valid => ("valid", run_data.valid.clone()),
        Split::Test => (
            "test",
            run_data.test.clone().ok_or_else(|| TrainError::Config {
                what: "--split test".into(),
                reason: format!("{} has no test split", run_data.description),
            })?,
        ),
    };
    let split_dirs: &[&str] = match opts.split {
        Split::Valid => &["valid", "val"],
        Split::Test => &["test"],
    };
    let mut skipped_files: Vec<(String, String)> = run_data
        .warnings
        .iter()
        .filter(|w| w.skipped == Skipped::Image && in_split_folder(&w.path, split_dirs))
        .map(|w| (w.path.display().to_string(), w.reason.clone()))
        .collect();
    // Named here once; the loader names what fails at batch time.
    for (file, reason) in &skipped_files {
        log::warn!("skipping {file}: {reason}");
    }
    let k = mconf.num_classes;
    let loader = data::loader(&config, source.clone(), false);
    let t = data::eval_transform(&config);
    let mut tally = Tally::new(k);
    let mut all: Vec<(f64, usize, usize, usize, f64, f64)> = Vec::new();
    predict_loader(&model, &loader, &t, opts.tta, &device, |l, y, idx| {
        let loss = cross_entropy(l, y, 0.0);
        tally.add(l, y, loss);
        let p = softmax(l);
        let pred = argmax(l);
        all.push((loss, idx, y, pred, p[pred] as f64, p[y] as f64));
    });
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let cname = |i: usize| {
        classes
            .names
            .get(i)
            .cloned()
            .unwrap_or_else(|| i.to_string())
    };
    let worst = all
        .iter()
        .take(opts.worst)
        .map(|&(loss, idx, y, pred, pp, py)| Mistake {
            file: source.name(idx),
            label: cname(y),
            predicted: cname(pred),
            probability: pp,
            label_probability: py,
            loss,
            thumbnail: (opts.thumbnails > 0)
                .then(|| source.image(idx, petal_data::DEFAULT_MAX_PIXELS).ok())
                .flatten()
                .map(|img| shrink_to_fit(img, opts.thumbnails)),
        })
        .collect();
    let per_class = tally
        .per_class()
        .into_iter()
        .enumerate()
        .map(|(c, a)| ClassAccuracy {
            class: cname(c),
            count: tally.confusion[c].iter().sum(),
            accuracy: a,
        })
        .collect();
    let csv_path = opts.run.join("confusion.csv");
    let mut csv = String::from("true\\predicted");
    for c in 0..k {
        csv.push(',');
        csv.push_str(&csv_field(&cname(c)));
    }
    csv.push('\n');
    for (c, row) in tally.confusion.iter().enumerate() {
        csv.push_str(&csv_field(&cname(c)));
        for v in row {
            csv.push_str(&format!(",{v}"));
        }
        csv.push('\n');
    }
    write_atomic(&csv_path, csv.as_bytes())?;
    let png_path = opts.run.join("confusion.png");
    plot::confusion(&png_path, &tally.confusion, &classes.names)?;
    let report = EvalReport {
        split: name.into(),
        checkpoint: ckpt.display().to_string(),
        arch: mconf.backbone.name(),
        model: mconf.clone(),
        images: tally.n,
        loss: tally.loss(),
        top1: tally.top1(),
        top5: tally.top5(),
        per_class,
        worst,
        confusion: tally.confusion.clone(),
        confusion_csv: csv_path,
        confusion_png: png_path,
        skipped: 0,
        skipped_files: Vec::new(),
    };
    skipped_files.extend(loader.warnings().into_iter().map(|w| (w.name, w.reason)));
    let report = EvalReport {
        skipped: skipped_files.len(),
        skipped_files,
        ..report
    };
    write_atomic(
        &opts.run.join(format!("eval_{name}.json")),
        serde_json::to_string_pretty(&report)
            .expect("report serialises")
            .as_bytes(),
    )?;
    Ok(report)
}

/// Whether an image `<root>/<split>/<class>/<file>` lies in one of `split_dirs` (a
/// validation split carved out of `train/` has no folder of its own: its scan skips are
/// not attributed to it).
fn in_split_folder(path: &Path, split_dirs: &[&str]) -> bool {
    path.parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .is_some_and(|d| split_dirs.iter().any(|s| d == *s))
}

/// `img` scaled down (never up) to fit `side × side`, aspect kept.
fn shrink_to_fit(img: image::RgbImage, side: u32) -> image::RgbImage {
    let (w, h) = img.dimensions();
    if w.max(h) <= side {
        return img;
    }
    let k = side as f64 / w.max(h) as f64;
    let (nw, nh) = (
        ((w as f64 * k).round() as u32).max(1),
        ((h as f64 * k).round() as u32).max(1),
    );
    image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
