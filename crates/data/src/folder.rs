//! ImageFolder datasets: `DIR/train/<class>/*`, `DIR/valid/<class>/*` (or `val/`), optional
//! `DIR/test/<class>/*`, optional `cat_to_name.json`.
//!
//! - Classes are ordered **naturally** (`1, 2, 10, 102`, not the string order `1, 10, 102,
//!   2` that scrambles the popular Flowers-102 ImageFolder copies' labels) and named from
//!   `cat_to_name.json` when present, else by their folder.
//! - Hidden files (`.DS_Store`, `._*`, any dot-file) and non-image extensions are ignored;
//!   extensions match case-insensitively.
//! - Every image's header is read during the scan, its format decided by its content (a PNG
//!   named `.jpg` is a PNG): an empty, non-image, oversized or (where its end shows it
//!   cheaply: JPEG, PNG, WebP) truncated file is reported (path and reason), skipped and
//!   counted — the scan never fails on one file.
//! - An empty class folder is named in a warning and left out of the class list.
//! - Without a validation folder, a stratified split of `train` is made: in every class the
//!   same fraction goes to validation, chosen by a seeded shuffle.

use crate::decode::{TAIL_BYTES, UNKNOWN_SIGNATURE, check_complete, sniff_format};
use crate::error::DataError;
use image::ImageReader;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// File extensions petal reads (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "webp", "gif", "bmp"];

/// One labelled image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The file.
    pub path: PathBuf,
    /// Class index into [`ClassList`].
    pub label: usize,
}

/// The classes of a dataset, in label order: written next to every trained model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassList {
    /// Folder names (the dataset's own class ids).
    pub folders: Vec<String>,
    /// Display names (`cat_to_name.json`, else the folder names).
    pub names: Vec<String>,
}

/// What a [`ScanWarning`] left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// One image file (unreadable, not an image, too large, truncated).
    Image,
    /// A class folder of `train/` with no readable image: the class is left out.
    EmptyClass,
    /// A class folder of `valid/` or `test/` whose class is not among the training
    /// classes: its `images` readable images are left out.
    UnknownClass {
        /// Readable images in the folder.
        images: usize,
    },
}

/// A file or folder the scan skipped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanWarning {
    /// The file or folder.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
    /// What was left out.
    pub skipped: Skipped,
}

/// Exact counts of what a scan left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkipCounts {
    /// Image files skipped as unreadable (each counted once).
    pub images: usize,
    /// Class folders left out (empty training classes and unknown classes).
    pub classes: usize,
    /// Readable images inside the class folders left out.
    pub images_in_classes: usize,
}

impl SkipCounts {
    /// Counts `warnings`.
    pub fn of(warnings: &[ScanWarning]) -> Self {
        let mut c = Self::default();
        for w in warnings {
            match w.skipped {
                Skipped::Image => c.images += 1,
                Skipped::EmptyClass => c.classes += 1,
                Skipped::UnknownClass { images } => {
                    c.classes += 1;
                    c.images_in_classes += images;
                }
            }
        }
        c
    }
}

impl std::fmt::Display for ScanWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// Options of [`ImageFolder::scan`].
#[derive(Clone, Debug, PartialEq)]
pub struct ScanOptions {
    /// Fraction of each class held out for validation when there is no `valid/` folder.
    pub valid_fraction: f64,
    /// Seed of that split.
    pub seed: u64,
    /// Images announcing more pixels are skipped (decompression-bomb guard).
    pub max_pixels: u64,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            valid_fraction: 0.2,
            seed: 0,
            max_pixels: crate::DEFAULT_MAX_PIXELS,
        }
    }
}

/// A scanned ImageFolder dataset.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    /// The dataset folder.
    pub root: PathBuf,
    /// The classes, in label order.
    pub classes: ClassList,
    /// Training samples.
    pub train: Vec<Sample>,
    /// Validation samples (`valid/`, `val/`, or the stratified split of `train`).
    pub valid: Vec<Sample>,
    /// Test samples, if `test/` exists.
    pub test: Option<Vec<Sample>>,
    /// Whether `valid` was split off `train` (no validation folder).
    pub valid_is_split: bool,
    /// Everything the scan skipped.
    pub warnings: Vec<ScanWarning>,
}

