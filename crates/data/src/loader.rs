//! Batches of decoded images for the GPU augmentation: parallel decode (rayon) on a
//! background thread, a bounded prefetch queue so decoding overlaps the training step,
//! optional down-scaling at load, an optional in-RAM cache of decoded images, and
//! bad files skipped and replaced at batch time (the epoch goes on).
//!
//! A batch is **packed**: every image's RGB8 bytes back to back in one buffer with per-image
//! offset / width / height, ready to upload once per batch.

use crate::decode::{Alpha, decode_rgb8_with};
use crate::folder::Sample;
use crate::synthetic::SyntheticFlowers;
use crate::transform::resize_shorter_side;
use image::RgbImage;
use rand::SeedableRng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

/// Where images come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// Image files with labels.
    Files(Vec<Sample>),
    /// Synthetic flowers `0..count` of a generator.
    Synthetic {
        /// The generator.
        flowers: SyntheticFlowers,
        /// Sample indices (labels are `index % classes`).
        indices: Vec<u64>,
    },
}

impl Source {
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Self::Files(s) => s.len(),
            Self::Synthetic { indices, .. } => indices.len(),
        }
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The label of sample `i`.
    pub fn label(&self, i: usize) -> usize {
        match self {
            Self::Files(s) => s[i].label,
            Self::Synthetic { flowers, indices } => flowers.label(indices[i]),
        }
    }

    /// Decodes sample `i` (alpha composited over white, as the loader does); the reason
    /// when it cannot be read.
    pub fn image(&self, i: usize, max_pixels: u64) -> Result<RgbImage, String> {
        self.load(i, max_pixels, Alpha::WHITE)
    }

    fn load(&self, i: usize, max_pixels: u64, alpha: Alpha) -> Result<RgbImage, String> {
        match self {
            Self::Files(s) => {
                decode_rgb8_with(&s[i].path, max_pixels, alpha).map_err(|e| e.reason())
            }
            Self::Synthetic { flowers, indices } => Ok(flowers.sample(indices[i]).0),
        }
    }

    /// Samples per class `0..k` (labels `≥ k` are not counted).
    pub fn class_counts(&self, k: usize) -> Vec<usize> {
        let mut counts = vec![0; k];
        for i in 0..self.len() {
            if let Some(c) = counts.get_mut(self.label(i)) {
                *c += 1;
            }
        }
        counts
    }

    /// A printable name of sample `i` (its path, or `synthetic flower N`).
    pub fn name(&self, i: usize) -> String {
        match self {
            Self::Files(s) => s[i].path.display().to_string(),
            Self::Synthetic { indices, .. } => format!("synthetic flower {}", indices[i]),
        }
    }
}

/// Loader settings.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Shuffle the order every epoch (seeded by `seed` and the epoch number).
    pub shuffle: bool,
    /// Class-balanced sampling (with `shuffle`): each epoch draws as many samples as the
    /// source holds, with replacement, each with probability ∝ 1 / its class's count, so
    /// every class is drawn equally often in expectation (PyTorch's `WeightedRandomSampler`
    /// with `replacement=True`). Seeded by `seed` and the epoch: a resumed epoch draws the
    /// same order.
    pub balanced: bool,
    /// Seed of the shuffle.
    pub seed: u64,
    /// Drop a last, smaller batch.
    pub drop_last: bool,
    /// Batches decoded ahead of the consumer.
    pub prefetch: usize,
    /// Down-scale at load so the shorter side is at most this (Pillow's filter); `None` keeps
    /// the full resolution.
    pub max_shorter_side: Option<u32>,
    /// Keep decoded (and down-scaled) images in RAM after their first load.
    pub cache: bool,
    /// Decompression-bomb guard.
    pub max_pixels: u64,
    /// Alpha handling (default: composite over white).
    pub alpha: Alpha,
    /// Decoding threads (`None`: all cores, rayon's global pool).
    pub threads: Option<usize>,
    /// Fill a batch whose image fails to decode with another sample of the order, so it
    /// keeps its size (training); `false` serves the batch one image short, so every image
    /// counts once (evaluation).
    pub replace_bad: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            shuffle: true,
            balanced: false,
            seed: 0,
            drop_last: false,
            prefetch: 2,
            max_shorter_side: None,
            cache: false,
            max_pixels: crate::DEFAULT_MAX_PIXELS,
            alpha: Alpha::WHITE,
            threads: None,
            replace_bad: true,
        }
    }
}

/// A packed batch of RGB8 images.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PackedBatch {
    /// All images' RGB8 bytes, back to back.
    pub data: Vec<u8>,
    /// Byte offset of each image in `data`.
    pub offsets: Vec<usize>,
    /// (width, height) of each image.
    pub sizes: Vec<(u32, u32)>,
    /// Label of each image.
    pub labels: Vec<usize>,
    /// Source index of each image.
    pub indices: Vec<usize>,
}

impl PackedBatch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Appends `img` with its label and source index.
    pub fn push(&mut self, img: &RgbImage, label: usize, index: usize) {
        self.offsets.push(self.data.len());
        self.data.extend_from_slice(img.as_raw());
        self.sizes.push(img.dimensions());
        self.labels.push(label);
        self.indices.push(index);
    }

    /// Image `i` as an `RgbImage` (a copy).
    pub fn image(&self, i: usize) -> RgbImage {
        let (w, h) = self.sizes[i];
        let start = self.offsets[i];
        RgbImage::from_raw(
            w,
            h,
            self.data[start..start + (w * h * 3) as usize].to_vec(),
        )
        .expect("packed sizes match")
    }
}

