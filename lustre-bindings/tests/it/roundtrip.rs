use lustre_bindings::active_requests::{DATA_SHOWN, parse_line};
use lustre_bindings::{
    ActionItem, ActionList, ActiveRequest, Extent, Fid, HsmAction, split_into_hals,
};
use proptest::prelude::*;

fn fid() -> impl Strategy<Value = Fid> {
    (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(s, o, v)| Fid::new(s, o, v))
}

fn action() -> impl Strategy<Value = HsmAction> {
    prop_oneof![
        Just(HsmAction::None),
        Just(HsmAction::Archive),
        Just(HsmAction::Restore),
        Just(HsmAction::Remove),
        Just(HsmAction::Cancel),
        any::<u32>().prop_map(HsmAction::from_u32),
    ]
}

fn item(max_data: usize) -> impl Strategy<Value = ActionItem> {
    (
        action(),
        fid(),
        fid(),
        any::<(u64, u64)>(),
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..=max_data),
    )
        .prop_map(
            |(action, fid, dfid, (o, l), cookie, gid, data)| ActionItem {
                action,
                fid,
                dfid,
                extent: Extent::new(o, l),
                cookie,
                gid,
                data,
            },
        )
}

fn hal() -> impl Strategy<Value = ActionList> {
    (
        any::<u64>(),
        any::<u32>(),
        "[a-z0-9_]{1,16}",
        proptest::collection::vec(item(40), 0..12),
    )
        .prop_map(|(flags, archive_id, fsname, items)| ActionList {
            flags,
            archive_id,
            fsname,
            items,
        })
}

proptest! {
    #[test]
    fn hal_encode_decode_round_trip(hal in hal(), slack in 0usize..16) {
        let mut bytes = hal.encode().unwrap();
        prop_assert_eq!(bytes.len(), hal.encoded_len());
        prop_assert_eq!(bytes.len() % 8, 0);
        bytes.extend(std::iter::repeat_n(0u8, slack));
        let (back, info) = ActionList::decode_with_info(&bytes).unwrap();
        prop_assert_eq!(&back, &hal);
        prop_assert_eq!(info.trailing_slack, slack);
        prop_assert_eq!(info.compound_id, 0);
        prop_assert_eq!(back.encode().unwrap(), hal.encode().unwrap());
    }

    #[test]
    fn split_preserves_items_and_limits(
        items in proptest::collection::vec((1u32..4, item(24)), 0..40),
        max in 200usize..1200,
    ) {
        let hals = split_into_hals("lustre", 1, items.clone(), max).unwrap();
        for h in &hals {
            prop_assert!(!h.items.is_empty());
            prop_assert!(h.encoded_len() <= max);
            prop_assert_eq!(h.encode().unwrap().len(), h.encoded_len());
        }
        // Per archive id: same items, same order.
        for archive in 1u32..4 {
            let want: Vec<&ActionItem> =
                items.iter().filter(|(a, _)| *a == archive).map(|(_, i)| i).collect();
            let got: Vec<&ActionItem> = hals
                .iter()
                .filter(|h| h.archive_id == archive)
                .flat_map(|h| h.items.iter())
                .collect();
            prop_assert_eq!(want, got);
        }
        // Archive ids in first-seen order.
        let mut seen: Vec<u32> = Vec::new();
        for (a, _) in &items {
            if !seen.contains(a) {
                seen.push(*a);
            }
        }
        let mut order: Vec<u32> = hals.iter().map(|h| h.archive_id).collect();
        order.dedup();
        prop_assert_eq!(order, seen);
    }

    #[test]
    fn active_request_display_parse_round_trip(
        item in item(12),
        archive_id: u32,
        flags: u64,
        canceled: bool,
        uuid in "[0-9a-f-]{0,36}",
        done: u64,
        compound: u64,
    ) {
        // UNKNOWN prints without its value, so it parses back as Unknown(0).
        let item = match item.action {
            HsmAction::Unknown(_) => ActionItem { action: HsmAction::Unknown(0), ..item },
            _ => item,
        };
        let mut req = ActiveRequest::from_item(&item, archive_id, flags, canceled, &uuid, done);
        req.compound_id = compound;
        prop_assert!(req.data.len() <= DATA_SHOWN);
        let line = req.to_string();
        let back = parse_line(&line).unwrap().unwrap();
        prop_assert_eq!(&back, &req);
        prop_assert_eq!(back.to_string(), line);
        // The item comes back with its data truncated to what is shown.
        let mut expected = item.clone();
        expected.data.truncate(DATA_SHOWN);
        prop_assert_eq!(back.to_item(), expected);
    }

    #[test]
    fn active_request_parser_never_panics(s in "\\PC{0,200}") {
        let _ = parse_line(&s);
    }
}
