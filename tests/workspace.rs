//! Worktrees, branches and salvage against a real clone of the emulator's bare repository: the
//! emulator's repository is `origin`, exactly as a user's clone of GitHub would have it.
//!
//! Every `git` the tests run themselves gets a fixed identity from the environment; the library's
//! own commits must work without one (it falls back to `crew <crew@localhost>`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crew::settings::WorkersConfig;
use crew::workspace::{
    self, CheckoutMode, WorkerContext, WorkerProcess, Worktree, WorktreeRequest, is_valid_branch,
};

use crate::support::{TestEmulator, TestResult, emulator, git};

/// A clone of acme/widgets in a directory whose path has a space in it.
struct Clone {
    _dir: tempfile::TempDir,
    root: PathBuf,
    bare: PathBuf,
    _emulator: TestEmulator,
}

async fn clone() -> TestResult<Clone> {
    let emulator = emulator().await?;
    let url = emulator
        .clone_url("acme", "widgets")
        .ok_or("acme/widgets has no clone url")?;
    let bare = PathBuf::from(url.strip_prefix("file://").unwrap_or(&url));
    let dir = tempfile::tempdir()?;
    let parent = dir.path().join("my projects");
    std::fs::create_dir_all(&parent)?;
    let root = parent.join("widgets");
    git(&parent, &["clone", "--quiet", &url, "widgets"])?;
    Ok(Clone {
        _dir: dir,
        root: root.canonicalize()?,
        bare,
        _emulator: emulator,
    })
}

fn request<'a>(
    clone: &'a Clone,
    issue: u64,
    title: &'a str,
    attempt: u32,
    mode: CheckoutMode,
) -> WorktreeRequest<'a> {
    WorktreeRequest {
        repo_root: &clone.root,
        repo_name: "widgets",
        base: "main",
        issue,
        title,
        attempt,
        mode,
    }
}

fn prepare(clone: &Clone, issue: u64, title: &str, attempt: u32) -> TestResult<Worktree> {
    Ok(workspace::prepare_worktree(
        &request(clone, issue, title, attempt, CheckoutMode::Branch),
        &WorkersConfig::default(),
    )?)
}

/// What the bare repository (GitHub's side) has for `branch`.
fn origin_commit(bare: &Path, branch: &str) -> TestResult<Option<git2::Oid>> {
    let repo = git2::Repository::open_bare(bare)?;
    Ok(repo.refname_to_id(&format!("refs/heads/{branch}")).ok())
}

fn origin_file(bare: &Path, branch: &str, file: &str) -> TestResult<Option<String>> {
    let repo = git2::Repository::open_bare(bare)?;
    let commit = repo
        .find_reference(&format!("refs/heads/{branch}"))?
        .peel_to_commit()?;
    let tree = commit.tree()?;
    let Ok(entry) = tree.get_path(Path::new(file)) else {
        return Ok(None);
    };
    let blob = repo.find_blob(entry.id())?;
    Ok(Some(String::from_utf8_lossy(blob.content()).into_owned()))
}

#[tokio::test]
async fn hostile_titles_give_safe_branches_and_paths() -> TestResult {
    let clone = clone().await?;
    let parent = clone.root.parent().ok_or("no parent")?;
    let titles = [
        "",
        "$(rm -rf ~); `touch /tmp/pwned` | cat /etc/passwd && echo",
        "../../../../etc/passwd",
        "feature/../../HEAD.lock",
        "\u{202E}txt.exe\u{200F} RTL \0 nul",
        "Ünïcödé 修复 🚀 Café",
        &"very long title ".repeat(700),
        "-leading dash --and-- @{upstream} ~1^2:?*[",
    ];
    for (index, title) in titles.iter().enumerate() {
        let issue = 100 + index as u64;
        let worktree = prepare(&clone, issue, title, 1)?;
        let branch = worktree.branch.clone().ok_or("no branch")?;
        assert!(is_valid_branch(&branch), "{branch:?} from {title:?}");
        let slug = branch
            .strip_prefix(&format!("feature/{issue}-"))
            .ok_or_else(|| format!("unexpected branch {branch}"))?;
        assert!(
            !slug.is_empty()
                && slug.len() <= 40
                && !slug.starts_with('-')
                && !slug.ends_with('-')
                && !slug.contains("--")
                && slug
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "slug {slug:?} from {title:?}"
        );
        assert_eq!(
            worktree.path,
            parent.join(format!("widgets-worker-{issue}")),
            "path for {title:?}"
        );
        assert_eq!(git(&worktree.path, &["branch", "--show-current"])?, branch);
    }
    Ok(())
}

