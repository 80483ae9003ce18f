use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::command::{Placeholders, shell_quote, substitute};
use super::*;
use crate::error::CrewError;
use crate::settings::Config;

const TOKEN: &str = "ghp_s3cr3tTOKENvalue0123456789";
const HOSTILE: &str = "fix it; don't \"quote\" me\n$(rm -rf /) `id` {issue} $HOME 'x' \\ end";

fn ctx(token: bool) -> InvocationContext {
    InvocationContext {
        prompt_file: PathBuf::from("/wt/repo-worker-42/.crew/prompt.md"),
        prompt_text: "Work on issue 42".to_owned(),
        issue: 42,
        worktree: PathBuf::from("/wt/repo-worker-42"),
        token: token.then(|| Secret::new(TOKEN)),
    }
}

fn config(toml: &str) -> Config {
    Config::parse(toml, Path::new("crew.toml")).expect("valid crew.toml")
}

fn argv(invocation: &AgentInvocation) -> Vec<String> {
    std::iter::once(invocation.program.to_string_lossy().into_owned())
        .chain(invocation.args.iter().cloned())
        .collect()
}

fn built(agent: &str, profile: &str) -> AgentInvocation {
    build(agent, profile, &Config::default(), ctx(true)).expect("builds")
}

#[test]
fn claude_per_profile() {
    let code = built("claude", "code");
    assert_eq!(
        argv(&code),
        [
            "claude",
            "-p",
            "--allowedTools",
            "Bash,Read,Edit,Write,Grep,Glob,mcp__git__*,mcp__github__*,mcp__memory__*,WebFetch,WebSearch",
        ]
    );
    assert_eq!(
        code.stdin,
        Stdin::File("/wt/repo-worker-42/.crew/prompt.md".into())
    );
    assert_eq!(code.cwd, Path::new("/wt/repo-worker-42"));
    assert!(code.profile.push);

    let research = built("claude", "research");
    assert_eq!(
        argv(&research),
        [
            "claude",
            "-p",
            "--allowedTools",
            "Read,Grep,Glob,WebFetch,WebSearch,mcp__memory__*,mcp__github__get_issue,mcp__github__get_pull_request",
            "--disallowedTools",
            "Edit,Write,MultiEdit,NotebookEdit",
        ]
    );
    assert!(!research.profile.push, "research never pushes");

    let review = built("claude", "review");
    assert_eq!(
        argv(&review),
        [
            "claude",
            "-p",
            "--allowedTools",
            "Read,Grep,Glob,Bash(pnpm test:*),Bash(pnpm lint:*)",
            "--disallowedTools",
            "Edit,Write,MultiEdit,NotebookEdit",
        ]
    );
    for invocation in [&research, &review] {
        let allowed = &invocation.args[2];
        assert!(!allowed.contains("Edit") && !allowed.contains("Write"));
    }
}

#[test]
fn claude_with_the_seed_tool_lists() {
    let config = config(
        "[profiles.code]\ntools = [\"Bash\", \"Read\", \"Edit\", \"Write\", \"Grep\", \"Glob\", \
         \"mcp__git__*\", \"mcp__github__*\", \"mcp__memory__*\", \"WebFetch\", \"WebSearch\"]\n\
         push = true\ntoken = true\n\
         [profiles.review]\ntools = [\"Read\", \"Grep\", \"Glob\", \"Bash(pnpm test:*)\", \
         \"Bash(pnpm lint:*)\"]\ntoken = true\n",
    );
    let code = build("claude", "code", &config, ctx(true)).unwrap();
    assert_eq!(
        code.args[2],
        "Bash,Read,Edit,Write,Grep,Glob,mcp__git__*,mcp__github__*,mcp__memory__*,WebFetch,WebSearch"
    );
    let review = build("claude", "review", &config, ctx(true)).unwrap();
    assert_eq!(
        review.args[..3],
        [
            "-p",
            "--allowedTools",
            "Read,Grep,Glob,Bash(pnpm test:*),Bash(pnpm lint:*)"
        ]
    );
    assert_eq!(
        review.display(),
        "cd /wt/repo-worker-42 && env GH_TOKEN=*** GITHUB_TOKEN=*** claude -p --allowedTools \
         'Read,Grep,Glob,Bash(pnpm test:*),Bash(pnpm lint:*)' --disallowedTools \
         Edit,Write,MultiEdit,NotebookEdit < /wt/repo-worker-42/.crew/prompt.md"
    );
}

