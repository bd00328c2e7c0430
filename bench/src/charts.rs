//! SVG charts of a run, drawn with `plotters` (SVG backend only: text is written as SVG
//! `<text>` and laid out by the viewer, so no system font is read). Each chart carries a
//! caption naming the machine and the commit it was measured on; the report embeds them.

use std::path::Path;

use plotters::coord::combinators::IntoLogRange;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use wasmtime::{Result, format_err};

/// One line of a line chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One group of a bar chart: a heading and a bar per series (NaN: not measured, no bar).
pub struct Group {
    pub name: String,
    pub values: Vec<f64>,
}

/// What a chart shows.
pub enum Plot {
    /// Lines over a log-log plane (`x` a count, `y` milliseconds).
    Lines {
        x_label: String,
        y_label: String,
        series: Vec<Series>,
    },
    /// Horizontal bars, grouped; one colour per series.
    Bars {
        value_label: String,
        series: Vec<String>,
        groups: Vec<Group>,
        /// A log scale (for milliseconds that span decades); otherwise linear from zero.
        log: bool,
        /// How a value is printed beside its bar.
        format: fn(f64) -> String,
    },
}

/// A chart: the file it goes to (`NAME.svg`), its title and what it plots.
pub struct Chart {
    pub file: String,
    pub title: String,
    pub plot: Plot,
}

const WIDTH: u32 = 760;
const PALETTE: [RGBColor; 5] = [
    RGBColor(0x2b, 0x6c, 0xb0),
    RGBColor(0xd9, 0x7a, 0x1c),
    RGBColor(0x3e, 0x9e, 0x62),
    RGBColor(0x8e, 0x5a, 0xa8),
    RGBColor(0x9a, 0x9a, 0x9a),
];
const FONT: &str = "sans-serif";

impl Chart {
    /// Writes the chart to `dir/NAME.svg`, with `caption` under it, and returns its
    /// Markdown (an image link relative to `dir`'s parent, where the report is).
    pub fn write(&self, dir: &Path, caption: &str) -> Result<String> {
        let svg = self.render(caption)?;
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(&self.file), svg)?;
        let folder = dir
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(format!("![{}]({folder}/{})\n\n", self.title, self.file))
    }

    /// The chart as an SVG document.
    pub fn render(&self, caption: &str) -> Result<String> {
        let plot_height = match &self.plot {
            Plot::Lines { .. } => 400,
            Plot::Bars { series, groups, .. } => {
                100 + groups.len() as u32 * (series.len() as u32 + 1) * 26
            }
        };
        let mut svg = String::new();
        {
            let root =
                SVGBackend::with_string(&mut svg, (WIDTH, plot_height + 30)).into_drawing_area();
            root.fill(&WHITE).map_err(drawing)?;
            let (area, footer) = root.split_vertically(plot_height);
            match &self.plot {
                Plot::Lines {
                    x_label,
                    y_label,
                    series,
                } => self.lines(&area, x_label, y_label, series)?,
                Plot::Bars {
                    value_label,
                    series,
                    groups,
                    log,
                    format,
                } => self.bars(&area, value_label, series, groups, *log, *format)?,
            }
            footer
                .draw(&Text::new(
                    caption.to_string(),
                    (12, 10),
                    (FONT, 12).into_font().color(&RGBColor(0x5a, 0x66, 0x72)),
                ))
                .map_err(drawing)?;
            root.present().map_err(drawing)?;
        }
        Ok(svg)
    }

    fn lines(
        &self,
        area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
        x_label: &str,
        y_label: &str,
        series: &[Series],
    ) -> Result<()> {
        let points = || series.iter().flat_map(|s| s.points.iter());
        let (x_low, x_high) = decades(points().map(|p| p.0));
        let (y_low, y_high) = decades(points().map(|p| p.1));
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FONT, 18))
            .margin(14)
            .margin_right(40)
            .x_label_area_size(42)
            .y_label_area_size(76)
            .build_cartesian_2d((x_low..x_high).log_scale(), (y_low..y_high).log_scale())
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|x| crate::report::count(x.round() as usize))
            .y_label_formatter(&|y| axis_ms(*y))
            .label_style((FONT, 12))
            .light_line_style(RGBColor(0xee, 0xf1, 0xf4))
            .draw()
            .map_err(drawing)?;
        for (i, line) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(drawing)?
                .label(line.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    line.points
                        .iter()
                        .map(|&p| Circle::new(p, 3, color.filled())),
                )
                .map_err(drawing)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xcc, 0xd3, 0xda))
            .draw()
            .map_err(drawing)?;
        Ok(())
    }

    fn bars(
        &self,
        area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
        value_label: &str,
        series: &[String],
        groups: &[Group],
        log: bool,
        format: fn(f64) -> String,
    ) -> Result<()> {
        let rows = rows(series, groups);
        let values = || groups.iter().flat_map(|g| g.values.iter().copied());
        let builder = |area| {
            let mut builder = ChartBuilder::on(area);
            builder
                .caption(&self.title, (FONT, 18))
                .margin(14)
                .margin_right(40)
                .x_label_area_size(42)
                .y_label_area_size(8);
            builder
        };
        if log {
            let (low, high) = decades(values());
            // Room at the right for the value printed beside the longest bar.
            let high = high * 10.0;
            let mut chart = builder(area)
                .build_cartesian_2d((low..high).log_scale(), 0.0..rows)
                .map_err(drawing)?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .disable_y_axis()
                .x_desc(value_label)
                .x_label_formatter(&|x| axis_ms(*x))
                .label_style((FONT, 12))
                .light_line_style(RGBColor(0xee, 0xf1, 0xf4))
                .draw()
                .map_err(drawing)?;
            draw_bars(&mut chart, low, series, groups, format)
        } else {
            let high = values()
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max)
                .max(f64::MIN_POSITIVE)
                * 1.3;
            let mut chart = builder(area)
                .build_cartesian_2d(0.0..high, 0.0..rows)
                .map_err(drawing)?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .disable_y_axis()
                .x_desc(value_label)
                .x_label_formatter(&|x| format(*x))
                .label_style((FONT, 12))
                .light_line_style(RGBColor(0xee, 0xf1, 0xf4))
                .draw()
                .map_err(drawing)?;
            draw_bars(&mut chart, 0.0, series, groups, format)
        }
    }
}

