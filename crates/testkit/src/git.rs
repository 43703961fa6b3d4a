//! `GitRepo`: a throw-away Git repository on `main`, with plain and signed commits.

use git2::{Repository, Signature};

use crate::agent::{ENVIRONMENT, endpoint_yaml};

/// Makes the armored `gpgsig` value for a commit's bytes.
type SignFn<'a> = dyn Fn(&[u8]) -> String + 'a;

pub struct GitRepo {
    pub dir: tempfile::TempDir,
    repo: Repository,
}

impl Default for GitRepo {
    fn default() -> GitRepo {
        GitRepo::new()
    }
}

impl GitRepo {
    pub fn new() -> GitRepo {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        GitRepo { dir, repo }
    }

    /// The repository itself, for building objects by hand (see `hostile`).
    /// The `-`/`+` lines of commit `id`'s diff against its first parent (trailing whitespace
    /// trimmed), and the files it touches, in diff order.
    pub fn commit_diff(&self, id: &str) -> (Vec<String>, Vec<String>) {
        let repo = &self.repo;
        let commit = repo.find_commit(git2::Oid::from_str(id).unwrap()).unwrap();
        let parent = commit.parent(0).unwrap();
        let diff = repo
            .diff_tree_to_tree(
                Some(&parent.tree().unwrap()),
                Some(&commit.tree().unwrap()),
                None,
            )
            .unwrap();
        let mut lines = Vec::new();
        let mut paths = Vec::new();
        diff.print(git2::DiffFormat::Patch, |delta, _, line| {
            let path = delta.new_file().path().unwrap().display().to_string();
            if !paths.contains(&path) {
                paths.push(path);
            }
            if matches!(line.origin(), '+' | '-') {
                let text = String::from_utf8_lossy(line.content());
                lines.push(format!("{}{}", line.origin(), text.trim_end()));
            }
            true
        })
        .unwrap();
        (lines, paths)
    }

    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    pub fn write(&self, path: &str, content: &str) {
        let full = self.dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }

    pub fn commit(&self, message: &str) -> String {
        self.commit_with(message, None)
    }

    /// Commits with a `gpgsig` header made by `sign` over the commit's bytes, as
    /// `git commit -S` does (SSH or OpenPGP, whatever `sign` returns).
    pub fn commit_signed(&self, message: &str, sign: impl Fn(&[u8]) -> String) -> String {
        self.commit_with(message, Some(&sign))
    }

    fn commit_with(&self, message: &str, sign: Option<&SignFn<'_>>) -> String {
        let mut index = self.repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        // Records deleted files too.
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = Signature::now("t", "t@example.com").unwrap();
        let parent = self
            .repo
            .refname_to_id("refs/heads/main")
            .ok()
            .map(|id| self.repo.find_commit(id).unwrap());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let Some(sign) = sign else {
            return self
                .repo
                .commit(
                    Some("refs/heads/main"),
                    &sig,
                    &sig,
                    message,
                    &tree,
                    &parents,
                )
                .unwrap()
                .to_string();
        };
        let buffer = self
            .repo
            .commit_create_buffer(&sig, &sig, message, &tree, &parents)
            .unwrap();
        let content = std::str::from_utf8(&buffer).unwrap();
        let signature = sign(content.as_bytes());
        let oid = self.repo.commit_signed(content, &signature, None).unwrap();
        self.repo
            .reference("refs/heads/main", oid, true, message)
            .unwrap();
        oid.to_string()
    }

    /// A repository with the sandbox environment: `my-endpoint` with blue at 100%.
    pub fn with_sandbox_environment() -> GitRepo {
        let repo = GitRepo::new();
        repo.write_sandbox_environment();
        repo.commit("sandbox environment");
        repo
    }

    /// Writes (does not commit) the sandbox environment with blue at 100%.
    pub fn write_sandbox_environment(&self) {
        self.write("environments/sandbox/environment.yaml", ENVIRONMENT);
        self.write(
            "environments/sandbox/sample-request.json",
            "{\"data\": [[1, 2, 3]]}\n",
        );
        self.write(
            "environments/sandbox/my-endpoint.yml",
            &endpoint_yaml(&[("blue", 1)], &[("blue", 100)]),
        );
    }
}
