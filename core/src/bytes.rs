//! Byte comparisons for the per-request path.

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

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

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
