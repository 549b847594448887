//! PNG plots (plotters, bitmap backend, a bundled DejaVu Sans so no system font is needed):
//! training curves, the learning-rate finder, the confusion matrix.

use crate::error::TrainError;
use crate::metrics::EpochRecord;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::io(path, format!("cannot draw the plot: {e}"))
}

/// Renders with `draw` into a `w`×`h` RGB image (`what` names the plot in errors).
fn render_image(
    what: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<image::RgbImage, TrainError> {
    register_font();
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(what, e))?;
        draw(root.clone()).map_err(|e| plot_err(what, e))?;
        root.present().map_err(|e| plot_err(what, e))?;
    }
    Ok(image::RgbImage::from_raw(w, h, buf).expect("buffer size"))
}

/// Renders with `draw` into a `w`×`h` RGB buffer and saves it as PNG at `path`.
fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<(), TrainError> {
    save_png(path, &render_image(path, size, draw)?)
}

/// Saves `img` as PNG at `path` through a temporary file renamed into place.
fn save_png(path: &Path, img: &image::RgbImage) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp.png");
    img.save(&tmp).map_err(|e| plot_err(path, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// One named line of a panel.
type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

/// A panel of lines over epochs `0 ..= x_max` with a legend (epoch `e` ends at `x = e`; the
/// per-step learning rate starts just after 0).
fn line_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    (lo, hi): (f64, f64),
    x_max: f64,
    series: Vec<Series>,
    legend: SeriesLabelPosition,
) -> Result<(), String> {
    let e = |s: &dyn std::fmt::Display| s.to_string();
    let mut c = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, lo..hi)
        .map_err(|x| e(&x))?;
    c.configure_mesh()
        .x_desc("epoch")
        .y_label_formatter(&|v| {
            if hi < 0.01 {
                format!("{v:.1e}")
            } else {
                format!("{v:.2}")
            }
        })
        .draw()
        .map_err(|x| e(&x))?;
    let labelled = series.len() > 1;
    for (name, color, points) in series {
        let s = c
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|x| e(&x))?;
        if labelled {
            s.label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
    }
    if labelled {
        c.configure_series_labels()
            .position(legend)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|x| e(&x))?;
    }
    Ok(())
}

/// `curves.png`: losses and accuracies per epoch, the head learning rate per step
/// (`head_lrs`, x in epochs; the epochs' last values when empty).
pub fn curves(
    path: &Path,
    records: &[EpochRecord],
    head_lrs: &[(f64, f64)],
) -> Result<(), TrainError> {
    match curves_image(records, head_lrs)? {
        Some(img) => save_png(path, &img),
        None => Ok(()),
    }
}

/// The picture of [`curves`] in memory (`None` before the first epoch), e.g. for a report.
pub fn curves_image(
    records: &[EpochRecord],
    head_lrs: &[(f64, f64)],
) -> Result<Option<image::RgbImage>, TrainError> {
    if records.is_empty() {
        return Ok(None);
    }
    let x_max = records.len() as f64 + 0.5;
    let line = |f: fn(&EpochRecord) -> f64| -> Vec<(f64, f64)> {
        records.iter().map(|r| (r.epoch as f64, f(r))).collect()
    };
    let what = Path::new("curves.png");
    render_image(what, (1500, 450), |root| {
        let panels = root.split_evenly((1, 3));
        line_panel(
            &panels[0],
            "loss",
            range(records.iter().flat_map(|r| [r.train_loss, r.valid_loss])),
            x_max,
            vec![
                ("train", BLUE, line(|r| r.train_loss)),
                ("valid", RED, line(|r| r.valid_loss)),
            ],
            SeriesLabelPosition::UpperRight,
        )?;
        line_panel(
            &panels[1],
            "accuracy",
            (0.0, 1.0),
            x_max,
            vec![
                ("train top-1", BLUE, line(|r| r.train_top1)),
                ("valid top-1", RED, line(|r| r.valid_top1)),
                ("valid top-5", GREEN, line(|r| r.valid_top5)),
            ],
            SeriesLabelPosition::LowerRight,
        )?;
        // Per step (warm-up and cosine as they ran), not only the epochs' last values.
        let (lo, hi) = range(
            records
                .iter()
                .map(|r| r.lr)
                .chain(head_lrs.iter().map(|p| p.1)),
        );
        let mut series = vec![("lr per step", BLACK, head_lrs.to_vec())];
        if head_lrs.is_empty() {
            series = vec![("lr (epoch end)", BLACK, line(|r| r.lr))];
        }
        line_panel(
            &panels[2],
            "head learning rate",
            (lo.max(0.0), hi),
            x_max,
            series,
            SeriesLabelPosition::UpperRight,
        )
    })
    .map(Some)
}

