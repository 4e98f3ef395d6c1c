//! The HTML report: well-formed XHTML with one chart per metric and
//! strategy, byte-identical across runs, and a screenshot in headless
//! Chromium that shows more than a blank page.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use mailsim::report::{Report, render_html};
use mailsim::runner::{RunOptions, run};
use mailsim::scenario::Scenario;

const XHTML: &str = "http://www.w3.org/1999/xhtml";
const SVG: &str = "http://www.w3.org/2000/svg";
const CHARTS: [&str; 5] = ["latency", "backlog", "throttled", "delay", "nodes"];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The small scenario of these tests, named by a relative path so that
/// the report contains no machine path.
fn small_report() -> Report {
    let path = manifest_dir().join("tests/html/small.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let scenario = Scenario::parse("tests/html/small.toml", &text, path.parent().unwrap()).unwrap();
    run(&scenario, &RunOptions::default()).unwrap().0
}

/// Parses the page as XML; the page's `<!DOCTYPE html>` is a DTD to the parser.
fn parse(html: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(html, options).unwrap()
}

#[test]
fn html_report_is_well_formed_xhtml() {
    let html = render_html(&small_report());
    let document = parse(&html);
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "html");
    assert_eq!(root.tag_name().namespace(), Some(XHTML));
    assert!(html.starts_with("<!DOCTYPE html>\n"));
}

#[test]
fn one_chart_per_metric_and_strategy() {
    let report = small_report();
    let html = render_html(&report);
    let document = parse(&html);
    let mut charts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for svg in document
        .descendants()
        .filter(|node| node.has_tag_name((SVG, "svg")))
    {
        let chart = svg.attribute("data-chart").unwrap().to_owned();
        let strategy = svg.attribute("data-strategy").unwrap().to_owned();
        *charts.entry((chart, strategy)).or_default() += 1;
    }
    let strategies: Vec<&str> = report
        .strategies
        .iter()
        .map(|strategy| strategy.strategy.as_str())
        .collect();
    assert_eq!(strategies, ["forward", "individual"]);
    for chart in CHARTS {
        for strategy in &strategies {
            let key = (chart.to_owned(), (*strategy).to_owned());
            assert_eq!(charts.get(&key), Some(&1), "{chart} chart of {strategy}");
        }
    }
    assert_eq!(charts.len(), CHARTS.len() * strategies.len());
}

#[test]
fn every_chart_has_a_title_and_description() {
    let html = render_html(&small_report());
    let document = parse(&html);
    for svg in document
        .descendants()
        .filter(|node| node.has_tag_name((SVG, "svg")))
    {
        let chart = svg.attribute("data-chart").unwrap();
        let children: Vec<_> = svg.children().filter(|node| node.is_element()).collect();
        assert!(children[0].has_tag_name((SVG, "title")), "{chart}");
        assert!(children[1].has_tag_name((SVG, "desc")), "{chart}");
        let title = children[0].text().unwrap_or_default();
        let desc = children[1].text().unwrap_or_default();
        assert!(title.len() > 20, "{chart}: title {title:?}");
        assert!(desc.len() > 20, "{chart}: desc {desc:?}");
        let labelled_by = svg.attribute("aria-labelledby").unwrap();
        let ids: Vec<&str> = labelled_by.split(' ').collect();
        assert_eq!(
            ids,
            [
                children[0].attribute("id").unwrap(),
                children[1].attribute("id").unwrap()
            ]
        );
    }
}

#[test]
fn element_ids_are_unique() {
    let html = render_html(&small_report());
    let document = parse(&html);
    let mut seen = HashSet::new();
    for node in document.descendants() {
        if let Some(id) = node.attribute("id") {
            assert!(seen.insert(id.to_owned()), "duplicate id {id}");
        }
    }
}

#[test]
fn html_report_loads_nothing_from_elsewhere() {
    let html = render_html(&small_report());
    let document = parse(&html);
    let tags: BTreeSet<&str> = document
        .descendants()
        .filter(|node| node.is_element())
        .map(|node| node.tag_name().name())
        .collect();
    for forbidden in [
        "script", "link", "img", "iframe", "object", "embed", "image", "use",
    ] {
        assert!(!tags.contains(forbidden), "<{forbidden}> in the report");
    }
    for node in document.descendants().filter(|node| node.is_element()) {
        for attribute in node.attributes() {
            let name = attribute.name();
            assert!(
                name != "src" && name != "href",
                "{name} on <{}>",
                node.tag_name().name()
            );
            assert!(!attribute.value().contains("url("), "url() in {name}");
        }
    }
    assert!(!html.contains("@import"));
    assert!(!html.contains("url("));
}

