//! The run's PNG charts: `curves.png` (validation NDCG@10 per epoch of the iterative models)
//! and `size-sweep.png` (test NDCG@10 against student parameters, KD and no-KD).

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use super::error::TrainError;

const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// plotters needs a registered font for any text; a machine without DejaVu gets a plot
/// without labels rather than a failed run.
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

/// `curves.png`: validation NDCG@10 per epoch, one line per iterative model.
pub fn curves(path: &Path, series: &[(String, Vec<f64>)]) -> Result<(), TrainError> {
    let series: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, c)| {
            let points = c.iter().enumerate().map(|(e, v)| ((e + 1) as f64, *v));
            (name.clone(), points.collect())
        })
        .collect();
    lines(
        path,
        "Validation NDCG@10 per epoch",
        ("epoch", "NDCG@10 (valid)"),
        &series,
    )
}

/// `size-sweep.png`: test NDCG@10 against parameters (thousands), one line per series (KD
/// students, no-KD students, the teacher's level).
pub fn sweep(path: &Path, series: &[(String, Vec<(f64, f64)>)]) -> Result<(), TrainError> {
    lines(
        path,
        "Test NDCG@10 vs student size",
        ("parameters (thousands)", "NDCG@10 (test)"),
        series,
    )
}

/// Line chart of `(x, y)` series with a legend, axes fitted to the data. One plotters builder
/// chain (canvas, axes, mesh, series, legend): it reads as the chart it draws, so it stays whole.
fn lines(
    path: &Path,
    caption: &str,
    (x_desc, y_desc): (&str, &str),
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<(), TrainError> {
    let err = |e: &dyn std::fmt::Display| TrainError::Plot(format!("{}: {e}", path.display()));
    let with_text = font_available();
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let points = || series.iter().flat_map(|(_, c)| c.iter().copied());
    let span = |vals: &mut dyn Iterator<Item = f64>| {
        vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        })
    };
    let (x_lo, x_hi) = span(&mut points().map(|p| p.0));
    let (x_lo, x_hi) = if x_lo.is_finite() && x_hi > x_lo {
        (x_lo, x_hi)
    } else {
        (1.0, 2.0)
    };
    let (lo, hi) = span(&mut points().map(|p| p.1));
    let (lo, hi) = if lo.is_finite() {
        (lo.min(hi - 0.01), hi)
    } else {
        (0.0, 1.0)
    };
    let pad = (hi - lo) * 0.05;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(15);
    if with_text {
        builder
            .caption(caption, ("sans-serif", 24))
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    let mut chart = builder
        .build_cartesian_2d(x_lo..x_hi, (lo - pad).max(0.0)..hi + pad)
        .map_err(|e| err(&e))?;
    if with_text {
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(|e| err(&e))?;
    } else {
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_y_mesh()
            .x_labels(0)
            .y_labels(0)
            .draw()
            .map_err(|e| err(&e))?;
    }
    for (k, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba().stroke_width(2);
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
        let drawn = chart
            .draw_series(LineSeries::new(points.iter().copied(), color))
            .map_err(|e| err(&e))?;
        if with_text {
            drawn
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    if with_text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.png");
        curves(
            &p,
            &[
                ("a".into(), vec![0.1, 0.2, 0.25]),
                ("b".into(), vec![0.15, 0.18]),
            ],
        )
        .unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let q = dir.path().join("s.png");
        sweep(
            &q,
            &[(
                "kd".into(),
                vec![(55.0, 0.30), (110.0, 0.32), (221.0, 0.325)],
            )],
        )
        .unwrap();
        assert_eq!(&std::fs::read(&q).unwrap()[1..4], b"PNG");
    }
}
