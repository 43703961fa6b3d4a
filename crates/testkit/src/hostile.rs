//! Hostile environment trees for the reader's limits and symlink policy: a valid environment to
//! start from, and Git commits built object by object (one blob named from thousands of paths).

use std::path::Path;

use git2::{Oid, Repository, Signature};

/// A marker that only ever appears inside request bodies and files outside the environment:
/// output that contains it leaked content.
pub const MARKER: &str = "SECRET-MARKER-7f3a91";

pub const ENVIRONMENT: &str = "name: test-env
target:
  state_file:
    path: live.json
tests:
  \"*\":
    request_file: req.json
";
pub const ENDPOINT: &str = "name: my-endpoint\ntraffic:\n  blue: 100\n";
pub const BLUE: &str =
    "name: blue\nendpoint_name: my-endpoint\nmodel: azureml:model-1:1\ninstance_count: 1\n";

/// The request body every valid environment here uses.
pub fn request_body() -> String {
    format!("{{\"data\": [[1, 2]], \"note\": \"{MARKER}\"}}")
}

/// Writes a valid environment (state file, one endpoint, one deployment, one test) into `dir`.
pub fn write_environment(dir: &Path, environment: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("environment.yaml"), environment).unwrap();
    std::fs::write(dir.join("endpoint.yml"), ENDPOINT).unwrap();
    std::fs::write(dir.join("blue.yml"), BLUE).unwrap();
    std::fs::write(dir.join("req.json"), request_body()).unwrap();
}

/// Commits, on `reference`, the tree of `base` (a commit) with `env` replaced by a directory
/// holding the valid environment plus `many/<i>.json` for `0..paths`, every one naming the same
/// blob of `blob_bytes` zero bytes. The blob compresses to a few KiB and each extra path costs
/// a tree entry, so 10,000 paths make a repository of a few hundred KiB.
pub fn commit_one_blob_many_paths(
    repo: &Repository,
    reference: &str,
    env: &str,
    blob_bytes: usize,
    paths: usize,
) -> Oid {
    let big = repo.blob(&vec![0u8; blob_bytes]).unwrap();
    let mut many = repo.treebuilder(None).unwrap();
    for i in 0..paths {
        many.insert(format!("{i}.json"), big, 0o100644).unwrap();
    }
    let many = many.write().unwrap();
    let mut env_tree = repo.treebuilder(None).unwrap();
    let files = [
        ("environment.yaml", ENVIRONMENT.to_string()),
        ("endpoint.yml", ENDPOINT.to_string()),
        ("blue.yml", BLUE.to_string()),
        ("req.json", request_body()),
    ];
    for (name, text) in files {
        let blob = repo.blob(text.as_bytes()).unwrap();
        env_tree.insert(name, blob, 0o100644).unwrap();
    }
    env_tree.insert("many", many, 0o040000).unwrap();
    // `environments/dev`: one tree per component, innermost first.
    let mut tree = env_tree.write().unwrap();
    for name in env.rsplit('/') {
        let mut parent = repo.treebuilder(None).unwrap();
        parent.insert(name, tree, 0o040000).unwrap();
        tree = parent.write().unwrap();
    }
    let root = repo.find_tree(tree).unwrap();
    let sig = Signature::now("t", "t@example.com").unwrap();
    repo.commit(Some(reference), &sig, &sig, "hostile", &root, &[])
        .unwrap()
}