#[test]
fn summary_tables_list_every_expectation() {
    let report = small_report();
    let html = render_html(&report);
    let document = parse(&html);
    let tables: Vec<_> = document
        .descendants()
        .filter(|node| node.attribute("data-table") == Some("expectations"))
        .collect();
    assert_eq!(tables.len(), 2);
    let rows: Vec<_> = tables
        .iter()
        .flat_map(|table| table.descendants())
        .filter(|node| node.attribute("data-passed").is_some())
        .collect();
    assert_eq!(rows.len(), report.expectations.len());
    let failed = rows
        .iter()
        .filter(|row| row.attribute("data-passed") == Some("false"))
        .count();
    assert_eq!(failed, 1);
    let failing_row: String = rows
        .iter()
        .find(|row| row.attribute("data-passed") == Some("false"))
        .unwrap()
        .descendants()
        .filter(|node| node.is_text())
        .filter_map(|node| node.text())
        .collect::<Vec<_>>()
        .join("|");
    let failing = report
        .expectations
        .iter()
        .find(|result| !result.passed)
        .unwrap();
    assert_eq!(
        failing_row,
        format!("FAIL|latency.p99|max 5m00s|{}", failing.measured_text)
    );
    let summaries = document
        .descendants()
        .filter(|node| node.attribute("data-table") == Some("summary"))
        .count();
    assert_eq!(summaries, 2);
}

#[test]
fn html_report_snapshot() {
    insta::assert_snapshot!("small_report_html", render_html(&small_report()));
}

#[test]
fn html_report_is_deterministic() {
    assert_eq!(render_html(&small_report()), render_html(&small_report()));
}

#[test]
fn run_writes_html_report_into_out_dir() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .current_dir(manifest_dir())
        .args(["run", "tests/html/small.toml", "--format", "html", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    // One expectation of the scenario fails.
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("scenario small-report"), "{stdout}");
    let written = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert_eq!(written, render_html(&small_report()));
    assert!(out.path().join("report.txt").exists());
    assert!(out.path().join("report.json").exists());
}

#[test]
fn html_format_needs_out_dir() {
    let output = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .current_dir(manifest_dir())
        .args(["run", "tests/html/small.toml", "--format", "html"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--out"), "{stderr}");
}

/// Decodes a PNG into 8-bit RGB(A) pixels; returns (width, height, samples
/// per pixel, pixels).
fn decode_png(path: &Path) -> (u32, u32, usize, Vec<u8>) {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut decoder = png::Decoder::new(file);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    pixels.truncate(info.buffer_size());
    (info.width, info.height, info.color_type.samples(), pixels)
}

#[test]
fn screenshot_of_fault_isolation_is_not_blank() {
    let dir = tempfile::tempdir().unwrap();
    let png_path: PathBuf = dir.path().join("fault-isolation.png");
    let output = Command::new(manifest_dir().join("scripts/screenshot-report"))
        .current_dir(manifest_dir())
        .env("MAILSIM", env!("CARGO_BIN_EXE_mailsim"))
        .arg("scenarios/fault-isolation.toml")
        .arg(&png_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "screenshot-report failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let (width, height, samples, pixels) = decode_png(&png_path);
    assert_eq!(width, 1500);
    assert_eq!(height, 3700);
    let mut colours = HashSet::new();
    let mut non_white = 0usize;
    for pixel in pixels.chunks_exact(samples) {
        let rgb = (pixel[0], pixel[1], pixel[2]);
        colours.insert(rgb);
        if rgb != (255, 255, 255) {
            non_white += 1;
        }
    }
    // A blank or failed page has one or two colours; the report's text,
    // lines and heatmap give hundreds, with antialiasing.
    assert!(
        colours.len() > 200,
        "only {} distinct colours",
        colours.len()
    );
    let share = non_white as f64 / (width as f64 * height as f64);
    assert!(
        share > 0.05,
        "only {:.1}% of pixels are not white",
        share * 100.0
    );
}
