//! The PNG plot: peak memory against RTF, one labelled point per mode.
//!
//! Drawn with `plotters`' bitmap backend. plotters has no font of its own: its
//! `ttf` feature needs the system's fontconfig and its `ab_glyph` feature needs
//! a font file registered at run time (one we would have to commit). So the
//! chart (frame, grid, points) is drawn by plotters with no text element at all,
//! and every label is drawn here pixel by pixel from the public-domain 8x8
//! bitmap glyphs of the `font8x8` crate, scaled by an integer factor.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::schema::{ModeSummary, ResultKind};

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 800;
const GLYPH: i32 = 8;

/// One point of the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Label drawn beside the point.
    pub label: String,
    /// True for the PyTorch baseline (drawn as a red triangle).
    pub baseline: bool,
    /// Peak RSS, MiB.
    pub peak_mib: f64,
    /// Real-time factor.
    pub rtf: f64,
}

/// The points of a report: every synthesis mode with measured runs.
pub fn points(summary: &[ModeSummary]) -> Vec<Point> {
    summary
        .iter()
        .filter(|s| s.kind == Some(ResultKind::Synthesis) && s.runs > 0)
        .map(|s| Point {
            label: s.mode.clone(),
            baseline: s.framework == "pytorch",
            peak_mib: s.peak_rss_bytes.median / (1024.0 * 1024.0),
            rtf: s.rtf.median,
        })
        .collect()
}

/// Draws `text` with its top-left corner at (x, y), each glyph pixel a
/// `scale` x `scale` square; `vertical` writes bottom to top. Characters
/// outside ASCII are drawn as `?`.
fn draw_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    (x, y): (i32, i32),
    scale: i32,
    color: &RGBColor,
    vertical: bool,
) -> Result<()> {
    for (i, ch) in text.chars().enumerate() {
        let code = if ch.is_ascii() {
            ch as usize
        } else {
            '?' as usize
        };
        let glyph = font8x8::legacy::BASIC_LEGACY[code];
        let advance = i as i32 * GLYPH * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                let (gx, gy) = (col * scale, row as i32 * scale);
                let (px, py) = if vertical {
                    (x + gy, y - advance - gx - scale)
                } else {
                    (x + advance + gx, y + gy)
                };
                area.draw(&Rectangle::new(
                    [(px, py), (px + scale, py + scale)],
                    color.filled(),
                ))
                .map_err(|e| anyhow::anyhow!("drawing text: {e}"))?;
            }
        }
    }
    Ok(())
}

fn text_width(text: &str, scale: i32) -> i32 {
    text.chars().count() as i32 * GLYPH * scale
}

/// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `n` ticks up to `max`.
fn tick_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(f64::MIN_POSITIVE);
    let pow = 10f64.powf(raw.log10().floor());
    let m = raw / pow;
    let nice = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * pow
}

