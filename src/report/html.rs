//! The HTML report: one self-contained page with the strategies side by
//! side, drawn as inline SVG.
//!
//! The page needs no script, stylesheet or font from elsewhere. It is
//! written as well-formed XML (every element closed, attributes quoted,
//! text escaped), so XML tools can read it as well as browsers. Each chart
//! is an `svg` element with `data-chart` (its metric) and `data-strategy`
//! attributes, a `title` and a `desc`. Charts of the same metric share one
//! scale, so the columns compare at a glance.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::text::latency as format_latency;
use super::timeline::{DelayRow, FaultSpan, MAX_DELAY_ROWS, Timeline};
use super::{ExpectationResult, Report, StrategyReport};

/// Width of every chart, in SVG units.
const WIDTH: f64 = 560.0;
/// Space left of the plot area, for tick and row labels.
const LEFT: f64 = 92.0;
/// Space right of the plot area.
const RIGHT: f64 = 26.0;
/// Space above the plot area, for the legend.
const TOP: f64 = 34.0;
/// Space below the plot area, for the time axis.
const BOTTOM: f64 = 40.0;
/// Height of the plot area of line and bar charts.
const PLOT_HEIGHT: f64 = 170.0;

/// Colours, chosen from the Okabe-Ito palette that stays distinct under
/// the common forms of colour blindness.
const P50_COLOUR: &str = "#0072b2";
const P99_COLOUR: &str = "#d55e00";
const BACKLOG_COLOUR: &str = "#009e73";
const THROTTLED_COLOUR: &str = "#e69f00";
const FAULT_COLOUR: &str = "#7b3294";

/// Heatmap colours of delay, from well under the SLA (light blue) to far
/// over it (dark red): a diverging blue-red scale around the SLA.
const DELAY_BINS: [&str; 6] = [
    "#d1e5f0", "#92c5de", "#4393c3", "#f4a582", "#d6604d", "#b2182b",
];
/// Upper bounds of the delay bins, as multiples of the SLA. The last bin
/// has no upper bound.
const DELAY_LIMITS: [f64; 5] = [0.25, 0.5, 1.0, 2.0, 4.0];

/// Heatmap colours of node utilisation, in steps of 20 percent.
const UTILISATION_BINS: [&str; 6] = [
    "#f0f4f8", "#c6dbef", "#9ecae1", "#4292c6", "#2171b5", "#08306b",
];

/// Round durations for axis ticks, in seconds.
const ROUND_DURATIONS: [f64; 25] = [
    0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
    3600.0, 7200.0, 10800.0, 14400.0, 21600.0, 43200.0, 86400.0, 172800.0, 345600.0, 604800.0,
];

