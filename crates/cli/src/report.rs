//! `petal report`: one self-contained HTML page about a trained run — configuration, data
//! (class counts), curves (losses, accuracies, the learning rate per step), the confusion
//! matrix with its counts, per-class accuracy, the worst predictions as thumbnails (fastai's
//! `plot_top_losses`) and an augmentation preview. Pictures are embedded as `data:` URIs;
//! no script, no network.

use crate::augment_preview;
use anyhow::{Context, Result};
use base64::Engine;
use clap::Args;
use image::{ImageFormat, RgbImage};
use petal_data::{DEFAULT_MAX_PIXELS, PackedBatch, Source};
use petal_trainer::eval::{EvalReport, read_run};
use petal_trainer::metrics::{EpochRecord, read_metrics};
use petal_trainer::train::{device_of, head_lr_steps};
use petal_trainer::{EvalOptions, FineTuneConfig, evaluate_with, plot};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `petal report` arguments.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A `petal train` run directory.
    #[arg(long)]
    run: PathBuf,
    /// The HTML file to write (default: `RUN/report.html`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Which checkpoint to evaluate: `best` or `last`.
    #[arg(long, default_value = "best")]
    checkpoint: String,
    /// The data folder, if it moved since training (default: the run's).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Worst predictions to show.
    #[arg(long, default_value_t = 12)]
    worst: usize,
    /// Samples in the augmentation preview.
    #[arg(long, default_value_t = 8)]
    augment_samples: usize,
    /// Device override (default: the run's).
    #[arg(long)]
    device: Option<String>,
}

/// Side of the worst-prediction thumbnails.
const THUMB: u32 = 160;

/// Runs `petal report`.
pub fn run(args: ReportArgs) -> Result<i32> {
    let checkpoint = crate::export::checkpoint_file(&args.checkpoint)?;
    crate::check_range("worst", args.worst, 0, 1000)?;
    crate::check_range("augment-samples", args.augment_samples, 0, 64)?;
    let (mut config, classes) = read_run(&args.run)?;
    if let Some(d) = &args.device {
        config.device = d.clone();
    }
    let records = read_metrics(&args.run)?;
    // The data opened once: evaluation reads its split, the page the counts and the
    // augmentation preview the training images.
    let data = petal_trainer::data::open(&config, args.data.as_deref())?;
    let eval = evaluate_with(
        &EvalOptions {
            data: args.data.clone(),
            checkpoint: checkpoint.into(),
            worst: args.worst,
            device: args.device.clone(),
            thumbnails: THUMB,
            ..EvalOptions::new(args.run.clone())
        },
        config.clone(),
        &classes,
        &data,
    )?;
    let k = data.classes.names.len();
    let train_counts = data.train.class_counts(k);
    let valid_counts = data.valid.class_counts(k);

    let curves = curves_png(&config, &records)?;
    let preview = augmentation_preview(&config, &data.train, args.augment_samples)?;

    let page = Page {
        run: &args.run,
        config: &config,
        records: &records,
        eval: &eval,
        names: &data.classes.names,
        description: &data.description,
        train_counts: &train_counts,
        valid_counts: &valid_counts,
        curves: curves.as_deref(),
        preview: preview.as_ref(),
    }
    .html()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run.join("report.html"));
    petal_trainer::metrics::write_atomic(&out, page.as_bytes())?;
    println!(
        "wrote {} ({} KiB: {} epochs, valid top-1 {:.2}% on {} images, {} worst predictions)",
        out.display(),
        page.len() / 1024,
        records.len(),
        100.0 * eval.top1,
        eval.images,
        eval.worst.len()
    );
    Ok(0)
}

/// `curves.png` as the trainer draws it (losses, accuracies, the head's learning rate per
/// step), rendered afresh in memory as PNG bytes; `None` before the first epoch.
fn curves_png(config: &FineTuneConfig, records: &[EpochRecord]) -> Result<Option<Vec<u8>>> {
    let Some(first) = records.first() else {
        return Ok(None);
    };
    let bpe = first.step.max(1) as usize;
    let lrs = head_lr_steps(config, records.len(), bpe);
    let Some(img) = plot::curves_image(records, &lrs)? else {
        return Ok(None);
    };
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, ImageFormat::Png)
        .context("encoding curves.png")?;
    Ok(Some(buf.into_inner()))
}

