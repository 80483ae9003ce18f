//! Where the cache file lives.
//!
//! One file per API host and repository, so a GitHub Enterprise repository and a github.com one
//! with the same name never share ETags, and deleting one repository's cache leaves the others.
//! The inputs are plain values (read from the environment by settings), so this is pure.

use std::path::PathBuf;

/// The cache file's name inside its directory.
pub const CACHE_FILE_NAME: &str = "cache.sqlite3";

/// The environment values the cache location depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheLocation {
    /// `$CREW_CACHE_DIR`: the whole directory, used as is.
    pub crew_cache_dir: Option<PathBuf>,
    /// `$XDG_CACHE_HOME`: the root of per-user caches.
    pub xdg_cache_home: Option<PathBuf>,
    /// `$HOME`, for the `~/.cache` fallback.
    pub home: Option<PathBuf>,
}

impl CacheLocation {
    /// The values settings resolved from the environment.
    pub fn from_settings(settings: &crate::settings::Settings) -> CacheLocation {
        CacheLocation {
            crew_cache_dir: settings.crew_cache_dir.clone(),
            xdg_cache_home: settings.xdg_cache_home.clone(),
            home: settings.home.clone(),
        }
    }

    /// The cache directory for `owner/repo` on the API at `api_url`:
    /// `$CREW_CACHE_DIR`, else `$XDG_CACHE_HOME/crew/<api host>/<owner>/<repo>`, else
    /// `~/.cache/crew/...`. `None` when none of those is known.
    pub fn directory(&self, api_url: &url::Url, owner: &str, repo: &str) -> Option<PathBuf> {
        if let Some(dir) = non_empty(&self.crew_cache_dir) {
            return Some(dir.clone());
        }
        // The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
        let root = match non_empty(&self.xdg_cache_home) {
            Some(xdg) if xdg.is_absolute() => xdg.clone(),
            _ => non_empty(&self.home)?.join(".cache"),
        };
        Some(
            root.join("crew")
                .join(host_component(api_url))
                .join(path_component(owner))
                .join(path_component(repo)),
        )
    }

    /// The cache file ([`CACHE_FILE_NAME`] inside [`CacheLocation::directory`]).
    pub fn file(&self, api_url: &url::Url, owner: &str, repo: &str) -> Option<PathBuf> {
        self.directory(api_url, owner, repo)
            .map(|dir| dir.join(CACHE_FILE_NAME))
    }
}

fn non_empty(path: &Option<PathBuf>) -> Option<&PathBuf> {
    path.as_ref().filter(|path| !path.as_os_str().is_empty())
}

/// `api.github.com`, or `127.0.0.1_8080` when the URL names a port (`:` is not portable in paths).
fn host_component(api_url: &url::Url) -> String {
    let host = api_url.host_str().unwrap_or("unknown-host");
    match api_url.port() {
        Some(port) => path_component(&format!("{host}_{port}")),
        None => path_component(host),
    }
}

/// Keeps a name to one safe path component: no separators, no `..`.
fn path_component(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> url::Url {
        url::Url::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    #[test]
    fn crew_cache_dir_wins() {
        let location = CacheLocation {
            crew_cache_dir: Some("/tmp/c".into()),
            xdg_cache_home: Some("/x".into()),
            home: Some("/h".into()),
        };
        assert_eq!(
            location.file(&url("https://api.github.com"), "acme", "widgets"),
            Some(PathBuf::from("/tmp/c/cache.sqlite3"))
        );
    }

    #[test]
    fn xdg_then_home() {
        let mut location = CacheLocation {
            crew_cache_dir: None,
            xdg_cache_home: Some("/x".into()),
            home: Some("/h".into()),
        };
        assert_eq!(
            location.directory(&url("https://api.github.com"), "acme", "widgets"),
            Some(PathBuf::from("/x/crew/api.github.com/acme/widgets"))
        );
        location.xdg_cache_home = Some("relative".into());
        assert_eq!(
            location.directory(&url("http://127.0.0.1:4000/"), "acme", "widgets"),
            Some(PathBuf::from("/h/.cache/crew/127.0.0.1_4000/acme/widgets"))
        );
        location.home = None;
        assert_eq!(location.directory(&url("https://x"), "a", "b"), None);
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        let location = CacheLocation {
            home: Some("/h".into()),
            ..CacheLocation::default()
        };
        assert_eq!(
            location.directory(&url("https://ghe.example.com/api/v3"), "..", "a/b"),
            Some(PathBuf::from("/h/.cache/crew/ghe.example.com/_../a_b"))
        );
    }
}