const STYLE: &str = r#"
body { font: 14px/1.45 "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328; background: #ffffff; margin: 0 auto; max-width: 1500px; padding: 20px 32px 40px; }
h1 { font-size: 26px; margin: 0 0 6px; }
h2 { font-size: 19px; margin: 30px 0 4px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
h3, figcaption { font-size: 15px; font-weight: bold; margin: 0 0 4px; }
p { margin: 4px 0; }
.description { max-width: 100ch; }
.explain { color: #57606a; max-width: 110ch; margin-bottom: 12px; }
.facts { color: #57606a; }
.verdict { display: inline-block; margin-top: 8px; padding: 4px 12px; border-radius: 6px; font-weight: bold; }
.verdict.pass { background: #dafbe1; color: #116329; }
.verdict.fail { background: #ffebe9; color: #a40e26; }
.columns { display: grid; grid-template-columns: repeat(var(--columns), minmax(0, 1fr)); gap: 20px 36px; }
figure { margin: 0; }
svg { display: block; width: 100%; height: auto; }
svg text { font-size: 11px; fill: #1f2328; }
svg .muted { fill: #57606a; }
table { border-collapse: collapse; width: 100%; margin-bottom: 12px; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { color: #57606a; font-weight: normal; }
td.number { text-align: right; }
.badge { font-weight: bold; }
.badge.pass { color: #116329; }
.badge.fail { color: #a40e26; }
ul.faults { margin: 4px 0 12px; padding-left: 20px; }
"#;

/// Renders `report` as one self-contained HTML page.
pub fn render_html(report: &Report) -> String {
    let scales = Scales::of(report);
    let mut page = String::new();
    head(&mut page, report);
    header(&mut page, report);
    summary(&mut page, report);

    let window = report
        .strategies
        .first()
        .map_or("window".to_owned(), |s| offset_label(s.timeline.window));
    let sla = offset_label(report.sla);
    let grouped = report
        .strategies
        .iter()
        .flat_map(|s| &s.timeline.delay_rows)
        .any(|row| row.mailbox.is_none());
    let selection = if grouped {
        format!(
            " With more than {MAX_DELAY_ROWS} mailboxes, each group's first row covers the whole group and the rows after it are its most delayed mailboxes."
        )
    } else {
        String::new()
    };
    let sections: [(&str, &str, String, Chart); 5] = [
        (
            "latency",
            "Delivery latency",
            format!(
                "Time from a delivery's arrival in its mailbox to its record, over the deliveries that arrived in each {window} window: median (p50) and 99th percentile (p99). A gap is a window in which no delivery that arrived got a record. Shaded: a fault was active."
            ),
            latency_chart,
        ),
        (
            "backlog",
            "Backlog",
            "Deliveries waiting for an outcome (a record or a decision) at the end of each window."
                .to_owned(),
            backlog_chart,
        ),
        (
            "throttled",
            "Throttled answers",
            format!("Throttled answers the engine received in each {window} window."),
            throttled_chart,
        ),
        (
            "delay",
            "Delay per mailbox",
            format!(
                "Per mailbox, the longest wait for an outcome among the deliveries that arrived in each {window} window; a delivery without an outcome waits until the end of the run. Colours compare the wait with the SLA of {sla}; grey cells had no delivery. Outlined: a fault was active on the mailbox of the row (or on the forward mailbox, for every row).{selection}"
            ),
            delay_chart,
        ),
        (
            "nodes",
            "Node utilisation",
            format!(
                "Share of each sync node's worker-slot time spent in sync cycles in each {window} window. The colour scale ends at the busiest window of any strategy, rounded up. Shaded: a fault was active somewhere."
            ),
            nodes_chart,
        ),
    ];
    for (id, heading, explanation, chart) in sections {
        let _ = writeln!(
            page,
            "<section id=\"{id}\">\n<h2>{heading}</h2>\n<p class=\"explain\">{}</p>",
            escape(&explanation)
        );
        open_columns(&mut page, report);
        for strategy in &report.strategies {
            let _ = writeln!(
                page,
                "<figure>\n<figcaption>{}</figcaption>",
                escape(&strategy.strategy)
            );
            chart(&mut page, report, strategy, &scales);
            page.push_str("</figure>\n");
        }
        page.push_str("</div>\n</section>\n");
    }
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

/// Draws one strategy's chart of one metric.
type Chart = fn(&mut String, &Report, &StrategyReport, &Scales);

/// Axis maxima shared by the charts of all strategies.
struct Scales {
    /// Latency axis maximum, in seconds, and its tick step.
    latency: (f64, f64),
    /// Backlog axis maximum and tick step.
    backlog: (f64, f64),
    /// Throttled-answers axis maximum and tick step.
    throttled: (f64, f64),
    /// Upper bound of the utilisation colour scale, in percent.
    utilisation: f64,
}

impl Scales {
    fn of(report: &Report) -> Self {
        let timelines = || report.strategies.iter().map(|s| &s.timeline);
        let latency = timelines()
            .flat_map(|t| t.latency_p99.iter().chain(&t.latency_p50).flatten())
            .fold(0.0, |max: f64, &value| max.max(value));
        let backlog = timelines()
            .flat_map(|t| t.backlog.iter())
            .fold(0, |max, &value| max.max(value));
        let throttled = timelines()
            .flat_map(|t| t.throttled.iter())
            .fold(0, |max, &value| max.max(value));
        let utilisation = timelines()
            .flat_map(|t| t.nodes.iter().flat_map(|node| node.utilisation.iter()))
            .fold(0.0, |max: f64, &value| max.max(value));
        Self {
            latency: duration_axis(latency),
            backlog: count_axis(backlog as f64),
            throttled: count_axis(throttled as f64),
            utilisation: utilisation_scale(utilisation),
        }
    }
}

/// Returns the axis maximum and tick step for durations up to `max` seconds.
fn duration_axis(max: f64) -> (f64, f64) {
    let step = ROUND_DURATIONS
        .iter()
        .copied()
        .find(|&step| (max / step).ceil() <= 5.0)
        .unwrap_or_else(|| (max / 5.0).ceil());
    (((max / step).ceil() * step).max(step), step)
}

/// Returns the axis maximum and tick step for counts up to `max`.
fn count_axis(max: f64) -> (f64, f64) {
    let mut magnitude = 1.0;
    loop {
        for factor in [1.0, 2.0, 5.0] {
            let step = factor * magnitude;
            if (max / step).ceil() <= 5.0 {
                return (((max / step).ceil() * step).max(step), step);
            }
        }
        magnitude *= 10.0;
    }
}

/// Returns the upper bound of the utilisation colours: the smallest round
/// percentage at or above `max`, so that a lightly used cluster still
/// shows how its load changes.
fn utilisation_scale(max: f64) -> f64 {
    [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0]
        .into_iter()
        .find(|&bound| max <= bound)
        .unwrap_or(100.0)
}

fn head(page: &mut String, report: &Report) {
    page.push_str("<!DOCTYPE html>\n");
    page.push_str("<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n");
    page.push_str("<meta charset=\"utf-8\"/>\n");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n");
    let _ = writeln!(
        page,
        "<title>mailsim run: {}</title>",
        escape(&report.scenario)
    );
    let _ = writeln!(page, "<style>{STYLE}</style>\n</head>\n<body>");
}

fn header(page: &mut String, report: &Report) {
    let _ = writeln!(
        page,
        "<header>\n<h1>Scenario {}</h1>",
        escape(&report.scenario)
    );
    let _ = writeln!(
        page,
        "<p class=\"description\">{}</p>",
        escape(report.description.trim())
    );
    let window = report.strategies.first().map_or(String::new(), |s| {
        format!(", charts in {} windows", offset_label(s.timeline.window))
    });
    let _ = writeln!(
        page,
        "<p class=\"facts\">{}, seed {}: traffic for {}, drain {}, SLA {}, protocol {}{window}. Times are offsets from the start of the simulated run.</p>",
        escape(&report.file),
        report.seed,
        offset_label(report.duration),
        offset_label(report.drain),
        offset_label(report.sla),
        escape(&report.protocol),
    );
    let held = report.expectations.iter().filter(|r| r.passed).count();
    let (class, text) = if report.expectations.is_empty() {
        ("pass", "no expectations".to_owned())
    } else if report.passed {
        (
            "pass",
            format!("all {} expectations hold", report.expectations.len()),
        )
    } else {
        (
            "fail",
            format!("{held} of {} expectations hold", report.expectations.len()),
        )
    };
    let _ = writeln!(
        page,
        "<p class=\"verdict {class}\">{text}</p>\n</header>\n<main>"
    );
}

fn open_columns(page: &mut String, report: &Report) {
    let _ = writeln!(
        page,
        "<div class=\"columns\" style=\"--columns: {}\">",
        report.strategies.len().max(1)
    );
}

/// Renders one strategy's value in a summary row.
type Cell = fn(&StrategyReport) -> String;

fn summary(page: &mut String, report: &Report) {
    page.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n");
    page.push_str("<p class=\"explain\">Measured over the whole run; metrics are defined in docs/report.md. Each expectation is checked for the strategy in its column.</p>\n");
    open_columns(page, report);
    let rows: [(&str, Cell); 20] = [
        ("delivered", |s| s.delivered.to_string()),
        ("records created", |s| s.records.to_string()),
        ("lost", |s| s.lost.to_string()),
        ("duplicated", |s| s.duplicated.to_string()),
        ("declined", |s| s.declined.to_string()),
        ("quarantined", |s| s.quarantined.to_string()),
        ("throughput per hour", |s| {
            format!("{:.1}", s.throughput_per_hour)
        }),
        ("latency p50", |s| {
            s.latency.p50.map_or("-".to_owned(), format_latency)
        }),
        ("latency p90", |s| {
            s.latency.p90.map_or("-".to_owned(), format_latency)
        }),
        ("latency p99", |s| {
            s.latency.p99.map_or("-".to_owned(), format_latency)
        }),
        ("latency max", |s| {
            s.latency.max.map_or("-".to_owned(), format_latency)
        }),
        ("max backlog", |s| s.backlog_max.to_string()),
        ("throttled answers", |s| s.throttled.to_string()),
        ("deferred deliveries", |s| s.deferred.to_string()),
        ("errors (email/mailbox/profile)", |s| {
            format!(
                "{}/{}/{}",
                s.errors.email, s.errors.mailbox, s.errors.server_profile
            )
        }),
        ("alerts", |s| s.alerts.len().to_string()),
        ("disabled mailboxes", |s| s.disabled.len().to_string()),
        ("fault blast radius", |s| match s.blast_radius.len() {
            1 => "1 mailbox".to_owned(),
            count => format!("{count} mailboxes"),
        }),
        ("node utilisation (max)", |s| {
            let max = s.nodes.iter().map(|n| n.utilisation).fold(0.0, f64::max);
            format!("{max:.1}%")
        }),
        ("cycles", |s| s.cycles.to_string()),
    ];
    for strategy in &report.strategies {
        let name = escape(&strategy.strategy);
        let _ = writeln!(page, "<div>\n<h3>{name}</h3>");
        let _ = writeln!(
            page,
            "<table data-table=\"summary\" data-strategy=\"{name}\">\n<tbody>"
        );
        for (label, value) in rows {
            let _ = writeln!(
                page,
                "<tr><th scope=\"row\">{label}</th><td class=\"number\">{}</td></tr>",
                escape(&value(strategy))
            );
        }
        page.push_str("</tbody>\n</table>\n");
        fault_list(page, &strategy.timeline.faults);
        expectations(page, report, strategy);
        page.push_str("</div>\n");
    }
    page.push_str("</div>\n</section>\n");
}

fn fault_list(page: &mut String, faults: &[FaultSpan]) {
    if faults.is_empty() {
        page.push_str("<p>No fault struck this strategy's world.</p>\n");
        return;
    }
    page.push_str("<p>Faults:</p>\n<ul class=\"faults\">\n");
    for fault in faults {
        let _ = writeln!(page, "<li>{}</li>", escape(&describe_fault(fault)));
    }
    page.push_str("</ul>\n");
}

fn expectations(page: &mut String, report: &Report, strategy: &StrategyReport) {
    let results: Vec<&ExpectationResult> = report
        .expectations
        .iter()
        .filter(|result| result.strategy == strategy.strategy)
        .collect();
    if results.is_empty() {
        page.push_str("<p>No expectations for this strategy.</p>\n");
        return;
    }
    let _ = writeln!(
        page,
        "<table data-table=\"expectations\" data-strategy=\"{}\">",
        escape(&strategy.strategy)
    );
    page.push_str("<thead><tr><th scope=\"col\">verdict</th><th scope=\"col\">metric</th><th scope=\"col\">expected</th><th scope=\"col\">measured</th></tr></thead>\n<tbody>\n");
    for result in results {
        let (class, verdict) = if result.passed {
            ("pass", "PASS")
        } else {
            ("fail", "FAIL")
        };
        let metric = match &result.ratio_to {
            None => result.metric.clone(),
            Some(base) => format!("{} / {base} {}", result.metric, result.metric),
        };
        let _ = writeln!(
            page,
            "<tr data-passed=\"{}\"><td class=\"badge {class}\">{verdict}</td><td>{}</td><td>{}</td><td class=\"number\">{}</td></tr>",
            result.passed,
            escape(&metric),
            escape(&result.bound),
            escape(&result.measured_text)
        );
    }
    page.push_str("</tbody>\n</table>\n");
}

/// The geometry of one chart: the time axis runs from 0 to `end` seconds.
struct Frame {
    end: f64,
    plot_height: f64,
}

impl Frame {
    fn new(report: &Report, plot_height: f64) -> Self {
        Self {
            end: (report.duration + report.drain).max(0.001),
            plot_height,
        }
    }

    fn x(&self, seconds: f64) -> f64 {
        LEFT + seconds.clamp(0.0, self.end) / self.end * (WIDTH - LEFT - RIGHT)
    }

    fn bottom(&self) -> f64 {
        TOP + self.plot_height
    }

    fn height(&self) -> f64 {
        self.bottom() + BOTTOM
    }

    /// Returns the y coordinate of `value` on an axis from 0 to `max`.
    fn y(&self, value: f64, max: f64) -> f64 {
        self.bottom() - (value / max).clamp(0.0, 1.0) * self.plot_height
    }
}

/// Opens an `svg` element with its accessible title and description.
fn open_svg(out: &mut String, chart: &str, strategy: &str, frame: &Frame, title: &str, desc: &str) {
    let strategy = escape(strategy);
    let id = format!("{chart}-{strategy}");
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {}\" data-chart=\"{chart}\" data-strategy=\"{strategy}\" role=\"img\" aria-labelledby=\"{id}-title {id}-desc\">",
        number(frame.height())
    );
    let _ = writeln!(
        out,
        "<title id=\"{id}-title\">{}</title>\n<desc id=\"{id}-desc\">{}</desc>",
        escape(title),
        escape(desc)
    );
}

/// An entry of a chart's legend.
enum Key<'a> {
    Line(&'a str, bool),
    Swatch(&'a str, f64),
    Outline,
}

fn legend(out: &mut String, keys: &[(Key, &str)]) {
    let mut x = LEFT;
    let y = 14.0;
    out.push_str("<g class=\"legend\">\n");
    for (key, label) in keys {
        match key {
            Key::Line(colour, dashed) => {
                let dash = if *dashed {
                    " stroke-dasharray=\"4 3\""
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{colour}\" stroke-width=\"2.5\"{dash}/>",
                    number(x),
                    number(x + 16.0)
                );
            }
            Key::Swatch(colour, opacity) => {
                let _ = writeln!(
                    out,
                    "<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"10\" fill=\"{colour}\" fill-opacity=\"{opacity}\" stroke=\"#8c959f\" stroke-width=\"0.5\"/>",
                    number(x + 1.0),
                    number(y - 5.0)
                );
            }
            Key::Outline => {
                let _ = writeln!(
                    out,
                    "<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"10\" fill=\"{FAULT_COLOUR}\" fill-opacity=\"0.12\" stroke=\"{FAULT_COLOUR}\" stroke-width=\"1.5\"/>",
                    number(x + 1.0),
                    number(y - 5.0)
                );
            }
        }
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\">{}</text>",
            number(x + 21.0),
            number(y + 4.0),
            escape(label)
        );
        x += 21.0 + 6.2 * label.chars().count() as f64 + 14.0;
    }
    out.push_str("</g>\n");
}

/// Draws the time axis with round offsets and the line where traffic ends.
fn time_axis(out: &mut String, report: &Report, frame: &Frame) {
    let step = ROUND_DURATIONS
        .iter()
        .copied()
        .find(|&step| frame.end / step <= 8.0)
        .unwrap_or(frame.end / 8.0);
    let bottom = frame.bottom();
    out.push_str("<g class=\"time-axis\">\n");
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{}\" y2=\"{b}\" stroke=\"#57606a\"/>",
        number(WIDTH - RIGHT),
        b = number(bottom)
    );
    let mut tick = 0.0;
    while tick <= frame.end + 1e-9 {
        let x = number(frame.x(tick));
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#57606a\"/>\n<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            number(bottom),
            number(bottom + 4.0),
            number(bottom + 16.0),
            offset_label(tick)
        );
        tick += step;
    }
    let _ = writeln!(
        out,
        "<text class=\"muted\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">simulated time since the start</text>",
        number(LEFT + (WIDTH - LEFT - RIGHT) / 2.0),
        number(bottom + 32.0)
    );
    if report.drain > 0.0 {
        let x = number(frame.x(report.duration));
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" y1=\"{TOP}\" x2=\"{x}\" y2=\"{}\" stroke=\"#57606a\" stroke-dasharray=\"2 3\"/>\n<text class=\"muted\" x=\"{}\" y=\"{}\">drain</text>",
            number(bottom),
            number(frame.x(report.duration) + 3.0),
            number(TOP + 10.0)
        );
    }
    out.push_str("</g>\n");
}

/// Draws horizontal grid lines and labels for a value axis from 0 to `max`.
fn value_axis(
    out: &mut String,
    frame: &Frame,
    (max, step): (f64, f64),
    label: impl Fn(f64) -> String,
    title: &str,
) {
    out.push_str("<g class=\"value-axis\">\n");
    let mut value = 0.0;
    while value <= max + 1e-9 {
        let y = number(frame.y(value, max));
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#d8dee4\"/>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            number(WIDTH - RIGHT),
            number(LEFT - 6.0),
            number(frame.y(value, max) + 4.0),
            escape(&label(value))
        );
        value += step;
    }
    let middle = number(TOP + frame.plot_height / 2.0);
    let _ = writeln!(
        out,
        "<text class=\"muted\" x=\"14\" y=\"{middle}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {middle})\">{}</text>",
        escape(title)
    );
    out.push_str("</g>\n");
}

/// Shades the time spans of faults over the whole plot height.
fn fault_bands(out: &mut String, frame: &Frame, faults: &[FaultSpan]) {
    for fault in faults {
        let from = frame.x(fault.from);
        let width = (frame.x(fault.until) - from).max(1.5);
        let _ = writeln!(
            out,
            "<rect x=\"{}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"{FAULT_COLOUR}\" fill-opacity=\"0.12\"><title>{}</title></rect>",
            number(from),
            number(width),
            number(frame.plot_height),
            escape(&describe_fault(fault))
        );
    }
}

/// Outlines the time span of each fault over the heatmap rows it struck:
/// the rows of the mailboxes in its accounts and the whole-group rows of
/// their groups. A fault none of whose accounts has a row, such as one on
/// the forward mailbox, may delay any row, so it is outlined over all.
fn fault_outlines(out: &mut String, frame: &Frame, faults: &[FaultSpan], rows: &[DelayRow]) {
    let height = row_height(rows.len());
    for fault in faults {
        let from = frame.x(fault.from);
        let width = (frame.x(fault.until) - from).max(1.5);
        let struck = |row: &DelayRow| {
            row.mailbox
                .as_ref()
                .is_some_and(|address| fault.accounts.contains(address))
        };
        let groups: BTreeSet<&str> = rows
            .iter()
            .filter(|row| struck(row))
            .map(|row| row.group.as_str())
            .collect();
        let spans: Vec<(f64, f64)> = if groups.is_empty() {
            vec![(TOP, frame.plot_height)]
        } else {
            rows.iter()
                .enumerate()
                .filter(|(_, row)| {
                    struck(row) || (row.mailbox.is_none() && groups.contains(row.group.as_str()))
                })
                .map(|(index, _)| (TOP + index as f64 * height, height))
                .collect()
        };
        for (y, span) in spans {
            let _ = writeln!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"{FAULT_COLOUR}\" stroke-width=\"2\"><title>{}</title></rect>",
                number(from),
                number(y - 1.0),
                number(width),
                number(span + 2.0),
                escape(&describe_fault(fault))
            );
        }
    }
}

fn describe_fault(fault: &FaultSpan) -> String {
    const SHOWN: usize = 3;
    let mut accounts = fault
        .accounts
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if fault.accounts.len() > SHOWN {
        let _ = write!(accounts, " and {} more", fault.accounts.len() - SHOWN);
    }
    format!(
        "{} on {accounts} from {} to {}",
        fault.kind,
        offset_label(fault.from),
        offset_label(fault.until)
    )
}

/// Start and end of window `index` of `timeline`, in seconds.
fn window_span(timeline: &Timeline, frame: &Frame, index: usize) -> (f64, f64) {
    let start = index as f64 * timeline.window;
    (start, (start + timeline.window).min(frame.end))
}

fn latency_chart(out: &mut String, report: &Report, strategy: &StrategyReport, scales: &Scales) {
    let timeline = &strategy.timeline;
    let frame = Frame::new(report, PLOT_HEIGHT);
    let peak = timeline
        .latency_p99
        .iter()
        .enumerate()
        .filter_map(|(index, value)| value.map(|value| (index, value)))
        .fold(
            None,
            |best: Option<(usize, f64)>, (index, value)| match best {
                Some((_, max)) if max >= value => best,
                _ => Some((index, value)),
            },
        );
    let desc = match peak {
        Some((index, value)) => format!(
            "The p99 latency peaks at {} for deliveries that arrived in the window from {}.",
            format_latency(value),
            offset_label(window_span(timeline, &frame, index).0)
        ),
        None => "No delivery got a record.".to_owned(),
    };
    open_svg(
        out,
        "latency",
        &strategy.strategy,
        &frame,
        &format!(
            "Delivery latency p50 and p99 per window under the {} strategy",
            strategy.strategy
        ),
        &desc,
    );

    let mut keys = vec![
        (Key::Line(P50_COLOUR, false), "p50"),
        (Key::Line(P99_COLOUR, false), "p99"),
    ];
    let sla_shown = report.sla > 0.0 && report.sla <= scales.latency.0;
    if sla_shown {
        keys.push((Key::Line("#57606a", true), "SLA"));
    }
    keys.push((Key::Swatch(FAULT_COLOUR, 0.12), "fault active"));
    legend(out, &keys);

    fault_bands(out, &frame, &timeline.faults);
    value_axis(out, &frame, scales.latency, offset_label, "latency");
    if sla_shown {
        let y = number(frame.y(report.sla, scales.latency.0));
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#57606a\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\"><title>SLA {}</title></line>",
            number(WIDTH - RIGHT),
            offset_label(report.sla)
        );
    }
    for (values, colour) in [
        (&timeline.latency_p50, P50_COLOUR),
        (&timeline.latency_p99, P99_COLOUR),
    ] {
        series(out, timeline, &frame, values, scales.latency.0, colour);
    }

    time_axis(out, report, &frame);
    out.push_str("</svg>\n");
}

/// Draws `values` as a line through the middle of each window. The line
/// breaks where a window has no value, and a value between two gaps is a dot.
fn series(
    out: &mut String,
    timeline: &Timeline,
    frame: &Frame,
    values: &[Option<f64>],
    max: f64,
    colour: &str,
) {
    let point = |index: usize, value: f64| {
        let (start, end) = window_span(timeline, frame, index);
        (frame.x((start + end) / 2.0), frame.y(value, max))
    };
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    for (index, value) in values.iter().enumerate() {
        match value {
            Some(value) => current.push(point(index, *value)),
            None if !current.is_empty() => runs.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    for run in runs {
        if let [(x, y)] = run[..] {
            let _ = writeln!(
                out,
                "<circle cx=\"{}\" cy=\"{}\" r=\"2\" fill=\"{colour}\"/>",
                number(x),
                number(y)
            );
            continue;
        }
        let points: Vec<String> = run
            .iter()
            .map(|(x, y)| format!("{},{}", number(*x), number(*y)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" stroke-linejoin=\"round\"/>",
            points.join(" ")
        );
    }
}

fn backlog_chart(out: &mut String, report: &Report, strategy: &StrategyReport, scales: &Scales) {
    let timeline = &strategy.timeline;
    let frame = Frame::new(report, PLOT_HEIGHT);
    let (peak_index, peak) =
        timeline
            .backlog
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0, 0),
                |best, (index, value)| {
                    if value > best.1 { (index, value) } else { best }
                },
            );
    let desc = if peak == 0 {
        "No delivery waited at the end of any window.".to_owned()
    } else {
        format!(
            "The backlog peaks at {peak} deliveries at {}.",
            offset_label(window_span(timeline, &frame, peak_index).1)
        )
    };
    open_svg(
        out,
        "backlog",
        &strategy.strategy,
        &frame,
        &format!(
            "Deliveries waiting for an outcome over time under the {} strategy",
            strategy.strategy
        ),
        &desc,
    );

    legend(
        out,
        &[
            (Key::Swatch(BACKLOG_COLOUR, 0.35), "waiting deliveries"),
            (Key::Swatch(FAULT_COLOUR, 0.12), "fault active"),
        ],
    );

    fault_bands(out, &frame, &timeline.faults);
    value_axis(
        out,
        &frame,
        scales.backlog,
        |value| format!("{value:.0}"),
        "deliveries",
    );

    let max = scales.backlog.0;
    let mut points = vec![(frame.x(0.0), frame.y(0.0, max))];
    for (index, &value) in timeline.backlog.iter().enumerate() {
        let (_, end) = window_span(timeline, &frame, index);
        points.push((frame.x(end), frame.y(value as f64, max)));
    }
    let line: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{},{}", number(*x), number(*y)))
        .collect();
    let last_x = points.last().map_or(LEFT, |(x, _)| *x);
    let _ = writeln!(
        out,
        "<polygon points=\"{} {},{} {LEFT},{}\" fill=\"{BACKLOG_COLOUR}\" fill-opacity=\"0.35\" stroke=\"none\"/>",
        line.join(" "),
        number(last_x),
        number(frame.bottom()),
        number(frame.bottom())
    );
    let _ = writeln!(
        out,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{BACKLOG_COLOUR}\" stroke-width=\"2\" stroke-linejoin=\"round\"/>",
        line.join(" ")
    );

    time_axis(out, report, &frame);
    out.push_str("</svg>\n");
}

fn throttled_chart(out: &mut String, report: &Report, strategy: &StrategyReport, scales: &Scales) {
    let timeline = &strategy.timeline;
    let frame = Frame::new(report, PLOT_HEIGHT);
    let total: u64 = timeline.throttled.iter().sum();
    let window = offset_label(timeline.window);
    let desc = if total == 0 {
        "The engine received no throttled answer.".to_owned()
    } else {
        let peak = timeline.throttled.iter().copied().max().unwrap_or(0);
        format!("{total} throttled answers in all, at most {peak} in one {window} window.")
    };
    open_svg(
        out,
        "throttled",
        &strategy.strategy,
        &frame,
        &format!(
            "Throttled answers per window under the {} strategy",
            strategy.strategy
        ),
        &desc,
    );

    legend(
        out,
        &[
            (Key::Swatch(THROTTLED_COLOUR, 1.0), "throttled answers"),
            (Key::Swatch(FAULT_COLOUR, 0.12), "fault active"),
        ],
    );

    fault_bands(out, &frame, &timeline.faults);
    value_axis(
        out,
        &frame,
        scales.throttled,
        |value| format!("{value:.0}"),
        &format!("answers per {window}"),
    );

    let max = scales.throttled.0;
    for (index, &count) in timeline.throttled.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let (start, end) = window_span(timeline, &frame, index);
        let x = frame.x(start);
        let width = (frame.x(end) - x - 0.6).max(0.6);
        let y = frame.y(count as f64, max);
        let _ = writeln!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{THROTTLED_COLOUR}\"><title>{count} throttled answers from {} to {}</title></rect>",
            number(x),
            number(y),
            number(width),
            number(frame.bottom() - y),
            offset_label(start),
            offset_label(end)
        );
    }
    if total == 0 {
        let _ = writeln!(
            out,
            "<text class=\"muted\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no throttled answers</text>",
            number(LEFT + (WIDTH - LEFT - RIGHT) / 2.0),
            number(TOP + PLOT_HEIGHT / 2.0)
        );
    }

    time_axis(out, report, &frame);
    out.push_str("</svg>\n");
}

/// Returns the heatmap colour bin of a wait of `delay` seconds.
fn delay_bin(delay: f64, sla: f64) -> usize {
    DELAY_LIMITS
        .iter()
        .position(|&limit| delay <= limit * sla)
        .unwrap_or(DELAY_LIMITS.len())
}

/// Row height of a heatmap with `rows` rows: about 500 units in all.
fn row_height(rows: usize) -> f64 {
    (500.0 / rows.max(1) as f64).clamp(7.0, 16.0)
}

/// Rows at least this high get a label each; lower ones are labelled by group.
const LABELLED_ROW_HEIGHT: f64 = 11.0;

fn delay_chart(out: &mut String, report: &Report, strategy: &StrategyReport, _scales: &Scales) {
    let timeline = &strategy.timeline;
    let rows = &timeline.delay_rows;
    let height = row_height(rows.len());
    let frame = Frame::new(report, height * rows.len().max(1) as f64);
    let sla = report.sla.max(0.001);
    let over_sla = rows
        .iter()
        .filter(|row| row.worst_delay.iter().flatten().any(|&delay| delay > sla))
        .count();
    open_svg(
        out,
        "delay",
        &strategy.strategy,
        &frame,
        &format!(
            "Worst delay per mailbox and window under the {} strategy",
            strategy.strategy
        ),
        &format!(
            "{} rows; {over_sla} of them have a window whose worst delay exceeds the SLA of {}.",
            rows.len(),
            offset_label(report.sla)
        ),
    );
    let labels: Vec<String> = DELAY_LIMITS
        .iter()
        .map(|limit| format!("≤ {}", offset_label(limit * sla)))
        .chain(std::iter::once(format!(
            "> {}",
            offset_label(DELAY_LIMITS[DELAY_LIMITS.len() - 1] * sla)
        )))
        .collect();
    let mut keys: Vec<(Key, &str)> = DELAY_BINS
        .iter()
        .zip(&labels)
        .map(|(colour, label)| (Key::Swatch(colour, 1.0), label.as_str()))
        .collect();
    keys.push((Key::Outline, "fault"));
    legend(out, &keys);

    let _ = writeln!(
        out,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"#eef0f2\"/>",
        number(WIDTH - LEFT - RIGHT),
        number(frame.plot_height)
    );
    let label_rows = height >= LABELLED_ROW_HEIGHT;
    for (index, row) in rows.iter().enumerate() {
        let y = TOP + index as f64 * height;
        let name = match &row.mailbox {
            Some(address) => address.clone(),
            None => format!("all of group {}", row.group),
        };
        let _ = writeln!(out, "<g><title>{}</title>", escape(&name));
        let mut start = 0;
        while start < row.worst_delay.len() {
            let Some(first) = row.worst_delay[start] else {
                start += 1;
                continue;
            };
            let bin = delay_bin(first, sla);
            let mut end = start + 1;
            let mut worst = first;
            while let Some(Some(delay)) = row.worst_delay.get(end) {
                if delay_bin(*delay, sla) != bin {
                    break;
                }
                worst = worst.max(*delay);
                end += 1;
            }
            let from = window_span(timeline, &frame, start).0;
            let until = window_span(timeline, &frame, end - 1).1;
            let x = frame.x(from);
            let _ = writeln!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{}, arrived {} to {}: worst delay {}</title></rect>",
                number(x),
                number(y),
                number(frame.x(until) - x),
                number(height),
                DELAY_BINS[bin],
                escape(&name),
                offset_label(from),
                offset_label(until),
                format_latency(worst)
            );
            start = end;
        }
        out.push_str("</g>\n");
        if label_rows {
            let label = match &row.mailbox {
                Some(address) => short_label(address),
                None => format!("{} (all)", row.group),
            };
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                number(LEFT - 6.0),
                number(y + height / 2.0 + 4.0),
                escape(&label)
            );
        }
    }
    if !label_rows {
        group_labels(out, rows, height);
    }
    fault_outlines(out, &frame, &timeline.faults, rows);

    time_axis(out, report, &frame);
    out.push_str("</svg>\n");
}

/// Labels runs of rows of the same group with the group's name, and
/// separates the groups with lines. The label of a run of mailbox rows
/// gives their count. A run that starts with a whole-group row shows only
/// some of the group's mailboxes, so its label gives no count.
fn group_labels(out: &mut String, rows: &[DelayRow], height: f64) {
    let mut spans: Vec<(&str, usize, usize)> = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        match spans.last_mut() {
            Some((name, _, end)) if *name == row.group => *end = index + 1,
            _ => spans.push((row.group.as_str(), index, index + 1)),
        }
    }
    for (position, (name, start, end)) in spans.iter().enumerate() {
        let top = TOP + *start as f64 * height;
        let span = (*end - *start) as f64 * height;
        if position > 0 {
            let _ = writeln!(
                out,
                "<line x1=\"{}\" y1=\"{t}\" x2=\"{}\" y2=\"{t}\" stroke=\"#ffffff\" stroke-width=\"1.5\"/>",
                number(LEFT - 4.0),
                number(WIDTH - RIGHT),
                t = number(top)
            );
        }
        let size = span.clamp(7.0, 11.0);
        let count = end - start;
        let whole_group = rows[*start].mailbox.is_none();
        let label = if count > 1 && !whole_group {
            format!("{name} ({count})")
        } else {
            (*name).to_owned()
        };
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" style=\"font-size: {}px\">{}</text>",
            number(LEFT - 6.0),
            number(top + span / 2.0 + size * 0.35),
            number(size),
            escape(&label)
        );
    }
}

/// Returns the local part of an address, shortened to fit a row label.
fn short_label(address: &str) -> String {
    const MAX: usize = 14;
    let local = address.split('@').next().unwrap_or(address);
    if local.chars().count() <= MAX {
        local.to_owned()
    } else {
        let mut short: String = local.chars().take(MAX - 1).collect();
        short.push('…');
        short
    }
}

fn nodes_chart(out: &mut String, report: &Report, strategy: &StrategyReport, scales: &Scales) {
    let timeline = &strategy.timeline;
    let nodes = &timeline.nodes;
    let height = row_height(nodes.len()).clamp(14.0, 24.0);
    let frame = Frame::new(report, height * nodes.len().max(1) as f64);
    let means: Vec<String> = strategy
        .nodes
        .iter()
        .map(|node| format!("node {} {:.1}%", node.node, node.utilisation))
        .collect();
    open_svg(
        out,
        "nodes",
        &strategy.strategy,
        &frame,
        &format!(
            "Node utilisation per window under the {} strategy",
            strategy.strategy
        ),
        &format!("Utilisation over the whole run: {}.", means.join(", ")),
    );
    let step = scales.utilisation / (UTILISATION_BINS.len() - 1) as f64;
    let labels: Vec<String> = std::iter::once("0%".to_owned())
        .chain((1..UTILISATION_BINS.len()).map(|bin| format!("≤ {}%", percent(bin as f64 * step))))
        .collect();
    let mut keys: Vec<(Key, &str)> = UTILISATION_BINS
        .iter()
        .zip(&labels)
        .map(|(colour, label)| (Key::Swatch(colour, 1.0), label.as_str()))
        .collect();
    keys.push((Key::Swatch(FAULT_COLOUR, 0.12), "fault active"));
    legend(out, &keys);
    let bin = |utilisation: f64| {
        if utilisation <= 0.0 {
            0
        } else {
            ((utilisation / step).ceil() as usize).clamp(1, UTILISATION_BINS.len() - 1)
        }
    };
    for (row, node) in nodes.iter().enumerate() {
        let y = TOP + row as f64 * height;
        let mut start = 0;
        while start < node.utilisation.len() {
            let first = bin(node.utilisation[start]);
            let mut end = start + 1;
            let mut peak = node.utilisation[start];
            while end < node.utilisation.len() && bin(node.utilisation[end]) == first {
                peak = peak.max(node.utilisation[end]);
                end += 1;
            }
            let from = window_span(timeline, &frame, start).0;
            let until = window_span(timeline, &frame, end - 1).1;
            let x = frame.x(from);
            let _ = writeln!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>node {}, {} to {}: up to {}% busy</title></rect>",
                number(x),
                number(y),
                number(frame.x(until) - x),
                number(height - 1.0),
                UTILISATION_BINS[first],
                node.node,
                offset_label(from),
                offset_label(until),
                percent(peak)
            );
            start = end;
        }
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">node {}</text>",
            number(LEFT - 6.0),
            number(y + height / 2.0 + 3.5),
            node.node
        );
    }
    fault_bands(out, &frame, &timeline.faults);

    time_axis(out, report, &frame);
    out.push_str("</svg>\n");
}

