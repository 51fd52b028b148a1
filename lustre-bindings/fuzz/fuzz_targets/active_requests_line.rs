//! Fuzzes the `active_requests` line parser: it must never panic, and any
//! line it accepts must re-format to a line that parses to the same value
//! (data beyond the 5 bytes the kernel shows is dropped by formatting).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lustre_bindings::active_requests::{DATA_SHOWN, parse_line};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Some(mut req)) = parse_line(line) {
        let text = req.to_string();
        let again = parse_line(&text)
            .expect("formatted line parses")
            .expect("formatted line is not a header");
        req.data.truncate(DATA_SHOWN);
        assert_eq!(again, req);
    }
});
