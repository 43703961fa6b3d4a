//! How a full live read spends its round trips (issue #13, the in-sync tick at 10,000 endpoints):
//! deployment lists overlap each other and the endpoint list's later pages. Paused time: the
//! fake's answer delays are virtual, and each request's arrival (`Seen::at`) is on that clock,
//! so the assertions are about which requests were in flight together, not about speed.

use std::time::Duration;

use flightdeck::backend::Backend;
use flightdeck::backend::azureml::READ_CONCURRENCY;
use flightdeck_testkit::arm_fake::*;
use serde_json::json;

const SLOW: Duration = Duration::from_secs(10);

fn page(names: &[&str], next: Option<&str>) -> serde_json::Value {
    let value: Vec<_> = names
        .iter()
        .map(|n| endpoint_body(n, "Succeeded", json!({"blue": 100}), json!({})))
        .collect();
    match next {
        Some(link) => json!({"value": value, "nextLink": link}),
        None => json!({"value": value}),
    }
}

fn deployments(fake: &Fake, endpoint: &str, delay: Duration) {
    fake.on(
        "GET",
        &eps(&format!("/{endpoint}/deployments")),
        vec![
            Canned::json(
                200,
                json!({"value": [deployment_body("blue", "Succeeded", 1)]}),
            )
            .delay(delay),
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn deployment_lists_of_a_page_start_while_the_next_page_is_still_on_its_way() {
    let fake = Fake::start().await;
    let next = format!("{{base}}{}?api-version=2025-12-01&$skipToken=2", eps(""));
    fake.on_query(
        "GET",
        &eps(""),
        "skipToken=2",
        vec![Canned::json(200, page(&["c"], None)).delay(SLOW)],
    );
    fake.on(
        "GET",
        &eps(""),
        vec![Canned::json(200, page(&["a", "b"], Some(&next)))],
    );
    for name in ["a", "b", "c"] {
        deployments(&fake, name, Duration::ZERO);
    }

    let live = backend(&fake).read_live().await.unwrap();

    let names: Vec<&str> = live.endpoints.keys().map(String::as_str).collect();
    assert_eq!(names, ["a", "b", "c"], "every page's endpoints are read");
    assert!(
        live.endpoints
            .values()
            .all(|e| e.deployments.contains_key("blue"))
    );
    let log = fake.log();
    let second_page = log
        .iter()
        .find(|s| s.path == eps("") && s.query.contains("skipToken=2"))
        .expect("the second page was asked for");
    for name in ["a", "b"] {
        let list = log
            .iter()
            .find(|s| s.path == eps(&format!("/{name}/deployments")))
            .unwrap();
        assert!(
            list.at < second_page.at + SLOW,
            "the deployments of {name} (first page) were asked for before the second page was answered"
        );
    }
    fake.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_full_read_keeps_its_read_concurrency_of_deployment_lists_in_flight() {
    let fake = Fake::start().await;
    let count = READ_CONCURRENCY + 4;
    let names: Vec<String> = (0..count).map(|i| format!("ep-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    fake.on("GET", &eps(""), vec![Canned::json(200, page(&refs, None))]);
    for name in &names {
        deployments(&fake, name, SLOW);
    }

    let live = backend(&fake).read_live().await.unwrap();

    assert_eq!(live.endpoints.len(), count);
    let lists: Vec<_> = fake
        .log()
        .into_iter()
        .filter(|s| s.path.ends_with("/deployments"))
        .collect();
    assert_eq!(lists.len(), count, "one deployment list per endpoint");
    let first = lists[0].at;
    let together = lists.iter().filter(|s| s.at < first + SLOW).count();
    assert_eq!(
        together, READ_CONCURRENCY,
        "{READ_CONCURRENCY} deployment lists were in flight before the first was answered, no more"
    );
    fake.stop().await;
}
