//! Running the real binary against a Kubernetes environment: a kubeconfig that points at the fake
//! API server, fast timing knobs, and copies of the shipped `environments/` to edit.
//!
//! Use from a test: `use flightdeck_testkit::k8s_cli;`.

use std::path::{Path, PathBuf};
use std::process::Output;

/// Runs `flightdeck ARGS` in `dir` with `KUBECONFIG=kubeconfig`.
pub async fn flightdeck(args: &[&str], dir: &Path, kubeconfig: &Path) -> Output {
    tokio::process::Command::new(crate::flightdeck_bin())
        .args(args)
        .current_dir(dir)
        .env("KUBECONFIG", kubeconfig)
        .env("FLIGHTDECK_K8S_POLL_INTERVAL", "20ms")
        .env("FLIGHTDECK_K8S_MAKE_BEFORE_BREAK", "30ms")
        .env("FLIGHTDECK_K8S_ROLLOUT_TIMEOUT", "20s")
        .output()
        .await
        .expect("run flightdeck")
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

/// stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Copies `environments/NAME` to `to/NAME`.
pub fn copy_env(name: &str, to: &Path) -> PathBuf {
    let src = crate::repo_root().join("environments").join(name);
    let dst = to.join(name);
    std::fs::create_dir_all(&dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read env") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dst.join(entry.file_name())).expect("copy");
    }
    dst
}

/// Replaces `from` (which must occur) with `to` in a file.
pub fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).expect("write");
}

/// A kubeconfig for `server` with namespace `models`, written to `dir/kubeconfig`.
pub fn kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
             users:\n- name: tester\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    \
             user: tester\n    namespace: models\ncurrent-context: fake\n"
        ),
    )
    .expect("write kubeconfig");
    path
}