#[test]
fn claude_with_no_tools_passes_no_allow_list() {
    let config = config("[profiles.bare]\ntools = []\n");
    let invocation = build("claude", "bare", &config, ctx(false)).unwrap();
    assert_eq!(
        argv(&invocation),
        [
            "claude",
            "-p",
            "--disallowedTools",
            "Edit,Write,MultiEdit,NotebookEdit"
        ]
    );
}

#[test]
fn codex_per_profile() {
    assert_eq!(
        argv(&built("codex", "code")),
        [
            "codex",
            "exec",
            "--sandbox",
            "workspace-write",
            "-c",
            "approval_policy=\"never\"",
            "-c",
            "sandbox_workspace_write.network_access=true",
            "-",
        ]
    );
    assert_eq!(
        argv(&built("codex", "research")),
        [
            "codex",
            "exec",
            "--sandbox",
            "read-only",
            "-c",
            "approval_policy=\"never\"",
            "-"
        ]
    );
    assert_eq!(
        argv(&built("codex", "review")),
        [
            "codex",
            "exec",
            "--sandbox",
            "read-only",
            "-c",
            "approval_policy=\"never\"",
            "-"
        ]
    );
    let code = built("codex", "code");
    assert_eq!(
        code.stdin,
        Stdin::File("/wt/repo-worker-42/.crew/prompt.md".into())
    );
    assert!(code.profile.push);
    assert!(!built("codex", "research").profile.push);
}

#[test]
fn codex_without_token_keeps_the_network_closed() {
    let config = config("[profiles.offline]\ntools = [\"Read\", \"Edit\"]\npush = true\n");
    let invocation = build("codex", "offline", &config, ctx(true)).unwrap();
    assert_eq!(
        invocation.args,
        [
            "exec",
            "--sandbox",
            "workspace-write",
            "-c",
            "approval_policy=\"never\"",
            "-"
        ]
    );
    assert!(invocation.env.is_empty());
}

#[test]
fn token_only_when_the_profile_allows() {
    for agent in ["claude", "codex"] {
        let code = built(agent, "code");
        let names: Vec<&str> = code.env.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["GH_TOKEN", "GITHUB_TOKEN"]);
        assert!(code.env.iter().all(|(_, value)| value.expose() == TOKEN));
        assert!(code.env_remove.is_empty());
        assert_eq!(code.secrets().count(), 2);

        let research = built(agent, "research");
        assert!(research.env.is_empty(), "research gets no token");
        assert_eq!(research.env_remove, ["GH_TOKEN", "GITHUB_TOKEN"]);
        assert!(
            research
                .display()
                .contains("env -u GH_TOKEN -u GITHUB_TOKEN ")
        );

        // Allowed, but the orchestrator has none: an inherited one is still removed.
        let none = build(agent, "code", &Config::default(), ctx(false)).unwrap();
        assert!(none.env.is_empty());
        assert_eq!(none.env_remove, ["GH_TOKEN", "GITHUB_TOKEN"]);
    }
}

