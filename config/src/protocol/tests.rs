use proptest::prelude::*;

use super::*;

fn check_line(line: &str, expected: &str) {
    let read = StreamLine::read(line).map(|l| format!("{l:?}")).unwrap_or_else(|e| format!("error: {e}"));
    assert!(read.contains(expected), "{line}\n  read as {read}\n  expected {expected}");
}

#[test]
fn lines_read_as_documented() {
    check_line(r#"{"type":"ping","head":9}"#, "Ping { head: 9 }");
    check_line(r#"{"type":"reset","next":40}"#, "Reset { next: 40 }");
    check_line(
        r#"{"type":"entry","seq":5,"op":{"type":"purge","id":"p-5","files":["/a"],"soft":true}}"#,
        r#"Purge { id: "p-5", purge: Read(PurgeRequest { files: ["/a"]"#,
    );
    // Key order does not matter (logs written before this module sorted their keys).
    check_line(
        r#"{"op":{"files":["/a"],"id":"p-5","purge_everything":false,"soft":false,"type":"purge"},"seq":5,"type":"entry"}"#,
        r#"Purge { id: "p-5", purge: Read("#,
    );
    check_line(
        r#"{"type":"entry","seq":6,"op":{"type":"prewarm","id":"w-6","urls":["http://h/x"]}}"#,
        r#"Prewarm { id: "w-6", urls: ["http://h/x"], objects: [] }"#,
    );
    check_line(
        r#"{"type":"entry","seq":7,"op":{"type":"config","id":"c-7","sites":[{"hosts":["a"],"origins":["http://o:1"]}]}}"#,
        r#"Config { id: "c-7", config: Read(FleetConfig"#,
    );
    // What a newer control plane may write: consumed, not acted on half-read.
    check_line(
        r#"{"type":"entry","seq":8,"op":{"type":"purge","id":"p-8","files":["/b"],"regex":"x"}}"#,
        "Unreadable { value: Object {",
    );
    check_line(
        r#"{"type":"entry","seq":8,"op":{"type":"purge","id":"p-8","regex":"x"}}"#,
        "unknown field `regex`",
    );
    check_line(
        r#"{"type":"entry","seq":9,"op":{"type":"config","id":"c-9","sites":[],"colour":1}}"#,
        "unknown field `colour`",
    );
    check_line(r#"{"type":"entry","seq":10,"op":{"type":"rebalance","id":"r-10","to":3}}"#, "op: Unknown");
    // Broken lines are errors, never panics.
    check_line(r#"{"type":"entry","op":{"type":"purge","id":"p-1"}}"#, "error: missing field `seq`");
    check_line(r#"{"type":"gossip"}"#, "error: unknown variant `gossip`");
    check_line(r#"{"type":"entry","seq":1,"op":{"type":"purge"}}"#, "error: missing field `id`");
    check_line("not json", "error:");
    check_line("", "error:");
}

#[test]
fn lines_are_written_as_documented() {
    let line = |l: StreamLine| l.to_line().expect("serialize");
    assert_eq!(line(StreamLine::Ping { head: 57 }), "{\"type\":\"ping\",\"head\":57}\n");
    assert_eq!(line(StreamLine::Reset { next: 40 }), "{\"type\":\"reset\",\"next\":40}\n");
    let prewarm = Op::prewarm(13, vec!["http://cdn.example/a.png".into()], vec![]);
    assert_eq!(
        line(StreamLine::Entry { seq: 13, op: prewarm }),
        "{\"type\":\"entry\",\"seq\":13,\"op\":{\"type\":\"prewarm\",\"id\":\"w-13\",\
         \"urls\":[\"http://cdn.example/a.png\"],\"objects\":[]}}\n"
    );
    let config: FleetConfig =
        serde_json::from_str(r#"{"sites":[{"hosts":["a"],"origins":["http://o:1"]}]}"#).expect("config");
    let written = serde_json::to_string(&Op::config(14, config)).expect("serialize");
    assert!(
        written.starts_with("{\"type\":\"config\",\"id\":\"c-14\",\"sites\":[{\"hosts\":[\"a\"]"),
        "{written}"
    );
}

#[test]
fn an_unreadable_body_is_written_back_as_it_came() {
    let text = r#"{"type":"purge","id":"p-8","files":["/b"],"regex":"x"}"#;
    let op: Op = serde_json::from_str(text).expect("read");
    let Op::Purge { purge, .. } = &op else { panic!("{op:?}") };
    assert!(purge.as_result().is_err_and(|e| e.contains("regex")), "{purge:?}");
    let again: serde_json::Value = serde_json::to_value(&op).expect("write");
    assert_eq!(again, serde_json::from_str::<serde_json::Value>(text).expect("json"));
}

#[test]
fn ids_name_their_sequence_number() {
    for (id, parsed) in
        [("p-12", (OpKind::Purge, 12)), ("w-1", (OpKind::Prewarm, 1)), ("c-7", (OpKind::Config, 7))]
    {
        assert_eq!(OpKind::parse_id(id), Some(parsed), "{id}");
        assert_eq!(parsed.0.id(parsed.1), id);
    }
    for id in ["x-1", "p-", "p-+1", "p--1", "p12", "p-1a", "p-99999999999999999999999"] {
        assert_eq!(OpKind::parse_id(id), None, "{id}");
    }
    let op = Op::purge(3, PurgeRequest::default());
    assert_eq!((op.id(), op.kind()), (Some("p-3"), Some(OpKind::Purge)));
    assert_eq!((Op::Unknown.id(), Op::Unknown.kind()), (None, None));
}

#[test]
fn edge_bodies_keep_their_wire_form() {
    let beat: Heartbeat = serde_json::from_str(
        r#"{"applied":12,"requests":1000,"hits":930,"cache_bytes":1048576,"cache_entries":42,"config":7,"failed":[]}"#,
    )
    .expect("heartbeat");
    assert_eq!((beat.applied, beat.config, beat.stats.hits, beat.stats.cache_entries), (12, 7, 930, 42));
    assert_eq!(serde_json::from_str::<Heartbeat>("{}").expect("empty heartbeat"), Heartbeat::default());
    let ack: Ack = serde_json::from_str(r#"{"seq":12,"failed":[{"seq":11,"error":"no"}]}"#).expect("ack");
    assert_eq!(ack.failed, vec![Failure { seq: 11, error: "no".into() }]);
    assert_eq!(serde_json::from_str::<Ack>(r#"{"seq":3}"#).expect("bare ack").failed, vec![]);
    let reg = Register {
        id: "a".into(),
        version: "0.1.0".into(),
        url: "http://e".into(),
        admin: None,
        pop: None,
        peer_url: None,
    };
    assert_eq!(
        serde_json::to_string(&reg).expect("register"),
        r#"{"id":"a","version":"0.1.0","url":"http://e","admin":null}"#
    );
    let answer: Registered = serde_json::from_str(
        r#"{"head":9,"config":{"id":"c-7","seq":7,"sites":[{"hosts":["a"],"origins":["http://o:1"]}]}}"#,
    )
    .expect("register answer");
    let config = answer.config.expect("config");
    assert_eq!((config.seq, config.id.as_str()), (7, "c-7"));
    assert!(config.config.as_result().is_ok());
    let answer: Registered =
        serde_json::from_str(r#"{"head":9,"config":{"id":"c-7","seq":7,"sites":[],"colour":1}}"#)
            .expect("lenient");
    assert!(answer.config.expect("config").config.as_result().is_err_and(|e| e.contains("colour")));
    assert_eq!(
        serde_json::to_string(&Registered { head: 3, config: None }).expect("answer"),
        r#"{"head":3}"#
    );
    let progress = EdgeProgress { id: "a".into(), state: EdgeState::Pending, applied_ms: None, error: None };
    assert_eq!(serde_json::to_string(&progress).expect("progress"), r#"{"id":"a","state":"pending"}"#);
}

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, control characters and quotes included: escaping is the writer's job.
    proptest::collection::vec(any::<char>(), 0..12).prop_map(|c| c.into_iter().collect())
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(text(), 0..4)
}

fn objects() -> impl Strategy<Value = Vec<ObjectRef>> {
    proptest::collection::vec((text(), text()).prop_map(|(bucket, key)| ObjectRef { bucket, key }), 0..3)
}

fn purge() -> impl Strategy<Value = PurgeRequest> {
    (texts(), texts(), texts(), texts(), objects(), any::<bool>(), any::<bool>()).prop_map(
        |(files, prefixes, tags, hosts, objects, purge_everything, soft)| PurgeRequest {
            files,
            prefixes,
            tags,
            hosts,
            objects,
            purge_everything,
            soft,
        },
    )
}

fn config() -> impl Strategy<Value = FleetConfig> {
    // Sites have many fields with their own parsers (tested in `edge`); the protocol's concern
    // is that hosts and origins of any spelling survive the trip.
    proptest::collection::vec((texts(), texts()), 0..3).prop_map(|sites| {
        let sites: Vec<serde_json::Value> = sites
            .into_iter()
            .map(|(hosts, origins)| {
                let origins: Vec<String> =
                    origins.iter().map(|o| format!("http://o{}:1/", o.len())).collect();
                serde_json::json!({ "hosts": hosts, "origins": origins })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "sites": sites })).expect("generated sites are valid")
    })
}

fn line() -> impl Strategy<Value = StreamLine> {
    let op = prop_oneof![
        (any::<u64>(), purge()).prop_map(|(seq, p)| Op::purge(seq, p)),
        (any::<u64>(), texts(), objects()).prop_map(|(seq, urls, objects)| Op::prewarm(seq, urls, objects)),
        (any::<u64>(), config()).prop_map(|(seq, c)| Op::config(seq, c)),
    ];
    prop_oneof![
        (any::<u64>(), op).prop_map(|(seq, op)| StreamLine::Entry { seq, op }),
        any::<u64>().prop_map(|next| StreamLine::Reset { next }),
        any::<u64>().prop_map(|head| StreamLine::Ping { head }),
    ]
}

#[test]
fn heartbeats_with_and_without_origin_health() {
    // An edge from before origin health: no `origins`, still a heartbeat.
    let old: Heartbeat = serde_json::from_str(r#"{"applied": 3, "requests": 10, "hits": 7}"#).expect("old");
    assert_eq!((old.applied, old.stats.requests, old.stats.origins.len()), (3, 10, 0));
    let new: Heartbeat = serde_json::from_str(
        r#"{"applied": 3, "origins": [{"site": "shop.example", "origin": "http://o:9000", "up": false}]}"#,
    )
    .expect("new");
    let row = OriginHealth { site: "shop.example".into(), origin: "http://o:9000".into(), up: false };
    assert_eq!(new.stats.origins, [row]);
}

proptest! {
    #[test]
    fn every_written_line_reads_back_identically(original in line()) {
        let written = original.to_line().expect("serialize");
        prop_assert!(written.ends_with('\n'));
        prop_assert_eq!(written.matches('\n').count(), 1, "one line: {}", written);
        prop_assert!(written.len() <= MAX_LINE);
        let read = StreamLine::read(written.trim_end_matches('\n')).expect("read back");
        prop_assert_eq!(format!("{read:?}"), format!("{original:?}"));
        prop_assert_eq!(read.to_line().expect("serialize again"), written);
    }

    #[test]
    fn arbitrary_lines_never_panic_the_reader(line in "\\PC*") {
        let _ = StreamLine::read(&line);
    }

    #[test]
    fn mangled_lines_never_panic_the_reader(original in line(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        // Mangle a real line (one byte replaced) so the reader meets near-valid JSON, not only noise.
        let mut bytes = original.to_line().expect("serialize").into_bytes();
        let at = cut.index(bytes.len());
        bytes[at] = byte;
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = StreamLine::read(text.trim_end_matches('\n'));
        }
    }
}
