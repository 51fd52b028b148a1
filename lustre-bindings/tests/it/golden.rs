use lustre_bindings::hal::{HAL_HEADER_LEN, header_len};
use lustre_bindings::kuc::{self, HMT_ACTION_LIST, KUC_HEADER_LEN, KUC_MAGIC, KUC_TRANSPORT_HSM};
use lustre_bindings::{ActionItem, ActionList, Extent, Fid, HsmAction, KucHeader};
use serde_json::Value;

use crate::common::{read, testdata, unhex};

fn manifest() -> Value {
    let path = testdata().join("hal/manifest.json");
    serde_json::from_slice(&std::fs::read(&path).expect("manifest")).expect("manifest JSON")
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("manifest field {k} in {v}"))
}

fn fid(v: &Value) -> Fid {
    Fid::new(u(v, "seq"), u(v, "oid") as u32, u(v, "ver") as u32)
}

#[test]
fn every_golden_case_decodes_and_reencodes_bit_exactly() {
    let m = manifest();
    assert_eq!(u(&m["kuc"], "magic"), u64::from(KUC_MAGIC));
    assert_eq!(u(&m["kuc"], "transport"), u64::from(KUC_TRANSPORT_HSM));
    assert_eq!(u(&m["kuc"], "msgtype"), u64::from(HMT_ACTION_LIST));
    assert_eq!(u(&m["kuc"], "header_len"), KUC_HEADER_LEN as u64);
    let cases = m["cases"].as_array().expect("cases");
    assert!(cases.len() >= 8);
    let mut fsname_lengths = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let hal_bytes = read(&format!("hal/{name}.hal"));
        let kuc_bytes = read(&format!("hal/{name}.kuc"));

        let (hal, info) =
            ActionList::decode_with_info(&hal_bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(u(case, "hal_version"), 1, "{name}");
        assert_eq!(info.compound_id, u(case, "hal_compound_id"), "{name}");
        assert_eq!(hal.flags, u(case, "hal_flags"), "{name}");
        assert_eq!(
            u64::from(hal.archive_id),
            u(case, "hal_archive_id"),
            "{name}"
        );
        assert_eq!(hal.fsname, case["hal_fsname"].as_str().unwrap(), "{name}");
        assert_eq!(hal.items.len() as u64, u(case, "hal_count"), "{name}");
        assert_eq!(info.hal_size as u64, u(case, "hal_size"), "{name}");
        assert_eq!(
            info.trailing_slack as u64,
            u(case, "trailing_slack"),
            "{name}"
        );
        assert_eq!(
            header_len(&hal.fsname) as u64,
            u(case, "hai_first_offset"),
            "{name}"
        );
        fsname_lengths.push(hal.fsname.len());

        let items = case["items"].as_array().unwrap();
        assert_eq!(items.len(), hal.items.len(), "{name}");
        for (i, (want, got)) in items.iter().zip(&hal.items).enumerate() {
            let ctx = format!("{name} item {i}");
            assert_eq!(info.item_offsets[i] as u64, u(want, "offset"), "{ctx}");
            assert_eq!(u64::from(got.hai_len()), u(want, "hai_len"), "{ctx}");
            assert_eq!(u64::from(got.action.as_u32()), u(want, "action"), "{ctx}");
            assert_eq!(got.fid, fid(&want["fid"]), "{ctx}");
            assert_eq!(got.dfid, fid(&want["dfid"]), "{ctx}");
            assert_eq!(got.extent.offset, u(want, "extent_offset"), "{ctx}");
            assert_eq!(got.extent.length, u(want, "extent_length"), "{ctx}");
            assert_eq!(got.cookie, u(want, "cookie"), "{ctx}");
            assert_eq!(got.gid, u(want, "gid"), "{ctx}");
            assert_eq!(got.data, unhex(want["data_hex"].as_str().unwrap()), "{ctx}");
        }

        // Re-encode: bit-exact with the golden HAL (minus any slack).
        let encoded = hal.encode().unwrap();
        assert_eq!(encoded.len(), hal.encoded_len(), "{name}");
        assert_eq!(
            encoded[..],
            hal_bytes[..info.hal_size],
            "{name}: re-encoding differs"
        );

        // KUC: header fields, payload, and framing.
        let (h, payload) = kuc::unframe(&kuc_bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(h, KucHeader::for_hal(hal_bytes.len()).unwrap(), "{name}");
        assert_eq!(usize::from(h.msglen), kuc_bytes.len(), "{name}");
        assert_eq!(payload, &hal_bytes[..], "{name}");
        assert_eq!(kuc::frame_hal(&encoded).unwrap(), kuc_bytes, "{name}");

        // Trailing slack is accepted and reported.
        let mut slack = hal_bytes.clone();
        slack.extend_from_slice(&[0u8; 24]);
        let (again, info2) = ActionList::decode_with_info(&slack).unwrap();
        assert_eq!(again, hal, "{name}");
        assert_eq!(info2.trailing_slack, info.trailing_slack + 24, "{name}");
    }
    fsname_lengths.sort_unstable();
    fsname_lengths.dedup();
    assert_eq!(fsname_lengths, vec![2, 6, 7, 8]);
}

/// §1.10 of the ABI facts: one ARCHIVE item, fsname "testfs", data "abc".
#[test]
fn worked_example_exact_bytes() {
    #[rustfmt::skip]
    let expected: [u8; 128] = [
        0x1c, 0x19, 0x02, 0x00, 0x64, 0x00, 0x80, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x74, 0x65, 0x73, 0x74, 0x66, 0x73, 0x00, 0x00,
        0x4b, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xef, 0x23, 0x7d, 0x61, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x61, 0x62, 0x63, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    let fid = Fid::new(0x200000401, 0x1, 0x0);
    let item = ActionItem {
        action: HsmAction::Archive,
        fid,
        dfid: fid,
        extent: Extent::WHOLE,
        cookie: 0x617d23ef,
        gid: 0,
        data: b"abc".to_vec(),
    };
    assert_eq!(item.hai_len(), 75);
    let hal = ActionList {
        flags: 0,
        archive_id: 1,
        fsname: "testfs".into(),
        items: vec![item],
    };
    assert_eq!(hal.encoded_len(), 120);
    let msg = kuc::frame_hal(&hal.encode().unwrap()).unwrap();
    assert_eq!(msg, expected);
    assert_eq!(ActionList::decode(&expected[8..]).unwrap(), hal);
    assert_eq!(&item_fixed(&hal)[..], &expected[48..120]);
}

fn item_fixed(hal: &ActionList) -> [u8; 72] {
    hal.items[0].encode_fixed()
}

fn sample_item(data: &[u8]) -> ActionItem {
    ActionItem {
        action: HsmAction::Restore,
        fid: Fid::new(0x200000402, 9, 0),
        dfid: Fid::new(0x200000403, 1, 0),
        extent: Extent::new(0, 4096),
        cookie: 42,
        gid: 0,
        data: data.to_vec(),
    }
}

#[test]
fn fsname_lengths_2_6_7_8_place_the_first_item() {
    for (fsname, first) in [
        ("fs", 40),
        ("lustre", 40),
        ("testfs0", 40),
        ("testfs01", 48),
    ] {
        let hal = ActionList {
            flags: 0,
            archive_id: 1,
            fsname: fsname.into(),
            items: vec![sample_item(b"x")],
        };
        let bytes = hal.encode().unwrap();
        assert_eq!(header_len(fsname), first, "{fsname}");
        assert_eq!(bytes.len(), first + 80, "{fsname}");
        // fsname NUL-terminated and zero padded up to the first item.
        assert_eq!(
            &bytes[HAL_HEADER_LEN..HAL_HEADER_LEN + fsname.len()],
            fsname.as_bytes()
        );
        assert!(
            bytes[HAL_HEADER_LEN + fsname.len()..first]
                .iter()
                .all(|&b| b == 0)
        );
        assert_eq!(&bytes[first..first + 4], &73u32.to_le_bytes());
        assert_eq!(ActionList::decode(&bytes).unwrap(), hal);
    }
}

#[test]
fn data_with_nuls_and_every_length_around_eight() {
    for len in 0..=33usize {
        let data: Vec<u8> = (0..len)
            .map(|i| if i % 3 == 0 { 0 } else { i as u8 })
            .collect();
        let hal = ActionList {
            flags: 3,
            archive_id: 0x12345678,
            fsname: "lustre".into(),
            items: vec![sample_item(&data), sample_item(&[]), sample_item(&data)],
        };
        let bytes = hal.encode().unwrap();
        let step = (72 + len).div_ceil(8) * 8;
        assert_eq!(bytes.len(), 40 + 2 * step + 72, "len {len}");
        // Padding after the data is zero.
        assert!(bytes[40 + 72 + len..40 + step].iter().all(|&b| b == 0));
        let (back, info) = ActionList::decode_with_info(&bytes).unwrap();
        assert_eq!(back, hal, "len {len}");
        assert_eq!(info.item_offsets, vec![40, 40 + step, 40 + step + 72]);
        assert_eq!(back.items[0].hai_len() as usize, 72 + len);
    }
}
