//! The dashboard at `/`: one server-rendered HTML page with charts of the last hour (hit
//! ratio, request rate, bandwidth, error rate; per edge and for the fleet, from `history`),
//! the fleet, each edge's origins up or down (from its heartbeats), operator purges with each
//! edge's latency, origin object events apart, and a purge
//! form. It refreshes itself every 5 seconds; the only script is the form's, which sends the
//! token typed into the page as a bearer token (nothing is stored).
//!
//! It is served without the token, so what it shows depends on the request: one that would
//! pass the API's token check (no token configured, or `Authorization: Bearer TOKEN`) sees every
//! target of every entry and the edges' and origins' URLs; anyone else sees the fleet's health (edge ids,
//! liveness, lag, hit ratio, cache size, each site's origins by place and state) and, per entry, its id, type, how many targets of each
//! kind it has and how many edges applied it — never a URL, path, tag, host, bucket or object
//! key, since those name private content.

use std::fmt::Write;

use axum::extract::State as AxState;
use axum::http::HeaderMap;
use axum::response::Html;
use stratus_config::protocol::{EdgeState, Op, OpKind, Readable};

use crate::state::Shared;

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

/// What the page may show of an entry's targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Detail {
    /// Every target (the first three of each kind).
    Targets,
    /// How many targets of each kind, nothing else.
    Counts,
}

/// A one-line summary of an operation's targets, e.g. `files: http://a/x, /y · soft`, or with
/// [`Detail::Counts`] `files: 2 · soft`.
fn summary(op: &Op, detail: Detail) -> String {
    let mut parts = Vec::new();
    let mut list = |name: &str, values: Vec<String>| {
        if values.is_empty() {
            return;
        }
        match detail {
            Detail::Counts => parts.push(format!("{name}: {}", values.len())),
            Detail::Targets => {
                let more = if values.len() > 3 { format!(" (+{})", values.len() - 3) } else { String::new() };
                parts.push(format!("{name}: {}{more}", values[..values.len().min(3)].join(", ")));
            }
        }
    };
    let objects = |objects: &[stratus_config::purge::ObjectRef]| {
        objects.iter().map(|o| format!("{}/{}", o.bucket, o.key)).collect::<Vec<_>>()
    };
    let mut flags = Vec::new();
    match op {
        Op::Purge { purge: Readable::Read(p), .. } => {
            list("files", p.files.clone());
            list("prefixes", p.prefixes.clone());
            list("tags", p.tags.clone());
            list("hosts", p.hosts.clone());
            list("objects", objects(&p.objects));
            if p.purge_everything {
                flags.push("everything");
            }
            if p.soft {
                flags.push("soft");
            }
        }
        Op::Prewarm { urls, objects: o, .. } => {
            list("urls", urls.clone());
            list("objects", objects(o));
        }
        Op::Config { config: Readable::Read(c), .. } => {
            list("sites", c.sites.iter().flat_map(|s| s.hosts.iter().cloned()).collect());
        }
        Op::Purge { .. } | Op::Config { .. } | Op::Unknown => flags.push("unreadable"),
    }
    parts.extend(flags.into_iter().map(str::to_owned));
    parts.join(" · ")
}

