//! End to end with `verify_keys`: the agent applies only commits signed by a trusted OpenPGP
//! or SSH key. An unsigned commit and one signed by a stranger change nothing and show in
//! /status and /metrics; the next trusted commit is applied.

use std::time::Duration;

use flightdeck_testkit::openpgp::PgpKey;
use flightdeck_testkit::*;
use serde_json::json;
use ssh_key::private::{Ed25519Keypair, PrivateKey};
use ssh_key::{HashAlg, LineEnding};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_commits_signed_by_trusted_openpgp_or_ssh_keys_are_applied() {
    let release = PgpKey::with_signing_subkey(11, "Release <release@example.com>");
    let stranger = PgpKey::new(12, "Mallory <mallory@example.com>");
    let operator = PrivateKey::from(Ed25519Keypair::from_seed(&[5; 32]));
    let ssh_sign = |data: &[u8]| {
        operator
            .sign("git", HashAlg::Sha512, data)
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap()
    };
    let keys = tempfile::tempdir().unwrap();
    let release_asc = keys.path().join("release.asc");
    std::fs::write(&release_asc, release.public_armored()).unwrap();
    let allowed_signers = keys.path().join("allowed_signers");
    std::fs::write(
        &allowed_signers,
        format!(
            "ops@example.com namespaces=\"git\" {}\n",
            operator.public_key().to_openssh().unwrap()
        ),
    )
    .unwrap();

    let sandbox = start_sandbox().await;
    let arm = Arm::new(&sandbox).await;
    let repo = GitRepo::new();
    repo.write_sandbox_environment();
    let first = repo.commit_signed("sandbox environment", |d| release.sign(d));
    let mut config = agent_config(repo.dir.path(), &sandbox, Duration::from_millis(300), None);
    config.verify_keys = vec![release_asc, allowed_signers];
    let agent = start_agent(config).await;
    let base = agent.base.clone();
    let t = Duration::from_secs(20);
    let env = "environments/sandbox";

    eventually("the signed commit is applied: blue at 100%", t, || async {
        arm.traffic("my-endpoint").await == Some(json!({"blue": 100}))
            && status(&base).await["environments"][env]["applied_commit"] == first.as_str()
    })
    .await;

    // An unsigned commit and a commit by an untrusted key are refused; nothing is written.
    let flight = endpoint_yaml(&[("blue", 1), ("green", 2)], &[("blue", 90), ("green", 10)]);
    for (what, sign, reason) in [
        ("unsigned", None, "commit is not signed"),
        (
            "signed by a stranger",
            Some(&stranger),
            "which is not a trusted key",
        ),
    ] {
        let before = arm.last_seq().await;
        repo.write("environments/sandbox/my-endpoint.yml", &flight);
        let commit = match sign {
            None => repo.commit(what),
            Some(key) => repo.commit_signed(what, |d| key.sign(d)),
        };
        eventually(&format!("/status reports the {what} commit"), t, || async {
            let error = status(&base).await["last_fetch_error"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            error.contains(&commit) && error.contains(reason)
        })
        .await;
        another_round(&base).await;
        assert_eq!(
            arm.writes_after(before).await,
            Vec::<serde_json::Value>::new(),
            "no writes for a commit {what}"
        );
        let s = status(&base).await;
        assert_eq!(
            s["revision"],
            first.as_str(),
            "the last good revision stays"
        );
        assert_eq!(s["environments"][env]["applied_commit"], first.as_str());
    }
    let metrics = metrics(&base).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("flightdeck_source_errors_total{kind=\"verify\"}")),
        "{metrics}"
    );

    // The operator signs the same change with an SSH key: it is applied.
    repo.write("environments/sandbox/my-endpoint.yml", &flight);
    let signed = repo.commit_signed("flight green 10%, signed", ssh_sign);
    eventually("the ssh-signed commit is applied", t, || async {
        arm.traffic("my-endpoint").await == Some(json!({"blue": 90, "green": 10}))
    })
    .await;
    eventually("status shows it applied and no fetch error", t, || async {
        let s = status(&base).await;
        s["environments"][env]["applied_commit"] == signed.as_str()
            && s["last_fetch_error"].is_null()
    })
    .await;

    agent.stop().await;
    sandbox.shutdown().await;
}