/// Formats a percentage with at most two decimals and no trailing zeros.
fn percent(value: f64) -> String {
    let text = format!("{value:.2}");
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    if trimmed.is_empty() || trimmed == "-" {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Formats an offset or duration in seconds with round units: `0`, `45s`,
/// `5m`, `1h30m`, `2d`, `250ms`.
fn offset_label(seconds: f64) -> String {
    let millis = (seconds * 1000.0).round() as u64;
    if millis == 0 {
        return "0".to_owned();
    }
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let mut rest = millis / 1000;
    let mut text = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= size {
            let _ = write!(text, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    if !millis.is_multiple_of(1000) {
        let _ = write!(text, "{}ms", millis % 1000);
    }
    text
}

/// Formats a coordinate with one decimal, without a trailing `.0`.
fn number(value: f64) -> String {
    let text = format!("{value:.1}");
    match text.strip_suffix(".0") {
        Some(whole) if whole != "-0" => whole.to_owned(),
        Some(_) => "0".to_owned(),
        None => text,
    }
}

/// Escapes text for XML element content and quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab and newline are not allowed in XML 1.0.
            '\t' | '\n' => out.push(character),
            control if control.is_control() => out.push('\u{fffd}'),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_use_round_units() {
        assert_eq!(offset_label(0.0), "0");
        assert_eq!(offset_label(0.25), "250ms");
        assert_eq!(offset_label(45.0), "45s");
        assert_eq!(offset_label(5400.0), "1h30m");
        assert_eq!(offset_label(172_800.0), "2d");
        assert_eq!(offset_label(90.5), "1m30s500ms");
    }

    #[test]
    fn escape_covers_markup_and_controls() {
        assert_eq!(
            escape("a<b>&\"c'\u{1}"),
            "a&lt;b&gt;&amp;&quot;c&#39;\u{fffd}"
        );
    }

    #[test]
    fn delay_bins_are_relative_to_the_sla() {
        assert_eq!(delay_bin(0.0, 1800.0), 0);
        assert_eq!(delay_bin(1800.0, 1800.0), 2);
        assert_eq!(delay_bin(1800.1, 1800.0), 3);
        assert_eq!(delay_bin(100_000.0, 1800.0), 5);
    }

    #[test]
    fn axes_end_on_round_values() {
        assert_eq!(duration_axis(7000.0), (7200.0, 1800.0));
        assert_eq!(duration_axis(0.0), (0.1, 0.1));
        assert_eq!(count_axis(0.0), (1.0, 1.0));
        assert_eq!(count_axis(37.0), (40.0, 10.0));
        assert_eq!(count_axis(1234.0), (1500.0, 500.0));
    }

    #[test]
    fn utilisation_scale_fits_light_load() {
        assert_eq!(utilisation_scale(0.0), 0.05);
        assert_eq!(utilisation_scale(0.12), 0.25);
        assert_eq!(utilisation_scale(60.0), 100.0);
        assert_eq!(percent(0.05), "0.05");
        assert_eq!(percent(20.0), "20");
        assert_eq!(percent(0.0), "0");
    }

    #[test]
    fn numbers_drop_a_trailing_zero() {
        assert_eq!(number(12.0), "12");
        assert_eq!(number(12.26), "12.3");
        assert_eq!(number(-0.01), "0");
    }
}
