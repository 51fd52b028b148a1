use lustre_bindings::kuc::{self, KucError};
use lustre_bindings::{ActionList, HalError, KucHeader};
use proptest::prelude::*;

use crate::common::read;

const CASES: [&str; 8] = [
    "archive-one-lustre",
    "archive-three-fs2-data6",
    "restore-testfs0-data8",
    "mixed-testfs01-nul-data",
    "cancel-one",
    "data-lengths-1-7-9-15-16-17",
    "flags-force-ghost-big-ids",
    "seventy-no-data",
];

#[test]
fn truncated_at_every_byte_is_an_error() {
    for name in CASES {
        let hal = read(&format!("hal/{name}.hal"));
        for cut in 0..hal.len() {
            let r = ActionList::decode(&hal[..cut]);
            assert!(r.is_err(), "{name} cut at {cut} decoded: {r:?}");
        }
        let msg = read(&format!("hal/{name}.kuc"));
        for cut in 0..msg.len() {
            assert!(
                kuc::unframe(&msg[..cut]).is_err(),
                "{name} kuc cut at {cut}"
            );
        }
    }
}

fn golden() -> Vec<u8> {
    read("hal/archive-three-fs2-data6.hal")
}

fn set_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn bad_version() {
    let mut b = golden();
    set_u32(&mut b, 0, 2);
    assert_eq!(
        ActionList::decode(&b),
        Err(HalError::BadVersion { version: 2 })
    );
    set_u32(&mut b, 0, 0);
    assert!(
        ActionList::decode(&b)
            .unwrap_err()
            .to_string()
            .contains("hal_version 0")
    );
}

#[test]
fn hai_len_below_72() {
    let mut b = golden();
    // Second item starts at 120 (40 + ALIGN8(78)).
    set_u32(&mut b, 120, 71);
    let e = ActionList::decode(&b).unwrap_err();
    assert_eq!(
        e,
        HalError::ItemTooShort {
            index: 1,
            offset: 120,
            hai_len: 71
        }
    );
    assert!(e.to_string().contains("item 1 at offset 120"), "{e}");
    set_u32(&mut b, 120, 0);
    assert!(matches!(
        ActionList::decode(&b),
        Err(HalError::ItemTooShort { hai_len: 0, .. })
    ));
}

#[test]
fn hai_len_past_the_end() {
    let mut b = golden();
    set_u32(&mut b, 200, 200);
    assert_eq!(
        ActionList::decode(&b),
        Err(HalError::ItemPastEnd {
            index: 2,
            offset: 200,
            hai_len: 200,
            available: 80
        })
    );
    set_u32(&mut b, 200, u32::MAX);
    assert!(matches!(
        ActionList::decode(&b),
        Err(HalError::ItemPastEnd { .. })
    ));
}

#[test]
fn count_too_large() {
    let mut b = golden();
    set_u32(&mut b, 4, 4);
    let e = ActionList::decode(&b).unwrap_err();
    assert_eq!(
        e,
        HalError::ItemTruncated {
            index: 3,
            count: 4,
            offset: 280,
            available: 0
        }
    );
    assert!(e.to_string().contains("hal_count 4"), "{e}");
    set_u32(&mut b, 4, u32::MAX);
    assert!(matches!(
        ActionList::decode(&b),
        Err(HalError::ItemTruncated { index: 3, .. })
    ));
}

#[test]
fn fsname_without_nul() {
    let mut b = vec![0u8; 32];
    set_u32(&mut b, 0, 1);
    b.extend_from_slice(b"abcdefgh");
    assert_eq!(
        ActionList::decode(&b),
        Err(HalError::FsnameUnterminated { len: 40 })
    );
    // NUL present but its padding missing.
    b.push(0);
    assert_eq!(
        ActionList::decode(&b),
        Err(HalError::FsnameTruncated {
            needed: 48,
            len: 41
        })
    );
    // Non-UTF-8 fsname.
    let mut c = golden();
    c[32] = 0xff;
    assert!(matches!(
        ActionList::decode(&c),
        Err(HalError::FsnameNotUtf8 { .. })
    ));
}

#[test]
fn header_too_short() {
    assert_eq!(
        ActionList::decode(&[]),
        Err(HalError::HeaderTruncated { len: 0 })
    );
    assert_eq!(
        ActionList::decode(&[1, 0, 0]),
        Err(HalError::HeaderTruncated { len: 3 })
    );
}

#[test]
fn kuc_errors() {
    let msg = read("hal/cancel-one.kuc");
    let mut bad = msg.clone();
    bad[1] = 0x18;
    assert_eq!(
        KucHeader::decode(&bad),
        Err(KucError::BadMagic { magic: 0x181c })
    );
    let mut bad = msg.clone();
    bad[2] = 7;
    assert_eq!(
        KucHeader::decode(&bad),
        Err(KucError::BadTransport { transport: 7 })
    );
    let mut bad = msg;
    bad[4] = 101;
    assert_eq!(
        KucHeader::decode(&bad),
        Err(KucError::BadMsgType {
            transport: 2,
            msgtype: 101
        })
    );
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = ActionList::decode(&bytes);
        let _ = kuc::unframe(&bytes);
        let _ = KucHeader::decode(&bytes);
    }

    #[test]
    fn mutated_golden_never_panics(
        flips in proptest::collection::vec((0usize..280, any::<u8>()), 1..8),
        cut in 0usize..300,
    ) {
        let mut b = golden();
        for (i, v) in flips {
            b[i] = v;
        }
        b.truncate(cut);
        let _ = ActionList::decode(&b);
    }
}
