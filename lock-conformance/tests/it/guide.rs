//! docs/new-backend.md shows the out-of-tree store `outside/lock-sqlite`, which CI builds
//! and tests as a crate of its own: each Rust or TOML block of the page must be the file
//! it names, verbatim, so what a reader copies is what was compiled and tested.

use std::path::Path;

#[test]
fn every_code_block_of_the_guide_is_a_file_ci_builds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(root.join("docs/new-backend.md")).expect("docs/new-backend.md");
    let lines: Vec<&str> = guide.lines().collect();
    let mut files = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].strip_prefix("```").filter(|l| !l.is_empty()) else {
            i += 1;
            continue;
        };
        let end = lines[i + 1..].iter().position(|l| *l == "```").map(|n| i + 1 + n).expect("every block is closed");
        let body: String = lines[i + 1..end].iter().map(|l| format!("{l}\n")).collect();
        if lang != "sh" {
            let marker = i.checked_sub(1).map(|p| lines[p]).unwrap_or_default();
            let file = marker
                .strip_prefix("<!-- file: ")
                .and_then(|m| m.strip_suffix(" -->"))
                .unwrap_or_else(|| panic!("the {lang} block at line {} names no file (<!-- file: PATH --> above it)", i + 1));
            let text = std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(
                body == text,
                "the block at line {} of docs/new-backend.md is not {file} as it is (scripts/sync-guide brings it up to date)",
                i + 1
            );
            files.push(file.to_string());
        }
        i = end + 1;
    }
    for needed in ["Cargo.toml", "src/lib.rs", "src/main.rs", "tests/it/main.rs", "tests/it/conformance.rs", "tests/it/mutant.rs"] {
        assert!(files.contains(&format!("outside/lock-sqlite/{needed}")), "the guide shows outside/lock-sqlite/{needed}: {files:?}");
    }
}
