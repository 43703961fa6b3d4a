//! Which endpoints `flightdeck revert` reverts and the file changes for each: an endpoint's
//! traffic written back to live's (`rollout::revert`), with the file of a deployment that live
//! still serves but HEAD no longer declares restored from history first; or, for a blue/green
//! slot endpoint, its template set back to what the serving slot runs (`rollout::revert_template`).
//! Refusals are errors; nothing has been written when one is returned.

use std::path::Path;

use anyhow::bail;

use super::revert::RevertArgs;
use crate::git_branch::{EnvRepo, Found, HISTORY_LIMIT};
use crate::model::{DesiredState, LiveState};
use crate::plan::compare::deployment_changes;
use crate::rollout::revert::{
    EndpointRevert, FileChange, declares_deployment, revert_endpoint, served_undeclared,
    weights_text,
};
use crate::rollout::revert_template::{TemplateRevert, revert_template};
use crate::rollout::{RolloutRecord, RolloutState, engine};
use crate::{backend, source};

/// A deployment file restored from history.
pub struct Restored {
    pub deployment: String,
    pub found: Found,
}

/// What is reverted for one endpoint.
pub enum What {
    Traffic {
        revert: EndpointRevert,
        restored: Vec<Restored>,
    },
    Template {
        revert: TemplateRevert,
        /// The newest commit whose template has exactly the new text, when one is found.
        same_as: Option<Found>,
    },
}

pub struct Item<'l> {
    pub endpoint: String,
    pub record: Option<&'l RolloutRecord>,
    pub what: What,
    /// Every file change, paths as keyed in the environment's file map.
    pub changes: Vec<FileChange>,
}

/// The environment at HEAD, as `revert` read it.
pub struct Head<'a, 'r> {
    pub repo: &'r EnvRepo,
    pub commit: &'a git2::Commit<'r>,
    pub files: &'a source::FileMap,
    pub desired: &'a DesiredState,
    pub env_dir: &'a Path,
}

/// The record of a rollout of this very desired state that failed (the endpoint is held).
/// `resolved` has its slot endpoints resolved against live, as the rollout's digest is.
fn held<'l>(resolved: &DesiredState, live: &'l LiveState, name: &str) -> Option<&'l RolloutRecord> {
    let record = live.endpoints.get(name)?.rollout.as_ref()?;
    (record.state == RolloutState::Failed
        && record.digest == engine::digest(&resolved.endpoints[name]))
    .then_some(record)
}

/// The endpoints to revert: every held one, or those named. For each, whether it is named.
fn selected<'l>(
    args: &RevertArgs,
    head: &Head<'_, '_>,
    live: &'l LiveState,
) -> anyhow::Result<Vec<(String, Option<&'l RolloutRecord>)>> {
    let desired = head.desired;
    let mut resolved = desired.clone();
    let profile = backend::profile_of(&desired.environment.target);
    // A refused resolution leaves the slot endpoints unresolved: then none of them is held.
    let _ = crate::slots::resolve(&mut resolved, live, profile);
    let mut out = Vec::new();
    for name in desired.endpoints.keys() {
        let named = args.endpoints.contains(name);
        if !args.endpoints.is_empty() && !named {
            continue;
        }
        let record = held(&resolved, live, name);
        if record.is_none() && !named {
            continue;
        }
        if !live.endpoints.contains_key(name) {
            if named {
                bail!("endpoint {name} does not exist live");
            }
            continue;
        }
        out.push((name.clone(), record));
    }
    Ok(out)
}

/// The deployment files to restore so that every deployment live serves is declared again.
fn restores(
    head: &Head<'_, '_>,
    live: &LiveState,
    endpoints: &[&str],
) -> anyhow::Result<Vec<(String, Restored)>> {
    let mut out = Vec::new();
    for name in endpoints {
        let missing = served_undeclared(&head.desired.endpoints[*name], &live.endpoints[*name]);
        for deployment in missing {
            let found = head
                .repo
                .find_in_history(head.commit, HISTORY_LIMIT, |_, text| {
                    declares_deployment(text, name, &deployment)
                })?;
            let Some(found) = found else {
                bail!(
                    "endpoint {name}: live sends traffic to deployment {deployment}, which HEAD no longer declares, and no deployment file declaring it is in the environment in the last {HISTORY_LIMIT} commits (first parent) from HEAD; restore its declaration by hand"
                );
            };
            if head.files.contains_key(&head.env_dir.join(&found.path)) {
                bail!(
                    "endpoint {name}: deployment {deployment} was declared in {} as of {} ({}), but HEAD has another file at that path; restore its declaration by hand",
                    found.path.display(),
                    found.short,
                    found.subject
                );
            }
            out.push((name.to_string(), Restored { deployment, found }));
        }
    }
    Ok(out)
}