/// A file that failed at batch time and was replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadWarning {
    /// The sample.
    pub name: String,
    /// Why it failed.
    pub reason: String,
}

/// Per-sample weights `1 / count(label)` (`None` for an empty source).
fn balanced_weights(source: &Source) -> Option<Vec<f64>> {
    let labels: Vec<usize> = (0..source.len()).map(|i| source.label(i)).collect();
    let counts = source.class_counts(labels.iter().max()? + 1);
    Some(labels.iter().map(|&l| 1.0 / counts[l] as f64).collect())
}

/// The loader: shared state (cache, known-bad samples, warnings) across epochs.
pub struct Loader {
    source: Arc<Source>,
    config: LoaderConfig,
    cache: Arc<Mutex<HashMap<usize, Arc<RgbImage>>>>,
    bad: Arc<Mutex<HashSet<usize>>>,
    warnings: Arc<Mutex<Vec<LoadWarning>>>,
}

impl Loader {
    /// # Panics
    /// If `batch_size` or `prefetch` is zero.
    pub fn new(source: Source, config: LoaderConfig) -> Self {
        assert!(
            config.batch_size > 0 && config.prefetch > 0,
            "loader: batch_size ({}) and prefetch ({}) must be > 0",
            config.batch_size,
            config.prefetch
        );
        Self {
            source: Arc::new(source),
            config,
            cache: Arc::default(),
            bad: Arc::default(),
            warnings: Arc::default(),
        }
    }

    /// Number of batches an epoch yields (before any replacement).
    pub fn batches_per_epoch(&self) -> usize {
        let n = self.source.len();
        let b = self.config.batch_size;
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Files that failed at batch time so far (each reported once).
    pub fn warnings(&self) -> Vec<LoadWarning> {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The sample order of `epoch` (with [`LoaderConfig::balanced`], a class-balanced draw
    /// with replacement).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let n = self.source.len();
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.config.seed ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03));
        if self.config.shuffle
            && self.config.balanced
            && let Some(weights) = balanced_weights(&self.source)
            && let Ok(dist) = WeightedIndex::new(&weights)
        {
            return (0..n).map(|_| dist.sample(&mut rng)).collect();
        }
        let mut order: Vec<usize> = (0..n).collect();
        if self.config.shuffle {
            order.shuffle(&mut rng);
        }
        order
    }

    /// Starts decoding `epoch` on a background thread; batches arrive in order through a
    /// queue of `prefetch` batches.
    pub fn epoch(&self, epoch: u64) -> Receiver<PackedBatch> {
        self.epoch_from(epoch, 0)
    }

    /// Like [`epoch`](Self::epoch), starting at batch `skip` of the epoch's order (resuming
    /// an interrupted epoch: the skipped batches are not decoded).
    pub fn epoch_from(&self, epoch: u64, skip: usize) -> Receiver<PackedBatch> {
        let (tx, rx) = sync_channel(self.config.prefetch);
        let order = self.order(epoch);
        let (source, config) = (self.source.clone(), self.config.clone());
        let (cache, bad, warnings) = (self.cache.clone(), self.bad.clone(), self.warnings.clone());
        std::thread::spawn(move || {
            let load = |i: usize| -> Result<Arc<RgbImage>, String> {
                if let Some(img) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&i) {
                    return Ok(img.clone());
                }
                let mut img = source.load(i, config.max_pixels, config.alpha)?;
                if let Some(s) = config.max_shorter_side
                    && img.width().min(img.height()) > s
                {
                    img = resize_shorter_side(&img, s);
                }
                let img = Arc::new(img);
                if config.cache {
                    cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(i, img.clone());
                }
                Ok(img)
            };
            // Marks sample `i` bad and reports it once.
            let report = |i: usize, reason: String| {
                if bad.lock().unwrap_or_else(|e| e.into_inner()).insert(i) {
                    log::warn!("skipping {}: {reason}", source.name(i));
                    let name = source.name(i);
                    warnings
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(LoadWarning { name, reason });
                }
            };
            let pool = config.threads.map(|n| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n.max(1))
                    .build()
                    .expect("decode thread pool")
            });
            let b = config.batch_size;
            let mut spare = order.len(); // replacements are drawn from the order, wrapping
            for chunk in order.chunks(b).skip(skip) {
                if config.drop_last && chunk.len() < b {
                    break;
                }
                let decode_chunk = || -> Vec<(usize, Arc<RgbImage>)> {
                    chunk
                        .par_iter()
                        .filter(|&&i| !bad.lock().unwrap_or_else(|e| e.into_inner()).contains(&i))
                        .filter_map(|&i| match load(i) {
                            Ok(img) => Some((i, img)),
                            Err(reason) => {
                                report(i, reason);
                                None
                            }
                        })
                        .collect()
                };
                let mut got = match &pool {
                    Some(p) => p.install(decode_chunk),
                    None => decode_chunk(),
                };
                // Replace failures with other samples so the batch keeps its size.
                let mut tries = 0;
                while config.replace_bad && got.len() < chunk.len() && tries < order.len() {
                    let i = order[spare % order.len()];
                    spare += 1;
                    tries += 1;
                    if bad.lock().unwrap_or_else(|e| e.into_inner()).contains(&i) {
                        continue;
                    }
                    match load(i) {
                        Ok(img) => got.push((i, img)),
                        Err(reason) => report(i, reason),
                    }
                }
                if got.is_empty() {
                    continue;
                }
                let mut batch = PackedBatch::default();
                for (i, img) in got {
                    batch.push(&img, source.label(i), i);
                }
                if tx.send(batch).is_err() {
                    return; // the consumer stopped
                }
            }
        });
        rx
    }
}
