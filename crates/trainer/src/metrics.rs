//! Metrics: top-k accuracy, per-class accuracy and the confusion matrix from logits, and the
//! per-epoch log written as `metrics.jsonl` and `metrics.csv`.

use crate::error::TrainError;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// Whether `label` is among the `k` largest of `logits` (ties broken by lower index, as
/// `torch.topk` on CPU).
pub fn in_top_k(logits: &[f32], label: usize, k: usize) -> bool {
    let v = logits[label];
    let better = logits
        .iter()
        .enumerate()
        .filter(|&(i, &x)| x > v || (x == v && i < label))
        .count();
    better < k
}

/// Index of the largest logit (first on ties).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best
}

/// Accumulates predictions of a split.
#[derive(Clone, Debug)]
pub struct Tally {
    /// Number of classes.
    pub classes: usize,
    /// Sum of per-sample losses.
    pub loss_sum: f64,
    /// Samples seen.
    pub n: u64,
    /// Top-1 hits.
    pub top1: u64,
    /// Top-5 hits.
    pub top5: u64,
    /// `confusion[true][pred]` counts.
    pub confusion: Vec<Vec<u64>>,
}

impl Tally {
    /// Empty tally for `classes` classes.
    pub fn new(classes: usize) -> Self {
        Self {
            classes,
            loss_sum: 0.0,
            n: 0,
            top1: 0,
            top5: 0,
            confusion: vec![vec![0; classes]; classes],
        }
    }

    /// Adds one sample's logits, label and loss.
    pub fn add(&mut self, logits: &[f32], label: usize, loss: f64) {
        self.loss_sum += loss;
        self.n += 1;
        let pred = argmax(logits);
        self.top1 += (pred == label) as u64;
        self.top5 += in_top_k(logits, label, 5) as u64;
        self.confusion[label][pred] += 1;
    }

    /// Mean loss.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.n.max(1) as f64
    }

    /// Top-1 accuracy in [0, 1].
    pub fn top1(&self) -> f64 {
        self.top1 as f64 / self.n.max(1) as f64
    }

    /// Top-5 accuracy in [0, 1].
    pub fn top5(&self) -> f64 {
        self.top5 as f64 / self.n.max(1) as f64
    }

    /// Accuracy of each class (`None` for a class with no sample).
    pub fn per_class(&self) -> Vec<Option<f64>> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(c, row)| {
                let n: u64 = row.iter().sum();
                (n > 0).then(|| row[c] as f64 / n as f64)
            })
            .collect()
    }
}

/// Cross-entropy of one sample from its logits, with label smoothing `eps`
/// (PyTorch's `CrossEntropyLoss(label_smoothing=eps)`), in f64.
pub fn cross_entropy(logits: &[f32], label: usize, eps: f64) -> f64 {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = m + logits
        .iter()
        .map(|&x| (x as f64 - m).exp())
        .sum::<f64>()
        .ln();
    let nll = lse - logits[label] as f64;
    if eps == 0.0 {
        return nll;
    }
    let k = logits.len() as f64;
    let mean_nll = logits.iter().map(|&x| lse - x as f64).sum::<f64>() / k;
    (1.0 - eps) * nll + eps * mean_nll
}

/// One epoch's line of `metrics.jsonl` / `metrics.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch, 1-based.
    pub epoch: usize,
    /// `frozen` or `unfrozen` (with gradual unfreezing: `unfrozen:K` groups).
    pub phase: String,
    /// Optimizer steps done at the end of the epoch.
    pub step: u64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Running training top-1.
    pub train_top1: f64,
    /// Validation loss.
    pub valid_loss: f64,
    /// Validation top-1.
    pub valid_top1: f64,
    /// Validation top-5.
    pub valid_top5: f64,
    /// Head learning rate at the epoch's last step.
    pub lr: f64,
    /// Learning rate of every layer group at the epoch's last step (input side first).
    pub lrs: Vec<f64>,
    /// Wall time of the epoch in seconds (training + validation).
    pub time_s: f64,
    /// Training images per second.
    pub images_per_s: f64,
    /// `--precision mixed`: the loss scale at the end of the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// `--precision mixed`: optimizer steps skipped so far (non-finite gradients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_steps: Option<u64>,
}

const CSV_HEADER: &str = "epoch,phase,step,train_loss,train_top1,valid_loss,valid_top1,valid_top5,lr,time_s,images_per_s";

impl EpochRecord {
    fn csv(&self) -> String {
        format!(
            "{},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6e},{:.3},{:.2}",
            self.epoch,
            self.phase,
            self.step,
            self.train_loss,
            self.train_top1,
            self.valid_loss,
            self.valid_top1,
            self.valid_top5,
            self.lr,
            self.time_s,
            self.images_per_s
        )
    }
}

/// Rewrites `metrics.jsonl` and `metrics.csv` in `dir` with `records`.
pub fn write_metrics(dir: &Path, records: &[EpochRecord]) -> Result<(), TrainError> {
    let mut jsonl = String::new();
    let mut csv = format!("{CSV_HEADER}\n");
    for r in records {
        jsonl.push_str(&serde_json::to_string(r).expect("record serialises"));
        jsonl.push('\n');
        csv.push_str(&r.csv());
        csv.push('\n');
    }
    write_atomic(&dir.join("metrics.jsonl"), jsonl.as_bytes())?;
    write_atomic(&dir.join("metrics.csv"), csv.as_bytes())
}

/// Reads `metrics.jsonl` of a run (empty when absent).
pub fn read_metrics(dir: &Path) -> Result<Vec<EpochRecord>, TrainError> {
    let path = dir.join("metrics.jsonl");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| TrainError::Config {
                what: path.display().to_string(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let go = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    go().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TrainError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_and_loss_by_hand() {
        let l = [1.0, 3.0, 2.0, 3.0];
        assert_eq!(argmax(&l), 1);
        assert!(in_top_k(&l, 1, 1));
        assert!(!in_top_k(&l, 3, 1)); // tie: the lower index wins
        assert!(in_top_k(&l, 3, 2));
        assert!(!in_top_k(&l, 0, 3));
        // log(e^1 + e^3 + e^2 + e^3) - 2 = 1.9175757955...
        let ce = cross_entropy(&l, 2, 0.0);
        assert!((ce - 1.917_575_795_6).abs() < 1e-9, "{ce}");
        // smoothing 0.1: 0.9 * ce + 0.1 * mean_k(lse - x_k)
        let lse = ce + 2.0;
        let want = 0.9 * ce + 0.1 * ((lse - 1.0) + 2.0 * (lse - 3.0) + (lse - 2.0)) / 4.0;
        assert!((cross_entropy(&l, 2, 0.1) - want).abs() < 1e-12);
    }
}