/// The file changes of the revert, endpoint by endpoint.
pub fn items<'l>(
    args: &RevertArgs,
    head: &Head<'_, '_>,
    live: &'l LiveState,
) -> anyhow::Result<Vec<Item<'l>>> {
    let env = &head.desired.environment;
    let profile = backend::profile_of(&env.target);
    let selected = selected(args, head, live)?;
    let plain: Vec<&str> = selected
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !env.slots.contains_key(*n))
        .collect();
    let mut restores = restores(head, live, &plain)?;
    // With files restored, the environment is loaded again: the traffic revert needs their
    // deployments declared.
    let reloaded;
    let (files, desired) = if restores.is_empty() {
        (head.files, head.desired)
    } else {
        let changes: Vec<_> = restores
            .iter()
            .map(|(_, r)| {
                (
                    head.repo.rel.join(&r.found.path),
                    Some(r.found.text.clone().into_bytes()),
                )
            })
            .collect();
        let tree = head.repo.tree_with(&head.commit.tree()?, &changes)?;
        let tree = head.repo.repo.find_tree(tree)?;
        let Some(loaded) = super::revert::load_at(
            head.repo,
            &tree,
            head.env_dir,
            "HEAD with the restored files",
        ) else {
            bail!("the environment with the restored files does not load");
        };
        reloaded = loaded;
        (&reloaded.0, &reloaded.1)
    };
    let mut out = Vec::new();
    for (name, record) in selected {
        let live_ep = &live.endpoints[&name];
        if let Some(slots) = env.slots.get(&name) {
            let revert = revert_template(
                files,
                head.env_dir,
                &name,
                slots,
                live_ep,
                &env.drift.ignore,
                profile,
            )?;
            let Some(change) = revert.change.clone() else {
                continue;
            };
            let new = change.new.clone().unwrap_or_default();
            let template = Path::new(&slots.template_file).to_path_buf();
            let same_as = head
                .repo
                .find_in_history(head.commit, HISTORY_LIMIT, |p, t| p == template && t == new)?;
            out.push(Item {
                endpoint: name,
                record,
                what: What::Template { revert, same_as },
                changes: vec![change],
            });
            continue;
        }
        let mine: Vec<Restored> = restores
            .extract_if(.., |(n, _)| *n == name)
            .map(|(_, r)| r)
            .collect();
        let endpoint = &desired.endpoints[&name];
        for r in &mine {
            let (Some(declared), Some(running)) = (
                endpoint.deployments.get(&r.deployment),
                live_ep.deployments.get(&r.deployment),
            ) else {
                continue;
            };
            let differ = deployment_changes(
                &declared.settings,
                &running.settings,
                &env.drift.ignore,
                profile,
            );
            if !differ.is_empty() {
                let fields: Vec<String> = differ
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {} in Git, {} live",
                            c.field,
                            c.to,
                            c.from.as_deref().unwrap_or("(unset)")
                        )
                    })
                    .collect();
                bail!(
                    "endpoint {name}: deployment {} as declared in {} at {} ({}) differs from live: {}; it was changed outside Git since, so restoring that file would not make Git agree with the platform; restore its declaration by hand",
                    r.deployment,
                    r.found.path.display(),
                    r.found.short,
                    r.found.subject,
                    fields.join(", ")
                );
            }
        }
        let revert = revert_endpoint(files, endpoint, live_ep)?;
        if revert.is_empty() && mine.is_empty() {
            continue;
        }
        let mut changes: Vec<FileChange> = mine
            .iter()
            .map(|r| FileChange {
                path: head.env_dir.join(&r.found.path),
                old: None,
                new: Some(r.found.text.clone()),
            })
            .collect();
        changes.extend(revert.changes.iter().cloned());
        out.push(Item {
            endpoint: name,
            record,
            what: What::Traffic {
                revert,
                restored: mine,
            },
            changes,
        });
    }
    Ok(out)
}

/// The commit message: the subject, then per endpoint what changed and why.
pub fn message(args: &RevertArgs, env: &str, items: &[Item<'_>], head: &str) -> String {
    let names: Vec<&str> = items.iter().map(|i| i.endpoint.as_str()).collect();
    let subject = args
        .message
        .clone()
        .unwrap_or_else(|| format!("revert {env}: {} back to what is live", names.join(", ")));
    let mut body = String::new();
    for item in items {
        match &item.what {
            What::Traffic {
                revert: r,
                restored,
            } => {
                body.push_str(&format!(
                    "\n{}: live serves {}; Git declared {}.\n",
                    r.endpoint,
                    weights_text(&r.traffic),
                    weights_text(&r.declared)
                ));
                if r.mirror != r.declared_mirror {
                    body.push_str(&format!(
                        "  mirror: live {}, Git declared {}.\n",
                        weights_text(&r.mirror),
                        weights_text(&r.declared_mirror)
                    ));
                }
                for x in restored {
                    body.push_str(&format!(
                        "  Deployment {} is declared again: {} restored from {} ({}).\n",
                        x.deployment,
                        x.found.path.display(),
                        x.found.short,
                        x.found.subject
                    ));
                }
            }
            What::Template { revert: t, same_as } => {
                let path = item.changes[0].path.display();
                body.push_str(&format!(
                    "\n{}: slot {} serves live; the template {path} is set back to what it runs:\n",
                    t.endpoint, t.serving
                ));
                for f in &t.fields {
                    body.push_str(&format!("  {}: {} -> {}.\n", f.field, f.declared, f.live));
                }
                match same_as {
                    Some(c) => body.push_str(&format!(
                        "  That is the template as of {} ({}).\n",
                        c.short, c.subject
                    )),
                    None => body.push_str(&format!(
                        "  No commit in the last {HISTORY_LIMIT} has this exact template.\n"
                    )),
                }
            }
        }
        match item.record {
            Some(rec) => {
                body.push_str(&format!(
                    "  Held after the rollout of {} failed: {}.\n",
                    rec.candidate,
                    rec.reason.as_deref().unwrap_or("no reason recorded")
                ));
                body.push_str(&format!(
                    "  The failed rollout served revision {}.\n",
                    rec.revision
                        .as_deref()
                        .unwrap_or("(not recorded: applied by `flightdeck apply`)")
                ));
            }
            None => body.push_str("  Not held: named on the command line.\n"),
        }
        if let What::Traffic { revert: r, .. } = &item.what {
            for d in &r.removed {
                body.push_str(&format!(
                    "  Deployment {d} no longer exists live: its file is removed.\n"
                ));
            }
        }
    }
    format!("{subject}\n{body}\nWritten by `flightdeck revert` from {head}.\n")
}
