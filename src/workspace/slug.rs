//! Slugs, branch names and worktree paths from an issue's title and the settings templates.
//!
//! The title is untrusted input (anyone who can open an issue writes it), and it ends up in a
//! branch name and a directory name that are passed to `git` and shells. So the slug is built
//! from an allow-list — lowercase ASCII letters, digits and single `-` between them — rather than
//! by escaping a deny-list: nothing outside `[a-z0-9-]` can survive, so `..`, `/`, shell
//! metacharacters, NUL and bidi marks cannot either. Common accented Latin letters are
//! transliterated so "Café crash" reads `cafe-crash`; other scripts are word separators.

use std::path::{Component, Path, PathBuf};

use super::WorkspaceError;

/// Longest slug, as the seed's `cut -c1-40`.
pub const MAX_SLUG_LEN: usize = 40;

/// The slug of a title with nothing usable in it (empty, all punctuation, another script).
pub const FALLBACK_SLUG: &str = "issue";

/// The title as `[a-z0-9]+(-[a-z0-9]+)*`, at most [`MAX_SLUG_LEN`] characters, never empty.
pub fn slug(title: &str) -> String {
    let mut out = String::with_capacity(MAX_SLUG_LEN);
    let mut separator = false;
    'chars: for ch in title.chars() {
        if is_invisible(ch) {
            continue;
        }
        for lower in ch.to_lowercase() {
            let mapped = if lower.is_ascii_alphanumeric() {
                None
            } else {
                transliterate(lower)
            };
            let text: &str = match mapped {
                Some(text) => text,
                None if lower.is_ascii_alphanumeric() => {
                    if !push(&mut out, &mut separator, lower) {
                        break 'chars;
                    }
                    continue;
                }
                None => {
                    separator = true;
                    continue;
                }
            };
            for ascii in text.chars() {
                if !push(&mut out, &mut separator, ascii) {
                    break 'chars;
                }
            }
        }
    }
    if out.is_empty() {
        FALLBACK_SLUG.to_owned()
    } else {
        out
    }
}

/// Appends `ch` (with a pending `-` first); false when it would not fit.
fn push(out: &mut String, separator: &mut bool, ch: char) -> bool {
    let dash = *separator && !out.is_empty();
    let needed = if dash { 2 } else { 1 };
    if out.len() + needed > MAX_SLUG_LEN {
        return false;
    }
    if dash {
        out.push('-');
    }
    out.push(ch);
    *separator = false;
    true
}

/// Marks that change how text is shown but are not part of a word: combining accents (the
/// letter before them already counts), zero-width characters, bidi controls, BOM.
fn is_invisible(ch: char) -> bool {
    matches!(ch,
        '\u{0300}'..='\u{036F}'
        | '\u{00AD}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2069}'
        | '\u{FEFF}')
}

/// ASCII for common accented Latin letters (lowercase); `None` for anything else.
fn transliterate(ch: char) -> Option<&'static str> {
    Some(match ch {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'č' | 'ĉ' | 'ċ' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

/// Whether git would accept `name` as a branch (`git check-ref-format --branch`): a valid
/// `refs/heads/<name>` that does not start with `-` (it would read as an option).
pub fn is_valid_branch(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && git2::Reference::is_valid_name(&format!("refs/heads/{name}"))
}

/// The branch for `issue` from the `workers.branch` template, validated.
pub fn branch_name(template: &str, issue: u64, title: &str) -> Result<String, WorkspaceError> {
    let name = template
        .replace("{issue}", &issue.to_string())
        .replace("{slug}", &slug(title));
    if is_valid_branch(&name) {
        Ok(name)
    } else {
        Err(WorkspaceError::InvalidBranch(name))
    }
}

/// The worktree directory for `issue` from the `workers.worktree` template, absolute and
/// without `.`/`..` components. A relative `worktree_root` (default `..`) and a relative result
/// are taken from `repo_root`.
pub fn worktree_path(
    template: &str,
    repo_root: &Path,
    worktree_root: &Path,
    repo_name: &str,
    issue: u64,
    title: &str,
) -> PathBuf {
    let rendered = template
        .replace("{worktree_root}", &worktree_root.to_string_lossy())
        .replace("{repo}", repo_name)
        .replace("{issue}", &issue.to_string())
        .replace("{slug}", &slug(title));
    normalize(&repo_root.join(rendered))
}

/// Resolves `.` and `..` lexically (the path may not exist yet, so it cannot be canonicalized).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(component);
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn well_formed(slug: &str) -> bool {
        !slug.is_empty()
            && slug.len() <= MAX_SLUG_LEN
            && slug.split('-').all(|word| {
                !word.is_empty()
                    && word
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
    }

    #[test]
    fn examples() {
        assert_eq!(slug("Make widgets spin!"), "make-widgets-spin");
        assert_eq!(slug("  --Fix   the   bug--  "), "fix-the-bug");
        assert_eq!(slug("Café crash in Straße"), "cafe-crash-in-strasse");
        assert_eq!(slug("../../etc/passwd"), "etc-passwd");
        assert_eq!(slug("$(rm -rf ~); `id` | x && y"), "rm-rf-id-x-y");
        assert_eq!(slug("a\u{202E}b\u{200F}c"), "abc");
        assert_eq!(slug("nul\0byte"), "nul-byte");
        assert_eq!(slug(""), FALLBACK_SLUG);
        assert_eq!(slug("修复 🚀"), FALLBACK_SLUG);
        assert_eq!(slug("...."), FALLBACK_SLUG);
        let long = slug(&"abc ".repeat(2500));
        assert!(long.len() <= MAX_SLUG_LEN && well_formed(&long), "{long}");
        assert_eq!(slug(&"x".repeat(10_000)), "x".repeat(40));
    }

    #[test]
    fn branch_and_path() {
        assert_eq!(
            branch_name("feature/{issue}-{slug}", 42, "Fix: the .. bug").ok(),
            Some("feature/42-fix-the-bug".to_owned())
        );
        assert!(branch_name("feature//{issue}", 42, "x").is_err());
        assert!(branch_name("-{issue}", 42, "x").is_err());
        let path = worktree_path(
            "{worktree_root}/{repo}-worker-{issue}",
            Path::new("/src/widgets"),
            Path::new(".."),
            "widgets",
            7,
            "title",
        );
        assert_eq!(path, PathBuf::from("/src/widgets-worker-7"));
    }

    proptest! {
        #[test]
        fn any_title_gives_a_safe_slug_and_branch(title in any::<String>()) {
            let slug = slug(&title);
            prop_assert!(well_formed(&slug), "{:?} -> {:?}", title, slug);
            let branch = branch_name("feature/{issue}-{slug}", 42, &title);
            prop_assert!(branch.is_ok());
        }

        #[test]
        fn hostile_alphabet_titles(title in "[-./ a-zA-Z0-9~^:?*\\[\\\\@{}$`;|&<>'\"\u{0}\u{202E}éß修]{0,200}") {
            let slug = slug(&title);
            prop_assert!(well_formed(&slug), "{:?} -> {:?}", title, slug);
            let branch = format!("feature/1-{slug}");
            prop_assert!(is_valid_branch(&branch), "{}", branch);
        }
    }
}
