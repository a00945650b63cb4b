//! Certificate choice by SNI, file reloads and the all-or-nothing `reload`, with certificates
//! generated here.

use std::path::Path;

use stratus_config::edge::{Certificate, Listener, Site};
use stratus_config::{EdgeConfig, HttpUrl, ListenAddr};

use super::*;

/// A self-signed certificate for `names`, written as `dir/NAME.crt` and `dir/NAME.key`.
fn cert(dir: &Path, file: &str, names: &[&str]) -> (Certificate, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
    let c = params.self_signed(&key).unwrap();
    let (crt, k) = (dir.join(format!("{file}.crt")), dir.join(format!("{file}.key")));
    std::fs::write(&crt, c.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (Certificate { cert: crt, key: k }, c.der().to_vec())
}

fn config(sites: Vec<(Vec<&str>, Option<Certificate>)>, default: Option<Certificate>) -> EdgeConfig {
    let origin: HttpUrl = "http://127.0.0.1:9".parse().unwrap();
    let listen: ListenAddr = "127.0.0.1:0".parse().unwrap();
    let mut c = EdgeConfig::simple(listen, origin.clone());
    c.listeners = vec![
        Listener { listen, tls: true, default_certificate: default },
        Listener { listen, tls: false, default_certificate: None },
    ];
    c.sites = sites
        .into_iter()
        .map(|(hosts, tls)| {
            let mut s = Site::catch_all(origin.clone());
            s.hosts = hosts.into_iter().map(str::to_owned).collect();
            s.tls = tls;
            s
        })
        .collect();
    c
}

fn der(store: &CertStore, sni: Option<&str>) -> Option<Vec<u8>> {
    store.resolve(sni, 0).map(|k| k.cert[0].to_vec())
}

#[test]
fn sni_picks_the_site_then_the_catch_all_then_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let (a, a_der) = cert(dir.path(), "a", &["a.test"]);
    let (star, star_der) = cert(dir.path(), "star", &["star.test"]);
    let (dflt, dflt_der) = cert(dir.path(), "default", &["default.test"]);

    let only_sites =
        CertStore::new(&config(vec![(vec!["a.test"], Some(a.clone())), (vec!["b.test"], None)], None))
            .unwrap();
    let with_default =
        CertStore::new(&config(vec![(vec!["a.test"], Some(a.clone()))], Some(dflt.clone()))).unwrap();
    let with_star =
        CertStore::new(&config(vec![(vec!["a.test"], Some(a.clone())), (vec!["*"], Some(star))], Some(dflt)))
            .unwrap();
    let cases = [
        (&only_sites, Some("a.test"), Some(&a_der)),
        (&only_sites, Some("A.TEST"), Some(&a_der)),
        (&only_sites, Some("b.test"), None),
        (&only_sites, None, None),
        (&with_default, Some("c.test"), Some(&dflt_der)),
        (&with_default, None, Some(&dflt_der)),
        (&with_star, Some("a.test"), Some(&a_der)),
        (&with_star, Some("c.test"), Some(&star_der)),
        (&with_star, None, Some(&star_der)),
    ];
    for (i, (store, sni, expected)) in cases.into_iter().enumerate() {
        assert_eq!(der(store, sni).as_ref(), expected, "case {i}: {sni:?}");
    }
    // The plain listener (index 1) has no default certificate of its own.
    assert!(with_default.resolve(Some("c.test"), 1).is_none());
}

#[test]
fn missing_or_mismatched_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = cert(dir.path(), "a", &["a.test"]);
    let (b, _) = cert(dir.path(), "b", &["b.test"]);
    let missing = Certificate { cert: dir.path().join("nope.crt"), key: a.key.clone() };
    let mismatched = Certificate { cert: a.cert.clone(), key: b.key.clone() };
    let garbage = Certificate { cert: dir.path().join("garbage.crt"), key: a.key.clone() };
    std::fs::write(&garbage.cert, "not pem").unwrap();
    for (c, file) in [(missing, "nope.crt"), (mismatched, "b.key"), (garbage, "garbage.crt")] {
        let err = CertStore::new(&config(vec![(vec!["a.test"], Some(c))], None)).unwrap_err().to_string();
        assert!(err.contains(file), "{err}");
    }
}

#[test]
fn changed_files_are_reloaded_and_broken_ones_keep_the_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (a, old) = cert(dir.path(), "a", &["a.test"]);
    let store = CertStore::new(&config(vec![(vec!["a.test"], Some(a.clone()))], None)).unwrap();
    assert_eq!(store.poll(), 0, "nothing changed yet");

    std::fs::write(&a.cert, "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n").unwrap();
    assert_eq!(store.poll(), 0);
    assert_eq!(der(&store, Some("a.test")), Some(old), "a broken file keeps the old certificate");

    let (_, new) = cert(dir.path(), "a", &["a.test", "www.a.test"]);
    assert_eq!(store.poll(), 1);
    assert_eq!(der(&store, Some("a.test")), Some(new));
}

#[test]
fn reload_swaps_everything_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, a_der) = cert(dir.path(), "a", &["a.test"]);
    let (b, b_der) = cert(dir.path(), "b", &["b.test"]);
    let store = CertStore::new(&config(vec![(vec!["a.test"], Some(a.clone()))], None)).unwrap();

    let broken = Certificate { cert: dir.path().join("missing.crt"), key: b.key.clone() };
    let bad = config(vec![(vec!["a.test"], Some(a.clone())), (vec!["b.test"], Some(broken))], None);
    assert!(store.reload(&bad.listeners, &bad.sites).is_err());
    assert_eq!(der(&store, Some("a.test")), Some(a_der.clone()));
    assert_eq!(der(&store, Some("b.test")), None);

    let good = config(vec![(vec!["a.test"], Some(a)), (vec!["b.test"], Some(b))], None);
    store.reload(&good.listeners, &good.sites).unwrap();
    assert_eq!(der(&store, Some("a.test")), Some(a_der));
    assert_eq!(der(&store, Some("b.test")), Some(b_der));
}
