use super::*;
use crate::apply::ApplyReport;
use crate::plan::Plan;

/// Endpoints `ep-NAME` with one deployment of `count` instances.
fn desired(yaml: &[(&str, u32)], policy: &str) -> DesiredState {
    let mut files: Vec<(String, String)> = vec![(
        "environment.yaml".into(),
        format!("name: env\ntarget:\n  state_file:\n    path: live.json\n{policy}"),
    )];
    for (name, count) in yaml {
        files.push((
            format!("ep-{name}.yml"),
            format!(
                "name: ep-{name}\ntraffic:\n  blue: 100\ndeployments:\n  - name: blue\n    model: azureml:m:1\n    instance_count: {count}\n"
            ),
        ));
    }
    let files: crate::source::FileMap = files
        .into_iter()
        .map(|(p, c)| {
            (
                std::path::Path::new("environments/e").join(p),
                c.into_bytes(),
            )
        })
        .collect();
    let tree = crate::source::EnvTree::from(files);
    crate::spec::load_tree(
        &tree,
        std::path::Path::new("environments/e"),
        crate::backend::profile_of,
    )
    .unwrap()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| format!("ep-{s}")).collect()
}

const RESYNC: Duration = Duration::from_secs(600);

fn settled(state: &DesiredState, at: Instant) -> Targeting {
    let mut t = Targeting::default();
    let fp = Fingerprint::of(state);
    assert_eq!(t.scope(&fp, at, RESYNC), Scope::Full(Full::First));
    t.record(&Scope::Full(Full::First), fp, &ReconcileOutcome::InSync, at);
    t
}

#[tokio::test(start_paused = true)]
async fn after_a_full_tick_only_the_endpoints_whose_desired_state_changed_are_reconciled() {
    let now = Instant::now();
    let before = desired(
        &[("a", 1), ("b", 1), ("c", 1), ("e", 1), ("f", 1), ("g", 1)],
        "",
    );
    let t = settled(&before, now);
    let same = Fingerprint::of(&before);
    assert_eq!(t.scope(&same, now, RESYNC), Scope::Only(BTreeSet::new()));
    let changed = desired(
        &[("a", 1), ("b", 2), ("d", 1), ("e", 1), ("f", 1), ("g", 1)],
        "",
    );
    assert_eq!(
        t.scope(&Fingerprint::of(&changed), now, RESYNC),
        Scope::Only(names(&["b", "c", "d"])),
        "b changed, c was removed, d was added"
    );
}

#[tokio::test(start_paused = true)]
async fn an_environment_change_or_the_resync_interval_makes_the_tick_full() {
    let now = Instant::now();
    let before = desired(&[("a", 1), ("b", 1)], "");
    let t = settled(&before, now);
    let ignored = desired(
        &[("a", 1), ("b", 1)],
        "drift:\n  ignore: [instance_count]\n",
    );
    assert_eq!(
        t.scope(&Fingerprint::of(&ignored), now, RESYNC),
        Scope::Full(Full::Environment)
    );
    let same = Fingerprint::of(&before);
    let later = now + RESYNC;
    assert_eq!(t.scope(&same, later, RESYNC), Scope::Full(Full::Resync));
    assert_eq!(
        t.scope(&same, now, Duration::ZERO),
        Scope::Full(Full::Always),
        "0s turns targeting off"
    );
}

#[tokio::test(start_paused = true)]
async fn a_change_to_most_endpoints_is_read_in_full() {
    let now = Instant::now();
    let t = settled(&desired(&[("a", 1), ("b", 1), ("c", 1)], ""), now);
    let most = desired(&[("a", 2), ("b", 2), ("c", 1)], "");
    assert_eq!(
        t.scope(&Fingerprint::of(&most), now, RESYNC),
        Scope::Full(Full::Most)
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_targeted_tick_is_retried_with_the_same_endpoints_and_rollouts_stay_in_scope() {
    let now = Instant::now();
    let before = desired(&[("a", 1), ("b", 1), ("c", 1)], "");
    let mut t = settled(&before, now);
    let changed = desired(&[("a", 2), ("b", 1), ("c", 1)], "");
    let fp = Fingerprint::of(&changed);
    let scope = t.scope(&fp, now, RESYNC);
    assert_eq!(scope, Scope::Only(names(&["a"])));
    let failed = ReconcileOutcome::ApplyFailed {
        plan: Plan::default(),
        report: ApplyReport::default(),
    };
    t.record(&scope, fp.clone(), &failed, now);
    assert_eq!(t.scope(&fp, now, RESYNC), Scope::Only(names(&["a"])));

    let mut plan = Plan::default();
    plan.rollouts.push(crate::rollout::RolloutView {
        endpoint: "ep-c".into(),
        state: "baking".into(),
        stage: Some(1),
        stages: 2,
        candidate: None,
        declared: Default::default(),
        traffic: Default::default(),
        message: String::new(),
        next_check_seconds: Some(60),
        verdicts: vec![],
    });
    let applied = ReconcileOutcome::Applied {
        plan,
        report: ApplyReport::default(),
    };
    t.record(&scope, fp.clone(), &applied, now);
    assert_eq!(
        t.scope(&fp, now, RESYNC),
        Scope::Only(names(&["c"])),
        "a is applied; c's rollout must be advanced"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_full_tick_is_full_again() {
    let now = Instant::now();
    let before = desired(&[("a", 1)], "");
    let mut t = Targeting::default();
    let fp = Fingerprint::of(&before);
    let failed = ReconcileOutcome::Aborted("no".into());
    t.record(&Scope::Full(Full::First), fp.clone(), &failed, now);
    assert_eq!(t.scope(&fp, now, RESYNC), Scope::Full(Full::First));
}

#[tokio::test(start_paused = true)]
async fn the_tick_after_an_apply_reads_back_what_it_wrote_once_then_nothing() {
    let now = Instant::now();
    let before = desired(&[("a", 1), ("b", 1)], "");
    let mut t = settled(&before, now);
    let changed = desired(&[("a", 2), ("b", 1)], "");
    let fp = Fingerprint::of(&changed);
    let scope = t.scope(&fp, now, RESYNC);
    assert_eq!(scope, Scope::Only(names(&["a"])));
    // The plan of that tick: ep-a's instance count, against ep-a's old live state.
    let live = crate::model::LiveState::from_desired(&before);
    let plan = crate::plan::plan(
        &changed,
        &live,
        &crate::plan::PlanOptions::default(),
        crate::backend::profile_of(&changed.environment.target),
    )
    .unwrap();
    assert!(!plan.steps.is_empty());
    let applied = ReconcileOutcome::Applied {
        plan,
        report: ApplyReport::default(),
    };
    t.record(&scope, fp.clone(), &applied, now);
    assert_eq!(
        t.scope(&fp, now, RESYNC),
        Scope::Only(names(&["a"])),
        "the next tick reads ep-a back"
    );
    t.record(
        &Scope::Only(names(&["a"])),
        fp.clone(),
        &ReconcileOutcome::InSync,
        now,
    );
    assert_eq!(t.scope(&fp, now, RESYNC), Scope::Only(BTreeSet::new()));
}
