//! Issue 3 acceptance: the six reference canary files applied in sequence through the real Azure
//! ML client against the in-process sandbox. After each file the sandbox holds exactly what the
//! file says, re-reading live gives an empty plan, and a steady-state re-apply makes no writes
//! and at most two reads per endpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use flightdeck_testkit::azureml_sandbox::*;

fn traffic(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// What the sandbox must hold after file i: traffic, and deployment → instance count.
fn expected(i: usize) -> (BTreeMap<String, i64>, Vec<(&'static str, i64)>) {
    match i {
        0 => (traffic(&[("blue", 100)]), vec![("blue", 1)]),
        1 => (traffic(&[("blue", 100)]), vec![("blue", 2)]),
        2 => (
            traffic(&[("blue", 100), ("green", 0)]),
            vec![("blue", 2), ("green", 2)],
        ),
        3 => (
            traffic(&[("blue", 90), ("green", 10)]),
            vec![("blue", 2), ("green", 2)],
        ),
        4 => (
            traffic(&[("blue", 0), ("green", 100)]),
            vec![("blue", 2), ("green", 2)],
        ),
        _ => (traffic(&[("green", 100)]), vec![("green", 2)]),
    }
}

/// The ARM writes each file must cause, and nothing else ([AML §5], the safe-rollout
/// sequence: deployments before traffic, scale by PATCH of sku.capacity, drain before delete).
const WRITES: [&[&str]; 6] = [
    &[
        "PUT my-endpoint",
        "PUT my-endpoint/deployments/blue",
        "PUT my-endpoint",
    ],
    &["PATCH my-endpoint/deployments/blue"],
    &["PUT my-endpoint/deployments/green"],
    &["PUT my-endpoint"],
    &["PUT my-endpoint"],
    &["DELETE my-endpoint/deployments/blue"],
];

/// `METHOD endpoint[/deployments/d]` of every write in a log.
fn writes_of(log: &[serde_json::Value]) -> Vec<String> {
    log.iter()
        .map(method_path)
        .filter(|(m, _)| m != "GET")
        .map(|(m, p)| {
            let (_, tail) = p.split_once("/onlineEndpoints/").expect("an endpoint path");
            format!("{m} {tail}")
        })
        .collect()
}

#[tokio::test]
async fn the_six_reference_files_converge_the_sandbox_and_a_re_apply_writes_nothing() {
    let env = Env::start(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    env.write_environment(dir.path(), "");
    let mut steady = Vec::new();
    for i in 0..FLOW.len() {
        std::fs::copy(flow_file(i), dir.path().join("my-endpoint.yml")).unwrap();
        let desired = load(dir.path());
        let backend = env.backend(&desired);

        env.clear_log().await;
        let (p, report) = reconcile(&desired, &backend, 8).await;
        assert!(
            !p.is_empty(),
            "{}: a new file must change something",
            FLOW[i]
        );
        assert_eq!(
            writes_of(&env.log().await),
            WRITES[i],
            "{}: the writes sent",
            FLOW[i]
        );
        assert!(
            report.succeeded(),
            "{}: apply failed: {:?}",
            FLOW[i],
            report.error()
        );

        let (want_traffic, want_deployments) = expected(i);
        let got = env.traffic("my-endpoint").await;
        // The sandbox may keep 0% entries for deployments not named; compare the named weights
        // and require every other weight to be zero.
        for (name, weight) in &got {
            assert_eq!(
                want_traffic.get(name).copied().unwrap_or(0),
                *weight,
                "{}: traffic {got:?}",
                FLOW[i]
            );
        }
        for (name, weight) in &want_traffic {
            assert_eq!(got.get(name).copied().unwrap_or(0), *weight, "{}", FLOW[i]);
        }
        let deployments = env.deployments("my-endpoint").await;
        let want: BTreeMap<String, (i64, String)> = want_deployments
            .iter()
            .map(|(n, c)| (n.to_string(), (*c, "Succeeded".to_string())))
            .collect();
        assert_eq!(deployments, want, "{}: deployments", FLOW[i]);

        assert_converged(&desired, &backend, FLOW[i]).await;

        env.clear_log().await;
        let (p, report) = reconcile(&desired, &backend, 8).await;
        let log = env.log().await;
        let (reads, writes) = reads_writes(&log);
        println!(
            "{}: steady-state re-apply: {reads} read(s), {writes} write(s) for 1 endpoint",
            FLOW[i]
        );
        assert!(
            p.is_empty() && report.results.is_empty(),
            "{}: {p:?}",
            FLOW[i]
        );
        assert_eq!(writes, 0, "{}: re-apply wrote: {log:#?}", FLOW[i]);
        assert!(
            reads <= 2,
            "{}: re-apply read {reads} times: {log:#?}",
            FLOW[i]
        );
        steady.push((reads, writes));
    }
    assert_eq!(steady.len(), 6);
}

#[tokio::test]
async fn a_steady_state_re_apply_over_many_endpoints_reads_at_most_twice_per_endpoint() {
    let env = Env::start(Duration::from_millis(10)).await;
    let dir = tempfile::tempdir().unwrap();
    env.write_environment(dir.path(), "");
    let source = std::fs::read_to_string(flow_file(3)).unwrap();
    let endpoints = 6;
    for n in 0..endpoints {
        let text = source.replace("name: my-endpoint", &format!("name: ep-{n}"));
        std::fs::write(dir.path().join(format!("ep-{n}.yml")), text).unwrap();
    }
    let desired = load(dir.path());
    let backend = env.backend(&desired);
    let (_, report) = reconcile(&desired, &backend, 8).await;
    assert!(report.succeeded(), "{:?}", report.error());

    env.clear_log().await;
    let (p, _) = reconcile(&desired, &backend, 8).await;
    let (reads, writes) = reads_writes(&env.log().await);
    println!(
        "steady state over {endpoints} endpoints: {reads} read(s) ({:.2}/endpoint), {writes} write(s)",
        reads as f64 / endpoints as f64
    );
    assert!(p.is_empty());
    assert_eq!(writes, 0);
    assert!(reads <= 2 * endpoints, "{reads} reads");
}
