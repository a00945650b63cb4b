//! Server-rendered SVG line charts for the dashboard: one chart per measure over the last hour,
//! one line per edge and a thicker one for the fleet, the scale's top and each line's latest
//! value written as text. No JavaScript, so the page works in any browser and in `curl`.

use std::fmt::Write as _;

use crate::history::Point;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 160.0;
const WINDOW: f64 = 3600.0;
const COLOURS: [&str; 6] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];

/// One measure: its title, unit, how to read it from a point, and whether its scale is 0..1.
pub(crate) struct Measure {
    pub key: &'static str,
    pub title: &'static str,
    pub value: fn(&Point) -> Option<f64>,
    pub format: fn(f64) -> String,
    pub unit_scale: bool,
}

/// The four measures the dashboard draws.
pub(crate) const MEASURES: [Measure; 4] = [
    Measure {
        key: "hit_ratio",
        title: "Hit ratio",
        value: |p| p.hit_ratio,
        format: |v| format!("{:.1}%", v * 100.0),
        unit_scale: true,
    },
    Measure {
        key: "request_rate",
        title: "Requests per second",
        value: |p| Some(p.request_rate),
        format: |v| format!("{v:.2} req/s"),
        unit_scale: false,
    },
    Measure {
        key: "bandwidth",
        title: "Bandwidth",
        value: |p| Some(p.bandwidth),
        format: bytes_per_second,
        unit_scale: false,
    },
    Measure {
        key: "error_rate",
        title: "Error rate (5xx)",
        value: |p| p.error_rate,
        format: |v| format!("{:.2}%", v * 100.0),
        unit_scale: true,
    },
];

fn bytes_per_second(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.2} GB/s", v / 1e9),
        v if v >= 1e6 => format!("{:.2} MB/s", v / 1e6),
        v if v >= 1e3 => format!("{:.2} kB/s", v / 1e3),
        v => format!("{v:.0} B/s"),
    }
}

/// Appends one chart of `m` for `series` (`""` is the fleet) as of `now` (seconds).
pub(crate) fn chart(
    html: &mut String,
    m: &Measure,
    series: &[(String, Vec<Point>)],
    now: u64,
    escape: fn(&str) -> String,
) {
    let max = if m.unit_scale {
        1.0
    } else {
        let top = series.iter().flat_map(|(_, ps)| ps.iter().filter_map(m.value)).fold(0.0_f64, f64::max);
        if top > 0.0 { top * 1.1 } else { 1.0 }
    };
    let x = |at: u64| WIDTH - (now.saturating_sub(at) as f64 / WINDOW * WIDTH).min(WIDTH);
    let y = |v: f64| HEIGHT - (v / max).clamp(0.0, 1.0) * HEIGHT;
    let _ = write!(
        html,
        "<figure class=chart id=chart-{key}><figcaption>{title}, last hour</figcaption>\
         <svg class=chart data-measure={key} viewBox=\"0 -14 {w} {h}\" width={w} height={h} role=img>\
         <text class=scale x=2 y=-3>{top}</text><line x1=0 y1={HEIGHT} x2={WIDTH} y2={HEIGHT} stroke=#999 />",
        key = m.key,
        title = m.title,
        w = WIDTH,
        h = HEIGHT + 14.0,
        top = (m.format)(max),
    );
    let mut legend = String::new();
    for (i, (id, points)) in series.iter().enumerate() {
        let (name, colour, width) = if id.is_empty() {
            ("fleet".to_owned(), "#000", 2.5)
        } else {
            (escape(id), COLOURS[i % COLOURS.len()], 1.2)
        };
        let mut d = String::new();
        for p in points {
            if let Some(v) = (m.value)(p) {
                let cmd = if d.is_empty() { 'M' } else { 'L' };
                let _ = write!(d, "{cmd}{:.1},{:.1} ", x(p.at), y(v));
            }
        }
        if d.is_empty() {
            continue;
        }
        let _ = write!(
            html,
            "<path class=series data-series=\"{name}\" d=\"{}\" fill=none stroke=\"{colour}\" stroke-width={width} />",
            d.trim_end()
        );
        if let Some(last) = points.iter().rev().find_map(m.value) {
            let _ = write!(
                legend,
                "<li style=\"color:{colour}\"><span class=series-name>{name}</span> <span class=value>{}</span></li>",
                (m.format)(last)
            );
        }
    }
    if legend.is_empty() {
        html.push_str("<text x=10 y=80>no data yet</text>");
    }
    let _ = write!(html, "</svg><ul class=legend>{legend}</ul></figure>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_a_line_per_series_and_labels_with_numbers() {
        let points = |r: f64| {
            vec![
                Point { at: 1000, request_rate: r, ..Point::default() },
                Point { at: 1005, request_rate: r * 2.0, ..Point::default() },
            ]
        };
        let series = vec![(String::new(), points(2.0)), ("edge-a".to_owned(), points(1.0))];
        let mut html = String::new();
        chart(&mut html, &MEASURES[1], &series, 1005, |s| s.to_owned());
        assert_eq!(html.matches("<path class=series").count(), 2, "{html}");
        assert!(html.contains("d=\"M639.1,"), "{html}");
        assert!(html.contains("<span class=value>4.00 req/s</span>"), "{html}");
        assert!(html.contains("<text class=scale x=2 y=-3>4.40 req/s</text>"), "{html}");
    }
}
