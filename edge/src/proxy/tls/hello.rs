//! What rustls does not tell before the handshake: whether the client offers a session to
//! resume, and (for `cork.rs`) which version our own ServerHello chose.
//!
//! TLS 1.3 resumption is a `pre_shared_key` extension (type 41, RFC 8446 §4.2.11) in the
//! ClientHello. [`offers_psk`] reads it from the raw bytes the acceptor collected before the
//! handshake: the TLS records (RFC 8446 §5.1) of the first handshake message, possibly split
//! over several records, then the ClientHello's fixed fields and its extension list. Input is
//! the client's, so every length is checked; anything that is not a well-formed ClientHello
//! answers `None` and the caller falls back to the full-handshake behaviour.

/// Record content type of handshake messages.
const HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Handshake message type of a ServerHello (and of a HelloRetryRequest).
const SERVER_HELLO: u8 = 2;
/// Extension type of `supported_versions`.
const SUPPORTED_VERSIONS: u16 = 43;
/// Extension type of `pre_shared_key`.
const PRE_SHARED_KEY: u16 = 41;
/// The largest record fragment a peer may send (RFC 8446 §5.1: 2^14 bytes).
const MAX_FRAGMENT: usize = 1 << 14;

/// Whether the ClientHello at the start of `raw` (TLS records as read from the socket) offers
/// a pre-shared key; `None` when `raw` does not hold a whole, well-formed ClientHello.
pub fn offers_psk(raw: &[u8]) -> Option<bool> {
    let message = handshake_message(raw)?;
    let (&kind, rest) = message.split_first()?;
    if kind != CLIENT_HELLO {
        return None;
    }
    let (len, body) = split(rest, 3)?;
    let body = body.get(..be(len))?;
    extensions(body).map(|mut types| types.any(|t| t == PRE_SHARED_KEY))
}

/// The first handshake message in `raw`, joined from as many handshake records as it spans.
fn handshake_message(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut message = Vec::new();
    loop {
        let (header, rest) = split(raw, 5)?;
        let len = be(&header[3..5]);
        if header[0] != HANDSHAKE || len == 0 || len > MAX_FRAGMENT {
            return None;
        }
        let (fragment, rest) = split(rest, len)?;
        message.extend_from_slice(fragment);
        raw = rest;
        // The message is whole once its 4-byte header and the length it names are in.
        if let Some(header) = message.get(..4) {
            let whole = 4 + be(&header[1..4]);
            if message.len() >= whole {
                message.truncate(whole);
                return Some(message);
            }
            if whole > 4 * MAX_FRAGMENT {
                return None;
            }
        }
    }
}

/// The extensions of a ClientHello body (RFC 8446 §4.1.2), or `None` if it is malformed.
fn extensions(body: &[u8]) -> Option<impl Iterator<Item = u16> + '_> {
    // legacy_version and random
    let (_, rest) = split(body, 2 + 32)?;
    let rest = skip_vector(rest, 1)?; // legacy_session_id
    let rest = skip_vector(rest, 2)?; // cipher_suites
    let rest = skip_vector(rest, 1)?; // legacy_compression_methods
    Some(extension_list(rest)?.map(|(t, _)| t))
}

/// A checked extension list at the end of a hello (RFC 8446 §4.2): its length, then type,
/// length and data of each. An absent list (TLS 1.2 and older) is an empty one.
fn extension_list(rest: &[u8]) -> Option<Extensions<'_>> {
    if rest.is_empty() {
        return Some(Extensions { rest: &[] });
    }
    let (len, list) = split(rest, 2)?;
    let list = list.get(..be(len))?;
    // Check the whole list before answering, so a truncated one is `None`, not a guess.
    let mut check = list;
    while !check.is_empty() {
        let (header, rest) = split(check, 4)?;
        check = rest.get(be(&header[2..4])..)?;
    }
    Some(Extensions { rest: list })
}

/// Walks a checked extension list: (type, data).
struct Extensions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Extensions<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (header, rest) = split(self.rest, 4)?;
        let (data, rest) = split(rest, be(&header[2..4]))?;
        self.rest = rest;
        Some((u16::try_from(be(&header[..2])).ok()?, data))
    }
}

/// What our own first handshake record says, as far as [`super::cork`] cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerHello {
    /// A ServerHello choosing TLS 1.3.
    Tls13,
    /// A HelloRetryRequest: the client sends a second ClientHello.
    Retry,
    /// Anything else: TLS 1.2, an alert, or a record that is not whole.
    Other,
}

/// The `random` that marks a ServerHello as a HelloRetryRequest (RFC 8446 §4.1.3).
pub(super) const RETRY_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91, 0xC2,
    0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

/// Reads a ServerHello record (RFC 8446 §4.1.3) at the start of `record`.
pub fn server_hello(record: &[u8]) -> ServerHello {
    server_hello_parts(record).unwrap_or(ServerHello::Other)
}

fn server_hello_parts(record: &[u8]) -> Option<ServerHello> {
    let (header, rest) = split(record, 5)?;
    let fragment = rest.get(..be(&header[3..5]))?;
    let (head, body) = split(fragment, 4)?;
    if header[0] != HANDSHAKE || head[0] != SERVER_HELLO {
        return None;
    }
    let body = body.get(..be(&head[1..4]))?;
    let (fixed, rest) = split(body, 2 + 32)?;
    let rest = skip_vector(rest, 1)?; // legacy_session_id_echo
    let (_, rest) = split(rest, 2 + 1)?; // cipher_suite, legacy_compression_method
    let tls13 = extension_list(rest)?.any(|(t, data)| t == SUPPORTED_VERSIONS && data == [3, 4]);
    Some(match (tls13, fixed[2..] == RETRY_RANDOM) {
        (true, true) => ServerHello::Retry,
        (true, false) => ServerHello::Tls13,
        (false, _) => ServerHello::Other,
    })
}