#[tokio::test]
async fn preparing_twice_gives_the_same_worktree() -> TestResult {
    let clone = clone().await?;
    let first = prepare(&clone, 7, "Make widgets spin", 1)?;
    assert!(!first.reused);
    assert_eq!(first.branch.as_deref(), Some("feature/7-make-widgets-spin"));
    let origin_main = git(&clone.root, &["rev-parse", "origin/main"])?;
    assert_eq!(first.base_sha, origin_main);
    let second = prepare(&clone, 7, "Make widgets spin", 1)?;
    assert!(second.reused);
    assert_eq!(
        (&second.path, &second.branch, &second.base_sha),
        (&first.path, &first.branch, &first.base_sha)
    );
    let list = git(&clone.root, &["worktree", "list", "--porcelain"])?;
    assert_eq!(list.matches("worktree ").count(), 2, "{list}");

    // A crash after the branch was made but before the worktree: the next run finishes the job.
    git(
        &clone.root,
        &["branch", "--no-track", "feature/8-half-done", "origin/main"],
    )?;
    let repaired = prepare(&clone, 8, "Half done", 1)?;
    assert_eq!(repaired.branch.as_deref(), Some("feature/8-half-done"));
    assert!(repaired.path.join("README.md").exists());
    Ok(())
}

#[tokio::test]
async fn a_new_branch_starts_from_the_freshly_fetched_base() -> TestResult {
    let clone = clone().await?;
    // Someone pushes to main after the clone was made.
    let other = tempfile::tempdir()?;
    let url = format!("file://{}", clone.bare.display());
    git(other.path(), &["clone", "--quiet", &url, "other"])?;
    let other = other.path().join("other");
    std::fs::write(other.join("NEW.md"), "new on main\n")?;
    git(&other, &["add", "NEW.md"])?;
    git(&other, &["commit", "--quiet", "-m", "New on main"])?;
    git(&other, &["push", "--quiet", "origin", "HEAD:main"])?;
    let pushed = git(&other, &["rev-parse", "HEAD"])?;

    let worktree = prepare(&clone, 9, "Fresh", 1)?;
    assert_eq!(worktree.base_sha, pushed);
    assert!(worktree.path.join("NEW.md").exists());
    Ok(())
}

#[tokio::test]
async fn a_second_attempt_continues_on_the_branch_and_its_wip() -> TestResult {
    let clone = clone().await?;
    let first = prepare(&clone, 12, "Add a spinner", 1)?;
    std::fs::write(first.path.join("spinner.rs"), "fn spin() {}\n")?;
    let saved = workspace::remove_worktree(&first.path, "WIP: attempt 1")?
        .ok_or("dirty worktree was not salvaged")?;
    assert!(saved.pushed);
    assert!(!first.path.exists());

    // Same clone, title edited meanwhile: the issue's branch is found anyway.
    let second = prepare(&clone, 12, "Add a spinner (edited)", 2)?;
    assert!(second.reused);
    assert_eq!(second.branch, first.branch);
    assert_eq!(
        std::fs::read_to_string(second.path.join("spinner.rs"))?,
        "fn spin() {}\n"
    );

    // Another host, which has never seen the branch: it comes from origin.
    let elsewhere = clone_of(&clone)?;
    let third = workspace::prepare_worktree(
        &WorktreeRequest {
            repo_root: &elsewhere.1,
            ..request(&clone, 12, "Add a spinner", 3, CheckoutMode::Branch)
        },
        &WorkersConfig::default(),
    )?;
    assert!(third.reused);
    assert_eq!(third.branch, first.branch);
    assert!(third.path.join("spinner.rs").exists());
    Ok(())
}

/// A second clone of the same origin, as another machine would have.
fn clone_of(clone: &Clone) -> TestResult<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let url = format!("file://{}", clone.bare.display());
    git(dir.path(), &["clone", "--quiet", &url, "widgets"])?;
    let root = dir.path().join("widgets").canonicalize()?;
    Ok((dir, root))
}

