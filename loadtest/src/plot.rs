//! PNG latency-by-percentile plot (x axis stretched towards the tail, as HdrHistogram plots are).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;
use hdrhistogram::Histogram;
use plotters::prelude::*;

const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Registers DejaVu Sans once; without it the plot is drawn without any text.
fn font_available() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| match std::fs::read(FONT_PATH) {
        Ok(bytes) => {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        }
        Err(_) => false,
    })
}

/// The x axis is x = -log10(1 - q): 1 at p90, 2 at p99, 3 at p99.9 …
fn x_label(x: f64) -> String {
    let q = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.round() as usize).saturating_sub(2);
    format!("{q:.decimals$}%")
}

/// Percentile curve points `(tail_x, latency ms)`, up to the tail the sample count supports.
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let x_end = (h.len() as f64).log10().clamp(1.0, 5.0);
    let steps = 200;
    (0..=steps)
        .map(|i| {
            let x = x_end * i as f64 / steps as f64;
            let q = 1.0 - 10f64.powf(-x);
            (x, h.value_at_quantile(q) as f64 / 1e3)
        })
        .collect()
}

pub fn percentile_plot(
    path: &Path,
    title: &str,
    series: &[(String, &Histogram<u64>)],
) -> anyhow::Result<()> {
    let text = font_available();
    let curves: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, h)| (name.as_str(), curve(h)))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    let x_max = curves
        .iter()
        .filter_map(|(_, c)| c.last().map(|p| p.0))
        .fold(1.0, f64::max);
    let y_max = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .fold(0.001, f64::max)
        * 1.05;

    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).context("drawing the plot background")?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder
            .caption(title, ("sans-serif", 22))
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    let mut chart = builder
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .context("building the plot axes")?;
    if text {
        chart
            .configure_mesh()
            .x_labels(x_max.ceil() as usize + 1)
            .x_label_formatter(&|x| x_label(*x))
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .draw()
            .context("drawing the plot grid")?;
    }
    for (i, (name, points)) in curves.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let drawn = chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .context("drawing a plot line")?;
        if text {
            drawn.label(name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .context("drawing the plot legend")?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_axis_labels() {
        assert_eq!(x_label(0.0), "0%");
        assert_eq!(x_label(1.0), "90%");
        assert_eq!(x_label(2.0), "99%");
        assert_eq!(x_label(3.0), "99.9%");
        assert_eq!(x_label(4.0), "99.99%");
    }

    #[test]
    fn curve_is_monotonic_and_writes_a_png() {
        let mut h = crate::stats::histogram();
        for v in 1..=5000u64 {
            h.record(v * 10).unwrap();
        }
        let c = curve(&h);
        assert!(c.windows(2).all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0));
        assert!((c.last().unwrap().0 - 5000f64.log10()).abs() < 1e-9);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.png");
        percentile_plot(&path, "test", &[("all".into(), &h)]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
