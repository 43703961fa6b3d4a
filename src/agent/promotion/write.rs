//! One promotion written: the promote library's edit, commit and push on the agent's clone
//! (blocking; `agent::promotion` runs it on a blocking thread).

use super::{Failure, Outcome, Worktree};
use crate::promote::{PromoteError, PromoteRequest};
use crate::promotion::PromotionMode;
use crate::spec::promote::PromoteEditError;

/// Makes the edit, commits it and pushes it (blocking; the plan runs on `handle`).
pub(super) fn write(
    wt: &Worktree,
    request: &PromoteRequest,
    mode: PromotionMode,
    handle: &tokio::runtime::Handle,
) -> Result<Outcome, Failure> {
    let prepared = match crate::promote::prepare(request) {
        Ok(p) => p,
        Err(PromoteError::Edit(PromoteEditError::Unchanged { .. })) => {
            return Ok(Outcome::Unchanged);
        }
        Err(e @ PromoteError::Invalid { .. }) => {
            let detail: Vec<String> = match &e {
                PromoteError::Invalid { diagnostics, .. } => {
                    diagnostics.iter().map(ToString::to_string).collect()
                }
                _ => Vec::new(),
            };
            return Err(Failure::Refused(format!("{e}: {}", detail.join("; "))));
        }
        Err(e @ (PromoteError::Repo(_) | PromoteError::Dirty(_))) => {
            return Err(Failure::Failed(e.to_string()));
        }
        Err(e) => return Err(Failure::Refused(e.to_string())),
    };
    let branch = prepared.branch();
    match mode {
        PromotionMode::Commit => wt.delete_branch(&branch),
        PromotionMode::PullRequest => {
            if wt
                .remote_has(&branch)
                .map_err(|e| Failure::Failed(e.to_string()))?
            {
                return Ok(Outcome::AlreadyProposed(branch));
            }
            wt.delete_branch(&branch);
        }
    }
    let live = prepared.head_as_live();
    let promotion = handle
        .block_on(prepared.commit(&live, "HEAD (offline)"))
        .map_err(|e| match e {
            PromoteError::Repo(_) => Failure::Failed(e.to_string()),
            e => Failure::Refused(e.to_string()),
        })?;
    let pushed = match mode {
        PromotionMode::Commit => wt.push(&promotion.branch, wt.branch()),
        PromotionMode::PullRequest => wt.push(&promotion.branch, &promotion.branch),
    };
    if mode == PromotionMode::Commit {
        wt.delete_branch(&promotion.branch);
    }
    pushed.map_err(|e| Failure::Failed(e.to_string()))?;
    let title = promotion
        .message
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    Ok(Outcome::Committed {
        commit: promotion.commit,
        branch: promotion.branch,
        title,
        message: promotion.message,
    })
}