/// Skips a vector with a `width`-byte length prefix.
fn skip_vector(bytes: &[u8], width: usize) -> Option<&[u8]> {
    let (len, rest) = split(bytes, width)?;
    rest.get(be(len)..)
}

fn split(bytes: &[u8], at: usize) -> Option<(&[u8], &[u8])> {
    (bytes.len() >= at).then(|| bytes.split_at(at))
}

/// A big-endian number of up to three bytes.
fn be(bytes: &[u8]) -> usize {
    bytes.iter().fold(0, |n, &b| n << 8 | usize::from(b))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A ClientHello with the given extensions (type, data), in records of at most `record`
    /// bytes of fragment each.
    fn hello(extensions: &[(u16, Vec<u8>)], record: usize) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(32);
        body.extend([9u8; 32]);
        body.extend([0, 4, 0x13, 0x01, 0x13, 0x02]);
        body.extend([1, 0]);
        let mut list = Vec::new();
        for (t, data) in extensions {
            list.extend(t.to_be_bytes());
            list.extend(u16::try_from(data.len()).unwrap().to_be_bytes());
            list.extend(data);
        }
        body.extend(u16::try_from(list.len()).unwrap().to_be_bytes());
        body.extend(list);
        let mut message = vec![CLIENT_HELLO];
        message.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        message.extend(body);
        let mut raw = Vec::new();
        for fragment in message.chunks(record) {
            raw.extend([HANDSHAKE, 3, 1]);
            raw.extend(u16::try_from(fragment.len()).unwrap().to_be_bytes());
            raw.extend(fragment);
        }
        raw
    }

    #[test]
    fn finds_the_pre_shared_key_extension() {
        let sni = (0, b"\x00\x08\x00\x00\x05a.test".to_vec());
        let versions = (43, vec![4, 3, 4, 3, 3]);
        let psk = (41, vec![0; 40]);
        let check = |exts: &[(u16, Vec<u8>)], expected: Option<bool>| {
            assert_eq!(offers_psk(&hello(exts, 1 << 14)), expected, "{exts:?}");
        };
        check(&[sni.clone(), versions.clone(), psk.clone()], Some(true));
        check(&[sni.clone(), versions.clone()], Some(false));
        check(&[], Some(false));
        // The type must match exactly: 41 in a length or in the data is not the extension.
        check(&[(0x2900, vec![41, 0, 41]), (7, vec![0; 41])], Some(false));
    }

    #[test]
    fn rejects_what_is_not_a_whole_client_hello() {
        let whole = hello(&[(41, vec![1, 2, 3])], 1 << 14);
        for cut in 0..whole.len() {
            assert_eq!(offers_psk(&whole[..cut]), None, "cut at {cut}");
        }
        let mut alert = whole.clone();
        alert[0] = 21;
        assert_eq!(offers_psk(&alert), None);
        let mut server_hello = whole.clone();
        server_hello[5] = 2;
        assert_eq!(offers_psk(&server_hello), None);
        // An extension list that claims more than the message holds.
        let mut long = hello(&[(41, vec![1, 2, 3])], 1 << 14);
        let at = long.len() - 7 - 2;
        long[at + 1] += 1;
        assert_eq!(offers_psk(&long), None);
        // Bytes after the hello (the client's next records) change nothing.
        let mut more = whole.clone();
        more.extend([23, 3, 3, 0, 1, 0]);
        assert_eq!(offers_psk(&more), Some(true));
    }

    #[test]
    fn reads_the_version_a_server_hello_chose() {
        let sh = |random: [u8; 32], exts: &[u8]| {
            let mut body = vec![3, 3];
            body.extend(random);
            body.extend([0, 0x13, 0x01, 0]);
            body.extend(u16::try_from(exts.len()).unwrap().to_be_bytes());
            body.extend(exts);
            let mut msg = vec![SERVER_HELLO];
            msg.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
            msg.extend(body);
            let mut rec = vec![HANDSHAKE, 3, 3];
            rec.extend(u16::try_from(msg.len()).unwrap().to_be_bytes());
            rec.extend(msg);
            rec
        };
        let v13 = [0, 43, 0, 2, 3, 4];
        assert_eq!(server_hello(&sh([1; 32], &v13)), ServerHello::Tls13);
        assert_eq!(server_hello(&sh(RETRY_RANDOM, &v13)), ServerHello::Retry);
        assert_eq!(server_hello(&sh([1; 32], &[0, 11, 0, 2, 1, 0])), ServerHello::Other);
        assert_eq!(server_hello(&sh([1; 32], &[0, 43, 0, 2, 3, 3])), ServerHello::Other);
        let whole = sh([1; 32], &v13);
        for cut in 0..whole.len() {
            assert_eq!(server_hello(&whole[..cut]), ServerHello::Other, "cut at {cut}");
        }
        assert_eq!(server_hello(&[21, 3, 3, 0, 2, 2, 40]), ServerHello::Other);
    }

    proptest! {
        #[test]
        fn never_panics(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = offers_psk(&raw);
            let _ = server_hello(&raw);
        }

        #[test]
        fn answers_whether_type_41_is_listed_however_the_records_split(
            types in proptest::collection::vec(0u16..64, 0..12),
            record in 1usize..300,
        ) {
            let exts: Vec<(u16, Vec<u8>)> =
                types.iter().map(|&t| (t, vec![41; usize::from(t % 5)])).collect();
            prop_assert_eq!(offers_psk(&hello(&exts, record)), Some(types.contains(&41)));
        }
    }
}