#[test]
fn token_never_shown() {
    for agent in ["claude", "codex"] {
        for profile in ["code", "research", "review"] {
            let invocation = built(agent, profile);
            let shown = [
                invocation.display(),
                invocation.to_string(),
                format!("{invocation:?}"),
                format!("{invocation:#?}"),
                format!("{:?}", ctx(true)),
            ];
            for text in shown {
                assert!(!text.contains(TOKEN), "{agent}/{profile} leaks: {text}");
            }
        }
    }
    let code = built("claude", "code");
    assert!(
        code.display()
            .starts_with("cd /wt/repo-worker-42 && env GH_TOKEN=*** GITHUB_TOKEN=*** claude -p "),
        "{}",
        code.display()
    );
}

#[test]
fn custom_command_agent() {
    let config = config(
        "[agents.aider]\ncommand = [\"aider\", \"--yes\", \"--message-file\", \"{prompt_file}\", \
         \"--read={worktree}/README.md\", \"--tools={tools}\", \"issue-{issue}\"]\n",
    );
    let invocation = build("aider", "research", &config, ctx(true)).unwrap();
    assert_eq!(
        argv(&invocation),
        [
            "aider",
            "--yes",
            "--message-file",
            "/wt/repo-worker-42/.crew/prompt.md",
            "--read=/wt/repo-worker-42/README.md",
            "--tools=Read,Grep,Glob,WebFetch,WebSearch,mcp__memory__*,mcp__github__get_issue,mcp__github__get_pull_request",
            "issue-42",
        ]
    );
    assert_eq!(invocation.stdin, Stdin::Null);
    assert_eq!(invocation.env_remove, ["GH_TOKEN", "GITHUB_TOKEN"]);
    assert_eq!(
        invocation.display(),
        "cd /wt/repo-worker-42 && env -u GH_TOKEN -u GITHUB_TOKEN aider --yes --message-file \
         /wt/repo-worker-42/.crew/prompt.md --read=/wt/repo-worker-42/README.md \
         '--tools=Read,Grep,Glob,WebFetch,WebSearch,mcp__memory__*,mcp__github__get_issue,mcp__github__get_pull_request' \
         issue-42 < /dev/null"
    );
}

#[test]
fn hostile_prompt_stays_one_argument() {
    let config =
        config("[agents.echo]\ncommand = [\"echo-agent\", \"{prompt}\", \"--\", \"<{prompt}>\"]\n");
    let mut context = ctx(false);
    context.prompt_text = HOSTILE.to_owned();
    context.worktree = PathBuf::from("/tmp/work tree/it's");
    let invocation = build("echo", "code", &config, context).unwrap();
    assert_eq!(
        invocation.args,
        [HOSTILE.to_owned(), "--".to_owned(), format!("<{HOSTILE}>")]
    );
    // The literal `{issue}` inside the prompt was not substituted a second time.
    assert!(invocation.args[0].contains("{issue}"));

    // The shown command line, run by a real shell, yields the same argv.
    let line = invocation
        .args
        .iter()
        .map(|arg| shell_quote(arg))
        .collect::<Vec<_>>();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s\\0' {}", line.join(" ")))
        .output()
        .expect("sh runs");
    let words: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .split_terminator('\0')
        .map(str::to_owned)
        .collect();
    assert_eq!(words, invocation.args);
    assert!(
        invocation
            .display()
            .starts_with("cd '/tmp/work tree/it'\\''s' && env -u GH_TOKEN"),
        "{}",
        invocation.display()
    );
}

#[test]
fn shell_quote_is_exact() {
    for word in [
        "",
        "plain",
        "a b",
        "it's",
        "'",
        "''",
        "$(rm -rf /)",
        "`id`",
        "a\nb",
        "a=b",
        "*",
        "~",
        "-",
        "tab\there",
        "üñí",
        "\\",
        "!event",
        "#comment",
    ] {
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s' {}", shell_quote(word)))
            .output()
            .expect("sh runs");
        assert_eq!(String::from_utf8(output.stdout).unwrap(), word, "{word:?}");
    }
    assert_eq!(shell_quote("Read,Grep"), "Read,Grep");
    assert_eq!(shell_quote(""), "''");
    assert_eq!(shell_quote("--tools=a,b"), "--tools=a,b");
    assert_eq!(command::shell_quote_program("a=b"), "'a=b'");
    assert_eq!(shell_quote("it's"), "'it'\\''s'");
}

