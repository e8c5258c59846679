//! Drawing: one run in four panels, or several runs overlaid.

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::series::{RunSeries, StepPoint};
use super::{Chart, Marker, MarkerKind, ReportError};
use crate::advisor::Severity;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Ctx<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

const TRAIN: RGBColor = RGBColor(37, 99, 235);
const VAL: RGBColor = RGBColor(234, 88, 12);
const NORM: RGBColor = RGBColor(124, 58, 237);
const LR: RGBColor = RGBColor(13, 148, 136);
const SPEED: RGBColor = RGBColor(100, 116, 139);
const BEST: RGBColor = RGBColor(22, 163, 74);
const EARLY: RGBColor = RGBColor(59, 130, 246);
const GRID: RGBColor = RGBColor(226, 232, 240);
const PALETTE: [RGBColor; 8] = [
    RGBColor(37, 99, 235),
    RGBColor(234, 88, 12),
    RGBColor(22, 163, 74),
    RGBColor(124, 58, 237),
    RGBColor(219, 39, 119),
    RGBColor(13, 148, 136),
    RGBColor(202, 138, 4),
    RGBColor(71, 85, 105),
];

fn draw_err<E: std::fmt::Debug>(e: E) -> ReportError {
    ReportError::Draw(format!("{e:?}"))
}

fn check_size(width: u32, height: u32) -> Result<(), ReportError> {
    if width < 200 || height < 150 {
        return Err(ReportError::TooSmall { width, height });
    }
    Ok(())
}

/// One run: training and validation loss (with the early window shaded,
/// the best checkpoint and the advisor's advice marked), gradient norm,
/// learning rate and tokens/s.
pub fn run_chart(series: &RunSeries, width: u32, height: u32) -> Result<Chart, ReportError> {
    check_size(width, height)?;
    let mut svg = String::new();
    let mut markers = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let x_end = series.total_steps.max(series.last_step()) as f64;
        let (top, bottom) = root.split_vertically(height * 58 / 100);
        let panels = bottom.split_evenly((1, 3));
        loss_panel(&top, series, x_end, &mut markers)?;
        let pick = |f: fn(&StepPoint) -> f64| -> Vec<(f64, f64)> {
            thin(
                series.steps.iter().map(|p| (p.step as f64, f(p))).collect(),
                width as usize,
            )
        };
        small_panel(
            &panels[0],
            "gradient norm",
            &pick(|p| p.grad_norm),
            NORM,
            x_end,
            series.early_steps,
        )?;
        small_panel(&panels[1], "learning rate", &pick(|p| p.lr), LR, x_end, 0)?;
        small_panel(
            &panels[2],
            "tokens/s",
            &pick(|p| p.tokens_per_sec),
            SPEED,
            x_end,
            0,
        )?;
        root.present().map_err(draw_err)?;
    }
    Ok(Chart { svg, markers })
}

fn loss_panel(
    area: &Area,
    series: &RunSeries,
    x_end: f64,
    markers: &mut Vec<Marker>,
) -> Result<(), ReportError> {
    let width = area.dim_in_pixel().0 as usize;
    let train: Vec<(f64, f64)> = thin(
        series
            .steps
            .iter()
            .map(|p| (p.step as f64, p.loss))
            .collect(),
        width,
    );
    let val: Vec<(f64, f64)> = series
        .evals
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|&(s, v)| (s as f64, v))
        .collect();
    let y = y_range(train.iter().chain(&val).map(|p| p.1), false);
    let caption = if series.steps.is_empty() && series.evals.is_empty() {
        "loss (waiting for the first step)"
    } else {
        "loss"
    };
    let mut chart = panel(area, caption, x_end, y.clone(), 18)?;
    shade_early(&mut chart, series.early_steps, &y)?;
    chart
        .draw_series(LineSeries::new(train, TRAIN.stroke_width(2)))
        .map_err(draw_err)?
        .label("training loss")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], TRAIN.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(val.clone(), VAL.stroke_width(2)))
        .map_err(draw_err)?
        .label("validation loss")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], VAL.stroke_width(2)));
    chart
        .draw_series(val.iter().map(|&p| Circle::new(p, 3, VAL.filled())))
        .map_err(draw_err)?;
    if let Some((step, v)) = series.best() {
        let p = (step as f64, v);
        chart
            .draw_series(std::iter::once(Circle::new(p, 7, BEST.stroke_width(3))))
            .map_err(draw_err)?
            .label("best checkpoint")
            .legend(|(x, y)| Circle::new((x + 8, y), 5, BEST.stroke_width(2)));
        let (x, y) = chart.backend_coord(&p);
        markers.push(Marker {
            x,
            y,
            step,
            kind: MarkerKind::Best,
            severity: None,
            text: format!("best validation loss {v:.4} at step {step}"),
        });
    }
    for advice in &series.advice {
        let color = match advice.severity {
            Severity::Info => TRAIN,
            Severity::Warning => RGBColor(202, 138, 4),
            Severity::Critical => RGBColor(220, 38, 38),
        };
        let at = (advice.step as f64, y.end);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(advice.step as f64, y.start), at],
                color.mix(0.6).stroke_width(1),
            )))
            .map_err(draw_err)?;
        chart
            .draw_series(std::iter::once(TriangleMarker::new(at, 7, color.filled())))
            .map_err(draw_err)?;
        let (x, py) = chart.backend_coord(&at);
        markers.push(Marker {
            x,
            y: py,
            step: advice.step,
            kind: MarkerKind::Advice,
            severity: Some(advice.severity.to_string()),
            text: format!("step {}: {}", advice.step, advice.message),
        });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(GRID)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