/// `GET /`.
pub(crate) async fn page(AxState(state): AxState<Shared>, headers: HeaderMap) -> Html<String> {
    let authorized = state.authorized(&headers);
    let detail = if authorized { Detail::Targets } else { Detail::Counts };
    let head = state.log.head();
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=5>\
         <title>Stratus control</title><style>body{font:14px system-ui,sans-serif;margin:2em}\
         table{border-collapse:collapse}td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}\
         .down{color:#b00}.up{color:#070}figure.chart{display:inline-block;margin:0 1em 1em 0}\
         svg.chart{border:1px solid #ddd;background:#fafafa}ul.legend{list-style:none;padding:0;margin:.2em 0}\
         ul.legend li{display:inline;margin-right:1em}</style></head><body><h1>Stratus control</h1>",
    );
    html.push_str("<h2>Last hour</h2><div class=charts>");
    let series = state.history.series();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for m in &crate::charts::MEASURES {
        crate::charts::chart(&mut html, m, &series, now, escape);
    }
    html.push_str("</div>");
    if let Some(failure) = state.log.failure() {
        let _ = write!(
            html,
            "<p class=down><strong>The log cannot be written</strong> since {}: {}. \
             Purges are refused until a write succeeds.</p>",
            escape(&failure.since),
            escape(&failure.error),
        );
    }
    let _ = write!(html, "<p>Log head {head}, compacted up to {}.</p>", state.log.floor());
    if !authorized {
        html.push_str("<p>Targets and edge addresses are shown to requests that carry the API token.</p>");
    }
    html.push_str(
        "<h2>Edges</h2><table><tr><th>id</th><th>url</th><th>version</th><th>state</th><th>last seen</th>\
         <th>applied</th><th>lag</th><th>requests</th><th>hit ratio</th><th>cache</th></tr>",
    );
    let edges = state.registry.edges(head);
    for e in &edges {
        let (class, word) = if e.live { ("up", "live") } else { ("down", "down") };
        let url = if authorized { escape(&e.url) } else { String::new() };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{url}</td><td>{}</td><td class={class}>{word}</td><td>{} ms ago</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{:.1}%</td><td>{} B / {} entries</td></tr>",
            escape(&e.id),
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
    html.push_str("</table>");
    origin_health(&mut html, &edges, authorized);
    let oldest = head.saturating_sub(RECENT).max(state.log.floor()) + 1;
    let entries: Vec<(u64, Op)> = (oldest..=head)
        .rev()
        .filter_map(|seq| Some((seq, state.log.get(seq).and_then(|t| serde_json::from_str::<Op>(&t).ok())?)))
        .collect();
    // Origin object events are purges of objects; what an operator sent names anything else.
    let from_origin =
        |op: &Op| matches!(op, Op::Purge { purge: Readable::Read(p), .. } if !p.objects.is_empty());
    html.push_str(
        "<h2>Purges and other operations</h2><table class=operations><tr><th>seq</th><th>id</th><th>type</th>\
         <th>time</th><th>targets</th><th>edges</th><th>latency per edge</th></tr>",
    );
    for (seq, op) in entries.iter().filter(|(_, op)| !from_origin(op)) {
        row(&mut html, &state, *seq, op, detail);
    }
    html.push_str(
        "</table><h2>Origin object events</h2><table class=origin-events><tr><th>seq</th><th>id</th><th>type</th>\
         <th>time</th><th>targets</th><th>edges</th><th>latency per edge</th></tr>",
    );
    for (seq, op) in entries.iter().filter(|(_, op)| from_origin(op)) {
        row(&mut html, &state, *seq, op, detail);
    }
    html.push_str(PURGE_FORM);
    html.push_str("</table></body></html>");
    Html(html)
}

/// The origin health table: every origin of every site as each edge's health checks saw it
/// at its last heartbeat. Origin URLs can name private hosts, so without the token an origin
/// is shown by its place in the site's list.
fn origin_health(html: &mut String, edges: &[crate::registry::EdgeView], authorized: bool) {
    html.push_str(
        "<h2>Origin health</h2><table class=origin-health><tr><th>edge</th><th>site</th><th>origin</th>\
         <th>state</th></tr>",
    );
    for e in edges {
        let mut place = 0;
        let mut site: Option<&str> = None;
        for o in &e.origins {
            place = if site == Some(o.site.as_str()) { place + 1 } else { 1 };
            site = Some(&o.site);
            let origin = if authorized { escape(&o.origin) } else { format!("origin {place}") };
            let (class, word) = if o.up { ("up", "up") } else { ("down", "down") };
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{origin}</td><td class={class}>{word}</td></tr>",
                escape(&e.id),
                escape(&o.site),
            );
        }
    }
    html.push_str("</table>");
}