#[test]
fn placeholder_errors() {
    let values = Placeholders {
        prompt_file: "p",
        prompt: "x",
        tools: "t",
        issue: "1",
        worktree: "w",
    };
    assert_eq!(
        substitute("a", "{issue}{issue}-{tools}", &values).unwrap(),
        "11-t"
    );
    assert_eq!(
        substitute("a", "no placeholders", &values).unwrap(),
        "no placeholders"
    );
    for (template, problem) in [
        ("{promt}", "unknown placeholder `{promt}`"),
        ("x{issue", "unclosed `{`"),
        ("x}", "unmatched `}`"),
    ] {
        let error = substitute("a", template, &values).unwrap_err();
        assert!(error.to_string().contains(problem), "{error}");
    }

    // A hand-built config that skipped validation.
    let mut config = Config::default();
    config.agents.insert(
        "bad".to_owned(),
        crate::settings::AgentConfig {
            command: vec!["x".to_owned(), "{nope}".to_owned()],
        },
    );
    config.agents.insert(
        "empty".to_owned(),
        crate::settings::AgentConfig { command: vec![] },
    );
    let error = build("bad", "code", &config, ctx(false)).unwrap_err();
    assert!(matches!(error, AgentError::BadCommand { .. }), "{error}");
    let error = build("empty", "code", &config, ctx(false)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "agent `empty`: bad command: must start with the program"
    );
}

#[test]
fn configured_agent_replaces_a_builtin() {
    let config = config("[agents.claude]\ncommand = [\"/opt/claude\", \"-p\", \"{prompt}\"]\n");
    let invocation = build("claude", "code", &config, ctx(false)).unwrap();
    assert_eq!(argv(&invocation), ["/opt/claude", "-p", "Work on issue 42"]);
}

#[test]
fn unknown_agent_and_profile() {
    let error = build("aider", "code", &Config::default(), ctx(false)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown agent `aider` (known: claude, codex)"
    );
    assert!(error.hints()[0].contains("[agents.aider]"));
    let error = build("claude", "yolo", &Config::default(), ctx(false)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown profile `yolo` (known: code, research, review)"
    );
    let crew: CrewError = error.into();
    assert_eq!(crew.exit_code(), 1);
    assert_eq!(crew.hints().len(), 1);
}

#[cfg(unix)]
fn executable(dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[cfg(unix)]
#[test]
fn missing_binary_names_it_and_path() {
    let empty = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let path = std::env::join_paths([empty.path(), other.path()]).unwrap();
    let invocation = built("codex", "code");
    let error = check_available(&invocation, Some(&path)).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("agent `codex`: program `codex` not found in PATH ("),
        "{text}"
    );
    assert!(text.contains(&format!(
        "{}:{}",
        empty.path().display(),
        other.path().display()
    )));
    match &error {
        AgentError::Missing { name, searched, .. } => {
            assert_eq!(name, Path::new("codex"));
            assert_eq!(searched, &[empty.path(), other.path()]);
        }
        other => panic!("{other:?}"),
    }
    let crew: CrewError = error.into();
    assert_eq!(crew.exit_code(), 1);
    assert!(
        crew.hints()[0].contains("install `codex`"),
        "{:?}",
        crew.hints()
    );

    let error = check_available(&invocation, None).unwrap_err();
    assert!(
        error.to_string().contains("PATH is empty or unset"),
        "{error}"
    );

    // A directory or a non-executable file of that name does not count; the next entry does.
    std::fs::create_dir(empty.path().join("codex")).unwrap();
    std::fs::write(other.path().join("claude"), "not executable").unwrap();
    assert!(check_available(&invocation, Some(&path)).is_err());
    assert!(check_available(&built("claude", "code"), Some(&path)).is_err());
    let found = executable(other.path(), "codex");
    assert_eq!(check_available(&invocation, Some(&path)).unwrap(), found);
}

