//! Batches of decoded images for the GPU augmentation: parallel decode (rayon) on a
//! background thread, a bounded prefetch queue so decoding overlaps the training step,
//! optional down-scaling at load, an optional in-RAM cache of decoded images, and
//! bad files skipped and replaced at batch time (the epoch goes on).
//!
//! A batch is **packed**: every image's RGB8 bytes back to back in one buffer with per-image
//! offset / width / height, ready to upload once per batch.

use crate::decode::{Alpha, decode_rgb8_with};
use crate::error::DataError;
use crate::folder::Sample;
use crate::synthetic::SyntheticFlowers;
use crate::transform::resize_shorter_side;
use burn::tensor::Device;
use image::RgbImage;
use petal_kernels::augment::{PackedImages, ResidentImages};
use petal_kernels::transfer::device_limits;
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
    /// Set when the images live in a device-resident store ([`Loader::make_resident`]):
    /// `offsets` then index the store's bytes and `data` is empty.
    pub store: Option<StoreRef>,
}

impl PackedBatch {
    /// The images as the augmentation kernel reads them (from the store when resident).
    pub fn images(&self) -> PackedImages<'_> {
        PackedImages {
            data: match &self.store {
                Some(s) => &s.0.data,
                None => &self.data,
            },
            offsets: &self.offsets,
            sizes: &self.sizes,
        }
    }

    /// The batch with its images moved into a device-resident store of their own (`bench
    /// train-step --cache device`, tests): the same offsets, sizes, labels and indices; a
    /// resident batch is returned as it is. Refused as [`Loader::make_resident`] refuses.
    pub fn into_resident(self, device: &Device) -> Result<PackedBatch, DataError> {
        if self.store.is_some() {
            return Ok(self);
        }
        let slots = self
            .offsets
            .iter()
            .zip(&self.sizes)
            .map(|(&o, &s)| Some((o, s)))
            .collect();
        let (store, _) = ResidentStore::upload(self.data, slots, device)?;
        Ok(PackedBatch {
            data: Vec::new(),
            store: Some(store),
            ..self
        })
    }

    /// The device copy of the images when the batch is resident.
    pub fn resident(&self) -> Option<&ResidentImages> {
        self.store.as_ref().map(|s| &s.0.device)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Appends `img` with its label and source index.
    ///
    /// # Panics
    /// On a resident batch (its images are the store's).
    pub fn push(&mut self, img: &RgbImage, label: usize, index: usize) {
        assert!(self.store.is_none(), "push onto a resident batch");
        self.offsets.push(self.data.len());
        self.data.extend_from_slice(img.as_raw());
        self.sizes.push(img.dimensions());
        self.labels.push(label);
        self.indices.push(index);
    }

    /// Image `i` as an `RgbImage` (a copy).
    pub fn image(&self, i: usize) -> RgbImage {
        let (w, h) = self.sizes[i];
        RgbImage::from_raw(w, h, self.images().image(i).to_vec()).expect("packed sizes match")
    }
}

/// Every decoded image of a loader's source in one buffer, on the host and on the GPU
/// (`--cache device`): built once by [`Loader::make_resident`], after which a batch is
/// offsets into it and a training step uploads only its per-sample parameters.
pub struct ResidentStore {
    /// All images' RGB8 bytes back to back (the host copy: the contrast jitter's gray-mean
    /// estimate and the CPU eval transform read it).
    pub data: Vec<u8>,
    /// Per source index: byte offset and `(width, height)`; `None` for a sample that
    /// failed to load (reported in [`Loader::warnings`]).
    pub slots: Vec<Option<(usize, (u32, u32))>>,
    /// The same bytes in one device buffer.
    pub device: ResidentImages,
}

