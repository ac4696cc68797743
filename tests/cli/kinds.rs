//! The node reference is generated from the registry.

use crate::util::{Dir, stdout};

#[test]
fn docs_nodes_md_is_current() {
    let d = Dir::new();
    let mut c = d.cedm();
    c.env_remove("CEDM_TOY_KINDS");
    let o = c.args(["kinds", "--markdown"]).output().unwrap();
    assert!(o.status.success());
    let generated = stdout(&o);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/nodes.md");
    if std::env::var_os("CEDM_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/nodes.md is stale: run `cargo run -- kinds --markdown > docs/nodes.md`"
    );
}

#[test]
fn kinds_lists_and_describes() {
    let d = Dir::new();
    let list = stdout(&d.run(&["kinds"]));
    assert!(list.contains("data/idx"), "{list}");
    let one = stdout(&d.run(&["kinds", "data/idx"]));
    assert!(
        one.contains("param images") && one.contains("required"),
        "{one}"
    );
    let bad = d.run(&["kinds", "nope/x"]);
    assert_eq!(bad.status.code(), Some(2));
}