/// The run's training augmentation on `n` training images (seeded by the run's seed):
/// (original | augmented) pairs, through the same fused kernel as training.
fn augmentation_preview(
    config: &FineTuneConfig,
    train: &Source,
    n: usize,
) -> Result<Option<RgbImage>> {
    if n == 0 || train.is_empty() {
        return Ok(None);
    }
    let mut batch = PackedBatch::default();
    let step = (train.len() / n).max(1);
    for i in (0..train.len()).step_by(step).take(n) {
        if let Ok(img) = train.image(i, DEFAULT_MAX_PIXELS) {
            batch.push(&img, train.label(i), i);
        }
    }
    if batch.is_empty() {
        return Ok(None);
    }
    let (device, _) = device_of(config)?;
    let pipe = config.train_pipeline(config.freeze_epochs + config.epochs - 1);
    Ok(Some(augment_preview::render(&batch, &pipe, 0, &device)?))
}

/// `v` with every non-integer number rounded to 6 decimals (f32 settings read back as f64
/// print as 0.20000000298023224 otherwise).
fn tidy(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(0.0);
            serde_json::Number::from_f64((x * 1e6).round() / 1e6).map_or(Value::Null, Value::Number)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(tidy).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, tidy(v))).collect()),
        other => other,
    }
}

/// `{a: 1, b: [2, 3]}` as `a 1 · b [2, 3]`: a settings object on one readable line.
fn settings_line(v: &serde_json::Value) -> String {
    match v.as_object() {
        Some(o) => o
            .iter()
            .map(|(k, v)| format!("{k} {}", v.to_string().replace(',', ", ")))
            .collect::<Vec<_>>()
            .join(" · "),
        None => v.to_string(),
    }
}

/// `data:` URI of `bytes` of MIME type `mime`.
fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A JPEG `data:` URI of `img` (photos: a fraction of a PNG's size).
fn jpeg_uri(img: &RgbImage) -> Result<String> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, ImageFormat::Jpeg)
        .context("encoding a JPEG")?;
    Ok(data_uri("image/jpeg", buf.get_ref()))
}

