//! The access token, found where Python's `huggingface_hub` finds it, and the rule for where it may be sent.

use std::path::{Path, PathBuf};

/// The access token: `HF_TOKEN`, else the file `HF_TOKEN_PATH` names, else `$HF_HOME/token` (what
/// `hf auth login` writes; `~/.cache/huggingface/token` without `HF_HOME`).
pub fn hf_token() -> Option<String> {
    token_from(&|k| std::env::var(k).ok(), &|p| std::fs::read_to_string(p).ok())
}

/// [`hf_token`] with the environment and the file system given (for tests).
pub fn token_from(env: &dyn Fn(&str) -> Option<String>, read: &dyn Fn(&Path) -> Option<String>) -> Option<String> {
    let nonempty = |s: String| {
        let t = s.trim().to_string();
        (!t.is_empty()).then_some(t)
    };
    if let Some(t) = env("HF_TOKEN").and_then(nonempty) {
        return Some(t);
    }
    let path = match env("HF_TOKEN_PATH").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let home = env("HF_HOME")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(env("HOME").unwrap_or_else(|| ".".into()))
                        .join(".cache")
                        .join("huggingface")
                });
            home.join("token")
        }
    };
    read(&path).and_then(nonempty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_found_where_huggingface_hub_looks() {
        let files = |p: &Path| match p.to_str()? {
            "/hf/token" => Some("from-hf-home\n".to_string()),
            "/elsewhere/tok" => Some("from-token-path".to_string()),
            "/home/u/.cache/huggingface/token" => Some("from-default-home".to_string()),
            _ => None,
        };
        let with = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            token_from(
                &move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
                &files,
            )
        };
        assert_eq!(with(&[("HF_TOKEN", "env"), ("HF_HOME", "/hf")]).as_deref(), Some("env"));
        assert_eq!(
            with(&[("HF_TOKEN", ""), ("HF_HOME", "/hf")]).as_deref(),
            Some("from-hf-home")
        );
        assert_eq!(
            with(&[("HF_TOKEN_PATH", "/elsewhere/tok"), ("HF_HOME", "/hf")]).as_deref(),
            Some("from-token-path")
        );
        assert_eq!(with(&[("HOME", "/home/u")]).as_deref(), Some("from-default-home"));
        assert_eq!(with(&[("HF_HOME", "/nothing")]), None);
    }
}
