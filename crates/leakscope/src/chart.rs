//! SVG line charts of measurements over time, for pages and reports.
//!
//! Charts have a transparent background, grey axes and labels, and strongly
//! coloured lines, so the same file reads well on light and dark pages.
//! Series are coloured in order: the first (by convention the leaking,
//! "bad" run) red-orange, the second ("good") teal, then blue, amber, purple.
//!
//! ```
//! use leakscope::chart::LineChart;
//! use leakscope::report::format_bytes;
//!
//! let bad: Vec<(f64, f64)> = (0..10).map(|s| (s as f64, s as f64 * 1024.0)).collect();
//! let good: Vec<(f64, f64)> = (0..10).map(|s| (s as f64, 512.0)).collect();
//! let svg = LineChart::new("Live heap")
//!     .x_label("time (s)")
//!     .y_label("live heap")
//!     .y_format(|bytes| format_bytes(bytes as i64))
//!     .series("bad", &bad)
//!     .series("good", &good)
//!     .to_svg();
//! assert!(svg.starts_with("<svg") && svg.contains("Live heap"));
//! ```

use std::fmt;

use plotters::prelude::*;

/// Line colours, in the order series are added.
pub const PALETTE: [RGBColor; 5] = [
    RGBColor(0xe4, 0x57, 0x2e),
    RGBColor(0x17, 0xa3, 0x98),
    RGBColor(0x4c, 0x78, 0xa8),
    RGBColor(0xf2, 0xa5, 0x41),
    RGBColor(0x9c, 0x6a, 0xde),
];

/// Axis, grid and text colour: mid grey, legible on white and on near-black.
const INK: RGBColor = RGBColor(0x88, 0x88, 0x88);

type Format = Box<dyn Fn(f64) -> String>;

/// A line chart with any number of series and optional point markers.
pub struct LineChart {
    title: String,
    x_label: String,
    y_label: String,
    x_format: Format,
    y_format: Format,
    size: (u32, u32),
    series: Vec<(String, Vec<(f64, f64)>)>,
    markers: Vec<(String, Vec<(f64, f64)>)>,
}

impl fmt::Debug for LineChart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineChart")
            .field("title", &self.title)
            .field("series", &self.series.len())
            .field("markers", &self.markers.len())
            .finish_non_exhaustive()
    }
}

impl LineChart {
    /// An empty 720×360 chart with this title.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            x_format: Box::new(|value| format!("{value}")),
            y_format: Box::new(|value| format!("{value}")),
            size: (720, 360),
            series: Vec::new(),
            markers: Vec::new(),
        }
    }

    /// Label under the x axis.
    pub fn x_label(mut self, label: impl Into<String>) -> Self {
        self.x_label = label.into();
        self
    }

    /// Label beside the y axis.
    pub fn y_label(mut self, label: impl Into<String>) -> Self {
        self.y_label = label.into();
        self
    }

    /// How x tick values are printed.
    pub fn x_format(mut self, format: impl Fn(f64) -> String + 'static) -> Self {
        self.x_format = Box::new(format);
        self
    }

    /// How y tick values are printed (for example with
    /// [`format_bytes`](crate::report::format_bytes)).
    pub fn y_format(mut self, format: impl Fn(f64) -> String + 'static) -> Self {
        self.y_format = Box::new(format);
        self
    }

    /// Size in pixels.
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.size = (width, height);
        self
    }

    /// Adds a line.
    pub fn series(mut self, name: impl Into<String>, points: &[(f64, f64)]) -> Self {
        self.series.push((name.into(), points.to_vec()));
        self
    }

    /// Adds points drawn as circles (for example the moments an alert fired).
    pub fn markers(mut self, name: impl Into<String>, points: &[(f64, f64)]) -> Self {
        self.markers.push((name.into(), points.to_vec()));
        self
    }

    /// Renders the chart as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let mut svg = String::new();
        {
            let backend = SVGBackend::with_string(&mut svg, self.size);
            self.draw(backend.into_drawing_area())
                .expect("drawing into a String cannot fail");
        }
        svg
    }

    /// Renders the chart and writes it to `path`.
    pub fn write_svg(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_svg())
    }

    fn bounds(&self) -> ((f64, f64), (f64, f64)) {
        let points = self
            .series
            .iter()
            .chain(&self.markers)
            .flat_map(|(_, points)| points.iter().copied());
        let (mut x_min, mut x_max, mut y_min, mut y_max) =
            (f64::INFINITY, f64::NEG_INFINITY, 0.0_f64, f64::NEG_INFINITY);
        for (x, y) in points {
            x_min = x_min.min(x);
            x_max = x_max.max(x);
            y_min = y_min.min(y);
            y_max = y_max.max(y);
        }
        if !x_min.is_finite() {
            return ((0.0, 1.0), (0.0, 1.0));
        }
        if x_max <= x_min {
            x_max = x_min + 1.0;
        }
        if y_max <= y_min {
            y_max = y_min + 1.0;
        }
        // Headroom so the highest line does not touch the frame.
        ((x_min, x_max), (y_min, y_max + (y_max - y_min) * 0.08))
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let ((x_min, x_max), (y_min, y_max)) = self.bounds();
        let font = |size: u32| ("sans-serif", size).into_font().color(&INK);
        let mut chart = ChartBuilder::on(&area)
            .caption(&self.title, font(20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(x_min..x_max, y_min..y_max)?;
        let x_format = |value: &f64| (self.x_format)(*value);
        let y_format = |value: &f64| (self.y_format)(*value);
        chart
            .configure_mesh()
            .axis_style(INK)
            .bold_line_style(INK.mix(0.25))
            .light_line_style(INK.mix(0.08))
            .label_style(font(13))
            .axis_desc_style(font(14))
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&x_format)
            .y_label_formatter(&y_format)
            .draw()?;
        for (index, (name, points)) in self.series.iter().enumerate() {
            let color = PALETTE[index % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        for (index, (name, points)) in self.markers.iter().enumerate() {
            let color = PALETTE[(self.series.len() + index) % PALETTE.len()];
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&point| Circle::new(point, 5, color.stroke_width(2))),
                )?
                .label(name.as_str())
                .legend(move |(x, y)| Circle::new((x + 9, y), 5, color.stroke_width(2)));
        }
        if self.series.len() + self.markers.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .border_style(INK.mix(0.5))
                .label_font(font(13))
                .draw()?;
        }
        area.present()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_one_path_per_series_and_no_background() {
        let svg = LineChart::new("t")
            .series("bad", &[(0.0, 0.0), (1.0, 2.0)])
            .series("good", &[(0.0, 0.0), (1.0, 0.0)])
            .to_svg();
        assert!(svg.contains("#E4572E") || svg.contains("#e4572e"), "{svg}");
        assert!(svg.contains("#17A398") || svg.contains("#17a398"));
        assert!(
            !svg.contains("fill=\"#FFFFFF\""),
            "background must stay transparent"
        );
    }

    #[test]
    fn empty_chart_still_renders() {
        assert!(
            LineChart::new("nothing yet")
                .to_svg()
                .contains("nothing yet")
        );
    }
}