fn small_panel(
    area: &Area,
    caption: &str,
    points: &[(f64, f64)],
    color: RGBColor,
    x_end: f64,
    early_steps: usize,
) -> Result<(), ReportError> {
    let y = y_range(points.iter().map(|p| p.1), true);
    let mut chart = panel(area, caption, x_end, y.clone(), 14)?;
    shade_early(&mut chart, early_steps, &y)?;
    chart
        .draw_series(LineSeries::new(
            points.iter().copied().filter(|p| p.1.is_finite()),
            color.stroke_width(2),
        ))
        .map_err(draw_err)?;
    Ok(())
}

fn panel<'a, 'b>(
    area: &'a Area<'b>,
    caption: &str,
    x_end: f64,
    y: Range<f64>,
    caption_size: u32,
) -> Result<Ctx<'a, 'b>, ReportError> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", caption_size))
        .margin(10)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_end.max(1.0), y)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .light_line_style(GRID.mix(0.5))
        .bold_line_style(GRID)
        .x_labels(6)
        .y_labels(5)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| short(*v))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(draw_err)?;
    Ok(chart)
}

fn shade_early(chart: &mut Ctx, early_steps: usize, y: &Range<f64>) -> Result<(), ReportError> {
    if early_steps == 0 {
        return Ok(());
    }
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, y.start), (early_steps as f64, y.end)],
            EARLY.mix(0.10).filled(),
        )))
        .map_err(draw_err)?
        .label("early window")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], EARLY.mix(0.25).filled()));
    Ok(())
}

/// Several runs over each other: loss (training solid, validation dotted)
/// on the left, gradient norm on the right, one colour per run. The best
/// checkpoint of each run is a marker.
pub fn overlay_chart(runs: &[RunSeries], width: u32, height: u32) -> Result<Chart, ReportError> {
    check_size(width, height)?;
    let mut svg = String::new();
    let mut markers = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let x_end = runs
            .iter()
            .map(|r| r.total_steps.max(r.last_step()))
            .max()
            .unwrap_or(1) as f64;
        let early = runs.iter().map(|r| r.early_steps).max().unwrap_or(0);
        let halves = root.split_evenly((1, 2));
        let px = (width / 2) as usize;
        let losses: Vec<Vec<(f64, f64)>> = runs
            .iter()
            .map(|r| {
                thin(
                    r.steps.iter().map(|p| (p.step as f64, p.loss)).collect(),
                    px,
                )
            })
            .collect();
        let norms: Vec<Vec<(f64, f64)>> = runs
            .iter()
            .map(|r| {
                thin(
                    r.steps
                        .iter()
                        .map(|p| (p.step as f64, p.grad_norm))
                        .collect(),
                    px,
                )
            })
            .collect();

        let y = y_range(
            losses
                .iter()
                .flatten()
                .map(|p| p.1)
                .chain(runs.iter().flat_map(|r| r.evals.iter().map(|e| e.1))),
            false,
        );
        let mut chart = panel(&halves[0], "loss (validation dotted)", x_end, y.clone(), 16)?;
        shade_early(&mut chart, early, &y)?;
        for (i, (run, train)) in runs.iter().zip(&losses).enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    train.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(draw_err)?
                .label(run.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            let val: Vec<(f64, f64)> = run
                .evals
                .iter()
                .filter(|e| e.1.is_finite())
                .map(|&(s, v)| (s as f64, v))
                .collect();
            chart
                .draw_series(DashedLineSeries::new(
                    val.clone(),
                    4,
                    4,
                    color.stroke_width(2),
                ))
                .map_err(draw_err)?;
            chart
                .draw_series(val.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(draw_err)?;
            if let Some((step, v)) = run.best() {
                let (x, y) = chart.backend_coord(&(step as f64, v));
                markers.push(Marker {
                    x,
                    y,
                    step,
                    kind: MarkerKind::Best,
                    severity: None,
                    text: format!("{}: best validation loss {v:.4} at step {step}", run.name),
                });
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(GRID)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(draw_err)?;

        let y = y_range(norms.iter().flatten().map(|p| p.1), true);
        let mut chart = panel(&halves[1], "gradient norm", x_end, y.clone(), 16)?;
        shade_early(&mut chart, early, &y)?;
        for (i, norm) in norms.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(norm.iter().copied(), color.stroke_width(2)))
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(Chart { svg, markers })
}

/// A y range covering the finite values with a margin; from zero when
/// `from_zero` (norms, rates, speeds).
pub(super) fn y_range(values: impl Iterator<Item = f64>, from_zero: bool) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let lo = if from_zero { lo.min(0.0) } else { lo };
    let pad = ((hi - lo) * 0.06).max(hi.abs() * 1e-3).max(1e-12);
    let start = if from_zero && lo >= 0.0 {
        0.0
    } else {
        lo - pad
    };
    start..hi + pad
}

/// At most about two points per pixel column: long runs are averaged in
/// buckets so the SVG stays small. Non-finite values are dropped.
pub(super) fn thin(points: Vec<(f64, f64)>, width: usize) -> Vec<(f64, f64)> {
    let finite: Vec<(f64, f64)> = points.into_iter().filter(|p| p.1.is_finite()).collect();
    let max = (width * 2).max(2);
    if finite.len() <= max {
        return finite;
    }
    let per = finite.len().div_ceil(max);
    finite
        .chunks(per)
        .map(|c| {
            let n = c.len() as f64;
            (
                c.iter().map(|p| p.0).sum::<f64>() / n,
                c.iter().map(|p| p.1).sum::<f64>() / n,
            )
        })
        .collect()
}

/// Axis labels: 0.0003 → "3e-4", 12500 → "12.5k", 2.25 → "2.25".
pub(super) fn short(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a < 0.01 {
        format!("{v:.0e}")
    } else if a >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}