fn tick_label(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else if step >= 0.1 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Writes the plot to `path` (PNG). `reference` adds labelled vertical lines
/// (e.g. the largest stage's own peak), in MiB.
pub fn write_png(
    path: &Path,
    title: &str,
    pts: &[Point],
    reference: &[(String, f64)],
) -> Result<()> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(err)?;

    let x_max = pts
        .iter()
        .map(|p| p.peak_mib)
        .chain(reference.iter().map(|r| r.1))
        .fold(1.0f64, f64::max)
        * 1.15;
    let y_max = pts.iter().map(|p| p.rtf).fold(0.1f64, f64::max) * 1.2;
    let (left, bottom, top, right) = (110i32, 70i32, 80i32, 40i32);
    let mut chart = ChartBuilder::on(&root)
        .margin_top(top as u32)
        .margin_right(right as u32)
        .x_label_area_size(bottom as u32)
        .y_label_area_size(left as u32)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(err)?;

    // Grid and tick labels.
    let grid = RGBColor(225, 225, 225);
    let dark = RGBColor(40, 40, 40);
    let xs = tick_step(x_max, 8.0);
    let ys = tick_step(y_max, 8.0);
    let mut v = 0.0;
    while v <= x_max {
        chart
            .draw_series(LineSeries::new(
                [(v, 0.0), (v, y_max)],
                grid.stroke_width(1),
            ))
            .map_err(err)?;
        let (px, py) = chart.backend_coord(&(v, 0.0));
        let label = tick_label(v, xs);
        draw_text(
            &root,
            &label,
            (px - text_width(&label, 2) / 2, py + 10),
            2,
            &dark,
            false,
        )?;
        v += xs;
    }
    let mut v = 0.0;
    while v <= y_max {
        chart
            .draw_series(LineSeries::new(
                [(0.0, v), (x_max, v)],
                grid.stroke_width(1),
            ))
            .map_err(err)?;
        let (px, py) = chart.backend_coord(&(0.0, v));
        let label = tick_label(v, ys);
        draw_text(
            &root,
            &label,
            (px - text_width(&label, 2) - 10, py - GLYPH),
            2,
            &dark,
            false,
        )?;
        v += ys;
    }
    // Frame.
    let (x0, y0) = chart.backend_coord(&(0.0, y_max));
    let (x1, y1) = chart.backend_coord(&(x_max, 0.0));
    root.draw(&Rectangle::new([(x0, y0), (x1, y1)], dark.stroke_width(2)))
        .map_err(err)?;

    // Reference lines.
    let refc = RGBColor(120, 120, 120);
    let mut taken: Vec<(i32, i32, i32, i32)> = Vec::new();
    for (i, (label, x)) in reference.iter().enumerate() {
        chart
            .draw_series(LineSeries::new(
                [(*x, 0.0), (*x, y_max)],
                refc.stroke_width(2),
            ))
            .map_err(err)?;
        let (px, py) = chart.backend_coord(&(*x, y_max));
        let (lx, ly) = (px + 6, py + 8 + i as i32 * 20);
        taken.push((lx, ly, lx + text_width(label, 2), ly + 2 * GLYPH));
        draw_text(&root, label, (lx, ly), 2, &refc, false)?;
    }

    // Points first, then labels placed where they overlap neither a point nor
    // another label (right, left, then further down or up).
    let ours = RGBColor(31, 90, 180);
    let theirs = RGBColor(200, 50, 40);
    for p in pts {
        let color = if p.baseline { theirs } else { ours };
        if p.baseline {
            chart
                .draw_series(std::iter::once(TriangleMarker::new(
                    (p.peak_mib, p.rtf),
                    9,
                    color.filled(),
                )))
                .map_err(err)?;
        } else {
            chart
                .draw_series(std::iter::once(Circle::new(
                    (p.peak_mib, p.rtf),
                    7,
                    color.filled(),
                )))
                .map_err(err)?;
        }
        let (px, py) = chart.backend_coord(&(p.peak_mib, p.rtf));
        taken.push((px - 9, py - 9, px + 9, py + 9));
    }
    for p in pts {
        let color = if p.baseline { theirs } else { ours };
        let (px, py) = chart.backend_coord(&(p.peak_mib, p.rtf));
        let w = text_width(&p.label, 2);
        let h = GLYPH * 2;
        let free = |(lx, ly): (i32, i32), taken: &[(i32, i32, i32, i32)]| {
            lx >= x0 + 2
                && lx + w <= x1 - 2
                && ly >= y0 + 2
                && ly + h <= y1 - 2
                && !taken
                    .iter()
                    .any(|&(ax, ay, bx, by)| lx < bx && lx + w > ax && ly < by && ly + h > ay)
        };
        let mut spot = None;
        'search: for k in 0..12 {
            let dy = (k / 2 + 1) * (h + 2) * if k % 2 == 0 { 1 } else { -1 };
            let candidates = if k == 0 {
                vec![(px + 12, py - h / 2), (px - 12 - w, py - h / 2)]
            } else {
                vec![(px + 12, py - h / 2 + dy), (px - 12 - w, py - h / 2 + dy)]
            };
            for c in candidates {
                if free(c, &taken) {
                    spot = Some(c);
                    break 'search;
                }
            }
        }
        let (lx, ly) = spot.unwrap_or((px + 12, py - h / 2));
        taken.push((lx, ly, lx + w, ly + h));
        if (ly + h / 2 - py).abs() > h {
            // Far from its point: a leader line says which point it names.
            let (ax, ay) = (if lx > px { lx - 2 } else { lx + w + 2 }, ly + h / 2);
            root.draw(&PathElement::new(
                vec![(px, py), (ax, ay)],
                color.stroke_width(1),
            ))
            .map_err(err)?;
        }
        draw_text(&root, &p.label, (lx, ly), 2, &color, false)?;
    }

    // Titles and legend.
    draw_text(
        &root,
        title,
        ((WIDTH as i32 - text_width(title, 3)) / 2, 16),
        3,
        &dark,
        false,
    )?;
    let xt = "peak RSS (MiB)";
    draw_text(
        &root,
        xt,
        ((x0 + x1 - text_width(xt, 2)) / 2, HEIGHT as i32 - 30),
        2,
        &dark,
        false,
    )?;
    let yt = "RTF (wall / audio seconds)";
    draw_text(
        &root,
        yt,
        (14, (y0 + y1 + text_width(yt, 2)) / 2),
        2,
        &dark,
        true,
    )?;
    let legend_y = 50;
    root.draw(&Circle::new((x0 + 8, legend_y + 8), 6, ours.filled()))
        .map_err(err)?;
    draw_text(
        &root,
        "chatterbox-ort",
        (x0 + 22, legend_y),
        2,
        &ours,
        false,
    )?;
    if pts.iter().any(|p| p.baseline) {
        root.draw(&TriangleMarker::new(
            (x0 + 288, legend_y + 8),
            8,
            theirs.filled(),
        ))
        .map_err(err)?;
        draw_text(
            &root,
            "PyTorch baseline",
            (x0 + 302, legend_y),
            2,
            &theirs,
            false,
        )?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(tick_step(10.0, 5.0), 2.0);
        assert_eq!(tick_step(3700.0, 8.0), 500.0);
        assert!((tick_step(1.3, 8.0) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn writes_a_png_with_labels() {
        let dir = std::env::temp_dir().join(format!("cbo-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plot.png");
        let pts = vec![
            Point {
                label: "resident".into(),
                baseline: false,
                peak_mib: 3500.0,
                rtf: 2.0,
            },
            Point {
                label: "swap".into(),
                baseline: false,
                peak_mib: 2400.0,
                rtf: 2.2,
            },
            Point {
                label: "torch-resident".into(),
                baseline: true,
                peak_mib: 4200.0,
                rtf: 3.0,
            },
        ];
        write_png(&path, "test", &pts, &[("largest stage".into(), 2200.0)]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
