//! The Git source over smart HTTP with a token, against git's own `git http-backend` on
//! 127.0.0.1 (support/git_http.rs): the token goes as basic auth for `x-access-token`, fetches
//! into the cache are incremental, and a wrong or missing token is a clear error that never
//! shows the token.

use std::path::PathBuf;
use std::sync::Arc;

use flightdeck::source::{GitAuth, GitConfig, GitRef, GitSource, Secret, Source};
use flightdeck_testkit::GitRepo;
use flightdeck_testkit::git_http::GitHttp;

const TOKEN: &str = "ghs_s3cr3t-token-value";

fn source(url: &str, cache: &std::path::Path, token: Option<&str>) -> Arc<GitSource> {
    let config = GitConfig {
        url: url.to_string(),
        reference: GitRef::Branch("main".into()),
        paths: vec![PathBuf::from("environments/dev")],
        cache_dir: cache.to_path_buf(),
        auth: GitAuth {
            token: token.map(Secret::new),
            ..GitAuth::default()
        },
    };
    Arc::new(GitSource::new(config, None).unwrap())
}

/// Bytes of the upload-pack responses (the packs) served since `from`.
fn pack_bytes(server: &GitHttp, from: usize) -> usize {
    server.served()[from..]
        .iter()
        .filter(|s| s.path.ends_with("/git-upload-pack") && s.status == 200)
        .map(|s| s.bytes)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_over_http_with_a_token_are_incremental() {
    let upstream = GitRepo::new();
    // 300 endpoint files of ~1 KiB each, so a full pack is clearly bigger than a one-file change.
    for i in 0..300 {
        let body: String = (0..40)
            .map(|line| format!("# endpoint {i} line {line} {}\n", i * 7919 + line * 104_729))
            .collect();
        upstream.write(&format!("environments/dev/ep-{i:03}.yaml"), &body);
    }
    let first = upstream.commit("300 endpoints");
    let root = upstream.dir.path().parent().unwrap();
    let name = upstream.dir.path().file_name().unwrap().to_str().unwrap();
    let server = GitHttp::start(root, TOKEN).await;
    let url = format!("{}/{name}/.git", server.base);
    let cache = tempfile::tempdir().unwrap();
    let src = source(&url, cache.path(), Some(TOKEN));

    let snapshot = src.fetch().await.unwrap();
    assert_eq!(snapshot.revision, first);
    let files = snapshot.envs[&PathBuf::from("environments/dev")]
        .as_ref()
        .unwrap();
    assert_eq!(files.len(), 300);
    let authenticated: Vec<_> = server
        .served()
        .into_iter()
        .filter(|s| s.status != 401)
        .collect();
    assert!(!authenticated.is_empty());
    assert!(
        authenticated
            .iter()
            .all(|s| s.user.as_deref() == Some("x-access-token")),
        "{authenticated:?}"
    );
    let full = pack_bytes(&server, 0);

    upstream.write("environments/dev/ep-007.yaml", "traffic: changed\n");
    let second = upstream.commit("one endpoint changes");
    let before = server.served().len();
    let snapshot = src.fetch().await.unwrap();
    assert_eq!(snapshot.revision, second);
    let files = snapshot.envs[&PathBuf::from("environments/dev")]
        .as_ref()
        .unwrap();
    assert_eq!(
        files[&PathBuf::from("environments/dev/ep-007.yaml")],
        b"traffic: changed\n"
    );
    let incremental = pack_bytes(&server, before);
    eprintln!("full fetch: {full} pack bytes; after a one-file commit: {incremental} pack bytes");
    assert!(
        incremental * 20 < full,
        "the second fetch sends only what changed: {incremental} vs {full} bytes"
    );

    // Nothing new: the fetch negotiates and transfers no pack.
    let before = server.served().len();
    assert_eq!(src.fetch().await.unwrap().revision, second);
    assert!(
        pack_bytes(&server, before) < 200,
        "{:?}",
        &server.served()[before..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_token_is_a_clear_error_without_the_token() {
    let upstream = GitRepo::new();
    upstream.write("environments/dev/x.yaml", "v: 1\n");
    upstream.commit("first");
    let root = upstream.dir.path().parent().unwrap();
    let name = upstream.dir.path().file_name().unwrap().to_str().unwrap();
    let server = GitHttp::start(root, TOKEN).await;
    let url = format!("{}/{name}/.git", server.base);

    let cache = tempfile::tempdir().unwrap();
    let wrong = "ghs_wrong-token";
    let err = source(&url, cache.path(), Some(wrong))
        .fetch()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), "fetch", "{text}");
    assert!(text.contains("authentication failed"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(TOKEN), "{text}");

    let err = source(&url, cache.path(), None).fetch().await.unwrap_err();
    assert!(
        err.to_string().contains("repository needs credentials"),
        "{err}"
    );
    assert!(
        server.served().iter().all(|s| s.status == 401),
        "nothing was served without the right token"
    );
}
