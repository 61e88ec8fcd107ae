//! Any bytes, as a stored task spec (the JSON half, a NUL, the bodies): a
//! damaged store must give an error, never a panic; what decodes must
//! encode back to a spec that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagelens::jobs::TaskSpec;

fuzz_target!(|data: &[u8]| {
    let (meta, bodies) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(meta) = std::str::from_utf8(meta) else { return };
    if let Ok(spec) = TaskSpec::decode(meta, bodies) {
        let (meta, bodies) = spec.encode();
        assert_eq!(TaskSpec::decode(&meta, &bodies).as_ref(), Ok(&spec));
    }
});
