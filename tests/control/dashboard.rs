//! The dashboard (issue #20) in a real browser: headless Chromium loads the control plane's
//! page while an edge serves traffic, and the page's SVG charts have lines with data points
//! and labels with numbers; purges are listed with each edge's latency, and the origin health
//! table shows the edge's origin up. Chromium is required
//! (`.ci/run` installs Debian's `chromium`): without it this test fails, it does not skip.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::control::{Api, start_control, start_edge};
use crate::support::origin::{Origin, Reply};
use crate::support::{self, until};

/// The page's DOM after Chromium loaded it and ran its scripts.
fn dump_dom(url: &str) -> String {
    let profile = support::tempdir();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--timeout=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .output()
        .unwrap_or_else(|e| panic!("chromium is required for this test (apt-get install chromium): {e}"));
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_draws_charts_with_data_in_a_browser() {
    let origin = Origin::start().await;
    origin.fallback(|_, _| Reply::ok("0123456789", &[("cache-control", "max-age=300")]));
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    let edge = start_edge(&origin.url, &api.base, "edge-dash");
    api.until_following(1).await;
    let base = edge.url("edge http");
    let http = reqwest::Client::new();
    // Traffic until the charts have at least two points on the edge's request-rate line.
    let mut n = 0u32;
    until("request-rate points on the dashboard", Duration::from_secs(90), || {
        n += 1;
        let (http, base, page) = (http.clone(), base.clone(), format!("{}/", api.base));
        async move {
            for i in 0..10 {
                http.get(format!("{base}/dash/{}", (n * 10 + i) % 7)).send().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let html = http.get(page).send().await.unwrap().text().await.unwrap();
            let chart = html.split("data-measure=request_rate").nth(1)?.split("</figure>").next()?.to_owned();
            let line = chart.split("data-series=\"edge-dash\" d=\"").nth(1)?.split('"').next()?.to_owned();
            (line.matches('L').count() >= 1).then_some(())
        }
    })
    .await;
    let id = api.purge(json!({"tags": ["dash"]})).await;
    until("the purge applied", Duration::from_secs(10), || async {
        (api.edge_state(&id, "edge-dash").await.as_deref() == Some("applied")).then_some(())
    })
    .await;

    let url = format!("{}/", api.base);
    let dom = tokio::task::spawn_blocking(move || dump_dom(&url)).await.unwrap();
    for measure in ["hit_ratio", "request_rate", "bandwidth", "error_rate"] {
        let chart = dom
            .split(&format!("data-measure=\"{measure}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("no {measure} chart in\n{dom}"))
            .split("</figure>")
            .next()
            .unwrap();
        // A fleet line and the edge's line, each with real coordinates.
        for series in ["fleet", "edge-dash"] {
            let d = chart
                .split(&format!("data-series=\"{series}\" d=\""))
                .nth(1)
                .unwrap_or_else(|| panic!("no {series} line in the {measure} chart:\n{chart}"))
                .split('"')
                .next()
                .unwrap();
            assert!(d.starts_with('M') && d.contains('L'), "{measure}/{series}: {d}");
            let numbers: Vec<f64> = d.split(['M', 'L', ',', ' ']).filter_map(|t| t.parse().ok()).collect();
            assert!(numbers.len() >= 4, "{measure}/{series}: {d}");
        }
        // Labels carry numbers: the scale's top and each line's latest value.
        let value = chart.split("<span class=\"value\">").nth(1).unwrap().split('<').next().unwrap();
        assert!(value.chars().next().unwrap().is_ascii_digit(), "{measure}: {value}");
    }
    // Requests flowed and most were hits (7 paths, many requests): the hit-ratio label is a
    // percentage above zero.
    let hit = dom.split("data-measure=\"hit_ratio\"").nth(1).unwrap();
    let label = hit.split("<span class=\"value\">").nth(1).unwrap().split('%').next().unwrap();
    assert!(label.parse::<f64>().unwrap() > 0.0, "{label}");
    // The purge, with the edge's latency, among the operator's operations; the form is there.
    let ops = dom.split("class=\"operations\"").nth(1).unwrap().split("</table>").next().unwrap();
    assert!(ops.contains("edge-dash ") && ops.contains(" ms"), "{ops}");
    assert!(dom.contains("id=\"purge-token\""), "no purge form");
    // Origin health from the edge's heartbeats: its one origin is up. Without the token the
    // page names it by its place in the site's list...
    let health = dom
        .split("class=\"origin-health\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no origin health table in\n{dom}"))
        .split("</table>")
        .next()
        .unwrap();
    let row = "<tr><td>edge-dash</td><td>*</td><td>origin 1</td><td class=\"up\">up</td></tr>";
    assert!(health.contains(row), "{health}");
    // ... and with it, by its URL.
    let page = api.http.get(format!("{}/", api.base)).bearer_auth(&api.token).send().await.unwrap();
    let html = page.text().await.unwrap();
    let health = html.split("class=origin-health").nth(1).unwrap().split("</table>").next().unwrap();
    let row = format!("<tr><td>edge-dash</td><td>*</td><td>{}</td><td class=up>up</td></tr>", origin.url);
    assert!(health.contains(&row), "{health}");
}
