//! Fuzzes the HAL and KUC decoders: they must never panic, and whatever
//! decodes must re-encode to `hal_size` bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lustre_bindings::{ActionList, kuc};

fuzz_target!(|data: &[u8]| {
    let _ = kuc::unframe(data);
    if let Ok((hal, info)) = ActionList::decode_with_info(data) {
        // Empty fsnames decode but are refused by the encoder.
        if let Ok(encoded) = hal.encode() {
            assert_eq!(encoded.len(), info.hal_size);
            assert_eq!(ActionList::decode(&encoded), Ok(hal));
        }
    }
});
