//! The access token, found where Python's `huggingface_hub` finds it, and the rule for where it may be sent.

use std::path::{Path, PathBuf};

/// The access token: `HF_TOKEN`, else the file `HF_TOKEN_PATH` names, else `$HF_HOME/token` (what
/// `hf auth login` writes; `~/.cache/huggingface/token` without `HF_HOME`). A token that holds anything but
/// visible ASCII (a newline inside, a control character) is refused, naming where it came from and never
/// showing it: it would go into an HTTP header, whose error messages print the header whole.
pub fn hf_token() -> Result<Option<String>, String> {
    token_from(&|k| std::env::var(k).ok(), &|p| std::fs::read_to_string(p).ok())
}

/// [`hf_token`] with the environment and the file system given (for tests).
pub fn token_from(
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&Path) -> Option<String>,
) -> Result<Option<String>, String> {
    if let Some(t) = env("HF_TOKEN").and_then(nonempty) {
        return checked(t, "HF_TOKEN").map(Some);
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
    match read(&path).and_then(nonempty) {
        Some(t) => checked(t, &format!("the token file {}", path.display())).map(Some),
        None => Ok(None),
    }
}

/// `s` without surrounding white space, unless nothing is left.
fn nonempty(s: String) -> Option<String> {
    let t = s.trim().to_string();
    (!t.is_empty()).then_some(t)
}

/// The token when it is visible ASCII throughout; else which source holds a bad one (the token is not shown).
fn checked(token: String, source: &str) -> Result<String, String> {
    if token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(token)
    } else {
        Err(format!(
            "the access token in {source} holds a space, a line break or a control character (it is not shown \
             here): fix it there, e.g. with `hf auth login`, or unset it"
        ))
    }
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
            .unwrap()
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

    #[test]
    fn a_token_with_a_line_break_or_control_character_is_refused_without_being_shown() {
        let files = |p: &Path| (p.to_str()? == "/hf/token").then(|| "hf_first\nhf_second\n".to_string());
        let env_with = |token: &'static str| {
            move |k: &str| match k {
                "HF_TOKEN" => Some(token.to_string()),
                "HF_HOME" => Some("/hf".to_string()),
                _ => None,
            }
        };
        let e = token_from(&env_with("hf_secret\u{7}x"), &files).unwrap_err();
        assert!(e.contains("HF_TOKEN") && !e.contains("hf_secret"), "{e}");
        let e = token_from(&env_with(""), &files).unwrap_err();
        assert!(e.contains("/hf/token") && !e.contains("hf_first"), "{e}");
        // Surrounding white space (the file's last line break) is not part of the token.
        assert_eq!(token_from(&env_with(" hf_ok\n"), &files), Ok(Some("hf_ok".into())));
    }
}