/// One log entry: when it was written, its targets, and each edge's state and latency.
fn row(html: &mut String, state: &crate::state::State, seq: u64, op: &Op, detail: Detail) {
    let progress = state.registry.progress(seq);
    let applied = progress.iter().filter(|p| p.state == EdgeState::Applied).count();
    let kind = op.kind().map_or("unknown", OpKind::name);
    let latency: Vec<String> = progress
        .iter()
        .map(|p| match p.applied_ms {
            Some(ms) => format!("{} {ms:.1} ms", escape(&p.id)),
            None => format!("{} {:?}", escape(&p.id), p.state).to_lowercase(),
        })
        .collect();
    let _ = write!(
        html,
        "<tr><td>{seq}</td><td>{}</td><td>{kind}</td><td>{}</td><td>{}</td><td>{applied}/{} applied</td><td>{}</td></tr>",
        escape(op.id().unwrap_or("")),
        escape(&state.registry.created_at(seq).unwrap_or_default()),
        escape(&summary(op, detail)),
        progress.len(),
        latency.join(", "),
    );
}

/// The purge form: the token is typed into the page and sent as a bearer token with the
/// JSON body, as `curl` would (the API refuses form posts, so a cross-site form cannot purge).
const PURGE_FORM: &str = "<h2>Purge</h2><form id=purge>\
<label>Token <input type=password id=purge-token autocomplete=off></label> \
<label>URLs, tags or prefixes (one per line) <textarea id=purge-targets rows=3 cols=50></textarea></label> \
<select id=purge-kind><option value=files>URLs</option><option value=tags>tags</option>\
<option value=prefixes>prefixes</option><option value=hosts>hosts</option></select> \
<label><input type=checkbox id=purge-soft> soft</label> <button type=submit>Purge</button> <output id=purge-result></output></form>\
<script>document.getElementById('purge').addEventListener('submit',async e=>{e.preventDefault();\
const v=id=>document.getElementById(id);const body={};\
body[v('purge-kind').value]=v('purge-targets').value.split('\\n').map(s=>s.trim()).filter(s=>s);body.soft=v('purge-soft').checked;\
const r=await fetch('/v1/purge',{method:'POST',headers:{'content-type':'application/json','authorization':'Bearer '+v('purge-token').value},body:JSON.stringify(body)});\
const j=await r.json().catch(()=>({}));v('purge-result').textContent=r.ok?('purge '+j.id+' accepted'):('refused: '+(j.error||r.status));});</script>";

#[cfg(test)]
mod tests {
    use super::*;

    fn op(json: &str) -> Op {
        serde_json::from_str(json).expect("op")
    }

    #[test]
    fn summaries_and_escaping() {
        let purge = op(r#"{"type": "purge", "id": "p-1", "files": ["/a", "/b", "/c", "/d"], "soft": true}"#);
        assert_eq!(summary(&purge, Detail::Targets), "files: /a, /b, /c (+1) · soft");
        assert_eq!(summary(&purge, Detail::Counts), "files: 4 · soft");
        let config = op(r#"{"type": "config", "id": "c-2", "sites": [
            {"hosts": ["a", "b"], "origins": ["http://o:1"]}, {"hosts": ["c", "d"], "origins": ["http://o:1"]}]}"#);
        assert_eq!(summary(&config, Detail::Targets), "sites: a, b, c (+1)");
        assert_eq!(summary(&config, Detail::Counts), "sites: 4");
        let private =
            op(r#"{"type": "prewarm", "id": "w-3", "objects": [{"bucket": "hr", "key": "pay/2026.pdf"}]}"#);
        assert_eq!(summary(&private, Detail::Targets), "objects: hr/pay/2026.pdf");
        assert_eq!(summary(&private, Detail::Counts), "objects: 1");
        assert_eq!(
            summary(&op(r#"{"type": "purge", "id": "p-4", "regex": "."}"#), Detail::Targets),
            "unreadable"
        );
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
