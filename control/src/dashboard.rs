//! The dashboard at `/`: one server-rendered HTML page with the fleet and the recent log
//! entries. No JavaScript; it refreshes itself every 5 seconds. It shows no secrets, so it is
//! served without the token (the API behind it is not).

use std::fmt::Write;

use axum::extract::State as AxState;
use axum::response::Html;
use serde_json::Value;

use crate::api::Shared;

/// Entries listed under "Recent".
const RECENT: u64 = 20;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A one-line summary of an operation's targets, e.g. `files: http://a/x, /y · soft`.
fn summary(op: &Value) -> String {
    let mut parts = Vec::new();
    for field in ["files", "urls", "prefixes", "tags", "hosts"] {
        if let Some(list) = op.get(field).and_then(Value::as_array).filter(|l| !l.is_empty()) {
            let shown: Vec<&str> = list.iter().take(3).filter_map(Value::as_str).collect();
            let more = if list.len() > 3 { format!(" (+{})", list.len() - 3) } else { String::new() };
            parts.push(format!("{field}: {}{more}", shown.join(", ")));
        }
    }
    if let Some(list) = op.get("objects").and_then(Value::as_array).filter(|l| !l.is_empty()) {
        let shown: Vec<String> = list
            .iter()
            .take(3)
            .map(|o| format!("{}/{}", o["bucket"].as_str().unwrap_or(""), o["key"].as_str().unwrap_or("")))
            .collect();
        parts.push(format!("objects: {}", shown.join(", ")));
    }
    if let Some(sites) = op.get("sites").and_then(Value::as_array) {
        // A site configuration: the hosts of its sites.
        let hosts: Vec<&str> = sites
            .iter()
            .flat_map(|s| s["hosts"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        let more = if hosts.len() > 3 { format!(" (+{})", hosts.len() - 3) } else { String::new() };
        parts.push(format!("sites: {}{more}", hosts.iter().take(3).copied().collect::<Vec<_>>().join(", ")));
    }
    if op.get("purge_everything").and_then(Value::as_bool) == Some(true) {
        parts.push("everything".into());
    }
    if op.get("soft").and_then(Value::as_bool) == Some(true) {
        parts.push("soft".into());
    }
    parts.join(" · ")
}

/// `GET /`.
pub(crate) async fn page(AxState(state): AxState<Shared>) -> Html<String> {
    let head = state.log.head();
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=5>\
         <title>Stratus control</title><style>body{font:14px system-ui,sans-serif;margin:2em}\
         table{border-collapse:collapse}td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}\
         .down{color:#b00}.up{color:#070}</style></head><body><h1>Stratus control</h1>",
    );
    let _ = write!(html, "<p>Log head {head}, compacted up to {}.</p>", state.log.floor());
    html.push_str(
        "<h2>Edges</h2><table><tr><th>id</th><th>url</th><th>version</th><th>state</th><th>last seen</th>\
         <th>applied</th><th>lag</th><th>requests</th><th>hit ratio</th><th>cache</th></tr>",
    );
    for e in state.registry.edges(head) {
        let (class, word) = if e.live { ("up", "live") } else { ("down", "down") };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class={class}>{word}</td><td>{} ms ago</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{:.1}%</td><td>{} B / {} entries</td></tr>",
            escape(&e.id),
            escape(&e.url),
            escape(&e.version),
            e.last_seen_ms,
            e.applied,
            e.lag,
            e.requests,
            e.hit_ratio * 100.0,
            e.cache_bytes,
            e.cache_entries,
        );
    }
    html.push_str("</table><h2>Recent</h2><table><tr><th>seq</th><th>id</th><th>type</th><th>targets</th><th>edges</th></tr>");
    let oldest = head.saturating_sub(RECENT).max(state.log.floor()) + 1;
    for seq in (oldest..=head).rev() {
        let Some(op) = state.log.get(seq).and_then(|t| serde_json::from_str::<Value>(&t).ok()) else {
            continue;
        };
        let progress = state.registry.progress(seq);
        let applied = progress.iter().filter(|p| p.state == "applied").count();
        let _ = write!(
            html,
            "<tr><td>{seq}</td><td>{}</td><td>{}</td><td>{}</td><td>{applied}/{} applied</td></tr>",
            escape(op["id"].as_str().unwrap_or("")),
            escape(op["type"].as_str().unwrap_or("")),
            escape(&summary(&op)),
            progress.len(),
        );
    }
    html.push_str("</table></body></html>");
    Html(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_and_escaping() {
        let op: Value = serde_json::json!({"type": "purge", "files": ["/a", "/b", "/c", "/d"], "soft": true});
        assert_eq!(summary(&op), "files: /a, /b, /c (+1) · soft");
        let config: Value = serde_json::json!({"type": "config", "sites": [
            {"hosts": ["a", "b"], "origins": []}, {"hosts": ["c", "d"], "origins": []}]});
        assert_eq!(summary(&config), "sites: a, b, c (+1)");
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
