//! Small server-rendered SVG charts, without a dependency or a script: each chart is a
//! `figure` with an SVG (`role="img"`, an `aria-label` and a `<title>`, a `<title>` on every
//! bar for hover) and the same numbers as a table under `details.chart-data`, so a screen
//! reader, a printout and a test read the figures as text. All text goes through maud, so it
//! is escaped.
//!
//! Colours come from CSS classes (`app.css`: `.bar-ok`, `.bar-warn`, `.bar-bad`, `.bar-muted`,
//! `.bar-accent`), never from the data.

use maud::{Markup, html};

/// One layer of a stacked bar chart: a name (Japanese, English), the CSS class its bars are
/// drawn with (`bar-ok`, `bar-warn`, `bar-bad`, `bar-muted`, `bar-accent`) and one value per
/// category, in the categories' order (missing values count as 0, negative ones as 0).
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub label_ja: String,
    pub label_en: String,
    pub class: &'static str,
    pub values: Vec<i64>,
}

/// One bar of a horizontal bar chart: its label (shown left of the bar), its value (the bar's
/// length, against the largest value of the chart; negative counts as 0), an optional note
/// shown after the number (a date, a percentage) and the CSS class it is drawn with.
#[derive(Debug, Clone)]
pub(crate) struct Bar {
    pub label: String,
    pub value: i64,
    pub note: Option<String>,
    pub class: &'static str,
}

const WIDTH: f64 = 720.0;
const STACK_HEIGHT: f64 = 200.0;
const AXIS: f64 = 36.0;
const LABEL_ROW: f64 = 18.0;

fn fmt1(v: f64) -> String {
    format!("{v:.1}")
}