impl ResidentStore {
    /// `data` with its `slots`, uploaded to `device` once [`check_device_fit`] accepts
    /// them; also the device's largest buffer.
    fn upload(
        data: Vec<u8>,
        slots: Vec<Option<(usize, (u32, u32))>>,
        device: &Device,
    ) -> Result<(StoreRef, u64), DataError> {
        let sizes = slots.iter().flatten().map(|&(_, size)| size);
        let images = sizes.clone().count();
        let shorter = sizes.map(|(w, h)| w.min(h)).max().unwrap_or(0);
        let max_buffer = check_device_fit(data.len(), images, shorter, device)?;
        let store = ResidentStore {
            device: ResidentImages::upload(&data, device),
            data,
            slots,
        };
        Ok((StoreRef(Arc::new(store)), max_buffer))
    }
}

/// A shared [`ResidentStore`] (equal when it is the same store).
#[derive(Clone)]
pub struct StoreRef(pub Arc<ResidentStore>);

impl std::fmt::Debug for StoreRef {
    /// The sizes, not the bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.0;
        write!(
            f,
            "StoreRef({} images, {} bytes)",
            s.slots.iter().flatten().count(),
            s.data.len()
        )
    }
}

impl PartialEq for StoreRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// What [`Loader::make_resident`] put on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResidentSummary {
    /// Images in the store.
    pub images: usize,
    /// Samples that failed to load (left out).
    pub failed: usize,
    /// Bytes on the device.
    pub bytes: usize,
    /// The device's largest buffer.
    pub max_buffer: u64,
}

fn not_a_gpu(device: &Device) -> DataError {
    DataError::DeviceCache {
        reason: format!(
            "the device ({device:?}) is not a GPU; keep decoded images in host memory with --cache ram"
        ),
    }
}

/// Checks that `bytes` of images fit one buffer of `device` (and, where the runtime states
/// the device's memory, half of it), with the numbers in the error.
/// `shorter_side` is the largest shorter side among the images, for the suggestion.
pub fn check_device_fit(
    bytes: usize,
    images: usize,
    shorter_side: u32,
    device: &Device,
) -> Result<u64, DataError> {
    let fail = |reason: String| DataError::DeviceCache { reason };
    let Some(limits) = device_limits(device) else {
        return Err(not_a_gpu(device));
    };
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let bytes = bytes as u64;
    let cap = limits.max_buffer.min(u32::MAX as u64);
    let memory = limits.max_memory.map(|m| m / 2);
    let allowed = memory.map_or(cap, |m| m.min(cap));
    if bytes > allowed {
        // Bytes scale with the square of the shorter side.
        let side = (shorter_side as f64 * (allowed as f64 / bytes as f64).sqrt()).floor() as u64;
        let what = match memory {
            Some(m) if m < cap => {
                format!("half the device's memory, {m} bytes ({:.1} MiB)", mib(m))
            }
            _ => format!(
                "the device's largest buffer, {cap} bytes ({:.1} MiB)",
                mib(cap)
            ),
        };
        return Err(fail(format!(
            "the {images} decoded images take {bytes} bytes ({:.1} MiB), more than {what}; \
             down-scale them at load with --max-shorter-side {side} or less, or use --cache ram",
            mib(bytes)
        )));
    }
    Ok(limits.max_buffer)
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
    store: Option<StoreRef>,
}

/// Decodes sample `i` of `source` with `config`'s limits and down-scaling.
fn decode(source: &Source, config: &LoaderConfig, i: usize) -> Result<RgbImage, String> {
    let mut img = source.load(i, config.max_pixels, config.alpha)?;
    if let Some(s) = config.max_shorter_side
        && img.width().min(img.height()) > s
    {
        img = resize_shorter_side(&img, s);
    }
    Ok(img)
}

/// The decoding threads `config.threads` asks for (`None`: rayon's global pool).
fn decode_pool(config: &LoaderConfig) -> Option<rayon::ThreadPool> {
    config.threads.map(|n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .expect("decode thread pool")
    })
}

