//! The benchmark command itself, on a small scale: every section runs end to
//! end and reports each target as PASS or MISS (the figures of a debug build
//! mean nothing and are not checked).

use serde_json::Value;
use std::process::Command;

#[test]
fn benchmark_runs_every_section_and_reports_each_target() {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coordinatool-bench"))
        .args([
            "--requests",
            "200",
            "--repeat",
            "1",
            "--replay",
            "2000",
            "--sched-waiting",
            "2000",
            "--json",
            "--workdir",
        ])
        .arg(work.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(report["requests"], 200);
    let rows = report["rows"].as_array().expect("rows");
    let figure = |section: &str, starts: &str| -> &Value {
        rows.iter()
            .find(|r| r["section"] == section && r["figure"].as_str().unwrap().starts_with(starts))
            .unwrap_or_else(|| panic!("no {section} row starting {starts:?} in {rows:#?}"))
    };
    // Every target has its row, judged PASS or MISS (replay only at 1M
    // requests: below, its figure is shown without a verdict).
    for (section, starts) in [
        ("throughput", "coordinatool (2 shimmed agents)"),
        ("throughput", "coordinatool / baseline"),
        ("durability", "coordinatool, flush per HAL"),
        ("memory", "RSS per queued request"),
        ("sched", "recv max, limit 16/kind"),
        ("sched", "recv max, unlimited"),
    ] {
        let r = figure(section, starts);
        assert!(
            r["result"] == "PASS" || r["result"] == "MISS",
            "{section} {starts}: {r}"
        );
    }
    let replay = figure("replay", "start to READY with 2000 stored requests");
    assert!(replay["value"].as_f64().unwrap() > 0.0, "{replay}");
    // Both runs moved every request, and the latency traces were joined.
    let rate = |name: &str| figure("throughput", name)["value"].as_f64().unwrap();
    assert!(rate("baseline") > 0.0 && rate("coordinatool (2") > 0.0);
    assert!(
        figure("latency", "dispatch->receive p50 / p99, coordinatoold")["value"].is_object(),
        "{rows:#?}"
    );
    // Every miss is listed, and the work folder is cleaned up.
    let missed = report["missed"].as_array().unwrap();
    let misses = rows.iter().filter(|r| r["result"] == "MISS").count();
    assert_eq!(missed.len(), misses);
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
}