/// `lr_find.png`: smoothed loss against the learning rate (log scale), with the suggestion.
pub fn lr_find(
    path: &Path,
    lrs: &[f64],
    losses: &[f64],
    suggestion: f64,
) -> Result<(), TrainError> {
    render(path, (800, 500), |root| {
        let e = |s: &dyn std::fmt::Display| s.to_string();
        let lo_lr = lrs.first().copied().unwrap_or(1e-7);
        let hi_lr = lrs.last().copied().unwrap_or(10.0).max(lo_lr * 10.0);
        let (lo, hi) = range(losses.iter().copied());
        let mut c = ChartBuilder::on(&root)
            .caption(
                format!("learning-rate finder — suggested {suggestion:.2e}"),
                ("sans-serif", 22),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((lo_lr..hi_lr).log_scale(), lo..hi)
            .map_err(|x| e(&x))?;
        c.configure_mesh()
            .x_desc("learning rate")
            .y_desc("smoothed loss")
            .x_label_formatter(&|v| format!("{v:.0e}"))
            .draw()
            .map_err(|x| e(&x))?;
        c.draw_series(LineSeries::new(
            lrs.iter().copied().zip(losses.iter().copied()),
            BLUE.stroke_width(2),
        ))
        .map_err(|x| e(&x))?;
        c.draw_series(std::iter::once(PathElement::new(
            vec![(suggestion, lo), (suggestion, hi)],
            RED.stroke_width(2),
        )))
        .map_err(|x| e(&x))?;
        Ok(())
    })
}

/// `confusion.png`: the confusion matrix, true class down, predicted across; each cell
/// shaded by its share of the row (green on the diagonal, red off it) and, while the cells
/// are large enough (up to 60 classes), showing its count. Rows are labelled `name  i`,
/// columns `i` (readable whatever the names' length).
pub fn confusion(path: &Path, matrix: &[Vec<u64>], names: &[String]) -> Result<(), TrainError> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let k = matrix.len().max(1) as u32;
    let cell = (960 / k).clamp(6, 48);
    let counts = cell >= 16;
    let label_font = (cell as f64 * 0.5).clamp(7.0, 14.0);
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(1) as f64;
    let left = ((longest + 5.0) * label_font * 0.58).clamp(40.0, 320.0) as u32;
    let (top, pad) = (70u32, 16u32);
    let side = cell * k;
    let (w, h) = ((left + side + pad).max(360), top + side + pad);
    render(path, (w, h), |root| {
        let e = |s: &dyn std::fmt::Display| s.to_string();
        let centered = Pos::new(HPos::Center, VPos::Center);
        let font = |size: f64| ("sans-serif", size).into_font();
        root.draw(&Text::new(
            "confusion matrix (rows: true class)",
            (10, 12),
            font(16.0),
        ))
        .map_err(|x| e(&x))?;
        for (t, row) in matrix.iter().enumerate() {
            let n = row.iter().sum::<u64>().max(1) as f64;
            let y0 = (top + t as u32 * cell) as i32;
            let name = names.get(t).map_or(String::new(), |s| s.clone());
            root.draw(&Text::new(
                format!("{name}  {t}"),
                (left as i32 - 6, y0 + cell as i32 / 2),
                font(label_font)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(|x| e(&x))?;
            for (p, &v) in row.iter().enumerate() {
                let x0 = (left + p as u32 * cell) as i32;
                let f = v as f64 / n;
                let (r, g, b) = if p == t {
                    (46.0, 125.0, 50.0)
                } else {
                    (179.0, 38.0, 30.0)
                };
                let mix = |c: f64| (255.0 - f * (255.0 - c)).round() as u8;
                let fill = RGBColor(mix(r), mix(g), mix(b));
                let cell_rect = [(x0, y0), (x0 + cell as i32, y0 + cell as i32)];
                root.draw(&Rectangle::new(cell_rect, fill.filled()))
                    .map_err(|x| e(&x))?;
                root.draw(&Rectangle::new(cell_rect, RGBColor(225, 228, 232)))
                    .map_err(|x| e(&x))?;
                if counts {
                    let color = if f > 0.55 {
                        WHITE
                    } else if v == 0 {
                        RGBColor(190, 195, 202)
                    } else {
                        BLACK
                    };
                    root.draw(&Text::new(
                        v.to_string(),
                        (x0 + cell as i32 / 2, y0 + cell as i32 / 2),
                        font(label_font * 0.95).color(&color).pos(centered),
                    ))
                    .map_err(|x| e(&x))?;
                }
            }
        }
        for p in 0..k {
            root.draw(&Text::new(
                p.to_string(),
                ((left + p * cell + cell / 2) as i32, top as i32 - 10),
                font(label_font).color(&BLACK).pos(centered),
            ))
            .map_err(|x| e(&x))?;
        }
        root.draw(&Text::new(
            "predicted →",
            ((left + side / 2) as i32, top as i32 - 30),
            font(12.0).color(&BLACK).pos(centered),
        ))
        .map_err(|x| e(&x))?;
        Ok(())
    })
}
