//! ImageFolder scanning on generated folders: natural class order, cat_to_name.json,
//! hidden / foreign / broken files, empty classes, the stratified split, layout errors.

use petal::data::{DataError, ImageFolder, ScanOptions};
use std::path::{Path, PathBuf};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("petal-folder-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn png(path: &Path, shade: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(4, 3, image::Rgb([shade, 0, 0]))
        .save(path)
        .unwrap();
}

#[test]
fn classes_are_in_natural_order_and_named_from_cat_to_name() {
    let root = tmpdir("natural");
    for class in ["1", "2", "10", "102"] {
        for split in ["train", "valid"] {
            png(&root.join(split).join(class).join("a.png"), 1);
        }
    }
    std::fs::write(
        root.join("cat_to_name.json"),
        r#"{"1": "pink primrose", "2": "hard-leaved pocket orchid", "10": "globe thistle"}"#,
    )
    .unwrap();
    let ds = ImageFolder::scan(&root, &ScanOptions::default()).unwrap();
    assert_eq!(ds.classes.folders, vec!["1", "2", "10", "102"]);
    // A class missing from cat_to_name.json keeps its folder name.
    assert_eq!(
        ds.classes.names,
        vec![
            "pink primrose",
            "hard-leaved pocket orchid",
            "globe thistle",
            "102"
        ]
    );
    assert_eq!(
        ds.train.iter().map(|s| s.label).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert!(ds.train[2].path.ends_with("train/10/a.png"));
    assert!(!ds.valid_is_split && ds.test.is_none() && ds.warnings.is_empty());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn junk_is_ignored_broken_files_are_reported_and_empty_classes_left_out() {
    let root = tmpdir("junk");
    let train = root.join("train");
    png(&train.join("cat").join("ok.PNG"), 1); // upper-case extension
    png(&train.join("cat").join("._ok.png"), 1); // macOS resource fork: hidden
    std::fs::write(train.join("cat").join(".DS_Store"), b"junk").unwrap();
    std::fs::write(train.join("cat").join("notes.txt"), b"not an image").unwrap();
    std::fs::write(train.join("cat").join("empty.jpg"), b"").unwrap();
    std::fs::write(train.join("cat").join("text.jpg"), b"definitely not a jpeg").unwrap();
    png(&train.join("dog").join("ok.png"), 2);
    std::fs::create_dir_all(train.join("empty_class")).unwrap();
    png(&root.join("val").join("dog").join("v.png"), 3); // `val/` is accepted too
    png(&root.join("val").join("bird").join("v.png"), 3); // not a training class
    png(&root.join("test").join("cat").join("t.png"), 4);
    let ds = ImageFolder::scan(&root, &ScanOptions::default()).unwrap();
    assert_eq!(ds.classes.folders, vec!["cat", "dog"]);
    assert_eq!(ds.train.len(), 2);
    assert_eq!(ds.valid.len(), 1);
    assert_eq!(ds.valid[0].label, 1);
    assert_eq!(ds.test.as_ref().unwrap().len(), 1);
    let w: Vec<String> = ds.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 4, "{w:#?}");
    assert!(
        w.iter()
            .any(|m| m.contains("empty.jpg") && m.contains("0 bytes")),
        "{w:#?}"
    );
    assert!(
        w.iter()
            .any(|m| m.contains("text.jpg") && m.contains("not an image: the content starts with")),
        "{w:#?}"
    );
    assert!(
        w.iter()
            .any(|m| m.contains("empty_class") && m.contains("left out")),
        "{w:#?}"
    );
    assert!(
        w.iter()
            .any(|m| m.contains("bird") && m.contains("not among the training classes")),
        "{w:#?}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn oversized_headers_are_skipped_by_the_pixel_limit() {
    let root = tmpdir("large");
    png(&root.join("train").join("a").join("small.png"), 1);
    std::fs::create_dir_all(root.join("train").join("a")).unwrap();
    image::RgbImage::new(50, 40)
        .save(root.join("train").join("a").join("big.png"))
        .unwrap();
    let opts = ScanOptions {
        max_pixels: 1000,
        ..ScanOptions::default()
    };
    let ds = ImageFolder::scan(&root, &opts).unwrap();
    assert_eq!(ds.train.len() + ds.valid.len(), 1);
    assert_eq!(ds.warnings.len(), 1);
    assert!(
        ds.warnings[0]
            .to_string()
            .contains("2000 pixels exceeds the limit of 1000")
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn without_a_validation_folder_the_split_is_stratified_and_seeded() {
    let root = tmpdir("split");
    // 10 images in class a, 20 in b, 1 in c.
    for (class, n) in [("a", 10), ("b", 20), ("c", 1)] {
        for i in 0..n {
            png(
                &root.join("train").join(class).join(format!("{i}.png")),
                i as u8,
            );
        }
    }
    let opts = ScanOptions {
        valid_fraction: 0.2,
        seed: 7,
        ..ScanOptions::default()
    };
    let ds = ImageFolder::scan(&root, &opts).unwrap();
    assert!(ds.valid_is_split);
    let count = |v: &[petal::data::Sample], l: usize| v.iter().filter(|s| s.label == l).count();
    assert_eq!(
        (
            count(&ds.valid, 0),
            count(&ds.valid, 1),
            count(&ds.valid, 2)
        ),
        (2, 4, 0)
    );
    assert_eq!(
        (
            count(&ds.train, 0),
            count(&ds.train, 1),
            count(&ds.train, 2)
        ),
        (8, 16, 1)
    );
    // No image in both parts; same seed, same split; another seed, another split.
    assert!(ds.valid.iter().all(|v| !ds.train.contains(v)));
    let again = ImageFolder::scan(&root, &opts).unwrap();
    assert_eq!(again.valid, ds.valid);
    let other = ImageFolder::scan(&root, &ScanOptions { seed: 8, ..opts }).unwrap();
    assert_ne!(other.valid, ds.valid);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_missing_train_folder_or_no_images_is_one_clear_error() {
    let root = tmpdir("layout");
    let err = ImageFolder::scan(&root, &ScanOptions::default()).unwrap_err();
    assert!(matches!(err, DataError::Layout { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("no `train/` folder") && msg.contains("DIR/train/<class>/"),
        "{msg}"
    );
    std::fs::create_dir_all(root.join("train").join("a")).unwrap();
    std::fs::write(root.join("train").join("a").join("x.txt"), b"x").unwrap();
    let msg = ImageFolder::scan(&root, &ScanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("no class folder with a readable image"),
        "{msg}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

fn oxford_root(tag: &str) -> PathBuf {
    let root = tmpdir(tag);
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::copy(
        fx.join("oxford_imagelabels.mat"),
        root.join("imagelabels.mat"),
    )
    .unwrap();
    std::fs::copy(fx.join("oxford_setid.mat"), root.join("setid.mat")).unwrap();
    std::fs::create_dir_all(root.join("jpg")).unwrap();
    for id in 1..=9 {
        image::RgbImage::from_pixel(5, 4, image::Rgb([id as u8, 0, 0]))
            .save(root.join("jpg").join(format!("image_{id:05}.jpg")))
            .unwrap();
    }
    root
}

#[test]
fn oxford_native_layout_gives_the_official_splits_and_names() {
    use petal::data::Oxford102;
    let root = oxford_root("oxford");
    assert!(Oxford102::is_native_layout(&root));
    let ds = Oxford102::open(&root).unwrap();
    // imagelabels = [1,2,3,1,2,3,1,2,3]; trnid = 1..3, valid = 4..6, tstid = 7..9.
    let labels = |v: &[petal::data::Sample]| v.iter().map(|s| s.label).collect::<Vec<_>>();
    assert_eq!(labels(&ds.train), vec![0, 1, 2]);
    assert_eq!(labels(&ds.valid), vec![0, 1, 2]);
    assert_eq!(labels(&ds.test), vec![0, 1, 2]);
    assert!(ds.valid[1].path.ends_with("jpg/image_00005.jpg"));
    assert_eq!(ds.classes.names.len(), 102);
    assert_eq!(ds.classes.names[0], "pink primrose");
    assert_eq!(ds.classes.names[101], "blackberry lily");
    assert_eq!(ds.classes.folders[9], "10");

    // A listed image that is missing is an error naming the file.
    std::fs::remove_file(root.join("jpg").join("image_00008.jpg")).unwrap();
    let err = Oxford102::open(&root).unwrap_err().to_string();
    assert!(
        err.contains("image_00008.jpg") && err.contains("tstid"),
        "{err}"
    );
    // A file without the expected variable lists what it has.
    std::fs::copy(root.join("setid.mat"), root.join("imagelabels.mat")).unwrap();
    let err = Oxford102::open(&root).unwrap_err().to_string();
    assert!(
        err.contains("no variable `labels`") && err.contains("trnid"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn synthetic_flowers_are_deterministic_balanced_and_varied() {
    use petal::data::SyntheticFlowers;
    let ds = SyntheticFlowers::new(10, 48, 42);
    let (a, la) = ds.sample(7);
    let (b, lb) = ds.sample(7);
    assert_eq!(
        (a.as_raw(), la),
        (b.as_raw(), lb),
        "same seed and index, same image"
    );
    assert_ne!(
        SyntheticFlowers::new(10, 48, 43).sample(7).0.as_raw(),
        a.as_raw()
    );
    // Balanced: 100 samples, 10 per class.
    let mut counts = [0; 10];
    for i in 0..100 {
        counts[ds.label(i)] += 1;
    }
    assert_eq!(counts, [10; 10]);
    // Two samples of one class differ (position, size, rotation, colour, noise).
    let (c, lc) = ds.sample(17);
    assert_eq!(lc, la);
    let differing = a
        .as_raw()
        .iter()
        .zip(c.as_raw())
        .filter(|(x, y)| x != y)
        .count();
    assert!(
        differing > a.as_raw().len() / 2,
        "only {differing} bytes differ"
    );
    // Any size.
    for size in [1, 17, 224] {
        assert_eq!(
            SyntheticFlowers::new(3, size, 0).sample(0).0.dimensions(),
            (size, size)
        );
    }
    let classes = ds.classes();
    assert_eq!(classes.names[0], "3 round red petals");
    assert_eq!(classes.names[8], "5 round yellow petals");
    assert_eq!(
        SyntheticFlowers::new(72, 8, 0).classes().names[71],
        "8 notched blue petals"
    );
    assert_eq!(classes.folders.len(), 10);
}

#[test]
fn loader_packs_batches_prefetches_and_replaces_bad_files() {
    use petal::data::{Loader, LoaderConfig, Sample, Source};
    let root = tmpdir("loader");
    let mut samples = Vec::new();
    for i in 0..10u32 {
        let p = root.join(format!("{i}.png"));
        image::RgbImage::from_pixel(30 + i, 20, image::Rgb([i as u8, 0, 0]))
            .save(&p)
            .unwrap();
        samples.push(Sample {
            path: p,
            label: i as usize % 3,
        });
    }
    // A file that passes a scan but fails to decode: the PNG is truncated after the scan.
    let broken = root.join("4.png");
    let bytes = std::fs::read(&broken).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    let cfg = LoaderConfig {
        batch_size: 4,
        seed: 3,
        max_shorter_side: Some(10),
        cache: true,
        ..LoaderConfig::default()
    };
    let loader = Loader::new(Source::Files(samples), cfg);
    assert_eq!(loader.batches_per_epoch(), 3);
    let batches: Vec<_> = loader.epoch(0).iter().collect();
    assert_eq!(
        batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
        vec![4, 4, 2]
    );
    let indices: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert!(!indices.contains(&4), "the broken file is never served");
    let w = loader.warnings();
    assert_eq!(w.len(), 1);
    assert!(w[0].name.ends_with("4.png"), "{w:?}");
    for b in &batches {
        for k in 0..b.len() {
            let img = b.image(k);
            let i = b.indices[k];
            // Down-scaled so the shorter side is 10; the red channel keeps the index.
            assert_eq!(img.height(), 10);
            assert_eq!(img.width(), (10 * (30 + i as u32)) / 20);
            assert_eq!(img.get_pixel(0, 0).0[0], i as u8);
            assert_eq!(b.labels[k], i % 3);
        }
    }
    // Same seed and epoch: same order; another epoch: another order; the bad file stays out.
    let again: Vec<usize> = loader.epoch(0).iter().flat_map(|b| b.indices).collect();
    assert_eq!(again, indices);
    assert_ne!(loader.order(1), loader.order(0));
    assert_eq!(loader.warnings().len(), 1, "reported once");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn loader_serves_synthetic_flowers() {
    use petal::data::{Loader, LoaderConfig, Source, SyntheticFlowers};
    let flowers = SyntheticFlowers::new(5, 24, 9);
    let loader = Loader::new(
        Source::Synthetic {
            flowers,
            indices: (0..12).collect(),
        },
        LoaderConfig {
            batch_size: 5,
            shuffle: false,
            drop_last: true,
            ..LoaderConfig::default()
        },
    );
    let batches: Vec<_> = loader.epoch(0).iter().collect();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].labels, vec![0, 1, 2, 3, 4]);
    assert_eq!(batches[1].image(2).as_raw(), flowers.sample(7).0.as_raw());
    assert_eq!(batches[0].data.len(), 5 * 24 * 24 * 3);
}

#[test]
fn bad_file_corpus_is_reported_and_every_good_file_loads() {
    use image::{DynamicImage, ImageBuffer, Luma, Rgb, Rgba};
    use petal::data::{Loader, LoaderConfig, Source};
    let root = tmpdir("corpus");
    let class = root.join("train").join("c");
    std::fs::create_dir_all(&class).unwrap();
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    // Good files of every kind.
    DynamicImage::ImageRgba8(ImageBuffer::from_pixel(6, 5, Rgba([200, 100, 0, 0])))
        .save(class.join("rgba.png"))
        .unwrap();
    DynamicImage::ImageLuma8(ImageBuffer::from_pixel(6, 5, Luma([90])))
        .save(class.join("gray.png"))
        .unwrap();
    DynamicImage::ImageRgb16(ImageBuffer::from_pixel(6, 5, Rgb([0xFFFFu16, 0, 0x8080])))
        .save(class.join("deep.png"))
        .unwrap();
    std::fs::copy(fx.join("cmyk.jpg"), class.join("cmyk.jpg")).unwrap();
    std::fs::copy(fx.join("palette.png"), class.join("palette.png")).unwrap();
    png(&class.join("one.png"), 7);
    image::RgbImage::from_pixel(1, 1, Rgb([1, 2, 3]))
        .save(class.join("1x1.png"))
        .unwrap();
    let jpeg = class.join("photo.jpg");
    image::RgbImage::from_fn(64, 48, |x, y| Rgb([x as u8 * 4, y as u8 * 5, 77]))
        .save(&jpeg)
        .unwrap();
    // Bad files.
    std::fs::write(class.join("zero.jpg"), b"").unwrap();
    std::fs::write(class.join("text.jpg"), b"this is text, not a JPEG").unwrap();
    let bytes = std::fs::read(&jpeg).unwrap();
    std::fs::write(class.join("truncated.jpg"), &bytes[..bytes.len() * 3 / 5]).unwrap();
    image::RgbImage::new(300, 300)
        .save(class.join("huge.png"))
        .unwrap();
    let opts = ScanOptions {
        valid_fraction: 0.0,
        max_pixels: 250 * 250,
        ..ScanOptions::default()
    };
    // Passes the header scan (header, chunk layout and IEND intact), fails to decode.
    std::fs::copy(fx.join("corrupt_idat.png"), class.join("corrupt_idat.png")).unwrap();
    let ds = ImageFolder::scan(&root, &opts).unwrap();
    let scan: Vec<String> = ds.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(scan.len(), 4, "{scan:#?}");
    for (file, why) in [
        ("zero.jpg", "0 bytes"),
        (
            "text.jpg",
            "not an image: the content starts with no JPEG, PNG",
        ),
        ("huge.png", "90000 pixels exceeds the limit of 62500"),
        (
            "truncated.jpg",
            "truncated JPEG (no end-of-image marker after the last scan)",
        ),
    ] {
        assert!(
            scan.iter().any(|w| w.contains(file) && w.contains(why)),
            "{file}: {scan:#?}"
        );
    }
    // The corrupt PNG fails at batch time and is replaced (the batch keeps its 9 images).
    assert_eq!(ds.train.len(), 9);
    let loader = Loader::new(
        Source::Files(ds.train.clone()),
        LoaderConfig {
            batch_size: 9,
            shuffle: false,
            max_pixels: opts.max_pixels,
            ..LoaderConfig::default()
        },
    );
    let batch = loader.epoch(0).recv().unwrap();
    assert_eq!(batch.len(), 9);
    let w = loader.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].name.ends_with("corrupt_idat.png"), "{w:?}");
    let served: Vec<String> = batch
        .indices
        .iter()
        .map(|&i| {
            ds.train[i]
                .path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for good in [
        "rgba.png",
        "gray.png",
        "deep.png",
        "cmyk.jpg",
        "palette.png",
        "one.png",
        "1x1.png",
        "photo.jpg",
    ] {
        assert!(
            served.iter().any(|s| s == good),
            "{good} not served: {served:?}"
        );
    }
    // RGBA is composited over white by default: alpha 0 gives white.
    let k = served.iter().position(|s| s == "rgba.png").unwrap();
    assert_eq!(batch.image(k).get_pixel(0, 0).0, [255, 255, 255]);
    let k = served.iter().position(|s| s == "deep.png").unwrap();
    assert_eq!(batch.image(k).get_pixel(0, 0).0, [255, 0, 128]);
    std::fs::remove_dir_all(&root).unwrap();
}

/// A PNG named `.jpg` and a JPEG named `.png` (committed, `scripts/make_bad_images.py`):
/// scan, loader and `decode_rgb8` go by content. The scan summary counts exactly: images
/// skipped once each, empty and unknown class folders as folders (with their images).
#[test]
fn the_format_is_the_content_and_the_summary_counts_are_exact() {
    use petal::data::{Loader, LoaderConfig, SkipCounts, Skipped, Source, decode_rgb8};
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    // By content: exact PNG pixels, the JPEG's flat colour (Pillow decodes (121, 60, 200)).
    let png_as_jpg = decode_rgb8(fx.join("png_named.jpg"), 1 << 20).unwrap();
    assert_eq!((png_as_jpg.width(), png_as_jpg.height()), (24, 16));
    assert_eq!(png_as_jpg.get_pixel(5, 3).0, [50, 45, 99]);
    let jpg_as_png = decode_rgb8(fx.join("jpeg_named.png"), 1 << 20).unwrap();
    let p = jpg_as_png.get_pixel(12, 8).0;
    for (got, want) in p.iter().zip([121u8, 60, 200]) {
        assert!(got.abs_diff(want) <= 2, "{p:?}");
    }
    let e = decode_rgb8(fx.join("truncated.jpg"), 1 << 20).unwrap_err();
    assert!(e.to_string().contains("truncated JPEG"), "{e}");

    let root = tmpdir("content");
    let copy = |name: &str, to: &str| {
        let dst = root.join(to);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(fx.join(name), dst).unwrap();
    };
    copy("png_named.jpg", "train/a/png_named.jpg");
    copy("photo.png", "train/a/photo.png");
    copy("jpeg_named.png", "train/b/jpeg_named.png");
    copy("cmyk.jpg", "train/b/cmyk.jpg");
    copy("truncated.jpg", "train/b/truncated.jpg");
    copy("corrupt_idat.png", "train/b/corrupt_idat.png");
    std::fs::create_dir_all(root.join("train/empty")).unwrap();
    std::fs::write(root.join("train/empty/zero.jpg"), b"").unwrap();
    copy("photo.png", "valid/a/v.png");
    copy("jpeg_named.png", "valid/b/v.png");
    copy("palette.png", "valid/zzz/1.png");
    copy("png_named.jpg", "valid/zzz/2.jpg");
    let ds = ImageFolder::scan(&root, &ScanOptions::default()).unwrap();
    assert_eq!(ds.classes.folders, vec!["a", "b"]);
    assert_eq!((ds.train.len(), ds.valid.len()), (5, 2));
    let kinds: Vec<(String, Skipped)> = ds
        .warnings
        .iter()
        .map(|w| {
            let name = w.path.file_name().unwrap().to_string_lossy().into_owned();
            (name, w.skipped)
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("truncated.jpg".to_string(), Skipped::Image),
            ("zero.jpg".to_string(), Skipped::Image),
            ("empty".to_string(), Skipped::EmptyClass),
            ("zzz".to_string(), Skipped::UnknownClass { images: 2 }),
        ]
    );
    assert_eq!(
        SkipCounts::of(&ds.warnings),
        SkipCounts {
            images: 2,
            classes: 2,
            images_in_classes: 2
        }
    );
    // The loader decodes the renamed files; only the corrupt PNG fails (once, over epochs).
    let loader = Loader::new(
        Source::Files(ds.train.clone()),
        LoaderConfig {
            batch_size: 2,
            ..LoaderConfig::default()
        },
    );
    for epoch in 0..3 {
        let served: usize = loader.epoch(epoch).iter().map(|b| b.len()).sum();
        assert_eq!(served, 5, "epoch {epoch}: batches keep their size");
    }
    let w = loader.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].name.ends_with("corrupt_idat.png"), "{w:?}");
    // For evaluation nothing is drawn twice: the batch with the bad file is one short.
    let eval = Loader::new(
        Source::Files(ds.train.clone()),
        LoaderConfig {
            batch_size: 2,
            shuffle: false,
            replace_bad: false,
            ..LoaderConfig::default()
        },
    );
    let mut seen: Vec<usize> = eval.epoch(0).iter().flat_map(|b| b.indices).collect();
    seen.sort();
    let bad = ds
        .train
        .iter()
        .position(|s| s.path.ends_with("corrupt_idat.png"))
        .unwrap();
    assert_eq!(seen, (0..5).filter(|&i| i != bad).collect::<Vec<_>>());
    std::fs::remove_dir_all(&root).unwrap();
}
