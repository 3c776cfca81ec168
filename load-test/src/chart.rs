//! SVG chart of a ladder: viewers vs server CPU, loss and latency.

use crate::report::Report;
use plotters::prelude::*;
use std::path::Path;

/// A named line: label, colour, points.
type Line = (&'static str, RGBColor, Vec<(f64, f64)>);

/// One panel: a quantity with its lines (one point per ladder step).
struct Series {
    name: &'static str,
    unit: &'static str,
    lines: Vec<Line>,
}

/// Draw `steps` as three stacked panels into `path` (SVG), with the
/// ladder's bounds (`max_loss` ratio, `max_p99_ms`) as grey lines.
pub fn draw(path: &Path, steps: &[Report], max_loss: f64, max_p99_ms: f64) -> anyhow::Result<()> {
    let x = |r: &Report| r.viewers_requested as f64;
    let pts = |f: &dyn Fn(&Report) -> Option<f64>| -> Vec<(f64, f64)> {
        steps.iter().filter_map(|r| Some((x(r), f(r)?))).collect()
    };
    let panels = [
        Series {
            name: "CPU (server, load generator)",
            unit: "% of one core",
            lines: vec![
                (
                    "server",
                    RED,
                    pts(&|r| r.server_cpu_ratio.map(|c| c * 100.0)),
                ),
                (
                    "generator",
                    BLUE,
                    pts(&|r| r.generator_cpu_ratio.map(|c| c * 100.0)),
                ),
            ],
        },
        Series {
            name: "loss",
            unit: "%",
            lines: vec![
                ("all viewers", RED, pts(&|r| Some(r.loss_ratio * 100.0))),
                (
                    "worst viewer",
                    MAGENTA,
                    pts(&|r| Some(r.worst_viewer_loss_ratio * 100.0)),
                ),
            ],
        },
        Series {
            name: "frame latency",
            unit: "ms",
            lines: vec![
                ("p50", BLUE, pts(&|r| r.latency_ms.p50)),
                ("p99", RED, pts(&|r| r.latency_ms.p99)),
            ],
        },
    ];
    let root = SVGBackend::new(path, (900, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let areas = root.split_evenly((3, 1));
    let xmax = steps.iter().map(x).fold(1.0, f64::max) * 1.05;
    let bounds = [None, Some(max_loss * 100.0), Some(max_p99_ms)];
    for ((area, s), bound) in areas.iter().zip(&panels).zip(bounds) {
        let ymax = s
            .lines
            .iter()
            .flat_map(|(_, _, v)| v.iter().map(|p| p.1))
            .chain(bound)
            .fold(0.0, f64::max)
            .max(1e-3)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{} vs viewers", s.name), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        chart
            .configure_mesh()
            .x_desc("viewers")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_desc(s.unit)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        for (name, color, v) in &s.lines {
            let c = *color;
            chart
                .draw_series(LineSeries::new(v.iter().copied(), c.stroke_width(2)))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
            chart
                .draw_series(v.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        if let Some(b) = bound {
            chart
                .draw_series(LineSeries::new(
                    [(0.0, b), (xmax, b)],
                    RGBColor(128, 128, 128).stroke_width(1),
                ))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
                .label("bound")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], RGBColor(128, 128, 128))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Context, build};

    #[test]
    fn draws_svg_without_fonts() {
        let steps: Vec<Report> = [10usize, 50, 100]
            .iter()
            .map(|&n| {
                let mut r = build(
                    &[],
                    &Context {
                        requested: n,
                        window_s: 1.0,
                        join_rate: None,
                        generator_cpu: Some(n as f64 / 200.0),
                        server_cpu: Some(n as f64 / 100.0),
                        server_rss: None,
                        server_rss_base: None,
                        published_bps: None,
                        timer_lag_ms: vec![1.0],
                        publisher: None,
                    },
                );
                r.latency_ms.p50 = Some(n as f64 / 10.0);
                r.latency_ms.p99 = Some(n as f64);
                r
            })
            .collect();
        let path = std::env::temp_dir().join(format!("load-test-chart-{}.svg", std::process::id()));
        draw(&path, &steps, 0.001, 200.0).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg") && svg.contains("frame latency vs viewers"));
    }
}
