//! End-to-end tests of the `petal` binary (one test binary for the CLI crate).

use std::path::PathBuf;
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn petal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_petal"))
        .args(args)
        .output()
        .expect("run petal")
}

/// The JSON a successful run printed (fails with its stderr otherwise).
fn json_ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn f32_fixture(name: &str) -> Vec<f32> {
    std::fs::read(fixture(name))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("petal-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn predict_json_reproduces_pytorch_end_to_end() {
    let weights = fixture("mobilenet_v2_w025.pth");
    let photo = fixture("photo.png");
    let out = petal(&[
        "predict",
        "--weights",
        weights.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
        "--logits",
        "--topk",
        "3",
        photo.to_str().unwrap(),
    ]);
    let v = json_ok(&out);
    let pred = &v[0];
    assert!(pred["image"].as_str().unwrap().ends_with("photo.png"));
    let logits: Vec<f32> = pred["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    // PyTorch: PIL open → Resize(256) → CenterCrop(224) → ToTensor → Normalize → model.
    let want = f32_fixture("mobilenet_v2_w025_photo_logits.f32");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = logits
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
        / scale;
    assert!(err <= 1e-4, "max relative error {err:e}");
    let argmax = (0..want.len())
        .max_by(|&a, &b| want[a].total_cmp(&want[b]))
        .unwrap();
    let top = pred["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    assert_eq!(top[0]["index"].as_u64().unwrap() as usize, argmax);
    assert_eq!(top[0]["label"].as_str().unwrap(), argmax.to_string());
    let p0 = top[0]["prob"].as_f64().unwrap();
    let p1 = top[1]["prob"].as_f64().unwrap();
    assert!(p0 >= p1 && p0 <= 1.0);
}

#[test]
fn a_broken_image_is_named_the_others_predicted_and_the_exit_code_nonzero() {
    let dir = tmpdir("broken");
    let empty = dir.join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.join("notes.png");
    std::fs::write(&text, b"not an image at all").unwrap();
    let classes = dir.join("classes.json");
    let names: Vec<String> = (0..10).map(|i| format!("flower-{i}")).collect();
    std::fs::write(&classes, serde_json::to_string(&names).unwrap()).unwrap();
    let out = petal(&[
        "predict",
        "--weights",
        fixture("mobilenet_v2_w025_legacy.pth").to_str().unwrap(),
        "--classes",
        classes.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
        empty.to_str().unwrap(),
        fixture("photo.png").to_str().unwrap(),
        text.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("empty.jpg"), "{stderr}");
    assert!(stderr.contains("notes.png"), "{stderr}");
    assert!(
        stderr.contains("2 of 3 image(s) could not be read"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert!(
        v[0]["top"][0]["label"]
            .as_str()
            .unwrap()
            .starts_with("flower-")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_wrong_arch_is_a_clear_error() {
    let predict = |arch: &str| {
        petal(&[
            "predict",
            "--weights",
            fixture("densenet_tiny.pth").to_str().unwrap(),
            "--arch",
            arch,
            "--device",
            "cpu",
            fixture("photo.png").to_str().unwrap(),
        ])
    };
    let out = predict("vgg16");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown architecture `vgg16`"), "{stderr}");
    for known in [
        "densenet161",
        "resnet50",
        "efficientnet_b0",
        "convnext_tiny",
        "mobilenet_v3_large",
    ] {
        assert!(stderr.contains(known), "{known}: {stderr}");
    }
    // A known architecture that is not the file's: both named.
    let out = predict("resnet50");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--arch resnet50 contradicts"), "{stderr}");
    assert!(stderr.contains("densenet(k=8"), "{stderr}");
}

#[test]
fn info_lists_devices_and_the_auto_choice() {
    let out = petal(&["info"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("wgpu adapters:"), "{stdout}");
    assert!(stdout.contains("--device auto picks:"), "{stdout}");
}

#[test]
fn bench_data_reports_the_contract_fields() {
    let out = petal(&[
        "bench",
        "data",
        "--synthetic",
        "--limit",
        "8",
        "--batch-size",
        "4",
        "--step-ms",
        "1",
        "--json",
    ]);
    let v = json_ok(&out);
    assert_eq!(v["images"], 8);
    for field in ["single_thread_ips", "all_cores_ips", "consumer_wait_ms"] {
        assert!(v[field].as_f64().unwrap() >= 0.0, "{field}: {v}");
    }
    assert!(v["keeps_up"].is_boolean());
}

/// A tiny synthetic run (dropout on, so the device RNG matters) for the train tests.
fn tiny_run_config(dir: &std::path::Path) -> PathBuf {
    let cfg = dir.join("tiny.toml");
    std::fs::write(
        &cfg,
        r#"
freeze_epochs = 1
epochs = 2
batch_size = 8
lr = 5e-3
lr_mult = 10.0
hidden = [16]
dropout = 0.35
device = "cpu"
seed = 11
[augment]
size = 24
[synthetic]
classes = 3
train = 48
valid = 12
image_size = 32
[backbone]
arch = "dense_net"
growth_rate = 4
block_config = [2, 2]
num_init_features = 8
bn_size = 2
drop_rate = 0.0
"#,
    )
    .unwrap();
    cfg
}

/// `petal train --config CFG --out OUT EXTRA…`.
fn train_with(cfg: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> Output {
    let (cfg, out) = (cfg.to_str().unwrap(), out.to_str().unwrap());
    let mut args = vec!["train", "--config", cfg, "--out", out];
    args.extend(extra);
    petal(&args)
}

/// Trains `a` with `flags` to the end, and `b` with the same flags stopped at step `stop`
/// then resumed; returns the uninterrupted run's stdout.
fn full_and_resumed(
    cfg: &std::path::Path,
    (a, b): (&std::path::Path, &std::path::Path),
    flags: &[&str],
    stop: &str,
) -> String {
    let out = train_with(cfg, a, flags);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut stopped = flags.to_vec();
    stopped.extend(["--stop-at-step", stop]);
    let out_b = train_with(cfg, b, &stopped);
    assert_eq!(
        out_b.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out_b.stderr)
    );
    let resumed = petal(&["train", "--resume", b.to_str().unwrap()]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The last predicted logits of `run`'s `last.ckpt` for one image.
fn last_logits(run: &std::path::Path, image: &std::path::Path) -> serde_json::Value {
    let o = petal(&[
        "predict",
        "--run",
        run.to_str().unwrap(),
        "--checkpoint",
        "last.ckpt",
        "--json",
        "--logits",
        image.to_str().unwrap(),
    ]);
    json_ok(&o)[0]["logits"].clone()
}

fn metrics(run: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("time_s");
            o.remove("images_per_s");
            v
        })
        .collect()
}

#[test]
fn train_resume_equals_an_uninterrupted_run() {
    let d = tmpdir("resume");
    let _ = std::fs::remove_dir_all(d.join("a"));
    let _ = std::fs::remove_dir_all(d.join("b"));
    let cfg = tiny_run_config(&d);
    let (a, b) = (d.join("a"), d.join("b"));
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    // With `--ema`: the average is validated, saved beside the weights and resumed exactly.
    let out = petal(&[
        "train",
        "--config",
        &s(&cfg),
        "--ema",
        "0.9",
        "--ema-warmup",
        "true",
        "--out",
        &s(&a),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("final: valid top-1"), "{stdout}");

    // Interrupted in the middle of the first unfrozen epoch (6 steps per epoch), resumed.
    let out = petal(&[
        "train",
        "--config",
        &s(&cfg),
        "--ema",
        "0.9",
        "--out",
        &s(&b),
        "--stop-at-step",
        "8",
    ]);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("--resume"));
    // A second plain start refuses to overwrite the run.
    let again = petal(&["train", "--config", &s(&cfg), "--out", &s(&b)]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    let out = petal(&["train", "--resume", &s(&b)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(metrics(&a), metrics(&b));
    assert_eq!(metrics(&a).len(), 3);
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("config.json")).unwrap()).unwrap();
    assert_eq!(recorded["ema"], 0.9);
    assert_eq!(recorded["ema_warmup"], true);
    // predict --run uses the run's classes and eval transform; --tta works.
    let flower = d.join("flower.png");
    image::RgbImage::from_pixel(40, 30, image::Rgb([220, 40, 60]))
        .save(&flower)
        .unwrap();
    let out = petal(&[
        "predict",
        "--run",
        &s(&a),
        "--tta",
        "--json",
        "--topk",
        "3",
        &s(&flower),
    ]);
    let v = json_ok(&out);
    // The resumed run's final weights give the very same logits.
    let logits = |run: &PathBuf| {
        let o = petal(&[
            "predict",
            "--run",
            &s(run),
            "--checkpoint",
            "last.ckpt",
            "--json",
            "--logits",
            &s(&flower),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v[0]["logits"].clone()
    };
    assert_eq!(
        logits(&a),
        logits(&b),
        "resumed weights differ from the uninterrupted run's"
    );
    let top = v[0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    assert!(top[0]["label"].as_str().unwrap().contains("petals"), "{v}");
    let p: f64 = top.iter().map(|t| t["prob"].as_f64().unwrap()).sum();
    assert!(
        (p - 1.0).abs() < 1e-5,
        "3 classes: probabilities sum to 1, got {p}"
    );

    // eval writes the confusion matrix and reports the best epoch's top-1.
    let out = petal(&["eval", "--run", &s(&a), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let best = metrics(&a)
        .iter()
        .map(|m| m["valid_top1"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(r["top1"].as_f64().unwrap(), best);
    assert!(a.join("confusion.csv").is_file() && a.join("confusion.png").is_file());
}

#[test]
fn bench_augment_reports_the_contract_fields() {
    // Tiny shapes: lavapipe runs every path.
    let out = petal(&[
        "bench",
        "augment",
        "--batch-size",
        "2",
        "--size",
        "16",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--json",
    ]);
    let v = json_ok(&out);
    for field in ["fused_ips", "stock_ips", "cpu_ips", "speedup_vs_stock"] {
        assert!(v[field].as_f64().unwrap() > 0.0, "{field}: {v}");
    }
    assert!(v.get("mix_cost").is_none(), "{v}");
    // With mixing, the fused kernel is also timed unmixed.
    let out = petal(&[
        "bench",
        "augment",
        "--batch-size",
        "2",
        "--size",
        "16",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--mixup",
        "0.2",
        "--cutmix",
        "1.0",
        "--json",
    ]);
    let v = json_ok(&out);
    assert_eq!(
        (v["mixup"].as_f64(), v["cutmix"].as_f64()),
        (Some(0.2), Some(1.0))
    );
    for field in ["fused_unmixed_ms", "mix_cost", "fused_ips"] {
        assert!(v[field].as_f64().unwrap() > 0.0, "{field}: {v}");
    }
}

#[test]
fn bench_train_step_reports_the_contract_fields() {
    // A tiny shape on Flex (mobilenet_v2 at 32², batch 2): the contract fields only.
    let out = petal(&[
        "bench",
        "train-step",
        "--arch",
        "mobilenet_v2",
        "--batch",
        "2",
        "--image-size",
        "32",
        "--device",
        "cpu",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--breakdown",
        "--json",
    ]);
    let v = json_ok(&out);
    for field in ["ips", "step_ms"] {
        assert!(v[field].as_f64().unwrap() > 0.0, "{field}: {v}");
    }
    // Flex reports the process's peak RSS; the field is present (a number or null).
    assert!(v.get("peak_mem_bytes").is_some(), "{v}");
    assert!(v["breakdown_ms"]["backward"].as_f64().unwrap() > 0.0, "{v}");
    // f16 needs a wgpu device: refused on Flex with a message.
    let out = petal(&[
        "bench",
        "train-step",
        "--device",
        "cpu",
        "--precision",
        "f16",
        "--batch",
        "1",
        "--image-size",
        "32",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("f16"));
}

#[test]
fn bench_conv_times_both_paths_and_refuses_bad_layers() {
    // Two tiny 3×3 layers: one each side of the default's choice (14×14 with 8 outputs
    // takes the shifted gemms, 4×4 does not).
    let out = petal(&[
        "bench",
        "conv",
        "--layers",
        "6:8:14,6:8:4",
        "--batch",
        "2",
        "--runs",
        "1",
        "--json",
    ]);
    let v = json_ok(&out);
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{v}");
    for r in results {
        for pass in ["forward", "weight_grad", "input_grad"] {
            for field in ["im2col_ms", "shifted_ms", "speedup"] {
                assert!(
                    r[pass][field].as_f64().unwrap() > 0.0,
                    "{pass}.{field}: {v}"
                );
            }
        }
    }
    assert_eq!(results[0]["auto_shifted"], true, "{v}");
    assert_eq!(results[1]["auto_shifted"], false, "{v}");
    for (args, want) in [
        (
            &["bench", "conv", "--layers", "128:x:5"][..],
            "--layers \"128:x:5\": output channels \"x\" is not a whole number",
        ),
        (
            &["bench", "conv", "--layers", "128:32"][..],
            "--layers \"128:32\": expected C:O:S",
        ),
        (
            &["bench", "conv", "--layers", "0:32:8"][..],
            "input channels 0 is out of range: allowed 1..=4096",
        ),
        (
            &["bench", "conv", "--kernel", "1"][..],
            "--kernel 1 is out of range: allowed 2..=15",
        ),
        (
            &["bench", "conv", "--layers", "4096:4096:512"][..],
            "more than this bench's 4 GiB",
        ),
    ] {
        let out = petal(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn augment_preview_writes_a_grid_and_prints_the_parameters() {
    let dir = tmpdir("augment-preview");
    let png = dir.join("grid.png");
    let out = petal(&[
        "augment-preview",
        "--synthetic",
        "--n",
        "3",
        "--seed",
        "5",
        "--size",
        "32",
        "--device",
        "cpu",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("angle") && text.contains("crop"), "{text}");
    // One line of parameters per sample.
    assert_eq!(
        text.lines().filter(|l| l.contains("500×500")).count(),
        3,
        "{text}"
    );
    let img = image::open(&png).unwrap();
    // 3 pairs in one row: 3 · (2·32 + 6) + 4 · 6 wide, 32 + 2 · 6 high.
    assert_eq!(
        (img.width(), img.height()),
        (3 * (2 * 32 + 6) + 4 * 6, 32 + 2 * 6)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// An ImageFolder built from committed files: two classes of real and renamed images, bad
/// files the scan refuses (`truncated.jpg`, `zero.jpg`, `notes.jpg`) and ones that fail
/// only at batch time (`corrupt_idat.png`, `bad_pixels.png`), an empty class folder and a
/// `valid/` class unknown to `train/`.
/// Copies fixture `name` to `root/to`, creating the folders.
fn copy_fixture(root: &std::path::Path, name: &str, to: &str) {
    let dst = root.join(to);
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::copy(fixture(name), dst).unwrap();
}

fn bad_input_folder(root: &std::path::Path) {
    let _ = std::fs::remove_dir_all(root);
    let copy = |name: &str, to: &str| copy_fixture(root, name, to);
    copy("png_named.jpg", "train/a/png_named.jpg");
    copy("photo.png", "train/a/photo.png");
    copy("palette.png", "train/a/palette.png");
    copy("jpeg_named.png", "train/b/jpeg_named.png");
    copy("cmyk.jpg", "train/b/cmyk.jpg");
    copy("truncated.jpg", "train/b/truncated.jpg");
    copy("corrupt_idat.png", "train/b/corrupt_idat.png");
    std::fs::create_dir_all(root.join("train/empty")).unwrap();
    std::fs::write(root.join("train/empty/zero.jpg"), b"").unwrap();
    copy("photo.png", "valid/a/v.png");
    std::fs::write(root.join("valid/a/notes.jpg"), b"not an image").unwrap();
    copy("jpeg_named.png", "valid/b/v.png");
    copy("corrupt_idat.png", "valid/b/bad_pixels.png");
    copy("palette.png", "valid/zzz/1.png");
    copy("png_named.jpg", "valid/zzz/2.jpg");
}

#[test]
fn train_infers_the_arch_from_the_weights_and_counts_the_data_exactly() {
    let d = tmpdir("arch-auto");
    let data = d.join("data");
    bad_input_folder(&data);
    let run = d.join("run");
    let _ = std::fs::remove_dir_all(&run);
    let weights = fixture("mobilenet_v2_w025.pth");
    let out = petal(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--image-size",
        "32",
        "--freeze-epochs",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--hidden",
        "8",
        "--device",
        "cpu",
        "--out",
        run.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("model: mobilenet_v2(width=0.25)"),
        "{stdout}"
    );
    // The scan's count, then the exact one at the end: 6 readable train images of which
    // corrupt_idat.png fails at batch time; 3 valid of which bad_pixels.png fails.
    assert!(
        stdout.contains(
            "6 train / 3 valid images; 3 unreadable image(s) skipped, \
             2 class folder(s) left out (2 image(s) in them) (each named above)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "data: 5 train / 2 valid images used; 5 unreadable image(s) skipped, \
             2 class folder(s) left out (2 image(s) in them) (each named above)"
        ),
        "{stdout}"
    );
    // Each bad file is named once over the two epochs.
    for name in [
        "truncated.jpg",
        "zero.jpg",
        "notes.jpg",
        "corrupt_idat.png",
        "bad_pixels.png",
    ] {
        assert_eq!(stderr.matches(name).count(), 1, "{name}:\n{stderr}");
    }
    assert!(stderr.contains("train/empty"), "{stderr}");
    assert!(
        stderr
            .contains("class `zzz` is not among the training classes; its 2 image(s) are skipped"),
        "{stderr}"
    );
    assert_eq!(metrics(&run).len(), 2);

    // eval on the same folder: the valid split's two bad files, each once.
    let out = petal(&["eval", "--run", run.to_str().unwrap(), "--json"]);
    let v = json_ok(&out);
    assert_eq!(v["images"], 2);
    assert_eq!(v["skipped"], 2);
    let files: Vec<&str> = v["skipped_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[0].as_str().unwrap())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("notes.jpg"))
            && files.iter().any(|f| f.ends_with("bad_pixels.png")),
        "{files:?}"
    );

    // lr-find reads the architecture from the weights too.
    let lr = d.join("lr");
    let out = petal(&[
        "lr-find",
        "--data",
        data.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--hidden",
        "8",
        "--steps",
        "4",
        "--device",
        "cpu",
        "--out",
        lr.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lr.join("lr_find.csv").is_file());

    // An explicit --arch that contradicts the file names both; nothing is written.
    let run2 = d.join("run2");
    let out = petal(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--arch",
        "densenet121",
        "--device",
        "cpu",
        "--out",
        run2.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--arch densenet121 contradicts weights")
            && stderr.contains("mobilenet_v2_w025.pth")
            && stderr.contains("which hold mobilenet_v2(width=0.25)"),
        "{stderr}"
    );
    assert!(!run2.exists());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn out_of_range_settings_are_refused_before_any_device_work() {
    for (args, want) in [
        (
            &["--image-size", "5000", "--device", "wgpu"][..],
            "--image-size 5000 is out of range: allowed 8..=4095 (`augment.size` in a config file)",
        ),
        (
            &["--batch-size", "0"][..],
            "--batch-size 0 is out of range: allowed 1..=65535 (`batch_size` in a config file)",
        ),
        (
            &["--arch", "densenet121", "--image-size", "16"][..],
            "--image-size 16 is out of range: allowed 32..=4095 for densenet121",
        ),
    ] {
        let mut all = vec![
            "train",
            "--dataset",
            "synthetic",
            "--out",
            "/nonexistent/run",
        ];
        all.extend_from_slice(args);
        let out = petal(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // The other commands that take sizes check them the same way.
    for (args, want) in [
        (
            &[
                "augment-preview",
                "--synthetic",
                "--size",
                "5000",
                "--device",
                "wgpu",
            ][..],
            "--size 5000 is out of range: allowed 8..=4095",
        ),
        (
            &["bench", "augment", "--size", "5000", "--device", "wgpu"][..],
            "--size 5000 is out of range: allowed 8..=4095",
        ),
        (
            &[
                "bench",
                "train-step",
                "--image-size",
                "5000",
                "--device",
                "wgpu",
            ][..],
            "--image-size 5000 is out of range: allowed 32..=4095",
        ),
        (
            &["bench", "train-step", "--batch", "0", "--device", "cpu"][..],
            "--batch 0 is out of range: allowed 1..=65535",
        ),
    ] {
        let out = petal(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[test]
fn an_unbuildable_custom_backbone_is_refused_naming_the_setting() {
    let d = tmpdir("bad-backbone");
    let cfg = d.join("bad.toml");
    std::fs::write(
        &cfg,
        r#"
device = "cpu"
[backbone]
arch = "resnet"
block = "basic"
layers = [1, 1]
groups = 1
width_per_group = 64
stem_width = 8
widths = [8]
"#,
    )
    .unwrap();
    let run = d.join("run");
    let _ = std::fs::remove_dir_all(&run);
    let out = petal(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("1 stage widths [8] for 2 stages [1, 1]"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!run.exists());
}

#[test]
fn non_finite_weights_are_refused_by_predict_and_train() {
    let nan = fixture("densenet_tiny_nan.pth");
    let out = petal(&[
        "predict",
        "--weights",
        nan.to_str().unwrap(),
        "--device",
        "cpu",
        fixture("photo.png").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("densenet_tiny_nan.pth")
            && stderr.contains("tensor `features.conv0.weight` has 4 non-finite value(s)"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing predicted");
    let run = std::env::temp_dir().join(format!("petal-cli-nan-{}", std::process::id()));
    let out = petal(&[
        "train",
        "--dataset",
        "synthetic",
        "--weights",
        nan.to_str().unwrap(),
        "--device",
        "cpu",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("non-finite value(s)"), "{stderr}");
    assert!(!run.join("last.ckpt").exists());
}

#[test]
fn predict_decodes_by_content_whatever_the_extension() {
    let d = tmpdir("content");
    // The same PNG under its true extension: the logits must be identical.
    let png = d.join("same.png");
    std::fs::copy(fixture("png_named.jpg"), &png).unwrap();
    let weights = fixture("mobilenet_v2_w025.pth");
    let out = petal(&[
        "predict",
        "--weights",
        weights.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
        "--logits",
        fixture("png_named.jpg").to_str().unwrap(),
        png.to_str().unwrap(),
        fixture("jpeg_named.png").to_str().unwrap(),
    ]);
    let v = json_ok(&out);
    let preds = v.as_array().unwrap();
    assert_eq!(preds.len(), 3);
    assert_eq!(preds[0]["logits"], preds[1]["logits"]);
    assert!(preds[2]["top"][0]["prob"].as_f64().unwrap() > 0.0);
    std::fs::remove_dir_all(&d).unwrap();
}

/// Two classes of readable images (train 3 + 2, valid 1 + 1).
fn good_folder(root: &std::path::Path) {
    let _ = std::fs::remove_dir_all(root);
    let copy = |name: &str, to: &str| copy_fixture(root, name, to);
    copy("photo.png", "train/a/1.png");
    copy("png_named.jpg", "train/a/2.jpg");
    copy("palette.png", "train/a/3.png");
    copy("cmyk.jpg", "train/b/1.jpg");
    copy("jpeg_named.png", "train/b/2.png");
    copy("photo.png", "valid/a/1.png");
    copy("cmyk.jpg", "valid/b/1.jpg");
}

#[test]
fn every_zoo_family_predicts_and_fine_tunes_from_its_file_without_arch() {
    let d = tmpdir("zoo");
    let data = d.join("data");
    good_folder(&data);
    let photo = fixture("photo.png");
    for (file, model) in [
        (
            "zoo/resnet_basic.safetensors",
            "model: resnet(basic, layers=[1, 2, 1, 1]",
        ),
        ("zoo/resnext_bottleneck.pth", "model: resnet(bottleneck"),
        (
            "zoo/efficientnet_v2.pth",
            "model: efficientnet([F1k3s1:8→8×2",
        ),
        (
            "zoo/convnext.safetensors",
            "model: convnext(dims=[8, 16, 32, 64]",
        ),
        (
            "zoo/mobilenet_v3_small.pth",
            "model: mobilenet_v3_small(width=0.25)",
        ),
        (
            "zoo/timm_efficientnet.pth",
            "model: efficientnet([M1k3s1:8→8×1",
        ),
        (
            "zoo/timm_convnext.safetensors",
            "model: convnext(dims=[8, 16, 32, 64]",
        ),
    ] {
        let weights = fixture(file);
        let out = petal(&[
            "predict",
            "--weights",
            weights.to_str().unwrap(),
            "--device",
            "cpu",
            "--json",
            "--logits",
            photo.to_str().unwrap(),
        ]);
        let v = json_ok(&out);
        let logits: Vec<f64> = v[0]["logits"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: {v}"))
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(logits.len(), 10, "{file}");
        assert!(logits.iter().all(|x| x.is_finite()), "{file}: {logits:?}");
        let argmax = (0..10)
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        assert_eq!(v[0]["top"][0]["index"].as_u64().unwrap() as usize, argmax);

        let run = d.join(file.replace(['/', '.'], "_"));
        let _ = std::fs::remove_dir_all(&run);
        let out = petal(&[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--weights",
            weights.to_str().unwrap(),
            "--image-size",
            "64",
            "--freeze-epochs",
            "1",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--hidden",
            "8",
            "--device",
            "cpu",
            "--out",
            run.to_str().unwrap(),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{file}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(model), "{file}: {stdout}");
        assert_eq!(metrics(&run).len(), 2, "{file}");
        // The run directory reads back: config.json's backbone and best.ckpt give the
        // best epoch's validation accuracy again.
        let out = petal(&["eval", "--run", run.to_str().unwrap(), "--json"]);
        let v = json_ok(&out);
        let best = metrics(&run)
            .iter()
            .map(|m| m["valid_top1"].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert_eq!(v["top1"].as_f64(), Some(best), "{file}: {v}");
    }
}

#[test]
fn bench_train_step_runs_each_new_family() {
    for arch in [
        "resnet50",
        "efficientnet_b0",
        "convnext_tiny",
        "mobilenet_v3_large",
    ] {
        let out = petal(&[
            "bench",
            "train-step",
            "--arch",
            arch,
            "--batch",
            "2",
            "--image-size",
            "32",
            "--device",
            "cpu",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--json",
        ]);
        let v = json_ok(&out);
        assert!(v["step_ms"].as_f64().unwrap() > 0.0, "{arch}: {v}");
        assert_eq!(v["arch"].as_str(), Some(arch), "{v}");
    }
}

#[test]
fn export_writes_a_state_dict_that_predicts_like_the_run() {
    let d = tmpdir("export");
    let cfg = tiny_run_config(&d);
    let run = d.join("run");
    let _ = std::fs::remove_dir_all(&run);
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let out = petal(&["train", "--config", &s(&cfg), "--out", &s(&run)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let file = d.join("model.safetensors");
    let _ = std::fs::remove_file(&file);
    let out = petal(&["export", "--run", &s(&run), "--out", &s(&file)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("in torchvision's names, 3 classes"));

    // The exported file predicts what the run's best checkpoint predicts (same transform).
    let photo = fixture("photo.png");
    let predict = |source: &[&str]| {
        let mut args = vec!["predict", "--device", "cpu", "--json", "--logits"];
        args.extend_from_slice(source);
        args.extend_from_slice(&["--resize", "40", "--crop", "32", photo.to_str().unwrap()]);
        json_ok(&petal(&args))[0]["logits"].clone()
    };
    let from_run = predict(&["--run", &s(&run)]);
    assert_eq!(from_run.as_array().unwrap().len(), 3);
    assert_eq!(predict(&["--weights", &s(&file)]), from_run);
    // The same as torch.save's zip format.
    let pth = d.join("model.pth");
    let _ = std::fs::remove_file(&pth);
    let out = petal(&[
        "export",
        "--run",
        &s(&run),
        "--format",
        "pth",
        "--out",
        &s(&pth),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(predict(&["--weights", &s(&pth)]), from_run);

    // Never overwritten without --force; a wrong checkpoint name is refused.
    let before = std::fs::read(&file).unwrap();
    for args in [
        vec!["export", "--run", &s(&run), "--out", &s(&file)],
        vec![
            "export",
            "--run",
            &s(&run),
            "--checkpoint",
            "first",
            "--out",
            "/tmp/never.safetensors",
        ],
    ] {
        let out = petal(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--force") || stderr.contains("--checkpoint first"),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read(&file).unwrap(), before);
    assert!(!std::path::Path::new("/tmp/never.safetensors").exists());
    // --force replaces it; an unwritable place is a clear error.
    let out = petal(&[
        "export",
        "--run",
        &s(&run),
        "--checkpoint",
        "last",
        "--out",
        &s(&file),
        "--force",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = petal(&[
        "export",
        "--run",
        &s(&run),
        "--out",
        "/nonexistent/dir/m.safetensors",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot write `/nonexistent/dir/m.safetensors`")
    );
}

#[test]
fn tensorboard_logs_every_step_and_epoch() {
    use petal_trainer::tensorboard::{What, read_events};
    let d = tmpdir("tb");
    let cfg = tiny_run_config(&d);
    let run = d.join("run");
    let _ = std::fs::remove_dir_all(&run);
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let out = petal(&[
        "train",
        "--config",
        &s(&cfg),
        "--out",
        &s(&run),
        "--tensorboard",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<_> = std::fs::read_dir(run.join("tb"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("events.out.tfevents.")
    );
    let events = read_events(&files[0]).unwrap();
    assert!(matches!(&events[0].what, Some(What::FileVersion(v)) if v == "brain.Event:2"));
    let mut points: std::collections::BTreeMap<String, Vec<(i64, f32)>> = Default::default();
    let mut texts = Vec::new();
    for e in &events[1..] {
        let Some(What::Summary(sm)) = &e.what else {
            panic!("{e:?}")
        };
        for v in &sm.value {
            match v.simple_value {
                Some(x) => points.entry(v.tag.clone()).or_default().push((e.step, x)),
                None => texts.push(v.tag.clone()),
            }
        }
    }
    assert_eq!(texts, ["config"]);
    // 48 training images, batch 8: 6 steps per epoch, 1 frozen + 2 epochs; one lr tag per
    // layer group.
    let metrics = metrics(&run);
    assert_eq!(metrics.len(), 3);
    let steps: Vec<i64> = points["train/loss"].iter().map(|p| p.0).collect();
    assert_eq!(steps, (1..=18).collect::<Vec<_>>());
    for tag in ["lr/stem+block1", "lr/block2+norm5", "lr/head"] {
        assert_eq!(points[tag].len(), 18, "{tag}: {points:?}");
    }
    // The head's last learning rate is the one metrics.jsonl records.
    let last_lr = metrics[2]["lrs"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_f64()
        .unwrap();
    assert_eq!(points["lr/head"][17].1, last_lr as f32);
    let top1: Vec<(i64, f32)> = points["valid/top1"].clone();
    assert_eq!(
        top1,
        metrics
            .iter()
            .map(|m| (
                m["step"].as_i64().unwrap(),
                m["valid_top1"].as_f64().unwrap() as f32
            ))
            .collect::<Vec<_>>()
    );
    for tag in [
        "valid/loss",
        "valid/top5",
        "train/epoch_loss",
        "train/top1",
        "perf/images_per_s",
    ] {
        assert_eq!(points[tag].len(), 3, "{tag}");
    }
}

#[test]
fn report_and_onnx_export_of_a_run() {
    use base64::Engine;
    use tract_onnx::prelude::*;
    let d = tmpdir("report");
    let run = d.join("run");
    let _ = std::fs::remove_dir_all(&run);
    let cfg = tiny_run_config(&d);
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    // (Also the smoke run of `--sampler balanced --class-weights auto`.)
    let out = petal(&[
        "train",
        "--config",
        &s(&cfg),
        "--sampler",
        "balanced",
        "--class-weights",
        "auto",
        "--out",
        &s(&run),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("train class counts:")
            && stdout.contains("balanced sampling; weighted loss"),
        "{stdout}"
    );
    let bad_run = d.join("bad");
    let _ = std::fs::remove_dir_all(&bad_run);
    let bad = petal(&[
        "train",
        "--config",
        &s(&cfg),
        "--class-weights",
        "/no/such.json",
        "--out",
        &s(&bad_run),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--class-weights"));
    assert!(!bad_run.exists(), "a refused run leaves no directory");

    // `petal report`: every section, every picture decodes, the numbers add up.
    let out = petal(&["report", "--run", &s(&run), "--worst", "5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    for id in [
        "summary",
        "config",
        "data",
        "curves",
        "confusion",
        "per-class",
        "worst",
        "augmentation",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "no {id} section"
        );
    }
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
    let mut pictures = Vec::new();
    for part in html.split("src=\"data:").skip(1) {
        let (mime, rest) = part.split_once(";base64,").unwrap();
        let b64 = &rest[..rest.find('"').unwrap()];
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let img = image::load_from_memory(&bytes).unwrap_or_else(|e| panic!("{mime}: {e}"));
        pictures.push((mime.to_string(), img.width(), img.height()));
    }
    // curves.png, 5 worst-prediction thumbnails, the augmentation grid (8 pairs of 24²).
    assert_eq!(pictures.len(), 7, "{pictures:?}");
    assert_eq!(pictures[0].0, "image/png");
    assert!(
        pictures[1..6].iter().all(|p| p.1.max(p.2) <= 160),
        "{pictures:?}"
    );
    assert_eq!(pictures[6].1, 4 * (2 * 24 + 6) + 5 * 6);
    // The confusion matrix holds the 12 validation images; the data table 48 + 12.
    let cm = &html[html.find("<table class=\"cm\">").unwrap()..];
    let cm = &cm[..cm.find("</table>").unwrap()];
    let cells: Vec<u64> = cm
        .split("</td>")
        .filter_map(|c| c.rsplit('>').next()?.parse().ok())
        .collect();
    assert_eq!(cells.len(), 9);
    assert_eq!(cells.iter().sum::<u64>(), 12);
    assert!(html.contains("<th>total</th><th class=\"num\">48</th><th class=\"num\">12</th>"));

    // `petal export --format onnx`: tract runs it with `petal predict --logits`'s numbers.
    // A uniform image: resize and crop keep its colour, so the normalised input is exact.
    let onnx = run.join("model.onnx");
    let out = petal(&[
        "export",
        "--run",
        &s(&run),
        "--format",
        "onnx",
        "--out",
        &s(&onnx),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = petal(&[
        "export",
        "--run",
        &s(&run),
        "--format",
        "onnx",
        "--out",
        &s(&onnx),
    ]);
    assert!(!again.status.success(), "an existing --out needs --force");
    let rgb = [220u8, 40, 60];
    let flower = d.join("flower.png");
    image::RgbImage::from_pixel(40, 30, image::Rgb(rgb))
        .save(&flower)
        .unwrap();
    let o = petal(&[
        "predict",
        "--run",
        &s(&run),
        "--json",
        "--logits",
        &s(&flower),
    ]);
    let v = json_ok(&o);
    let want: Vec<f32> = v[0]["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    let input = tract_ndarray::Array4::from_shape_fn((1, 3, 24, 24), |(_, c, _, _)| {
        (rgb[c] as f32 / 255.0 - mean[c]) / std[c]
    });
    let model = tract_onnx::onnx()
        .model_for_path(&onnx)
        .unwrap()
        .with_input_fact(0, f32::fact([1, 3, 24, 24]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let got = model.run(tvec!(Tensor::from(input).into())).unwrap();
    let got: Vec<f32> = got[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err <= 1e-4 * scale, "ONNX {got:?} vs predict {want:?}");
}

#[test]
fn lr_auto_runs_the_finder_and_records_its_suggestion() {
    let d = tmpdir("lr-auto");
    let run = d.join("run");
    let _ = std::fs::remove_dir_all(&run);
    let cfg = tiny_run_config(&d);
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    // (Also the smoke run of `--progressive`.)
    let out = petal(&[
        "train",
        "--config",
        &s(&cfg),
        "--lr",
        "auto",
        "--epochs",
        "1",
        "--progressive",
        "16:32",
        "--accum-steps",
        "2",
        "--out",
        &s(&run),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("lr auto: the learning-rate finder suggests"),
        "{stdout}"
    );
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let (lr, found) = (c["lr"].as_f64().unwrap(), c["lr_finder"].as_f64().unwrap());
    assert_eq!(lr, found);
    assert!(lr > 0.0 && lr < 1.0 && lr != 5e-3, "{lr}");
    assert_eq!(c["lr_auto"], true);
    assert_eq!(c["progressive"], serde_json::json!([16, 32]));
    assert_eq!(c["augment"]["size"], 32);
    // The finder's own files, and the suggestion is the one lr_find.json holds.
    let f: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("lr_find").join("lr_find.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(f["suggestion"].as_f64().unwrap(), lr);
    assert!(run.join("lr_find").join("lr_find.png").is_file());
    // A bad value names the flag.
    let bad = petal(&[
        "train",
        "--config",
        &s(&cfg),
        "--lr",
        "fast",
        "--out",
        &s(&d.join("x")),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--lr fast"));
}

#[test]
fn resume_with_accumulation_is_exact() {
    // 6 batches of 8 per epoch, 2 per optimizer step: killed after step 4 (the middle of
    // epoch 2), resumed; the same metrics and weights as the uninterrupted run.
    let d = tmpdir("accum-resume");
    let cfg = tiny_run_config(&d);
    let (a, b) = (d.join("a"), d.join("b"));
    for r in [&a, &b] {
        let _ = std::fs::remove_dir_all(r);
    }
    full_and_resumed(&cfg, (&a, &b), &["--accum-steps", "2"], "4");
    assert_eq!(metrics(&a), metrics(&b));
    assert_eq!(
        metrics(&a)
            .iter()
            .map(|m| m["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [3, 6, 9]
    );
    let flower = d.join("flower.png");
    image::RgbImage::from_pixel(30, 40, image::Rgb([40, 200, 60]))
        .save(&flower)
        .unwrap();
    assert_eq!(last_logits(&a, &flower), last_logits(&b, &flower));
}

#[test]
fn mixup_cutmix_runs_resume_exactly_and_are_recorded() {
    // MixUp and CutMix both on (90 % of batches, half of them CutMix) with label smoothing:
    // interrupted mid-epoch and resumed, the same metrics and weights; the run differs from
    // the same run unmixed; the settings are in config.json; bad values name the flag.
    let d = tmpdir("mix-resume");
    let cfg = tiny_run_config(&d);
    let (a, b, plain) = (d.join("a"), d.join("b"), d.join("plain"));
    for r in [&a, &b, &plain] {
        let _ = std::fs::remove_dir_all(r);
    }
    let mix = [
        "--mixup",
        "0.4",
        "--cutmix",
        "1.0",
        "--mix-prob",
        "0.9",
        "--mix-switch-prob",
        "0.5",
        "--label-smoothing",
        "0.1",
    ];
    let stdout = full_and_resumed(&cfg, (&a, &b), &mix, "9");
    assert!(
        stdout.contains("mixing: MixUp α 0.4 / CutMix α 1 (CutMix 50 %) on 90 % of batches"),
        "{stdout}"
    );
    assert_eq!(metrics(&a), metrics(&b));
    let flower = d.join("flower.png");
    image::RgbImage::from_pixel(30, 40, image::Rgb([40, 200, 60]))
        .save(&flower)
        .unwrap();
    assert_eq!(last_logits(&a, &flower), last_logits(&b, &flower));
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        (
            &c["mixup"],
            &c["cutmix"],
            &c["mix_prob"],
            &c["mix_switch_prob"]
        ),
        (
            &serde_json::json!(0.4),
            &serde_json::json!(1.0),
            &serde_json::json!(0.9),
            &serde_json::json!(0.5)
        )
    );
    let out = train_with(&cfg, &plain, &["--label-smoothing", "0.1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loss = |run: &PathBuf| -> Vec<f64> {
        metrics(run)
            .iter()
            .map(|m| m["train_loss"].as_f64().unwrap())
            .collect()
    };
    assert_ne!(loss(&a), loss(&plain), "mixing changed nothing");
    for (flag, value) in [
        ("--mix-prob", "1.5"),
        ("--mixup", "150"),
        ("--mix-switch-prob", "2"),
    ] {
        let out = train_with(&cfg, &d.join("bad"), &[flag, value]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(flag), "{flag} {value}: {err}");
    }
}

#[test]
fn mixed_precision_resumes_exactly_on_wgpu_and_is_refused_on_the_cpu() {
    // An initial loss scale of 1e9 overflows f16 at first: steps are skipped and the scale
    // halves until it fits, then tries to grow every 4 clean steps. Interrupted and resumed,
    // the run continues the same scaler (it is in the checkpoint); metrics.jsonl records it.
    let d = tmpdir("mixed");
    let cfg = tiny_run_config(&d);
    let (a, b) = (d.join("a"), d.join("b"));
    for r in [&a, &b] {
        let _ = std::fs::remove_dir_all(r);
    }
    let flags = [
        "--device",
        "wgpu",
        "--precision",
        "mixed",
        "--loss-scale",
        "1e9",
        "--loss-scale-growth",
        "4",
    ];
    full_and_resumed(&cfg, (&a, &b), &flags, "8");
    // wgpu runs are not bit-reproducible from process to process (autotuned kernels are
    // chosen by timing), so the losses agree closely, and the scaler's path exactly.
    let (ma, mb) = (metrics(&a), metrics(&b));
    assert_eq!(ma.len(), 3);
    for (x, y) in ma.iter().zip(&mb) {
        for key in ["step", "loss_scale", "skipped_steps", "lr"] {
            assert_eq!(x[key], y[key], "{key}: {x} vs {y}");
        }
        let (lx, ly) = (
            x["train_loss"].as_f64().unwrap(),
            y["train_loss"].as_f64().unwrap(),
        );
        assert!((lx - ly).abs() < 1e-2 * lx.abs(), "{x} vs {y}");
    }
    let last = ma.last().unwrap();
    let (scale, skipped) = (
        last["loss_scale"].as_f64().unwrap(),
        last["skipped_steps"].as_u64().unwrap(),
    );
    println!("mixed run: loss scale {scale}, {skipped} steps skipped; {ma:?}");
    assert!(
        skipped >= 1 && scale < 1e9,
        "scale {scale}, skipped {skipped}"
    );
    assert!(
        ma.iter()
            .all(|m| m["train_loss"].as_f64().unwrap().is_finite())
    );
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("config.json")).unwrap()).unwrap();
    assert_eq!(c["precision"], "mixed");
    // The CPU backend has no f16 path: refused, naming the setting.
    let out = train_with(&cfg, &d.join("cpu"), &["--precision", "mixed"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("mixed-precision training needs a wgpu adapter"),
        "{err}"
    );
}

#[test]
fn device_cache_trains_like_decoding_on_wgpu_and_is_refused_on_the_cpu() {
    // `--cache device` decodes every image once onto the GPU; the run must train as the
    // decoding one does (wgpu runs are not bit-reproducible across processes: autotune
    // picks kernels by timing, so the losses agree closely).
    let d = tmpdir("device-cache");
    let cfg = tiny_run_config(&d);
    let (a, b) = (d.join("decoded"), d.join("resident"));
    for r in [&a, &b] {
        let _ = std::fs::remove_dir_all(r);
    }
    let out = train_with(&cfg, &a, &["--device", "wgpu"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = train_with(&cfg, &b, &["--device", "wgpu", "--cache", "device"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 48 train and 12 valid synthetic images of 32² (3 bytes a pixel).
    assert!(
        stdout.contains("--cache device: 48 train images in 0.1 MiB, 12 valid images in 0.0 MiB"),
        "{stdout}"
    );
    let (ma, mb) = (metrics(&a), metrics(&b));
    assert_eq!(ma.len(), 3);
    for (x, y) in ma.iter().zip(&mb) {
        for key in ["train_loss", "valid_loss"] {
            let (lx, ly) = (x[key].as_f64().unwrap(), y[key].as_f64().unwrap());
            assert!((lx - ly).abs() < 1e-2 * lx.abs(), "{key}: {x} vs {y}");
        }
    }
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("config.json")).unwrap()).unwrap();
    assert_eq!(c["cache"], "device");
    // The CPU: refused before training, naming the flag and the alternative.
    let out = train_with(&cfg, &d.join("cpu"), &["--cache", "device"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--cache device: the device") && err.contains("--cache ram"),
        "{err}"
    );
}
