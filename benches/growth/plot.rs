//! PNG plots of the growth curves, drawn from the run's own numbers into docs/bench/
//! (target/bench/ for a smoke run).

use std::path::PathBuf;
use std::sync::OnceLock;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::common::BenchResult;

/// The font the labels are drawn with (Debian's fonts-dejavu-core).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One line of a panel.
pub struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.to_string(),
            points,
        }
    }
}

/// A panel: its caption (the y quantity) and its lines.
pub type Panel<'a> = (&'a str, Vec<Series>);

/// Registers the label font once: plotters' pure-Rust rasteriser needs its bytes.
fn font() -> BenchResult {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = std::fs::read(FONT)
            .map_err(|e| format!("{FONT}: {e} (apt-get install fonts-dejavu-core)"))?;
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            Box::leak(bytes.into_boxed_slice()),
        )
        .map_err(|_| format!("{FONT}: not a font plotters can read"))
    })
    .clone()
    .map_err(Into::into)
}

/// Draws `panels` side by side over one x axis (`log_x`: logarithmic) into
/// `docs/bench/{name}.png`: the path.
pub fn draw(
    name: &str,
    title: &str,
    x_label: &str,
    log_x: bool,
    panels: &[Panel],
) -> BenchResult<PathBuf> {
    font()?;
    // A smoke run's plots are not for quoting: they stay out of docs/.
    let dir = crate::support::repo().join(if crate::common::quick() {
        "target/bench"
    } else {
        "docs/bench"
    });
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.png"));
    render(&path, title, x_label, log_x, panels)?;
    println!("   plot: {}", path.display());
    Ok(path)
}

fn render(
    path: &std::path::Path,
    title: &str,
    x_label: &str,
    log_x: bool,
    panels: &[Panel],
) -> BenchResult {
    // Wide enough for the title over a single panel.
    let width = (420 * panels.len() as u32).max(760);
    let root = BitMapBackend::new(path, (width, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let areas = root.split_evenly((1, panels.len()));
    for (area, panel) in areas.iter().zip(panels) {
        let xs = panel.1.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let (lo, hi) = xs.fold((f64::MAX, f64::MIN), |(l, h), x| (l.min(x), h.max(x)));
        if log_x {
            draw_panel(area, (lo / 2.0..hi * 2.0).log_scale(), x_label, panel)?;
        } else {
            let pad = (hi - lo).max(1.0) * 0.05;
            draw_panel(area, lo - pad..hi + pad, x_label, panel)?;
        }
    }
    root.present()?;
    Ok(())
}

fn draw_panel<X>(
    area: &DrawingArea<BitMapBackend, Shift>,
    x: X,
    x_label: &str,
    (caption, series): &Panel,
) -> BenchResult
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .caption(*caption, ("sans-serif", 16))
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, 0.0..(top * 1.15).max(1e-9))?;
    chart.configure_mesh().x_desc(x_label).draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))?
            .label(s.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        // Markers on the measured points of a curve; a distribution is a line alone.
        if s.points.len() <= 20 {
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
