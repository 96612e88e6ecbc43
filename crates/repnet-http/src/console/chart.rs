//! Charts drawn on the server as inline SVG: no script, no library, nothing fetched. Each
//! chart names itself for screen readers (`role="img"` and a summary), and its series differ
//! by line pattern as well as colour, with a legend in text, so that none relies on colour
//! alone.
//!
//! Hand-written rather than a crate: the charts are a polyline or a row of bars over a few
//! hundred points, and the plotting crates (plotters and the like) draw whole images with
//! fonts and backends for that.

use maud::{Markup, PreEscaped, html};

/// One line of a line chart.
#[derive(Debug)]
pub struct Series<'a> {
    pub label: &'a str,
    pub values: Vec<f64>,
}

/// What names and labels a chart.
#[derive(Debug)]
pub struct Chart<'a> {
    /// Unique on the page: the ids of its title and summary start with it.
    pub id: &'a str,
    pub title: &'a str,
    /// Shown at the top of the y axis (`/s`, `%`).
    pub unit: &'a str,
    /// The first, middle and last point's labels.
    pub x_labels: [&'a str; 3],
    /// What it shows, in words (totals, average, peak): read by screen readers.
    pub summary: &'a str,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
/// Room for the axis' labels.
const LEFT: f64 = 52.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 8.0;

/// The top of the y axis: `max` rounded up to 1, 2 or 5 times a power of ten.
fn nice_ceiling(max: f64) -> f64 {
    if !max.is_finite() || max <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * power)
        .find(|top| *top >= max)
        .unwrap_or(10.0 * power)
}

/// A number as an axis shows it: `1.5k`, `0.25`, `12`.
pub fn short_number(value: f64) -> String {
    let abs = value.abs();
    let (value, suffix) = if abs >= 1e9 {
        (value / 1e9, "G")
    } else if abs >= 1e6 {
        (value / 1e6, "M")
    } else if abs >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let text = if value == value.trunc() {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        // Two significant digits below 1: 0.0011, not 0.
        let decimals = (1 - value.abs().log10().floor() as i32).clamp(2, 8) as usize;
        format!("{value:.decimals$}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    format!("{text}{suffix}")
}

/// The frame both kinds of chart share: the axes' grid and labels, then `marks`.
fn frame(chart: &Chart<'_>, top: f64, marks: Markup, legend: Option<Markup>) -> Markup {
    let Chart {
        id,
        title,
        unit,
        x_labels,
        summary,
    } = chart;
    let plot_height = HEIGHT - BOTTOM - TOP;
    let grid = [0.0, 0.5, 1.0].map(|fraction| {
        let y = TOP + plot_height * (1.0 - fraction);
        (y, short_number(top * fraction))
    });
    html! {
        figure.chart {
            figcaption #(format!("{id}-title")) { (title) }
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img"
                aria-labelledby=(format!("{id}-title {id}-summary")) preserveAspectRatio="none" {
                @for (y, label) in &grid {
                    line.grid x1=(LEFT) x2=(WIDTH) y1=(y) y2=(y) {}
                    text.axis x=(LEFT - 6.0) y=(y + 4.0) text-anchor="end" { (label) }
                }
                text.axis x="4" y=(TOP + 10.0) { (unit) }
                text.axis x=(LEFT) y=(HEIGHT - 4.0) text-anchor="start" { (x_labels[0]) }
                text.axis x=((LEFT + WIDTH) / 2.0) y=(HEIGHT - 4.0) text-anchor="middle" { (x_labels[1]) }
                text.axis x=(WIDTH - 2.0) y=(HEIGHT - 4.0) text-anchor="end" { (x_labels[2]) }
                (marks)
            }
            @if let Some(legend) = legend { (legend) }
            p.hint #(format!("{id}-summary")) { (summary) }
        }
    }
}

/// `x` of point `i` of `n`, spread over the plot's width.
fn x_of(i: usize, n: usize) -> f64 {
    let span = WIDTH - LEFT - 4.0;
    LEFT + 2.0 + span * (i as f64 + 0.5) / n.max(1) as f64
}

fn y_of(value: f64, top: f64) -> f64 {
    let plot_height = HEIGHT - BOTTOM - TOP;
    TOP + plot_height * (1.0 - (value / top).clamp(0.0, 1.0))
}

/// A line chart of `series` (up to five are told apart by pattern), their points evenly
/// spaced; `x_labels` are the first, middle and last point's.
pub fn line_chart(chart: &Chart<'_>, series: &[Series<'_>]) -> Markup {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0, f64::max);
    let top = nice_ceiling(max);
    let marks = html! {
        @for (index, line) in series.iter().enumerate() {
            @let n = line.values.len();
            @let points = line.values.iter().enumerate()
                .map(|(i, v)| format!("{:.1},{:.1}", x_of(i, n), y_of(*v, top)))
                .collect::<Vec<_>>().join(" ");
            polyline class=(format!("line s{}", index % 5)) points=(points) {}
        }
    };
    let legend = html! {
        ul.legend {
            @for (index, line) in series.iter().enumerate() {
                li {
                    svg.swatch viewBox="0 0 28 8" aria-hidden="true" {
                        line class=(format!("line s{}", index % 5)) x1="0" x2="28" y1="4" y2="4" {}
                    }
                    (line.label)
                }
            }
        }
    };
    frame(chart, top, marks, Some(legend))
}

