//! Printing measurements for people: byte sizes, aligned tables and text
//! sparklines.
//!
//! ```
//! use leakscope::report::{format_bytes, sparkline, Table};
//!
//! assert_eq!(format_bytes(10 * 1024 * 1024), "10.0 MiB");
//! assert_eq!(format_bytes(-512), "-512 B");
//! assert_eq!(sparkline(&[0.0, 1.0, 2.0, 3.0]), "▁▃▆█");
//!
//! let mut table = Table::new(["scenario", "bad", "good"]);
//! table.row(["tasks alive", "100", "0"]);
//! assert_eq!(
//!     table.to_string(),
//!     "scenario     bad  good\n-----------  ---  ----\ntasks alive  100  0\n"
//! );
//! ```

use std::fmt;

/// Formats a byte count with binary units (`B`, `KiB`, `MiB`, `GiB`), one
/// decimal above bytes. Negative counts (memory freed) keep their sign.
pub fn format_bytes(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let sign = if bytes < 0 { "-" } else { "" };
    let magnitude = bytes.unsigned_abs();
    if magnitude < 1024 {
        return format!("{sign}{magnitude} B");
    }
    let mut value = magnitude as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{sign}{value:.1} {}", UNITS[unit])
}

/// Like [`format_bytes`], with a `+` on growth: for deltas against a baseline.
pub fn format_bytes_delta(bytes: i64) -> String {
    if bytes > 0 {
        format!("+{}", format_bytes(bytes))
    } else {
        format_bytes(bytes)
    }
}

/// A plain-text table with left-aligned columns separated by two spaces and
/// a dashed rule under the header.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<I, S>(header: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells print empty, extra cells are kept.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in std::iter::once(&self.header).chain(&self.rows) {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let write_line = |f: &mut fmt::Formatter<'_>, cells: &mut dyn Iterator<Item = &str>| {
            let mut line = String::new();
            for (column, width) in widths.iter().enumerate() {
                let cell = cells.next().unwrap_or("");
                if column > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
            writeln!(f, "{}", line.trim_end())
        };
        write_line(f, &mut self.header.iter().map(String::as_str))?;
        let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
        write_line(f, &mut rule.iter().map(String::as_str))?;
        for row in &self.rows {
            write_line(f, &mut row.iter().map(String::as_str))?;
        }
        Ok(())
    }
}

/// Renders values as a one-line bar chart of block characters, scaled from
/// the smallest value (`▁`) to the largest (`█`). A flat series prints `▁`s.
pub fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = high - low;
    values
        .iter()
        .map(|value| {
            if span <= 0.0 || !span.is_finite() {
                BARS[0]
            } else {
                let level = ((value - low) / span * (BARS.len() - 1) as f64).round() as usize;
                BARS[level.min(BARS.len() - 1)]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_pick_the_largest_whole_unit() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.0 KiB");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB");
        assert_eq!(format_bytes_delta(2048), "+2.0 KiB");
        assert_eq!(format_bytes_delta(0), "0 B");
        assert_eq!(format_bytes_delta(-2048), "-2.0 KiB");
    }

    #[test]
    fn table_aligns_ragged_rows() {
        let mut table = Table::new(["a", "bb"]);
        table.row(["long cell"]).row(["x", "y", "extra"]);
        assert_eq!(
            table.to_string(),
            "a          bb\n---------  --  -----\nlong cell\nx          y   extra\n"
        );
    }

    #[test]
    fn sparkline_scales_between_min_and_max() {
        assert_eq!(sparkline(&[]), "");
        assert_eq!(sparkline(&[5.0, 5.0]), "▁▁");
        assert_eq!(sparkline(&[10.0, 0.0, 5.0]), "█▁▅");
    }
}