/// Rows of a bar chart: a heading row per group and a row per bar.
fn rows(series: &[String], groups: &[Group]) -> f64 {
    (groups.len() * (series.len() + 1)) as f64
}

/// The bars, their values and the group headings, top to bottom, on a chart whose `x`
/// starts at `start` and whose `y` counts [`rows`].
fn draw_bars<X>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, RangedCoordf64>>,
    start: f64,
    series: &[String],
    groups: &[Group],
    format: fn(f64) -> String,
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
{
    let heading = (FONT, 13).into_font().style(FontStyle::Bold);
    let value_font = (FONT, 12).into_font();
    let rows = rows(series, groups);
    let row_top = |g: usize, r: usize| rows - (g * (series.len() + 1) + r) as f64;
    for (g, group) in groups.iter().enumerate() {
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((start, row_top(g, 0) - 0.5))
                    + Text::new(group.name.clone(), (2, -5), heading.clone()),
            ))
            .map_err(drawing)?;
        for (s, value) in group.values.iter().enumerate() {
            let value = *value;
            if !value.is_finite() {
                continue;
            }
            let top = row_top(g, s + 1);
            let color = PALETTE[s % PALETTE.len()];
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(start, top - 0.15), (value, top - 0.85)],
                    color.filled(),
                )))
                .map_err(drawing)?;
            let label = if series.len() == 1 {
                format(value)
            } else {
                format!("{}: {}", series[s], format(value))
            };
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((value, top - 0.5))
                        + Text::new(label, (6, -5), value_font.clone()),
                ))
                .map_err(drawing)?;
        }
    }
    Ok(())
}

/// A tick of a log axis in milliseconds: `0.1 ms`, `10 ms`, `1000 ms`.
fn axis_ms(value: f64) -> String {
    format!("{} ms", (value * 1e6).round() / 1e6)
}

/// Whole decades around positive values: (10^floor(log min), 10^ceil(log max)).
fn decades(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut low, mut high) = (f64::INFINITY, 0.0f64);
    for v in values.filter(|v| v.is_finite() && *v > 0.0) {
        low = low.min(v);
        high = high.max(v);
    }
    if !low.is_finite() {
        return (1.0, 10.0);
    }
    let low = 10f64.powf(low.log10().floor());
    let high = 10f64.powf(high.log10().ceil()).max(low * 10.0);
    (low, high)
}

fn drawing(error: impl std::fmt::Display) -> wasmtime::Error {
    format_err!("drawing a chart: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decades_round_out_to_powers_of_ten() {
        assert_eq!(decades([0.47, 9.7, 3.0].into_iter()), (0.1, 10.0));
        assert_eq!(decades([10.0, 10_000.0].into_iter()), (10.0, 10_000.0));
        assert_eq!(decades([5.0].into_iter()), (1.0, 10.0));
        assert_eq!(decades([f64::NAN].into_iter()), (1.0, 10.0));
        assert_eq!(axis_ms(0.1), "0.1 ms");
        assert_eq!(axis_ms(10_000.0), "10000 ms");
    }
}