#[tokio::test]
async fn research_worktrees_are_detached_at_the_base() -> TestResult {
    let clone = clone().await?;
    let request = request(&clone, 20, "Investigate", 1, CheckoutMode::Detached);
    let worktree = workspace::prepare_worktree(&request, &WorkersConfig::default())?;
    assert_eq!(worktree.branch, None);
    assert_eq!(git(&worktree.path, &["branch", "--show-current"])?, "");
    assert_eq!(
        git(&worktree.path, &["rev-parse", "HEAD"])?,
        worktree.base_sha
    );
    let again = workspace::prepare_worktree(&request, &WorkersConfig::default())?;
    assert_eq!(again.path, worktree.path);
    assert!(again.reused);
    let branches = git(&clone.root, &["branch", "--list", "feature/20-*"])?;
    assert_eq!(branches, "");
    Ok(())
}

#[tokio::test]
async fn salvage_commits_everything_but_crew_and_pushes_it() -> TestResult {
    let clone = clone().await?;
    let worktree = prepare(&clone, 30, "Salvage me", 1)?;
    let branch = worktree.branch.clone().ok_or("no branch")?;
    assert_eq!(workspace::salvage(&worktree, "WIP")?, None, "clean tree");

    std::fs::write(worktree.path.join("README.md"), "# widgets\n\nchanged\n")?;
    std::fs::create_dir_all(worktree.path.join("src dir"))?;
    std::fs::write(worktree.path.join("src dir/new file.rs"), "// new\n")?;
    workspace::write_context(&worktree.path, &context(&branch))?;
    std::fs::create_dir_all(worktree.path.join(".crew/logs"))?;
    std::fs::write(worktree.path.join(".crew/logs/w.log"), "secret log\n")?;
    assert!(workspace::is_dirty(&worktree.path)?);

    let message = workspace::wip_message(30, 1, "the agent was killed");
    let result = workspace::salvage(&worktree, &message)?.ok_or("nothing salvaged")?;
    assert!(result.pushed);
    assert!(
        result.diff_stat.contains("README.md"),
        "{}",
        result.diff_stat
    );
    assert!(
        result.diff_stat.contains("new file.rs"),
        "{}",
        result.diff_stat
    );
    assert!(!result.diff_stat.contains(".crew"), "{}", result.diff_stat);

    let on_origin = origin_commit(&clone.bare, &branch)?.ok_or("branch not pushed")?;
    assert_eq!(on_origin.to_string(), result.commit_sha);
    assert_eq!(
        origin_file(&clone.bare, &branch, "src dir/new file.rs")?.as_deref(),
        Some("// new\n")
    );
    assert_eq!(
        origin_file(&clone.bare, &branch, "README.md")?.as_deref(),
        Some("# widgets\n\nchanged\n")
    );
    assert_eq!(
        origin_file(&clone.bare, &branch, ".crew/context.json")?,
        None
    );
    assert_eq!(origin_file(&clone.bare, &branch, ".crew/logs/w.log")?, None);
    let bare = git2::Repository::open_bare(&clone.bare)?;
    let commit = bare.find_commit(on_origin)?;
    assert!(commit.message().unwrap_or("").starts_with("WIP:"));
    assert_eq!(commit.parent_id(0)?.to_string(), worktree.base_sha);

    assert!(!workspace::is_dirty(&worktree.path)?, ".crew/ is not dirt");
    assert_eq!(workspace::salvage(&worktree, "WIP again")?, None);
    Ok(())
}

#[tokio::test]
async fn removing_a_dirty_worktree_salvages_it_first() -> TestResult {
    let clone = clone().await?;
    let worktree = prepare(&clone, 40, "Remove me", 1)?;
    let branch = worktree.branch.clone().ok_or("no branch")?;
    workspace::write_context(&worktree.path, &context(&branch))?;
    std::fs::write(worktree.path.join("unsaved.txt"), "precious\n")?;

    let saved =
        workspace::remove_worktree(&worktree.path, "WIP: before removal")?.ok_or("not salvaged")?;
    assert!(saved.pushed);
    assert!(!worktree.path.exists());
    assert_eq!(
        origin_file(&clone.bare, &branch, "unsaved.txt")?.as_deref(),
        Some("precious\n")
    );
    // The local branch keeps it too, and git no longer lists the worktree.
    assert_eq!(git(&clone.root, &["rev-parse", &branch])?, saved.commit_sha);
    let list = git(&clone.root, &["worktree", "list", "--porcelain"])?;
    assert_eq!(list.matches("worktree ").count(), 1, "{list}");

    // Clean trees go without a commit; a missing one is not an error.
    let clean = prepare(&clone, 41, "Clean", 1)?;
    assert_eq!(workspace::remove_worktree(&clean.path, "WIP")?, None);
    assert_eq!(workspace::remove_worktree(&clean.path, "WIP")?, None);
    // The main worktree is never removed.
    assert!(workspace::remove_worktree(&clone.root, "WIP").is_err());
    Ok(())
}

