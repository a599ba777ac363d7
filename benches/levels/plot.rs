//! The SVG plot of the levels report: tasks/s by workload and level, log scale.

use std::path::Path;

use crate::report::{fmt_rate, value};
use crate::runner::Row;
use crate::*;

pub fn plot(path: &Path, rows: &[Row], caption: &str) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    let colors = [
        RGBColor(0x33, 0x66, 0x99),
        RGBColor(0x2a, 0x9d, 0x8f),
        RGBColor(0xe9, 0xa2, 0x3b),
        RGBColor(0x9b, 0x9b, 0x9b),
        RGBColor(0x5c, 0x5c, 0x5c),
    ];
    let ymax = rows
        .iter()
        .filter_map(|r| r.get("tasks_per_second"))
        .fold(10.0, f64::max)
        * 4.0;
    let root = SVGBackend::new(path, (1040, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let groups = WORKLOADS.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 17))
        .margin(14)
        .x_label_area_size(34)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..groups, (1f64..ymax).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(WORKLOADS.len())
        .x_label_formatter(&|_| String::new())
        .y_desc("tasks per second (log scale)")
        .y_label_formatter(&|v| {
            if *v >= 100.0 {
                fmt_rate(*v)
            } else {
                format!("{v:.0}")
            }
        })
        .draw()?;
    let slot = 0.84 / LEVELS.len() as f64;
    for (li, level) in LEVELS.iter().enumerate() {
        let color = colors[li];
        let x0 = |wi: usize| wi as f64 + 0.08 + li as f64 * slot;
        let bars: Vec<Rectangle<(f64, f64)>> = WORKLOADS
            .iter()
            .enumerate()
            .filter_map(|(wi, w)| {
                let v = value(rows, w.key, *level, "tasks_per_second")?;
                Some(Rectangle::new(
                    [(x0(wi), 1.0), (x0(wi) + slot * 0.88, v.max(1.0))],
                    color.filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(level.label())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        // "n/a" where a level does not run a workload.
        let missing: Vec<Text<'_, (f64, f64), String>> = WORKLOADS
            .iter()
            .enumerate()
            .filter(|(_, w)| value(rows, w.key, *level, "tasks_per_second").is_none())
            .map(|(wi, _)| {
                Text::new(
                    "n/a".to_string(),
                    (x0(wi) + slot * 0.44, 1.6),
                    ("sans-serif", 10)
                        .into_font()
                        .color(&color)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            })
            .collect();
        chart.draw_series(missing)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    for (wi, w) in WORKLOADS.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(wi as f64 + 0.5, 1.0));
        let label = if w.key == w.kind {
            w.key.to_string()
        } else {
            format!("{} ({})", w.key, w.kind)
        };
        root.draw(&Text::new(
            label,
            (px, py + 8),
            ("sans-serif", 14)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }
    root.present()?;
    Ok(())
}
