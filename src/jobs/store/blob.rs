//! Large values as a store keeps them: LZ4-compressed when that pays.
//!
//! A task's input (a page) and its result (an analysis) are most of what the
//! SQLite store writes, twice over (the WAL, then the checkpoint). HTML and
//! JSON shrink to under a quarter at over 2 GB/s, cheaper than the write
//! path they spare (measured in `benches/store.rs`). Each stored blob carries its codec in a column beside
//! it, so rows written before compression read as they were.

use std::borrow::Cow;

/// Stored as given.
pub const RAW: i64 = 0;
/// An LZ4 block after its length as 4 bytes, little-endian
/// (`lz4_flex::compress_prepend_size`).
pub const LZ4: i64 = 1;

/// Below this many bytes a blob is stored as given: the saving is a page
/// fraction at most.
const SMALLEST: usize = 512;

/// LZ4 writes a literal or a match of up to 255 bytes a byte of input at
/// best, so a real block never claims more than this many times its size;
/// a damaged one that does is refused before anything is allocated.
const MOST_GROWTH: usize = 255;

/// The codec and the bytes to store for `bytes`: compressed unless that
/// saves less than an eighth (binary or already compressed input).
pub fn pack(bytes: &[u8]) -> (i64, Cow<'_, [u8]>) {
    if bytes.len() < SMALLEST {
        return (RAW, Cow::Borrowed(bytes));
    }
    let packed = lz4_flex::compress_prepend_size(bytes);
    if packed.len() > bytes.len() - bytes.len() / 8 {
        return (RAW, Cow::Borrowed(bytes));
    }
    (LZ4, Cow::Owned(packed))
}

/// The bytes `pack` was given, from what it stored; a damaged blob or an
/// unknown codec is an error, never a panic or a huge allocation.
pub fn unpack(codec: i64, stored: Vec<u8>) -> Result<Vec<u8>, String> {
    match codec {
        RAW => Ok(stored),
        LZ4 => {
            let claimed = stored.get(..4).map(|n| u32::from_le_bytes([n[0], n[1], n[2], n[3]]) as usize);
            match claimed {
                Some(n) if n <= (stored.len() - 4).saturating_mul(MOST_GROWTH) => {
                    lz4_flex::decompress_size_prepended(&stored).map_err(|e| format!("a damaged compressed value: {e}"))
                }
                _ => Err(format!("a damaged compressed value ({} bytes, its length header refused)", stored.len())),
            }
        }
        other => Err(format!("a value stored with codec {other}, unknown to this pagelens")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_compressed_and_comes_back_whole() {
        let page = "<p>a paragraph of a page, much like the next one</p>\n".repeat(200);
        let (codec, stored) = pack(page.as_bytes());
        assert_eq!(codec, LZ4);
        assert!(stored.len() < page.len() / 5, "{} of {}", stored.len(), page.len());
        assert_eq!(unpack(codec, stored.into_owned()).unwrap(), page.as_bytes());
    }

    #[test]
    fn small_and_incompressible_values_are_stored_as_given() {
        let (codec, stored) = pack(b"{\"ok\":true}");
        assert_eq!((codec, &stored[..]), (RAW, &b"{\"ok\":true}"[..]));
        // xorshift noise: LZ4 finds nothing to share.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let (codec, stored) = pack(&noise);
        assert_eq!(codec, RAW);
        assert_eq!(unpack(codec, stored.into_owned()).unwrap(), noise);
    }

    #[test]
    fn damaged_values_are_errors() {
        let text = "a line of text, again and again\n".repeat(100);
        let mut stored = pack(text.as_bytes()).1.into_owned();
        // Each damage yields an error, never a panic or a large allocation.
        let lying_length = [&u32::MAX.to_le_bytes()[..], &stored[4..]].concat();
        assert!(unpack(LZ4, lying_length).unwrap_err().contains("length header"));
        assert!(unpack(LZ4, vec![1, 0]).unwrap_err().contains("length header"));
        assert!(unpack(LZ4, stored[..stored.len() / 2].to_vec()).unwrap_err().contains("damaged"));
        let last = stored.len() - 1;
        stored[last] ^= 0xff;
        stored[5] = 0xff;
        assert!(unpack(LZ4, stored.clone()).is_err());
        assert!(unpack(7, stored).unwrap_err().contains("codec 7"));
    }
}