/// Natural order: digit runs compare as numbers (`2 < 10`), the rest as text.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, sa), (db, sb)) in ca.iter().zip(&cb) {
        let ord = if *da && *db {
            let (ta, tb) = (sa.trim_start_matches('0'), sb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            sa.cmp(sb)
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

fn is_image_name(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let read = fs::read_dir(dir).map_err(|e| DataError::Io {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut entries: Vec<(String, PathBuf)> = read
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| !is_hidden(name))
        .collect();
    entries.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    Ok(entries)
}

/// Checks an image's header (format by content, dimensions, pixel limit) and, where its
/// last bytes show it, that it is complete; `Err(reason)` for a file to skip.
pub fn check_header(path: &Path, max_pixels: u64) -> Result<(), String> {
    let mut file = fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len == 0 {
        return Err("empty file (0 bytes)".into());
    }
    let mut head = [0u8; 64];
    let n = read_up_to(&mut file, &mut head).map_err(|e| format!("cannot read: {e}"))?;
    let head = &head[..n];
    let format = sniff_format(head).ok_or_else(|| UNKNOWN_SIGNATURE.to_string())?;
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let reader = ImageReader::with_format(BufReader::new(&mut file), format);
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| format!("not a readable image: {e}"))?;
    let pixels = w as u64 * h as u64;
    if pixels > max_pixels {
        return Err(format!(
            "{w}×{h} = {pixels} pixels exceeds the limit of {max_pixels}"
        ));
    }
    let mut tail = vec![0u8; (len as usize).min(TAIL_BYTES)];
    file.seek(SeekFrom::End(-(tail.len() as i64)))
        .and_then(|_| file.read_exact(&mut tail))
        .map_err(|e| format!("cannot read: {e}"))?;
    check_complete(format, head, &tail, len)
}

fn read_up_to(file: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The images of one split folder, per class folder name.
fn scan_split(
    dir: &Path,
    max_pixels: u64,
    warnings: &mut Vec<ScanWarning>,
) -> Result<BTreeMap<String, Vec<PathBuf>>, DataError> {
    let mut out = BTreeMap::new();
    for (class, path) in sorted_entries(dir)? {
        if !path.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        for (name, file) in sorted_entries(&path)? {
            if !file.is_file() || !is_image_name(&name) {
                continue;
            }
            match check_header(&file, max_pixels) {
                Ok(()) => files.push(file),
                Err(reason) => warnings.push(ScanWarning {
                    path: file,
                    reason,
                    skipped: Skipped::Image,
                }),
            }
        }
        out.insert(class, files);
    }
    Ok(out)
}

fn label(
    split: &BTreeMap<String, Vec<PathBuf>>,
    index: &BTreeMap<&str, usize>,
    warnings: &mut Vec<ScanWarning>,
    dir: &Path,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    for (class, files) in split {
        match index.get(class.as_str()) {
            Some(&label) => samples.extend(files.iter().map(|p| Sample {
                path: p.clone(),
                label,
            })),
            None if !files.is_empty() => warnings.push(ScanWarning {
                path: dir.join(class),
                reason: format!(
                    "class `{class}` is not among the training classes; its {} image(s) are skipped",
                    files.len()
                ),
                skipped: Skipped::UnknownClass {
                    images: files.len(),
                },
            }),
            None => {}
        }
    }
    sort_by_label(&mut samples);
    samples
}

/// Label order, then path: the order every split is kept in.
fn sort_by_label(samples: &mut [Sample]) {
    samples.sort_by(|a, b| a.label.cmp(&b.label).then_with(|| a.path.cmp(&b.path)));
}

impl ImageFolder {
    /// Scans `root` (see the module docs for the layout and the rules).
    pub fn scan(root: impl AsRef<Path>, opts: &ScanOptions) -> Result<Self, DataError> {
        let root = root.as_ref().to_path_buf();
        let shown = root.display().to_string();
        let layout = |reason: String| DataError::Layout {
            path: shown.clone(),
            reason,
        };
        if !(0.0..1.0).contains(&opts.valid_fraction) {
            return Err(layout(format!(
                "--valid-fraction must be in [0, 1), got {}",
                opts.valid_fraction
            )));
        }
        let train_dir = root.join("train");
        if !train_dir.is_dir() {
            return Err(layout("no `train/` folder".into()));
        }
        let mut warnings = Vec::new();
        let train = scan_split(&train_dir, opts.max_pixels, &mut warnings)?;
        let mut folders = Vec::new();
        for (class, files) in &train {
            if files.is_empty() {
                warnings.push(ScanWarning {
                    path: train_dir.join(class),
                    reason: "class folder has no readable image: left out of the class list".into(),
                    skipped: Skipped::EmptyClass,
                });
            } else {
                folders.push(class.clone());
            }
        }
        folders.sort_by(|a, b| natural_cmp(a, b));
        if folders.is_empty() {
            return Err(layout(
                "`train/` has no class folder with a readable image".into(),
            ));
        }
        let index: BTreeMap<&str, usize> = folders
            .iter()
            .enumerate()
            .map(|(i, f)| (f.as_str(), i))
            .collect();
        let names = class_names(&root, &folders)?;
        let mut train_samples = label(&train, &index, &mut warnings, &train_dir);

        let valid_dir = ["valid", "val"]
            .iter()
            .map(|d| root.join(d))
            .find(|d| d.is_dir());
        let (valid, valid_is_split) = match &valid_dir {
            Some(dir) => {
                let split = scan_split(dir, opts.max_pixels, &mut warnings)?;
                (label(&split, &index, &mut warnings, dir), false)
            }
            None => {
                let (t, v) = stratified_split(train_samples, opts.valid_fraction, opts.seed);
                train_samples = t;
                (v, true)
            }
        };
        let test_dir = root.join("test");
        let test = if test_dir.is_dir() {
            let split = scan_split(&test_dir, opts.max_pixels, &mut warnings)?;
            Some(label(&split, &index, &mut warnings, &test_dir))
        } else {
            None
        };
        Ok(Self {
            root,
            classes: ClassList { folders, names },
            train: train_samples,
            valid,
            test,
            valid_is_split,
            warnings,
        })
    }
}

/// Display names: `cat_to_name.json` (`{"<folder>": "name"}`) where present, else folders.
fn class_names(root: &Path, folders: &[String]) -> Result<Vec<String>, DataError> {
    let file = root.join("cat_to_name.json");
    if !file.is_file() {
        return Ok(folders.to_vec());
    }
    let meta = |reason: String| DataError::Metadata {
        path: file.display().to_string(),
        reason,
    };
    let text = fs::read_to_string(&file).map_err(|e| meta(e.to_string()))?;
    let map: BTreeMap<String, String> = serde_json::from_str(&text)
        .map_err(|e| meta(format!("expected {{\"<class folder>\": \"name\"}}: {e}")))?;
    Ok(folders
        .iter()
        .map(|f| map.get(f).cloned().unwrap_or_else(|| f.clone()))
        .collect())
}

/// Splits `samples` so that in every class `round(fraction · n)` samples (at least one when
/// the class has two or more and `fraction > 0`) go to the second part, chosen by a shuffle
/// seeded with `seed`. Both parts keep label order.
pub fn stratified_split(
    samples: Vec<Sample>,
    fraction: f64,
    seed: u64,
) -> (Vec<Sample>, Vec<Sample>) {
    let mut by_class: BTreeMap<usize, Vec<Sample>> = BTreeMap::new();
    for s in samples {
        by_class.entry(s.label).or_default().push(s);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut keep, mut held) = (Vec::new(), Vec::new());
    for (_, mut class) in by_class {
        class.shuffle(&mut rng);
        let n = class.len();
        let mut k = (fraction * n as f64).round() as usize;
        if fraction > 0.0 && n >= 2 {
            k = k.clamp(1, n - 1);
        }
        let rest = class.split_off(k);
        held.extend(class);
        keep.extend(rest);
    }
    sort_by_label(&mut keep);
    sort_by_label(&mut held);
    (keep, held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_sorts_numbers_numerically() {
        let mut v = vec!["10", "2", "102", "1", "a10", "a9", "b", "007"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, vec!["1", "2", "007", "10", "102", "a9", "a10", "b"]);
    }

    #[test]
    fn extensions_match_case_insensitively() {
        assert!(is_image_name("a.JPG") && is_image_name("b.Jpeg") && is_image_name("c.webp"));
        assert!(!is_image_name("notes.txt") && !is_image_name("jpg"));
    }
}