/// HTML-escapes text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn pct(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 12px;border-bottom:1px solid #dde1e7;padding-bottom:6px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:16px 20px;margin:16px 0}
.sub{color:#5b6475;margin:0 0 12px}nav a{margin-right:14px;color:#2a5db0;text-decoration:none}
.kpis{display:flex;gap:12px;flex-wrap:wrap}.kpi{border:1px solid #dde1e7;border-radius:6px;padding:8px 14px;min-width:120px}
.kpi b{display:block;font-size:20px}.kpi span{color:#5b6475;font-size:12px}
table{border-collapse:collapse}td,th{padding:3px 8px;text-align:left;vertical-align:top}
table.kv td:first-child{color:#5b6475;white-space:nowrap}table.list tr:nth-child(even){background:#f3f5f8}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;height:10px;background:#4c78a8;border-radius:2px;vertical-align:middle}
.scroll{overflow:auto;max-height:900px}
table.cm{font-size:11px;font-variant-numeric:tabular-nums}
table.cm td{width:30px;min-width:30px;height:24px;text-align:center;padding:0;border:1px solid #eef0f3}
table.cm th.col{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;padding:4px 2px;font-weight:normal;max-height:180px;overflow:hidden;text-overflow:ellipsis}
table.cm th.row{text-align:right;white-space:nowrap;font-weight:normal;max-width:220px;overflow:hidden;text-overflow:ellipsis}
table.cm td.zero{color:#c5cad3}table.cm td.diag{outline:1px solid #2e7d32}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:12px}
figure{margin:0;border:1px solid #dde1e7;border-radius:6px;padding:8px;background:#fff}
figure img{display:block;margin:0 auto 6px;max-width:100%}figcaption{font-size:12px}
.bad{color:#b3261e}.ok{color:#2e7d32}img.wide{max-width:100%;height:auto}
pre{background:#f3f5f8;padding:10px;border-radius:6px;overflow:auto;font-size:12px}
"#;

/// Everything the page shows.
struct Page<'a> {
    run: &'a Path,
    config: &'a FineTuneConfig,
    records: &'a [EpochRecord],
    eval: &'a EvalReport,
    names: &'a [String],
    description: &'a str,
    train_counts: &'a [usize],
    valid_counts: &'a [usize],
    curves: Option<&'a [u8]>,
    preview: Option<&'a RgbImage>,
}

impl Page<'_> {
    fn html(&self) -> Result<String> {
        let mut h = String::new();
        let arch = self.eval.arch.clone();
        writeln!(
            h,
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>petal report: {}</title><style>{STYLE}</style></head><body><main>",
            esc(&self.run.display().to_string())
        )?;
        writeln!(
            h,
            "<h1>petal report</h1><p class=\"sub\">{} · {} · {} classes · checkpoint <code>{}</code></p>",
            esc(&self.run.display().to_string()),
            esc(&arch),
            self.names.len(),
            esc(&self.eval.checkpoint)
        )?;
        h.push_str(
            "<nav><a href=\"#summary\">Summary</a><a href=\"#config\">Configuration</a>\
             <a href=\"#data\">Data</a><a href=\"#curves\">Curves</a><a href=\"#confusion\">Confusion matrix</a>\
             <a href=\"#per-class\">Per-class accuracy</a><a href=\"#worst\">Worst predictions</a>\
             <a href=\"#augmentation\">Augmentation</a></nav>\n",
        );
        self.summary(&mut h)?;
        self.config_section(&mut h)?;
        self.data_section(&mut h)?;
        self.curves_section(&mut h)?;
        self.confusion_section(&mut h)?;
        self.per_class_section(&mut h)?;
        self.worst_section(&mut h)?;
        self.augmentation_section(&mut h)?;
        h.push_str("</main></body></html>\n");
        Ok(h)
    }

    fn summary(&self, h: &mut String) -> Result<()> {
        let e = self.eval;
        let best = self.records.iter().max_by(|a, b| {
            a.valid_top1
                .total_cmp(&b.valid_top1)
                .then(b.epoch.cmp(&a.epoch))
        });
        let minutes: f64 = self.records.iter().map(|r| r.time_s).sum::<f64>() / 60.0;
        let kpi = |v: String, label: &str| {
            format!("<div class=\"kpi\"><b>{v}</b><span>{label}</span></div>")
        };
        writeln!(
            h,
            "<section id=\"summary\"><h2>Summary</h2><div class=\"kpis\">"
        )?;
        h.push_str(&kpi(
            pct(e.top1),
            &format!("valid top-1 ({} images)", e.images),
        ));
        h.push_str(&kpi(pct(e.top5), "valid top-5"));
        h.push_str(&kpi(format!("{:.4}", e.loss), "valid loss"));
        if let Some(b) = best {
            h.push_str(&kpi(format!("{}", b.epoch), "best epoch"));
        }
        h.push_str(&kpi(format!("{}", self.records.len()), "epochs trained"));
        h.push_str(&kpi(format!("{minutes:.1} min"), "training time"));
        writeln!(h, "</div></section>")?;
        Ok(())
    }

    fn config_section(&self, h: &mut String) -> Result<()> {
        let c = self.config;
        let json = tidy(serde_json::to_value(c)?);
        writeln!(
            h,
            "<section id=\"config\"><h2>Configuration</h2><table class=\"kv\">"
        )?;
        let row = |h: &mut String, k: &str, v: String| {
            let _ = writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(&v));
        };
        let model = &self.eval.model;
        row(h, "architecture", self.eval.arch.clone());
        row(
            h,
            "head",
            settings_line(&tidy(serde_json::to_value(&model.head)?)),
        );
        row(h, "classes", model.num_classes.to_string());
        for key in [
            "weights",
            "epochs",
            "freeze_epochs",
            "batch_size",
            "lr",
            "lr_mult",
            "wd",
            "schedule",
            "warmup",
            "label_smoothing",
            "unfreeze",
            "precision",
            "device",
            "seed",
        ] {
            match json.get(key) {
                Some(serde_json::Value::Null) | None => {}
                Some(v) => row(h, key, v.to_string().trim_matches('"').to_string()),
            }
        }
        row(h, "augmentation", settings_line(&json["augment"]));
        writeln!(
            h,
            "</table><details><summary>config.json</summary><pre>{}</pre></details></section>",
            esc(&serde_json::to_string_pretty(&json)?)
        )?;
        Ok(())
    }

    fn data_section(&self, h: &mut String) -> Result<()> {
        let max = self
            .train_counts
            .iter()
            .chain(self.valid_counts)
            .copied()
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        writeln!(
            h,
            "<section id=\"data\"><h2>Data</h2><p>{}</p><div class=\"scroll\"><table class=\"list\">\
             <tr><th>#</th><th>class</th><th class=\"num\">train</th><th class=\"num\">valid</th><th></th></tr>",
            esc(self.description)
        )?;
        for (i, name) in self.names.iter().enumerate() {
            let (t, v) = (self.train_counts[i], self.valid_counts[i]);
            writeln!(
                h,
                "<tr><td class=\"num\">{i}</td><td>{}</td><td class=\"num\">{t}</td><td class=\"num\">{v}</td>\
                 <td><span class=\"bar\" style=\"width:{:.0}px\"></span></td></tr>",
                esc(name),
                160.0 * t as f64 / max
            )?;
        }
        writeln!(
            h,
            "<tr><th></th><th>total</th><th class=\"num\">{}</th><th class=\"num\">{}</th><th></th></tr></table></div>",
            self.train_counts.iter().sum::<usize>(),
            self.valid_counts.iter().sum::<usize>()
        )?;
        if self.eval.skipped > 0 {
            writeln!(
                h,
                "<p class=\"bad\">{} validation images could not be read:</p><ul>",
                self.eval.skipped
            )?;
            for (f, r) in &self.eval.skipped_files {
                writeln!(h, "<li><code>{}</code>: {}</li>", esc(f), esc(r))?;
            }
            h.push_str("</ul>");
        }
        h.push_str("</section>\n");
        Ok(())
    }

    fn curves_section(&self, h: &mut String) -> Result<()> {
        writeln!(h, "<section id=\"curves\"><h2>Curves</h2>")?;
        match self.curves {
            Some(png) => writeln!(
                h,
                "<p>Loss and accuracy per epoch; the head's learning rate per optimizer step \
                 (warm-up and cosine of each phase as the scheduler ran them).</p>\
                 <img class=\"wide\" alt=\"curves\" src=\"{}\">",
                data_uri("image/png", png)
            )?,
            None => writeln!(h, "<p>No epoch finished yet.</p>")?,
        }
        if !self.records.is_empty() {
            writeln!(
                h,
                "<div class=\"scroll\"><table class=\"list\"><tr><th>epoch</th><th>phase</th>\
                 <th class=\"num\">train loss</th><th class=\"num\">train top-1</th><th class=\"num\">valid loss</th>\
                 <th class=\"num\">valid top-1</th><th class=\"num\">valid top-5</th><th class=\"num\">head lr</th>\
                 <th class=\"num\">img/s</th></tr>"
            )?;
            for r in self.records {
                writeln!(
                    h,
                    "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{:.4}</td><td class=\"num\">{}</td>\
                     <td class=\"num\">{:.4}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                     <td class=\"num\">{:.3e}</td><td class=\"num\">{:.1}</td></tr>",
                    r.epoch,
                    esc(&r.phase),
                    r.train_loss,
                    pct(r.train_top1),
                    r.valid_loss,
                    pct(r.valid_top1),
                    pct(r.valid_top5),
                    r.lr,
                    r.images_per_s
                )?;
            }
            h.push_str("</table></div>");
        }
        h.push_str("</section>\n");
        Ok(())
    }

    fn confusion_section(&self, h: &mut String) -> Result<()> {
        let cm = &self.eval.confusion;
        writeln!(
            h,
            "<section id=\"confusion\"><h2>Confusion matrix</h2><p>Rows: true class; columns: \
             predicted class; each cell counts images, shaded by its share of the row.</p>\
             <div class=\"scroll\"><table class=\"cm\"><tr><th></th>"
        )?;
        for name in self.names {
            write!(h, "<th class=\"col\" title=\"{0}\">{0}</th>", esc(name))?;
        }
        h.push_str("</tr>\n");
        for (t, row) in cm.iter().enumerate() {
            let total = row.iter().sum::<u64>().max(1) as f64;
            let name = self.names.get(t).map_or(String::new(), |n| esc(n));
            write!(h, "<tr><th class=\"row\" title=\"{name}\">{name}</th>")?;
            for (p, &v) in row.iter().enumerate() {
                let share = v as f64 / total;
                let (r, g, b) = if p == t { (46, 125, 50) } else { (179, 38, 30) };
                let class = match (v, p == t) {
                    (0, _) => " class=\"zero\"",
                    (_, true) => " class=\"diag\"",
                    _ => "",
                };
                let fg = if share > 0.55 { "color:#fff;" } else { "" };
                write!(
                    h,
                    "<td{class} style=\"{fg}background:rgba({r},{g},{b},{share:.3})\">{v}</td>"
                )?;
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table></div></section>\n");
        Ok(())
    }

    fn per_class_section(&self, h: &mut String) -> Result<()> {
        writeln!(
            h,
            "<section id=\"per-class\"><h2>Per-class accuracy</h2><div class=\"scroll\"><table class=\"list\">\
             <tr><th>class</th><th class=\"num\">images</th><th class=\"num\">accuracy</th><th></th></tr>"
        )?;
        let mut rows: Vec<_> = self.eval.per_class.iter().collect();
        rows.sort_by(|a, b| {
            a.accuracy
                .unwrap_or(2.0)
                .total_cmp(&b.accuracy.unwrap_or(2.0))
        });
        for c in rows {
            let (acc, width) = match c.accuracy {
                Some(a) => (pct(a), 200.0 * a),
                None => ("–".into(), 0.0),
            };
            writeln!(
                h,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{acc}</td>\
                 <td><span class=\"bar\" style=\"width:{width:.0}px\"></span></td></tr>",
                esc(&c.class),
                c.count
            )?;
        }
        h.push_str("</table></div><p class=\"sub\">Worst first.</p></section>\n");
        Ok(())
    }

    fn worst_section(&self, h: &mut String) -> Result<()> {
        writeln!(
            h,
            "<section id=\"worst\"><h2>Worst predictions</h2><p>The validation images with the \
             highest loss: predicted / true class, the probability of the prediction and of the \
             true class.</p><div class=\"grid\">"
        )?;
        for m in &self.eval.worst {
            let img = match &m.thumbnail {
                Some(t) => format!("<img alt=\"{}\" src=\"{}\">", esc(&m.file), jpeg_uri(t)?),
                None => String::from("<p class=\"sub\">(image unreadable)</p>"),
            };
            let verdict = if m.predicted == m.label { "ok" } else { "bad" };
            let file = esc(&m.file);
            let short = esc(Path::new(&m.file)
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or(&m.file));
            writeln!(
                h,
                "<figure>{img}<figcaption><b class=\"{verdict}\">{}</b> ({:.1}%)<br>true: <b>{}</b> ({:.1}%)<br>\
                 loss {:.3}<br><span class=\"sub\" title=\"{file}\">{short}</span></figcaption></figure>",
                esc(&m.predicted),
                100.0 * m.probability,
                esc(&m.label),
                100.0 * m.label_probability,
                m.loss,
            )?;
        }
        h.push_str("</div></section>\n");
        Ok(())
    }

    fn augmentation_section(&self, h: &mut String) -> Result<()> {
        writeln!(h, "<section id=\"augmentation\"><h2>Augmentation</h2>")?;
        match self.preview {
            Some(img) => writeln!(
                h,
                "<p>Training images (left of each pair) and what the run's augmentation made of \
                 them in epoch 1 (right), through the same fused kernel: <code>{}</code></p>\
                 <img class=\"wide\" alt=\"augmentation preview\" src=\"{}\">",
                esc(&settings_line(&tidy(serde_json::to_value(
                    &self.config.augment
                )?))),
                jpeg_uri(img)?
            )?,
            None => writeln!(h, "<p>No training image to preview.</p>")?,
        }
        h.push_str("</section>\n");
        Ok(())
    }
}