/// Marks sample `i` bad and reports it once.
fn report(
    source: &Source,
    bad: &Mutex<HashSet<usize>>,
    warnings: &Mutex<Vec<LoadWarning>>,
    i: usize,
    reason: String,
) {
    if bad.lock().unwrap_or_else(|e| e.into_inner()).insert(i) {
        log::warn!("skipping {}: {reason}", source.name(i));
        let name = source.name(i);
        warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(LoadWarning { name, reason });
    }
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
            store: None,
        }
    }

    /// `--cache device`: decodes every sample once (in parallel, down-scaled as configured)
    /// into one buffer and uploads it to `device` (a GPU device; the training device when
    /// the batches feed training). From then on batches carry offsets into the store and
    /// decode nothing. Samples that fail are reported in [`warnings`](Self::warnings) and
    /// left out. Refuses, with the byte counts, a non-GPU device or images that do not fit
    /// one device buffer.
    pub fn make_resident(&mut self, device: &Device) -> Result<ResidentSummary, DataError> {
        if device_limits(device).is_none() {
            return Err(not_a_gpu(device));
        }
        let (source, config) = (&self.source, &self.config);
        let load_all = || -> Vec<Result<RgbImage, String>> {
            (0..source.len())
                .into_par_iter()
                .map(|i| decode(source, config, i))
                .collect()
        };
        let decoded = match decode_pool(config) {
            Some(pool) => pool.install(load_all),
            None => load_all(),
        };
        let mut data = Vec::new();
        let mut slots = Vec::with_capacity(decoded.len());
        for (i, img) in decoded.into_iter().enumerate() {
            match img {
                Ok(img) => {
                    slots.push(Some((data.len(), img.dimensions())));
                    data.extend_from_slice(img.as_raw());
                }
                Err(reason) => {
                    report(source, &self.bad, &self.warnings, i, reason);
                    slots.push(None);
                }
            }
        }
        let images = slots.iter().flatten().count();
        let (failed, bytes) = (slots.len() - images, data.len());
        let (store, max_buffer) = ResidentStore::upload(data, slots, device)?;
        self.store = Some(store);
        Ok(ResidentSummary {
            images,
            failed,
            bytes,
            max_buffer,
        })
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
        if let Some(store) = self.store.clone() {
            std::thread::spawn(move || resident_epoch(&source, &config, &store, &order, skip, &tx));
            return rx;
        }
        let (cache, bad, warnings) = (self.cache.clone(), self.bad.clone(), self.warnings.clone());
        std::thread::spawn(move || {
            let load = |i: usize| -> Result<Arc<RgbImage>, String> {
                if let Some(img) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&i) {
                    return Ok(img.clone());
                }
                let img = Arc::new(decode(&source, &config, i)?);
                if config.cache {
                    cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(i, img.clone());
                }
                Ok(img)
            };
            let report = |i: usize, reason: String| report(&source, &bad, &warnings, i, reason);
            let pool = decode_pool(&config);
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

/// An epoch of a resident loader: the batches are offsets into `store` (nothing decoded),
/// with the decode path's rules (failed samples left out; on training, replaced by the next
/// samples of the order, wrapping, so a batch keeps its size).
fn resident_epoch(
    source: &Source,
    config: &LoaderConfig,
    store: &StoreRef,
    order: &[usize],
    skip: usize,
    tx: &std::sync::mpsc::SyncSender<PackedBatch>,
) {
    let b = config.batch_size;
    let slot = |i: usize| store.0.slots.get(i).copied().flatten();
    let mut spare = order.len();
    for chunk in order.chunks(b).skip(skip) {
        if config.drop_last && chunk.len() < b {
            break;
        }
        let mut got: Vec<usize> = chunk
            .iter()
            .copied()
            .filter(|&i| slot(i).is_some())
            .collect();
        let mut tries = 0;
        while config.replace_bad && got.len() < chunk.len() && tries < order.len() {
            let i = order[spare % order.len()];
            spare += 1;
            tries += 1;
            if slot(i).is_some() {
                got.push(i);
            }
        }
        if got.is_empty() {
            continue;
        }
        let mut batch = PackedBatch {
            store: Some(store.clone()),
            ..PackedBatch::default()
        };
        for i in got {
            let (offset, size) = slot(i).expect("filtered above");
            batch.offsets.push(offset);
            batch.sizes.push(size);
            batch.labels.push(source.label(i));
            batch.indices.push(i);
        }
        if tx.send(batch).is_err() {
            return; // the consumer stopped
        }
    }
}