/// The tick above zero: a round number near the largest value (1, 2, 5 × 10ⁿ).
fn nice_max(max: i64) -> i64 {
    if max <= 0 {
        return 1;
    }
    let mut step = 1i64;
    loop {
        for m in [1, 2, 5] {
            let candidate = step.saturating_mul(m);
            if candidate >= max {
                return candidate;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// The non-zero layers of bar `i`, bottom up: the series, its value, the top and the height
/// of its rectangle.
fn stack(series: &[Series], i: usize, scale: f64) -> Vec<(&Series, i64, f64, f64)> {
    let mut base = STACK_HEIGHT;
    series
        .iter()
        .filter_map(|s| {
            let v = s.values.get(i).copied().unwrap_or(0).max(0);
            (v > 0).then(|| {
                let h = v as f64 * scale;
                base -= h;
                (s, v, base, h)
            })
        })
        .collect()
}

/// A stacked bar chart: one bar per category (e.g. the hours of the last day, oldest first),
/// each bar the sum of the series' values for it, stacked in the series' order from the
/// bottom.
///
/// - `id`: the figure's element id (`#lookups-chart`);
/// - `title`: what the chart shows, Japanese then English (the SVG's `<title>` and
///   `aria-label`);
/// - `categories`: the x-axis labels, one per bar; every `labels_every`-th is written under
///   its bar (all of them are in the table);
/// - `series`: the layers, see [`Series`].
pub(crate) fn stacked_bars(
    id: &str,
    title: &str,
    categories: &[String],
    labels_every: usize,
    series: &[Series],
) -> Markup {
    let value = |s: &Series, i: usize| s.values.get(i).copied().unwrap_or(0).max(0);
    let totals: Vec<i64> = (0..categories.len())
        .map(|i| series.iter().map(|s| value(s, i)).sum())
        .collect();
    let top = nice_max(totals.iter().copied().max().unwrap_or(0));
    let n = categories.len().max(1) as f64;
    let plot = WIDTH - AXIS;
    let slot = plot / n;
    let bar = (slot * 0.8).max(1.0);
    let scale = STACK_HEIGHT / top as f64;
    let height = STACK_HEIGHT + LABEL_ROW + 4.0;
    let every = labels_every.max(1);
    let total_all: i64 = totals.iter().sum();
    html! {
        figure.chart id=(id) {
            svg role="img" aria-label=(title) viewBox=(format!("0 0 {WIDTH} {height}"))
                preserveAspectRatio="xMidYMid meet" {
                title { (title) }
                g.axis {
                    line x1=(AXIS) y1="0" x2=(AXIS) y2=(STACK_HEIGHT) {}
                    line x1=(AXIS) y1=(STACK_HEIGHT) x2=(WIDTH) y2=(STACK_HEIGHT) {}
                    text x=(AXIS - 4.0) y="10" text-anchor="end" { (top) }
                    text x=(AXIS - 4.0) y=(STACK_HEIGHT) text-anchor="end" { "0" }
                }
                @for (i, category) in categories.iter().enumerate() {
                    @let x = AXIS + slot * i as f64 + (slot - bar) / 2.0;
                    g.bar data-category=(category) data-total=(totals[i]) {
                        @for (s, v, y, h) in stack(series, i, scale) {
                            rect class=(s.class) x=(fmt1(x)) y=(fmt1(y)) width=(fmt1(bar))
                                height=(fmt1(h)) {
                                title { (category) " " (s.label_ja) " / " (s.label_en) ": " (v) }
                            }
                        }
                        @if i % every == 0 {
                            text x=(fmt1(x + bar / 2.0)) y=(fmt1(STACK_HEIGHT + LABEL_ROW - 4.0))
                                text-anchor="middle" { (category) }
                        }
                    }
                }
            }
            figcaption {
                @for s in series {
                    span.legend { span class=(format!("swatch {}", s.class)) {} (s.label_ja) " " span.en { (s.label_en) } }
                    " "
                }
            }
            details.chart-data {
                summary { "数値 " span.en { "Figures" } }
                table {
                    thead {
                        tr {
                            th { "区分 " span.en { "Category" } }
                            @for s in series { th.num { (s.label_ja) " " span.en { (s.label_en) } } }
                            th.num { "計 " span.en { "Total" } }
                        }
                    }
                    tbody {
                        @for (i, category) in categories.iter().enumerate() {
                            tr {
                                th scope="row" { (category) }
                                @for s in series { td.num { (super::format::count(value(s, i))) } }
                                td.num { (super::format::count(totals[i])) }
                            }
                        }
                    }
                    tfoot {
                        tr {
                            th scope="row" { "計 " span.en { "Total" } }
                            @for s in series {
                                td.num { (super::format::count((0..categories.len()).map(|i| value(s, i)).sum())) }
                            }
                            td.num { (super::format::count(total_all)) }
                        }
                    }
                }
            }
        }
    }
}

const BAR_ROW: f64 = 24.0;
const BAR_LABEL: f64 = 220.0;
const BAR_NUMBER: f64 = 150.0;

/// A horizontal bar chart: one row per [`Bar`], top to bottom in the given order, each bar's
/// length its value against the largest value (an adoption funnel, certificates expiring per
/// month).
///
/// - `id`: the figure's element id;
/// - `title`: what the chart shows, Japanese then English (the SVG's `<title>` and
///   `aria-label`);
/// - `rows`: the bars.
pub(crate) fn horizontal_bars(id: &str, title: &str, rows: &[Bar]) -> Markup {
    let max = rows
        .iter()
        .map(|r| r.value.max(0))
        .max()
        .unwrap_or(0)
        .max(1);
    let plot = WIDTH - BAR_LABEL - BAR_NUMBER;
    let height = (rows.len().max(1) as f64) * BAR_ROW;
    html! {
        figure.chart id=(id) {
            svg role="img" aria-label=(title) viewBox=(format!("0 0 {WIDTH} {height}"))
                preserveAspectRatio="xMidYMid meet" {
                title { (title) }
                @for (i, row) in rows.iter().enumerate() {
                    @let y = i as f64 * BAR_ROW;
                    @let w = row.value.max(0) as f64 / max as f64 * plot;
                    g.bar data-label=(row.label) data-value=(row.value) {
                        text x=(BAR_LABEL - 6.0) y=(fmt1(y + BAR_ROW * 0.65)) text-anchor="end" {
                            (row.label)
                        }
                        rect class=(row.class) x=(BAR_LABEL) y=(fmt1(y + 4.0)) width=(fmt1(w))
                            height=(fmt1(BAR_ROW - 8.0)) {
                            title { (row.label) ": " (row.value) }
                        }
                        text x=(fmt1(BAR_LABEL + w + 6.0)) y=(fmt1(y + BAR_ROW * 0.65)) {
                            (super::format::count(row.value))
                            @if let Some(note) = &row.note { " (" (note) ")" }
                        }
                    }
                }
            }
            details.chart-data {
                summary { "数値 " span.en { "Figures" } }
                table {
                    tbody {
                        @for row in rows {
                            tr {
                                th scope="row" { (row.label) }
                                td.num { (super::format::count(row.value)) }
                                td { @if let Some(note) = &row.note { (note) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(class: &'static str, values: &[i64]) -> Series {
        Series {
            label_ja: "有効".into(),
            label_en: "valid".into(),
            class,
            values: values.to_vec(),
        }
    }

    #[test]
    fn the_scale_ends_on_a_round_number() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(480), 500);
        assert_eq!(nice_max(501), 1000);
    }

    #[test]
    fn stacked_bars_carry_their_title_and_figures_as_text() {
        let categories = vec!["09:00".to_string(), "10:00".to_string()];
        let chart = stacked_bars(
            "lookups-chart",
            "照会 / Lookups",
            &categories,
            1,
            &[series("bar-ok", &[3, 1]), series("bar-bad", &[2])],
        )
        .into_string();
        assert!(chart.contains(r#"id="lookups-chart""#), "{chart}");
        assert!(chart.contains(r#"role="img""#), "{chart}");
        assert!(chart.contains(r#"aria-label="照会 / Lookups""#), "{chart}");
        assert!(chart.contains("<title>照会 / Lookups</title>"), "{chart}");
        assert!(
            chart.contains(r#"data-category="09:00" data-total="5""#),
            "{chart}"
        );
        assert!(
            chart.contains(r#"data-category="10:00" data-total="1""#),
            "{chart}"
        );
        // The per-bar hover text and the total of the table.
        assert!(
            chart.contains("<title>09:00 有効 / valid: 3</title>"),
            "{chart}"
        );
        assert!(chart.contains("<td class=\"num\">6</td>"), "{chart}");
        // A zero value draws nothing.
        assert_eq!(chart.matches("<rect").count(), 3, "{chart}");
    }

    #[test]
    fn an_empty_stacked_chart_still_renders() {
        let chart = stacked_bars("c", "t", &[], 1, &[]).into_string();
        assert!(chart.contains("<svg"), "{chart}");
        assert!(!chart.contains("<rect"), "{chart}");
    }

    #[test]
    fn horizontal_bars_scale_to_the_largest_and_escape_labels() {
        let rows = [
            Bar {
                label: "<script>".into(),
                value: 10,
                note: Some("50%".into()),
                class: "bar-accent",
            },
            Bar {
                label: "半分".into(),
                value: 5,
                note: None,
                class: "bar-ok",
            },
        ];
        let chart = horizontal_bars("funnel", "導入 / Adoption", &rows).into_string();
        assert!(!chart.contains("<script>"), "{chart}");
        assert!(chart.contains("&lt;script&gt;"), "{chart}");
        let plot = WIDTH - BAR_LABEL - BAR_NUMBER;
        assert!(
            chart.contains(&format!(r#"width="{}""#, fmt1(plot))),
            "{chart}"
        );
        assert!(
            chart.contains(&format!(r#"width="{}""#, fmt1(plot / 2.0))),
            "{chart}"
        );
        assert!(chart.contains("10 (50%)"), "{chart}");
        assert!(
            chart.contains(r#"data-label="半分" data-value="5""#),
            "{chart}"
        );
    }
}
