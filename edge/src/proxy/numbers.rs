//! Number-valued fields (`Age`, `Content-Length`) without an allocation. `HeaderValue::from(n)`
//! formats into a new heap buffer for every value; a hit sends two such fields, and the
//! numbers are nearly always small (a 1 KiB body, an age of seconds or minutes). Below
//! [`SMALL`] the value is a slice of one static table of digits, which a `HeaderValue` holds
//! without copying or counting references; larger numbers are formatted as before.

use bytes::Bytes;
use http::HeaderValue;

/// Numbers below this come from the table: ages up to 2 h 46 min, bodies up to 9,999 bytes.
const SMALL: usize = 10_000;
/// Bytes per number in the table: the longest, `9999`.
const WIDTH: usize = 4;

/// `0`, `1`, ... `9999`, each left-aligned in `WIDTH` bytes: 40 KB, built at compile time.
static DIGITS: [u8; SMALL * WIDTH] = table();

const fn table() -> [u8; SMALL * WIDTH] {
    let mut t = [0u8; SMALL * WIDTH];
    let mut n = 0;
    while n < SMALL {
        let mut i = width(n);
        let mut v = n;
        while i > 0 {
            i -= 1;
            t[n * WIDTH + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        n += 1;
    }
    t
}

/// Decimal digits of `n` (below [`SMALL`]).
const fn width(n: usize) -> usize {
    if n < 10 {
        1
    } else if n < 100 {
        2
    } else if n < 1_000 {
        3
    } else {
        4
    }
}

/// `n` in decimal as a field value.
pub fn number(n: u64) -> HeaderValue {
    match usize::try_from(n) {
        Ok(i) if i < SMALL => {
            let digits = &DIGITS[i * WIDTH..i * WIDTH + width(i)];
            // Digits are always a valid value; the fallback is never taken.
            HeaderValue::from_maybe_shared(Bytes::from_static(digits))
                .unwrap_or_else(|_| HeaderValue::from(n))
        }
        _ => HeaderValue::from(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every number in the table and around its end reads as the formatter writes it.
    #[test]
    fn numbers_read_as_they_format() {
        let around = (SMALL as u64..SMALL as u64 + 100).chain([65_536, u64::MAX]);
        for n in (0..SMALL as u64).chain(around) {
            assert_eq!(number(n), HeaderValue::from(n), "{n}");
        }
    }
}
