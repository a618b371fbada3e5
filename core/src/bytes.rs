//! Byte comparisons and searches for the per-request path.

/// Whether `a` and `b` are the same bytes, compared eight at a time and without
/// stopping at the first difference (the time depends on the lengths only).
///
/// The caches compare a presented credential with the one they hold in full on
/// every hit (a ~1 KB token, a 2–4 KB session cookie). In the Wasm module
/// `==` on slices becomes wasi-libc's `memcmp`, byte by byte: about nine
/// instructions a byte on Envoy's worker, 7.5k per JWT cache hit
/// (docs/performance.md).
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (words_a, words_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut diff = words_a
        .remainder()
        .iter()
        .zip(words_b.remainder())
        .fold(0u64, |d, (x, y)| d | u64::from(x ^ y));
    for (x, y) in words_a.zip(words_b) {
        // Always 8 bytes (chunks_exact); the defaults differ, so a failure
        // could only read as "not equal".
        let x = u64::from_ne_bytes(<[u8; 8]>::try_from(x).unwrap_or([0; 8]));
        let y = u64::from_ne_bytes(<[u8; 8]>::try_from(y).unwrap_or([0xff; 8]));
        diff |= x ^ y;
    }
    diff == 0
}

/// The index of the first `needle` in `haystack`, looking at eight bytes at a
/// time (the word-wise zero-byte test: a byte of `w ^ needle×8` is zero where
/// `needle` is; the lowest flagged byte is the first match).
///
/// A closure-based `split(|b| *b == b';')` looks at one byte per iteration; on
/// a 3 KB session `Cookie` header that was ~6k instructions per OAuth2 request
/// natively, and more in the module (docs/performance.md).
pub fn find_byte(haystack: &[u8], needle: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES.wrapping_mul(u64::from(needle));
    let words = haystack.chunks_exact(8);
    let tail = words.remainder();
    let mut at = 0usize;
    for word in words {
        let w = u64::from_le_bytes(<[u8; 8]>::try_from(word).unwrap_or([0; 8])) ^ pattern;
        let found = w.wrapping_sub(ONES) & !w & HIGHS;
        if found != 0 {
            return Some(at.saturating_add((found.trailing_zeros() / 8) as usize));
        }
        at = at.saturating_add(8);
    }
    tail.iter()
        .position(|b| *b == needle)
        .map(|i| at.saturating_add(i))
}

/// The pieces of `bytes` between `separator`s, as `<[u8]>::split` gives them
/// (an empty piece before a leading, after a trailing and between two adjacent
/// separators), found with [`find_byte`].
pub fn split_byte(bytes: &[u8], separator: u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let current = rest?;
        match find_byte(current, separator) {
            Some(i) => {
                rest = current.get(i.saturating_add(1)..);
                current.get(..i)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_is_position_at_every_offset() {
        for len in [0usize, 1, 7, 8, 9, 15, 16, 17, 64, 803] {
            let base: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert_eq!(find_byte(&base, b';'), None, "length {len}");
            for at in 0..len {
                let mut b = base.clone();
                b[at] = b';';
                // A later match, and bytes one off the needle, change nothing.
                if at + 3 < len {
                    b[at + 3] = b';';
                }
                if at > 0 {
                    b[at - 1] = b';' + 1;
                }
                assert_eq!(find_byte(&b, b';'), Some(at), "length {len}, at {at}");
            }
        }
        // High bytes (obs-text) next to the needle.
        assert_eq!(find_byte(&[0xff, 0x80, 0xbb, b';', 0xff], b';'), Some(3));
        assert_eq!(find_byte(&[0x3b ^ 0x80; 20], b';'), None);
    }

    #[test]
    fn split_byte_is_slice_split() {
        for text in [
            &b""[..],
            b";",
            b";;",
            b"a",
            b"a;b",
            b";a;",
            b"a=1; b=2;; c=\xff;",
            b"portcullis_session.f=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; x=1",
        ] {
            let ours: Vec<&[u8]> = split_byte(text, b';').collect();
            let std: Vec<&[u8]> = text.split(|b| *b == b';').collect();
            assert_eq!(ours, std, "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn finds_a_difference_anywhere_and_in_the_length() {
        for len in [0usize, 1, 7, 8, 9, 16, 800, 803] {
            let a: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            assert!(same_bytes(&a, &a.clone()), "length {len}");
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x01;
                assert!(!same_bytes(&a, &b), "length {len}, byte {at}");
                b[at] ^= 0x81;
                assert!(!same_bytes(&a, &b), "length {len}, byte {at}, high bit");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same_bytes(&a, &longer));
            assert!(!same_bytes(&longer, &a));
        }
    }
}
