use std::path::PathBuf;

/// `/work/shared/testdata`, found relative to the crate
/// (`$CARGO_MANIFEST_DIR/../../shared/testdata`).
pub fn testdata() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata");
    assert!(
        dir.join("hal/manifest.json").is_file(),
        "shared test data not found at {} (expected ../../shared/testdata from the workspace root's lustre-bindings/)",
        dir.display()
    );
    dir
}

pub fn read(rel: &str) -> Vec<u8> {
    let path = testdata().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
