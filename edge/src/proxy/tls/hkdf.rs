//! The TLS 1.3 key schedule's HKDF with each HMAC key prepared once.
//!
//! rustls' aws-lc-rs suites run HKDF through aws-lc's one-shot `HKDF` and `HKDF_expand`, which
//! set up the HMAC key (two hash blocks) again for every derived secret, and redo the extract
//! step for every expansion from an extracted secret. A resumed handshake derives about 25
//! secrets, so that was most of its hashing: with SHA-384, 39 % of all its instructions
//! (`docs/performance.md`, TLS). rustls' [`HkdfUsingHmac`] is the same RFC 5869 HKDF written
//! over an HMAC whose key is prepared once; [`prepared`] gives the TLS 1.3 suites that HKDF
//! over aws-lc-rs's HMAC. Same algorithm, same outputs (checked in the tests); the AEADs, the
//! hashes and everything else of the suites are rustls' own.

use std::sync::LazyLock;

use aws_lc_rs::hmac;
use rustls::crypto::hash::HashAlgorithm;
use rustls::crypto::hmac::{Hmac, Key, Tag};
use rustls::crypto::tls13::{Hkdf, HkdfUsingHmac};
use rustls::{CipherSuiteCommon, SupportedCipherSuite, Tls13CipherSuite};

/// aws-lc-rs's HMAC as rustls' [`Hmac`].
struct AwsLcHmac(hmac::Algorithm);

impl Hmac for AwsLcHmac {
    fn with_key(&self, key: &[u8]) -> Box<dyn Key> {
        Box::new(PreparedKey(hmac::Key::new(self.0, key)))
    }

    fn hash_output_len(&self) -> usize {
        self.0.digest_algorithm().output_len()
    }
}

/// An HMAC key with its inner and outer hash states computed once.
struct PreparedKey(hmac::Key);

impl Key for PreparedKey {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(first);
        for part in middle {
            ctx.update(part);
        }
        ctx.update(last);
        Tag::new(ctx.sign().as_ref())
    }

    fn tag_len(&self) -> usize {
        self.0.algorithm().digest_algorithm().output_len()
    }
}

static HMAC_SHA256: AwsLcHmac = AwsLcHmac(hmac::HMAC_SHA256);
static HMAC_SHA384: AwsLcHmac = AwsLcHmac(hmac::HMAC_SHA384);
static HKDF_SHA256: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA256);
static HKDF_SHA384: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA384);

/// rustls' aws-lc-rs TLS 1.3 suites with the HKDF of this module.
static SUITES: LazyLock<Vec<Tls13CipherSuite>> = LazyLock::new(|| {
    rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .filter_map(SupportedCipherSuite::tls13)
        .map(|s| Tls13CipherSuite {
            common: CipherSuiteCommon {
                suite: s.common.suite,
                hash_provider: s.common.hash_provider,
                confidentiality_limit: s.common.confidentiality_limit,
            },
            hkdf_provider: hkdf_for(s.common.hash_provider.algorithm()).unwrap_or(s.hkdf_provider),
            aead_alg: s.aead_alg,
            quic: s.quic,
        })
        .collect()
});

fn hkdf_for(hash: HashAlgorithm) -> Option<&'static dyn Hkdf> {
    match hash {
        HashAlgorithm::SHA256 => Some(&HKDF_SHA256),
        HashAlgorithm::SHA384 => Some(&HKDF_SHA384),
        _ => None,
    }
}

/// `suite` with the prepared-key HKDF if it is one of rustls' aws-lc-rs TLS 1.3 suites;
/// any other suite as it is.
pub fn prepared(suite: SupportedCipherSuite) -> SupportedCipherSuite {
    match suite {
        SupportedCipherSuite::Tls13(s) => SUITES
            .iter()
            .find(|ours| ours.common.suite == s.common.suite)
            .map_or(suite, SupportedCipherSuite::Tls13),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rustls::crypto::tls13::OkmBlock;

    use super::*;

    fn pairs() -> Vec<(&'static Tls13CipherSuite, &'static Tls13CipherSuite)> {
        rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
            .iter()
            .filter_map(SupportedCipherSuite::tls13)
            .map(|theirs| {
                let SupportedCipherSuite::Tls13(ours) = prepared(SupportedCipherSuite::Tls13(theirs)) else {
                    unreachable!("a TLS 1.3 suite stays one")
                };
                (theirs, ours)
            })
            .collect()
    }

    #[test]
    fn every_tls13_suite_gets_the_prepared_hkdf_and_keeps_the_rest() {
        let pairs = pairs();
        assert_eq!(pairs.len(), 3);
        for (theirs, ours) in pairs {
            assert_eq!(ours.common.suite, theirs.common.suite);
            assert!(!std::ptr::eq(ours, theirs), "{:?}", ours.common.suite);
            assert_eq!(ours.common.hash_provider.algorithm(), theirs.common.hash_provider.algorithm());
            assert!(std::ptr::eq(ours.aead_alg, theirs.aead_alg));
        }
        let tls12 = rustls::crypto::aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
        assert_eq!(prepared(tls12).suite(), tls12.suite());
    }

    /// RFC 5869 test case 1 (SHA-256): the PRK, used as a key, signs like the RFC's.
    #[test]
    fn rfc5869_case_1() {
        let ikm = [0x0b; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let mut okm = [0u8; 42];
        HKDF_SHA256.extract_from_secret(Some(&salt), &ikm).expand_slice(&[&info], &mut okm).unwrap();
        let expected = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865";
        let hex: String = okm.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    proptest! {
        /// Every operation the key schedule uses gives rustls' own results.
        #[test]
        fn same_outputs_as_rustls_hkdf(
            salt in proptest::collection::vec(any::<u8>(), 0..80),
            secret in proptest::collection::vec(any::<u8>(), 0..80),
            info in proptest::collection::vec(any::<u8>(), 0..60),
            len in 1usize..100,
        ) {
            for (theirs, ours) in pairs() {
                let (a, b) = (theirs.hkdf_provider, ours.hkdf_provider);
                let hash_len = theirs.common.hash_provider.output_len();
                let (mut x, mut y) = (vec![0; len], vec![0; len]);
                a.extract_from_secret(Some(&salt), &secret).expand_slice(&[&info, &salt], &mut x).unwrap();
                b.extract_from_secret(Some(&salt), &secret).expand_slice(&[&info, &salt], &mut y).unwrap();
                prop_assert_eq!(&x, &y);
                let block = |h: &dyn Hkdf| h.extract_from_zero_ikm(None).expand_block(&[&info]).as_ref().to_vec();
                prop_assert_eq!(block(a), block(b));
                let okm = OkmBlock::new(&secret.iter().copied().cycle().take(hash_len).collect::<Vec<_>>());
                let expand = |h: &dyn Hkdf| h.expander_for_okm(&okm).expand_block(&[&info]).as_ref().to_vec();
                prop_assert_eq!(expand(a), expand(b));
                let sign = |h: &dyn Hkdf| h.hmac_sign(&okm, &info).as_ref().to_vec();
                prop_assert_eq!(sign(a), sign(b));
            }
        }
    }
}
