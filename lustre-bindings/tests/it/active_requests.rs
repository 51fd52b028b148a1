use lustre_bindings::active_requests::{ActiveRequestErrorKind, parse_line, parse_text};
use lustre_bindings::{Extent, Fid, HsmAction};

use crate::common::read;

const CAPTURE: &str = "active_requests/testfs0-MDT0000-100-archives.txt";

#[test]
fn real_capture_parses_and_reformats_identically() {
    let text = String::from_utf8(read(CAPTURE)).expect("UTF-8 capture");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("mdt.testfs0-MDT0000.hsm.active_requests="));
    let parsed: Vec<_> = parse_text(&text).collect();
    assert_eq!(parsed.len(), 100);
    let mut cookies = Vec::new();
    for (n, r) in parsed {
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.to_string(), lines[n - 1], "line {n}");
        assert_eq!(r.action, HsmAction::Archive);
        assert_eq!(r.archive_id, 1);
        assert_eq!(r.extent, Extent::WHOLE);
        assert_eq!(r.compound_id, 0);
        cookies.push(r.cookie);
    }
    assert_eq!(cookies[0], 0x617d23ef);
    assert!(cookies.windows(2).all(|w| w[0] < w[1]));
}

const GOOD: &str = "fid=[0x200000401:0x1a:0x0] dfid=[0x200000401:0x1a:0x0] compound/cookie=0x0/0x66f1a2b3 action=ARCHIVE archive#=2 flags=0x0 extent=0x0-0xffffffffffffffff gid=0x0 data=[7461673D66] canceled=0 uuid=9b1c0a52 done=1048576";

#[test]
fn good_line_fields() {
    let r = parse_line(GOOD).unwrap().unwrap();
    assert_eq!(r.fid, Fid::new(0x200000401, 0x1a, 0));
    assert_eq!(r.cookie, 0x66f1a2b3);
    assert_eq!(r.uuid, "9b1c0a52");
    assert_eq!(r.to_string(), GOOD);
}

#[test]
fn each_bad_field_is_named() {
    let cases: &[(&str, &str, &str, ActiveRequestErrorKind)] = &[
        (
            "fid=[0x200000401:0x1a:0x0]",
            "fid=[0x200000401:0x1a]",
            "fid",
            ActiveRequestErrorKind::BadFid(Box::new(
                "[0x200000401:0x1a]".parse::<Fid>().unwrap_err(),
            )),
        ),
        (
            "dfid=[0x200000401:0x1a:0x0]",
            "dfid=[zz:0x1a:0x0]",
            "dfid",
            ActiveRequestErrorKind::BadFid(Box::new("[zz:0x1a:0x0]".parse::<Fid>().unwrap_err())),
        ),
        (
            "compound/cookie=0x0/0x66f1a2b3",
            "compound/cookie=0x66f1a2b3",
            "compound/cookie",
            ActiveRequestErrorKind::BadCompoundCookie,
        ),
        (
            "compound/cookie=0x0/0x66f1a2b3",
            "compound/cookie=0x0/0xg",
            "compound/cookie",
            ActiveRequestErrorKind::BadNumber,
        ),
        (
            "action=ARCHIVE",
            "action=ARCHIVAL",
            "action",
            ActiveRequestErrorKind::BadAction,
        ),
        (
            "archive#=2",
            "archive#=two",
            "archive#",
            ActiveRequestErrorKind::BadNumber,
        ),
        (
            "archive#=2",
            "archive#=4294967296",
            "archive#",
            ActiveRequestErrorKind::OutOfRange,
        ),
        (
            "flags=0x0",
            "flags=0x10000000000000000",
            "flags",
            ActiveRequestErrorKind::OutOfRange,
        ),
        (
            "extent=0x0-0xffffffffffffffff",
            "extent=0x0",
            "extent",
            ActiveRequestErrorKind::BadExtent,
        ),
        (
            "extent=0x0-0xffffffffffffffff",
            "extent=0x0-x",
            "extent",
            ActiveRequestErrorKind::BadNumber,
        ),
        ("gid=0x0", "gid=", "gid", ActiveRequestErrorKind::BadNumber),
        (
            "data=[7461673D66]",
            "data=[746]",
            "data",
            ActiveRequestErrorKind::BadData,
        ),
        (
            "data=[7461673D66]",
            "data=7461",
            "data",
            ActiveRequestErrorKind::BadData,
        ),
        (
            "canceled=0",
            "canceled=2",
            "canceled",
            ActiveRequestErrorKind::BadBool,
        ),
        (
            "done=1048576",
            "done=lots",
            "done",
            ActiveRequestErrorKind::BadNumber,
        ),
        (
            "done=1048576",
            "done=99999999999999999999",
            "done",
            ActiveRequestErrorKind::OutOfRange,
        ),
        (
            "gid=0x0",
            "gid=0x0 gid=0x1",
            "gid",
            ActiveRequestErrorKind::Duplicate,
        ),
        (
            "gid=0x0 ",
            "garbage ",
            "token",
            ActiveRequestErrorKind::NotKeyValue,
        ),
    ];
    for (from, to, field, reason) in cases {
        let line = GOOD.replacen(from, to, 1);
        assert_ne!(line, GOOD, "{from} not found");
        let e = parse_line(&line).unwrap_err();
        assert_eq!(e.field, *field, "{line}");
        assert_eq!(&e.reason, reason, "{line}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("`{field}`")), "{msg}");
    }
}

#[test]
fn each_required_field_missing_is_named() {
    for field in [
        "fid",
        "dfid",
        "compound/cookie",
        "action",
        "archive#",
        "flags",
        "extent",
        "gid",
        "data",
    ] {
        let line: Vec<&str> = GOOD
            .split(' ')
            .filter(|t| t.split_once('=').map(|(k, _)| k) != Some(field))
            .collect();
        let e = parse_line(&line.join(" ")).unwrap_err();
        assert_eq!(e.field, field);
        assert_eq!(e.reason, ActiveRequestErrorKind::Missing);
        assert!(e.to_string().contains("missing"), "{e}");
    }
}

#[test]
fn parse_text_reports_line_numbers() {
    let text = format!(
        "mdt.fs-MDT0000.hsm.active_requests=\n{GOOD}\n\n{}\n",
        GOOD.replace("gid=0x0", "gid=zz")
    );
    let results: Vec<_> = parse_text(&text).collect();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].0, 2);
    assert!(results[0].1.is_ok());
    assert_eq!(results[1].0, 4);
    let e = results[1].1.as_ref().unwrap_err();
    assert_eq!(e.line, Some(4));
    let msg = e.to_string();
    assert!(
        msg.contains("line 4") && msg.contains("`gid`") && msg.contains("\"zz\""),
        "{msg}"
    );
}