#[cfg(unix)]
#[test]
fn program_with_a_directory_is_not_looked_up_in_path() {
    let worktree = tempfile::tempdir().unwrap();
    std::fs::create_dir(worktree.path().join("bin")).unwrap();
    let config = config("[agents.local]\ncommand = [\"./bin/agent\", \"{prompt_file}\"]\n");
    let mut context = ctx(false);
    context.worktree = worktree.path().to_owned();
    let invocation = build("local", "code", &config, context).unwrap();
    let path = OsString::from(worktree.path().join("bin"));
    let error = check_available(&invocation, Some(&path)).unwrap_err();
    assert!(
        error.to_string().contains("not an executable file"),
        "{error}"
    );
    let found = executable(&worktree.path().join("bin"), "agent");
    // `Path` equality compares components, so the `./` in `/tmp/x/./bin/agent` does not matter.
    assert_eq!(check_available(&invocation, Some(&path)).unwrap(), found);
}

#[test]
fn codex_display() {
    assert_eq!(
        built("codex", "research").display(),
        "cd /wt/repo-worker-42 && env -u GH_TOKEN -u GITHUB_TOKEN codex exec --sandbox read-only \
         -c 'approval_policy=\"never\"' - < /wt/repo-worker-42/.crew/prompt.md"
    );
    assert_eq!(
        built("codex", "code").display(),
        "cd /wt/repo-worker-42 && env GH_TOKEN=*** GITHUB_TOKEN=*** codex exec --sandbox \
         workspace-write -c 'approval_policy=\"never\"' -c \
         sandbox_workspace_write.network_access=true - < /wt/repo-worker-42/.crew/prompt.md"
    );
}

#[test]
fn env_value_debug_hides_secrets() {
    let secret = EnvValue::Secret(Secret::new(TOKEN));
    assert_eq!(format!("{secret:?}"), "Secret(Secret(***))");
    assert_eq!(secret.expose(), TOKEN);
    let plain = EnvValue::Plain("visible".to_owned());
    assert_eq!(format!("{plain:?}"), "Plain(\"visible\")");
}

#[test]
fn scoped_edit_tools_count_as_editing() {
    let config = config("[profiles.docs]\ntools = [\"Read\", \"Edit(docs/**)\"]\npush = true\n");
    let claude = build("claude", "docs", &config, ctx(false)).unwrap();
    assert_eq!(claude.args, ["-p", "--allowedTools", "Read,Edit(docs/**)"]);
    let codex = build("codex", "docs", &config, ctx(false)).unwrap();
    assert_eq!(codex.args[2], "workspace-write");
}

#[test]
fn command_sets_args_env_and_cwd() {
    let invocation = built("claude", "code");
    let command = invocation.command(Path::new("/usr/local/bin/claude"));
    assert_eq!(command.get_program(), "/usr/local/bin/claude");
    assert_eq!(
        command.get_args().collect::<Vec<_>>(),
        invocation
            .args
            .iter()
            .map(OsString::from)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        command.get_current_dir(),
        Some(Path::new("/wt/repo-worker-42"))
    );
    let envs: Vec<_> = command.get_envs().collect();
    assert!(envs.contains(&(
        std::ffi::OsStr::new("GH_TOKEN"),
        Some(std::ffi::OsStr::new(TOKEN))
    )));

    let research = built("claude", "research");
    let command = research.command(Path::new("claude"));
    let envs: Vec<_> = command.get_envs().collect();
    assert!(envs.contains(&(std::ffi::OsStr::new("GH_TOKEN"), None)));
    assert!(envs.contains(&(std::ffi::OsStr::new("GITHUB_TOKEN"), None)));
}