fn context(branch: &str) -> WorkerContext {
    WorkerContext {
        issue: 30,
        attempt: 1,
        worker: "worker-1-30".to_owned(),
        branch: Some(branch.to_owned()),
        base: "main".to_owned(),
        repo: "acme/widgets".to_owned(),
        api_url: "http://127.0.0.1:1".to_owned(),
        profile: "code".to_owned(),
    }
}

#[tokio::test]
async fn crew_files_round_trip_and_are_found_from_below() -> TestResult {
    let clone = clone().await?;
    let worktree = prepare(&clone, 50, "Context", 1)?;
    let branch = worktree.branch.clone().ok_or("no branch")?;
    assert_eq!(workspace::read_context(&worktree.path)?, None);
    let context = context(&branch);
    workspace::write_context(&worktree.path, &context)?;
    assert_eq!(
        workspace::read_context(&worktree.path)?.as_ref(),
        Some(&context)
    );
    let process = WorkerProcess {
        issue: 50,
        attempt: 1,
        worker: "worker-1-30".to_owned(),
        pid: 4242,
        start_time: 123_456,
        log_path: worktree.path.join(".crew/logs/worker-1-30.log"),
        supervisor_pid: Some(4241),
        supervisor_start_time: Some(123_450),
    };
    workspace::write_worker(&worktree.path, &process)?;
    workspace::write_worker(&worktree.path, &process)?;
    assert_eq!(workspace::read_worker(&worktree.path)?, Some(process));
    let leftovers: Vec<_> = std::fs::read_dir(worktree.path.join(".crew"))?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());

    let deep = worktree.path.join("a/b");
    std::fs::create_dir_all(&deep)?;
    let (found_at, found) = workspace::find_context(&deep)?.ok_or("not found")?;
    assert_eq!(found_at, worktree.path);
    assert_eq!(found, context);

    // `.crew/` is excluded once, however often it is ensured.
    workspace::ensure_crew_excluded(&worktree.path)?;
    let exclude = git(&worktree.path, &["rev-parse", "--git-path", "info/exclude"])?;
    let exclude = worktree.path.join(exclude);
    let text = std::fs::read_to_string(exclude)?;
    assert_eq!(text.matches("/.crew/").count(), 1, "{text}");
    assert_eq!(git(&worktree.path, &["status", "--porcelain"])?, "");
    Ok(())
}

#[tokio::test]
async fn a_worktree_add_that_never_finished_is_started_over() -> TestResult {
    let clone = clone().await?;
    let worktree = prepare(&clone, 60, "Interrupted", 1)?;
    // What a `git worktree add` killed mid-checkout leaves: registered, locked, files missing.
    git(
        &clone.root,
        &[
            "worktree",
            "lock",
            "--reason",
            "initializing",
            &worktree.path.to_string_lossy(),
        ],
    )?;
    std::fs::remove_file(worktree.path.join("README.md"))?;
    let again = prepare(&clone, 60, "Interrupted", 1)?;
    assert_eq!(again.path, worktree.path);
    assert!(again.path.join("README.md").exists());
    let list = git(&clone.root, &["worktree", "list", "--porcelain"])?;
    assert!(!list.contains("locked"), "{list}");
    Ok(())
}

