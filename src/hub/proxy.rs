//! Which proxy a request goes through, as Python's `requests` (and so `huggingface_hub`) decides it: the
//! scheme's own variable (`https_proxy` for https URLs, `http_proxy` for http), else `all_proxy`; lower case
//! before upper case; none when the host matches `no_proxy`. And what kind of proxy a setting names
//! ([`ProxySetting`]): HTTP (CONNECT for https URLs) or SOCKS5, with or without `user:password@`.

/// Where a URL points: scheme, host (lower case, no brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// Parses `scheme://[user@]host[:port][/…]`; `None` for anything else.
    pub fn parse(url: &str) -> Option<Target> {
        let (scheme, rest) = url.split_once("://")?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let authority = rest.split(['/', '?', '#']).next()?;
        let host_port = authority.rsplit('@').next()?;
        let (host, port) = split_host_port(host_port)?;
        let port = match port {
            Some(p) => p,
            None if https => 443,
            None => 80,
        };
        Some(Target {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// `host:port`, the form a socket address is resolved from.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A proxy setting as catdog uses it: `http://`, `socks5://` or `socks5h://` (`socks://` too), with an optional
/// `user:password@`; no scheme means `http://`, as `requests` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySetting {
    /// The proxy's `host:port`, which the reachability probe connects to.
    pub address: String,
    /// The setting in the form ureq takes.
    pub for_ureq: String,
}

impl ProxySetting {
    /// Parses a proxy setting; an unsupported scheme (`https://`, `socks4://`, …) or no host is an error that
    /// says what is supported. Both SOCKS5 forms send host names to the proxy to resolve (what `socks5h` means;
    /// with `socks5` the proxy also accepts names, and a machine behind it may have no DNS of its own).
    pub fn parse(setting: &str) -> Result<ProxySetting, String> {
        let (scheme, rest) = setting.split_once("://").unwrap_or(("http", setting));
        let (ureq_scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "http" => ("http", 80),
            "socks5" | "socks5h" | "socks" => ("socks5", 1080),
            other => {
                return Err(format!(
                    "the proxy setting uses '{other}://', which catdog does not support: use http://, socks5:// or \
                     socks5h:// (user:password@ allowed)"
                ))
            }
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host_port = authority.rsplit('@').next().unwrap_or("");
        let (host, port) = split_host_port(host_port).ok_or("the proxy setting names no host:port")?;
        let target = Target {
            https: false,
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(default_port),
        };
        Ok(ProxySetting {
            address: target.address(),
            for_ureq: format!("{ureq_scheme}://{}", authority.trim_end_matches('/')),
        })
    }
}

/// `host[:port]` → host and port; IPv6 literals in brackets.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':').map(|p| p.parse().ok()).unwrap_or(Some(0));
        return Some((host, port.filter(|p| *p != 0)));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((s, None)),
    }
    .filter(|(h, _)| !h.is_empty())
}

/// The proxy URL for requests to `url`, with the environment `env` gives; `None` to connect directly.
pub fn proxy_for(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let target = Target::parse(url)?;
    let var = |name: &str| {
        env(&name.to_ascii_lowercase())
            .or_else(|| env(&name.to_ascii_uppercase()))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let proxy = var(if target.https { "https_proxy" } else { "http_proxy" }).or_else(|| var("all_proxy"))?;
    let bypass = var("no_proxy").is_some_and(|list| bypasses(&target, &list));
    (!bypass).then_some(proxy)
}

/// True when `no_proxy` (comma- or space-separated) names the target: `*`; a domain, which also covers its
/// subdomains (a leading dot is optional); a host with a port, which must then match too; an IPv4 address or
/// CIDR block (`10.0.0.0/8`).
fn bypasses(target: &Target, no_proxy: &str) -> bool {
    no_proxy
        .split([',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some((net, bits)) = entry.split_once('/') {
                return in_cidr(&target.host, net, bits);
            }
            let (host, port) = match split_host_port(entry) {
                Some(hp) => hp,
                None => return false,
            };
            if port.is_some_and(|p| p != target.port) {
                return false;
            }
            let domain = host.trim_start_matches('.').to_ascii_lowercase();
            target.host == domain || target.host.ends_with(&format!(".{domain}"))
        })
}

/// True when `host` is an IPv4 address inside `net/bits`.
fn in_cidr(host: &str, net: &str, bits: &str) -> bool {
    let (Ok(ip), Ok(net), Ok(bits)) = (
        host.parse::<std::net::Ipv4Addr>(),
        net.parse::<std::net::Ipv4Addr>(),
        bits.parse::<u32>(),
    ) else {
        return false;
    };
    if bits > 32 {
        return false;
    }
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    u32::from(ip) & mask == u32::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_schemes_own_variable_wins_then_all_proxy_and_lower_case_before_upper() {
        let vars = env(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:2"),
            ("ALL_PROXY", "http://all:3"),
        ]);
        assert_eq!(
            proxy_for("https://huggingface.co/x", &vars).as_deref(),
            Some("http://lower:2")
        );
        assert_eq!(
            proxy_for("http://127.0.0.1:9/x", &vars).as_deref(),
            Some("http://all:3")
        );
        assert_eq!(proxy_for("https://hf.co", &env(&[])), None);
        assert_eq!(
            proxy_for("http://hub.local", &env(&[("HTTPS_PROXY", "http://p:1")])),
            None,
            "an https proxy is not used for http URLs"
        );
    }

    #[test]
    fn no_proxy_matches_domains_subdomains_ports_and_ipv4_blocks() {
        let t = |url: &str| Target::parse(url).unwrap();
        let hub = t("https://huggingface.co/api");
        let cdn = t("https://cdn-lfs.huggingface.co/x");
        assert!(bypasses(&hub, "localhost, huggingface.co"));
        assert!(bypasses(&cdn, ".huggingface.co"));
        assert!(bypasses(&cdn, "huggingface.co"));
        assert!(!bypasses(&t("https://nothuggingface.co"), "huggingface.co"));
        assert!(bypasses(&hub, "*"));
        assert!(bypasses(&hub, "huggingface.co:443"));
        assert!(!bypasses(&hub, "huggingface.co:8443"));
        assert!(bypasses(&t("http://10.1.2.3:8080/"), "10.0.0.0/8"));
        assert!(!bypasses(&t("http://11.1.2.3/"), "10.0.0.0/8"));
        assert!(bypasses(&t("http://127.0.0.1:4000/"), "127.0.0.1"));
        assert!(bypasses(&t("http://[::1]:4000/"), "[::1]"));
        let vars = env(&[("HTTPS_PROXY", "http://p:1"), ("no_proxy", ".huggingface.co")]);
        assert_eq!(proxy_for("https://cdn-lfs.huggingface.co/x", &vars), None);
        assert_eq!(proxy_for("https://example.org/x", &vars).as_deref(), Some("http://p:1"));
    }

    #[test]
    fn urls_are_parsed_into_host_and_port() {
        let t = Target::parse("http://u:pw@Hub.Local:8080/a?b").unwrap();
        assert_eq!((t.https, t.host.as_str(), t.port), (false, "hub.local", 8080));
        assert_eq!(Target::parse("https://hf.co").unwrap().address(), "hf.co:443");
        assert_eq!(Target::parse("http://[::1]:5/").unwrap().address(), "[::1]:5");
        assert_eq!(Target::parse("ftp://x"), None);
    }

    #[test]
    fn proxy_settings_of_every_supported_scheme_name_their_address_and_others_are_refused() {
        let p = |s: &str| ProxySetting::parse(s).map(|p| (p.address, p.for_ureq));
        assert_eq!(
            p("http://proxy:3128/"),
            Ok(("proxy:3128".into(), "http://proxy:3128".into()))
        );
        assert_eq!(p("proxy:3128"), Ok(("proxy:3128".into(), "http://proxy:3128".into())));
        assert_eq!(
            p("socks5h://u:p%40ss@127.0.0.1:9050"),
            Ok(("127.0.0.1:9050".into(), "socks5://u:p%40ss@127.0.0.1:9050".into()))
        );
        assert_eq!(p("SOCKS5://gate"), Ok(("gate:1080".into(), "socks5://gate".into())));
        for bad in ["https://proxy:443", "socks4://proxy:1080", "socks5://", "ftp://x:1"] {
            let e = p(bad).unwrap_err();
            assert!(e.contains("proxy setting"), "{bad}: {e}");
        }
    }
}