/// A bar chart of `values`, one bar per point, each with its value as a tooltip.
pub fn bar_chart(chart: &Chart<'_>, values: &[(String, f64)]) -> Markup {
    let top = nice_ceiling(values.iter().map(|(_, v)| *v).fold(0.0, f64::max));
    let n = values.len();
    let width = ((WIDTH - LEFT - 4.0) / n.max(1) as f64 * 0.8).max(1.0);
    let marks = html! {
        @for (i, (label, value)) in values.iter().enumerate() {
            @let y = y_of(*value, top);
            rect.bar x=(format!("{:.1}", x_of(i, n) - width / 2.0)) y=(format!("{y:.1}"))
                width=(format!("{width:.1}")) height=(format!("{:.1}", HEIGHT - BOTTOM - y)) {
                title { (label) ": " (short_number(*value)) }
            }
        }
    };
    frame(chart, top, marks, None)
}

/// A share shown as a bar and a percentage, for tables.
pub fn share(part: u64, whole: u64) -> Markup {
    let percent = if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    };
    html! {
        span.share {
            span.share-bar style=(PreEscaped(format!("width:{:.1}%", percent.clamp(0.0, 100.0)))) {}
        }
        " " (format!("{percent:.1} %"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_at_round_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
        assert_eq!(short_number(1500.0), "1.5k");
        assert_eq!(short_number(0.25), "0.25");
        assert_eq!(short_number(12.0), "12");
        assert_eq!(short_number(2_000_000.0), "2M");
        assert_eq!(short_number(4.0 / 3600.0), "0.0011");
        assert_eq!(short_number(1.5), "1.5");
    }

    #[test]
    fn a_chart_names_itself_and_escapes_its_labels() {
        let chart = line_chart(
            &Chart {
                id: "c",
                title: "Lookups <per> second",
                unit: "/s",
                x_labels: ["a", "b", "<c>"],
                summary: "peak 2",
            },
            &[Series {
                label: "<script>",
                values: vec![0.0, 2.0, 1.0],
            }],
        )
        .into_string();
        assert!(chart.contains(r#"aria-labelledby="c-title c-summary""#));
        assert!(chart.contains("&lt;script&gt;"));
        assert!(!chart.contains("<script>"));
        assert!(chart.contains("&lt;c&gt;"));
        assert_eq!(chart.matches("<polyline").count(), 1);
    }
}