#[tokio::test]
async fn someone_elses_files_at_the_path_are_left_alone() -> TestResult {
    let clone = clone().await?;
    let parent = clone.root.parent().ok_or("no parent")?;
    let occupied = parent.join("widgets-worker-61");
    std::fs::create_dir_all(&occupied)?;
    std::fs::write(occupied.join("notes.txt"), "mine\n")?;
    let error = prepare(&clone, 61, "Occupied", 1)
        .err()
        .ok_or("prepared over someone's files")?;
    assert!(error.to_string().contains("refusing"), "{error}");
    assert_eq!(
        std::fs::read_to_string(occupied.join("notes.txt"))?,
        "mine\n"
    );

    // The issue's branch checked out by hand somewhere else: a clear error, not a second checkout.
    let manual = parent.join("by hand");
    git(
        &clone.root,
        &[
            "worktree",
            "add",
            "-b",
            "feature/62-by-hand",
            &manual.to_string_lossy(),
            "origin/main",
        ],
    )?;
    let error = prepare(&clone, 62, "By hand", 1)
        .err()
        .ok_or("checked the branch out twice")?;
    assert!(error.to_string().contains("already checked out"), "{error}");
    Ok(())
}

#[tokio::test]
async fn an_unreachable_origin_is_a_remote_error() -> TestResult {
    let clone = clone().await?;
    git(
        &clone.root,
        &[
            "remote",
            "set-url",
            "origin",
            "file:///nonexistent/crew/origin.git",
        ],
    )?;
    let error = workspace::prepare_worktree(
        &request(&clone, 63, "Offline", 1, CheckoutMode::Branch),
        &WorkersConfig::default(),
    )
    .err()
    .ok_or("prepared without a fetch")?;
    use crew::error::Classify;
    assert_eq!(error.kind(), crew::error::ErrorKind::Remote, "{error}");
    Ok(())
}

#[tokio::test]
async fn research_salvage_stays_local_and_reachable() -> TestResult {
    let clone = clone().await?;
    let request = request(&clone, 64, "Look around", 1, CheckoutMode::Detached);
    let worktree = workspace::prepare_worktree(&request, &WorkersConfig::default())?;
    std::fs::write(worktree.path.join("findings.md"), "found it\n")?;
    let saved =
        workspace::remove_worktree(&worktree.path, "WIP: research notes")?.ok_or("not salvaged")?;
    assert!(!saved.pushed);
    let kept = git(
        &clone.root,
        &[
            "rev-parse",
            &format!("refs/crew/salvage/{}", saved.commit_sha),
        ],
    )?;
    assert_eq!(kept, saved.commit_sha);
    assert_eq!(
        git(&clone.root, &["show", &format!("{kept}:findings.md")])?,
        "found it"
    );
    Ok(())
}

/// Set in the child process of [`salvage_works_without_any_git_identity`].
const NO_IDENTITY_MARKER: &str = "CREW_TEST_NO_IDENTITY";

/// The library must not need the machine's git identity: this runs
/// [`salvage_in_a_process_without_identity`] in a child process whose git sees no global or
/// system config and no identity variables.
#[test]
fn salvage_works_without_any_git_identity() -> TestResult {
    let home = tempfile::tempdir()?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args([
            "--exact",
            "workspace::salvage_in_a_process_without_identity",
            "--ignored",
            "--test-threads=1",
        ])
        .env(NO_IDENTITY_MARKER, "1")
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    for name in [
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "EMAIL",
    ] {
        command.env_remove(name);
    }
    let output = command.output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[tokio::test]
#[ignore = "run by salvage_works_without_any_git_identity in a child process"]
async fn salvage_in_a_process_without_identity() -> TestResult {
    if std::env::var_os(NO_IDENTITY_MARKER).is_none() {
        return Ok(());
    }
    let clone = clone().await?;
    let worktree = prepare(&clone, 70, "No identity", 1)?;
    let branch = worktree.branch.clone().ok_or("no branch")?;
    std::fs::write(worktree.path.join("wip.txt"), "wip\n")?;
    let saved = workspace::salvage(&worktree, "WIP").map_err(|error| format!("{error}"))?;
    let saved = saved.ok_or("not salvaged")?;
    assert!(saved.pushed);
    let bare = git2::Repository::open_bare(&clone.bare)?;
    let commit = bare.find_commit(origin_commit(&clone.bare, &branch)?.ok_or("not pushed")?)?;
    assert_eq!(commit.author().email(), Some("crew@localhost"));
    assert_eq!(commit.committer().email(), Some("crew@localhost"));
    Ok(())
}
