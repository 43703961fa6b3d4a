//! Tests' request files: read from the environment's tree (never from disk) and attached to
//! the deployments each `tests:` key names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::diagnostics::Diagnostic;
use super::files::Tree;
use super::load::read_text;
use super::located::Loc;
use super::paths::inside_environment;
use super::raw_environment::{RawTest, RequestSource};
use super::validate::{Declared, test_key_problem};
use super::yaml::Pos;
use crate::model::{Endpoint, TestRequest, TestSpec};
use crate::smoke::{MAX_REQUEST_BYTES, MAX_REQUEST_FILES};
use crate::tree;

/// Reads each test's request file from the tree (never from disk) and gives every deployment
/// built in `endpoints` its test (keys are checked against every `declared` endpoint): a `endpoint/deployment` key beats an `endpoint` key, which beats `*`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attach_tests(
    incomplete: bool,
    tree: &dyn Tree,
    dir: &Path,
    env_path: &Path,
    tests: &[RawTest],
    endpoints: &mut BTreeMap<String, Endpoint>,
    declared: &Declared,
    out: &mut Vec<Diagnostic>,
) -> BTreeMap<String, TestSpec> {
    let mut specs: BTreeMap<String, TestSpec> = BTreeMap::new();
    for test in tests {
        if let Some(problem) = test_key_problem(&test.key, declared) {
            // A key may name an endpoint of a file that does not parse: that file's own errors
            // are the problem, not this key.
            if !incomplete {
                out.push(Diagnostic::new(env_path, test.key_pos, problem));
            }
            continue;
        }
        let Some(requests) = read_requests(tree, dir, env_path, &test.source, out) else {
            continue;
        };
        specs.insert(
            test.key.clone(),
            TestSpec {
                requests,
                expect_status: test.expect_status,
                expect_body_contains: test.expect_body_contains.clone(),
                expect_json: test.expect_json.clone(),
                latency_budget: test.latency_budget,
                retries: test.retries,
            },
        );
    }
    for (endpoint_name, endpoint) in endpoints.iter_mut() {
        for (name, deployment) in endpoint.deployments.iter_mut() {
            let key = format!("{endpoint_name}/{name}");
            deployment.test = specs
                .get(key.as_str())
                .or_else(|| specs.get(endpoint_name.as_str()))
                .or_else(|| specs.get("*"))
                .cloned();
        }
    }
    specs
}

/// Reads a test's request bodies from the tree (never from disk): one file, a list, or every
/// `*.json` directly in a directory (sorted), each inside the environment directory, at most
/// `MAX_REQUEST_FILES` files and `MAX_REQUEST_BYTES` together. Every problem goes to `out`.
fn read_requests(
    tree: &dyn Tree,
    dir: &Path,
    env_path: &Path,
    source: &RequestSource,
    out: &mut Vec<Diagnostic>,
) -> Option<Vec<TestRequest>> {
    let before = out.len();
    let refused = |key: &str, file: &Loc<String>, why: &str| {
        let message = format!("{key} `{}`: {why}", file.value);
        Diagnostic::new(env_path, file.pos, message)
    };
    let mut files: Vec<(Pos, String, String)> = Vec::new();
    let mut read_one =
        |key: &str, file: &Loc<String>, out: &mut Vec<Diagnostic>| match inside_environment(
            &file.value,
        ) {
            Ok(rel) => match read_text(tree, &dir.join(rel)) {
                Ok(body) => files.push((file.pos, file.value.clone(), body)),
                Err(why) => out.push(refused(key, file, &why)),
            },
            Err(why) => out.push(refused(key, file, why)),
        };
    let (key, pos) = match source {
        RequestSource::File(file) => {
            read_one("request_file", file, out);
            ("request_file", file.pos)
        }
        RequestSource::Files(list) => {
            for file in list {
                read_one("request_files", file, out);
            }
            ("request_files", list[0].pos)
        }
        RequestSource::Dir(d) => {
            let rel = match inside_environment(&d.value) {
                Ok(rel) => rel,
                Err(why) => {
                    out.push(refused("request_dir", d, why));
                    return None;
                }
            };
            let root = dir.join(rel);
            let mut found: Vec<PathBuf> = tree
                .files_in(&root)
                .into_iter()
                .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
                .collect();
            found.sort();
            if found.is_empty() {
                out.push(refused("request_dir", d, "holds no `*.json` file"));
                return None;
            }
            for path in found {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                let shown = format!("{}/{name}", d.value.trim_end_matches('/'));
                match read_text(tree, &path) {
                    Ok(body) => files.push((d.pos, shown, body)),
                    Err(why) => out.push(refused("request_dir", d, &format!("{shown}: {why}"))),
                }
            }
            ("request_dir", d.pos)
        }
    };
    if files.len() > MAX_REQUEST_FILES {
        out.push(Diagnostic::new(
            env_path,
            pos,
            format!(
                "{key}: {} request files, at most {MAX_REQUEST_FILES}",
                files.len()
            ),
        ));
    }
    let total: usize = files.iter().map(|(_, _, b)| b.len()).sum();
    if total > MAX_REQUEST_BYTES {
        out.push(Diagnostic::new(
            env_path,
            pos,
            format!(
                "{key}: the request files hold {} together, at most {}",
                tree::bytes(total as u64),
                tree::bytes(MAX_REQUEST_BYTES as u64)
            ),
        ));
    }
    (out.len() == before).then(|| {
        files
            .into_iter()
            .map(|(_, file, body)| TestRequest::new(file, body))
            .collect()
    })
}
