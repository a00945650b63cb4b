//! House rules that the compiler does not check: no two files of a crate import each other,
//! directly or in a longer circle (ARCHITECTURE.md). Shared state and error types live below
//! their users, so every crate reads bottom-up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 6] = [".", "config", "edge", "origin", "control", "loadtest"];

/// The module path of a source file (`edge/src/cache/key.rs` → `cache::key`; `lib.rs`,
/// `main.rs` and `mod.rs` name their folder).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src").with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib" || p == "main") {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::a::b::c` path in `text` outside comments, as segments; `crate::{a,
/// b::c}` groups are expanded one level, which is how this code base writes them.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    // Doc links are not imports.
    let text: String =
        text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let ident = |s: &str| {
        s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect::<String>()
    };
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                out.push(ident(item.trim()).split("::").map(str::to_owned).collect());
            }
        } else {
            out.push(ident(rest).split("::").map(str::to_owned).collect());
        }
    }
    out
}

/// Paths that start at the current module: `super::x`, or `child::x` for a child module
/// (a lowercase first segment that is not `crate`, `self`, `std` or another crate is tried;
/// the caller keeps those that name a file).
fn relative_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let bytes = line.as_bytes();
        for (i, _) in line.match_indices("::") {
            // The start of the identifier chain that ends here.
            let mut start = i;
            while start > 0
                && (bytes[start - 1].is_ascii_alphanumeric()
                    || bytes[start - 1] == b'_'
                    || bytes[start - 1] == b':')
            {
                start -= 1;
            }
            if !line[start..i].is_empty() && !line[start..i].contains("::") {
                let chain: String = line[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let segs: Vec<String> =
                    chain.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
                if segs.first().is_some_and(|f| {
                    f != "crate" && f != "self" && f.starts_with(|c: char| c.is_ascii_lowercase())
                }) {
                    out.push(segs);
                }
            }
        }
    }
    out
}

/// The import graph of one crate's files: module → modules (files) it names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<String, PathBuf> = files.iter().map(|f| (module_of(src, f), f.clone())).collect();
    let mut edges = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("read source");
        let mut uses = BTreeSet::new();
        // Unit tests may call the crate's entry points (its root), but the files they import
        // count like any other import.
        let (code, tests) = text.split_once("#[cfg(test)]\nmod tests").unwrap_or((&text, ""));
        for path in crate_paths(tests) {
            let target =
                (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| modules.contains_key(m));
            if let Some(target) = target.filter(|t| t != module) {
                uses.insert(target);
            }
        }
        // Paths relative to this module (`plan::Plan` in `lib.rs`, `super::x`) name files too.
        let mut paths = crate_paths(code);
        for rel in relative_paths(code) {
            let mut path: Vec<String> =
                if module.is_empty() { Vec::new() } else { module.split("::").map(str::to_owned).collect() };
            for seg in rel {
                if seg == "super" {
                    path.pop();
                } else {
                    path.push(seg);
                }
            }
            paths.push(path);
        }
        for path in paths {
            // The longest prefix of the path that is a file of the crate; none: an item of the
            // crate root (`lib.rs`), re-exports included.
            let target =
                (0..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| modules.contains_key(m));
            if let Some(target) = target.filter(|t| t != module) {
                uses.insert(target);
            }
        }
        edges.insert(module.clone(), uses);
    }
    edges
}

/// A circle in `edges`, if there is one.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut found = stack[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, edges, done, stack) {
                return Some(found);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|n| visit(n, edges, &mut done, &mut Vec::new()))
}

#[test]
fn no_two_files_of_a_crate_import_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut circles = Vec::new();
    for krate in CRATES {
        let mut edges = graph(&root.join(krate).join("src"));
        assert!(edges.len() >= 2, "{krate}: found only {} files", edges.len());
        // Report every circle: take one edge of each found out and look again.
        while let Some(found) = circle(&edges) {
            circles.push(format!("{krate}: {}", found.join(" → ")));
            if let Some(out) = edges.get_mut(&found[0]) {
                out.remove(&found[1]);
            }
        }
    }
    assert!(circles.is_empty(), "import circles:\n{}", circles.join("\n"));
}

/// The checker itself finds circles, longer ones included.
#[test]
fn the_circle_check_finds_circles() {
    let edges = |pairs: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            g.entry((*a).to_owned()).or_default().insert((*b).to_owned());
            g.entry((*b).to_owned()).or_default();
        }
        g
    };
    assert!(circle(&edges(&[("a", "b"), ("b", "a")])).is_some());
    assert!(circle(&edges(&[("a", "b"), ("b", "c"), ("c", "a")])).is_some());
    assert!(circle(&edges(&[("a", "b"), ("b", "c"), ("a", "c")])).is_none());
    assert_eq!(
        crate_paths("use crate::{cache::key::CacheKey, error};\nuse crate::proxy::ctx::Ctx;"),
        [vec!["cache", "key", "CacheKey"], vec!["error"], vec!["proxy", "ctx", "Ctx"]]
    );
}
