//! The hub when the network misbehaves, against a server the test starts itself (never the real hub).
//!
//! Scenarios: a server that accepts connections and never answers (listing and download must fail within
//! `CATDOG_HUB_TIMEOUT`, not hang); the same server with the data set already in the cache (the cache wins, with a
//! warning); a server that refuses with the hub's `X-Error-Code` (GatedRepo, RepoNotFound: each its own advice);
//! that server as an HTTP proxy in front of a hub whose name does not resolve (only the proxy can reach it); an
//! HTTPS hub behind a CONNECT proxy, its certificate from a test authority that only `REQUESTS_CA_BUNDLE` names
//! (a company proxy that inspects HTTPS).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::mock_hub::{refusing_server, run_catdog, serve};
use common::stderr;

/// A server that accepts every connection, reads what comes and never answers.
fn silent_server() -> String {
    serve(|mut s| {
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    })
}

/// Runs catdog against `endpoint` with a 2-second hub timeout (see [`common::mock_hub::run_catdog`]).
fn catdog_against(endpoint: &str, hf_home: &Path, args: &[&str]) -> (Output, Duration) {
    run_catdog(endpoint, hf_home, args, &[])
}

#[test]
fn a_hub_that_accepts_and_never_answers_is_an_error_within_the_timeout() {
    let endpoint = silent_server();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pets");
    let (o, took) = catdog_against(
        &endpoint,
        tmp.path(),
        &[
            "data",
            "fetch",
            "--repo",
            "someone/pets",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ],
    );
    eprintln!(
        "data fetch against a silent hub: error after {:.1} s",
        took.as_secs_f64()
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("someone/pets") && e.contains("no answer within 2"), "{e}");
    assert!(took < Duration::from_secs(15), "{took:?}");

    let (o, took) = catdog_against(
        &endpoint,
        tmp.path(),
        &["weights", "fetch", "someone/tiny-vgg", "--quiet"],
    );
    eprintln!(
        "weights fetch against a silent hub: error after {:.1} s",
        took.as_secs_f64()
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("someone/tiny-vgg") && e.contains("no answer within 2"),
        "{e}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
}

#[test]
fn a_cached_data_set_is_used_when_the_hub_does_not_answer() {
    let endpoint = silent_server();
    let tmp = tempfile::tempdir().unwrap();
    // The listing of refs/main is cached, and so is its snapshot (as huggingface_hub lays it out).
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let data = common::cached_repo(tmp.path(), "dataset", "someone/pets", commit).join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("train-00000-of-00001.parquet"), b"not read in this test").unwrap();
    let out = tmp.path().join("pets");
    let (o, took) = catdog_against(
        &endpoint,
        tmp.path(),
        &[
            "data",
            "fetch",
            "--repo",
            "someone/pets",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ],
    );
    let e = stderr(&o);
    // The listing falls back to the cache with a warning; the (deliberately broken) cached shard is then read.
    assert!(e.contains("using the cached copy of commit 0123456789"), "{e}");
    assert!(e.contains("parquet"), "{e}");
    assert!(took < Duration::from_secs(15), "{took:?}");
}

#[test]
fn the_hubs_error_codes_each_get_their_own_advice() {
    let tmp = tempfile::tempdir().unwrap();
    let gated = refusing_server(
        "401 Unauthorized",
        "GatedRepo",
        "Access to dataset someone/gated is restricted.",
    );
    let out = tmp.path().join("gated");
    let (o, _) = catdog_against(
        &gated,
        tmp.path(),
        &[
            "data",
            "fetch",
            "--repo",
            "someone/gated",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("gated") && e.contains("hf auth login") && e.contains("is restricted"),
        "{e}"
    );

    let missing = refusing_server("404 Not Found", "RepoNotFound", "Repository not found");
    let (o, _) = catdog_against(
        &missing,
        tmp.path(),
        &["weights", "fetch", "someone/nothing", "--quiet"],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("no such repository") && e.contains("check the id"), "{e}");
    assert!(
        !e.contains("--weights random"),
        "a refusal is not a network problem: {e}"
    );
}

#[test]
fn behind_a_proxy_the_hub_is_reached_through_it_even_when_only_the_proxy_resolves_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    // The "proxy" answers every request itself, with the hub's RepoNotFound: seeing that advice proves the
    // request went through it. The hub's own name (.invalid) resolves nowhere.
    let proxy = refusing_server("404 Not Found", "RepoNotFound", "Repository not found");
    let (o, took) = run_catdog(
        "http://hub.invalid",
        tmp.path(),
        &["weights", "fetch", "someone/model", "--quiet"],
        &[("HTTP_PROXY", proxy.as_str())],
    );
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("no such repository"),
        "the request should reach the hub through the proxy: {e}"
    );
    assert!(!e.contains("cannot resolve"), "{e}");
    assert!(took < Duration::from_secs(15), "{took:?}");
}

/// A certificate authority of its own and an HTTPS "hub" for `hub.test` with a certificate it signed, answering
/// every request with the hub's RepoNotFound. Returns the hub's port and the authority's certificate (PEM).
fn https_hub() -> (u16, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "catdog test authority");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["hub.test".to_string()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let config = Arc::new(config);
    let url = serve(move |tcp| {
        let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
            return;
        };
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        // The request head, then the hub's refusal (a failed handshake just ends the connection).
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && tls.read(&mut byte).is_ok_and(|n| n == 1) {
            head.push(byte[0]);
        }
        let _ = tls.write_all(
            b"HTTP/1.1 404 Not Found\r\nX-Error-Code: RepoNotFound\r\nX-Error-Message: Repository not found\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let _ = tls.flush();
        tls.conn.send_close_notify();
        let _ = tls.flush();
    });
    let port = url.rsplit(':').next().unwrap().parse().unwrap();
    (port, ca_cert.pem())
}

/// An HTTP proxy that serves CONNECT only, sending every tunnel to 127.0.0.1:`port` whatever host it names (the
/// hub's name resolves nowhere else); `tunnels` gets each CONNECT target.
fn connect_proxy(port: u16, tunnels: Arc<Mutex<Vec<String>>>) -> String {
    serve(move |client| {
        let mut reader = BufReader::new(client.try_clone().unwrap());
        let mut request = String::new();
        if reader.read_line(&mut request).is_err() || !request.starts_with("CONNECT ") {
            return;
        }
        // The rest of the head, up to its empty line.
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim_end() != "" {
            line.clear();
        }
        let target = request.split_whitespace().nth(1).unwrap_or("").to_string();
        tunnels.lock().unwrap().push(target);
        let mut client = client;
        let Ok(upstream) = TcpStream::connect(("127.0.0.1", port)) else {
            return;
        };
        let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        let (mut up_read, mut up_write) = (upstream.try_clone().unwrap(), upstream);
        let mut client_write = client.try_clone().unwrap();
        let to_hub = std::thread::spawn(move || {
            let _ = std::io::copy(&mut reader, &mut up_write);
            let _ = up_write.shutdown(std::net::Shutdown::Write);
        });
        let _ = std::io::copy(&mut up_read, &mut client_write);
        let _ = client_write.shutdown(std::net::Shutdown::Write);
        let _ = to_hub.join();
    })
}

#[test]
fn an_https_hub_behind_a_connect_proxy_is_reached_with_the_organisations_certificate_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let (port, ca_pem) = https_hub();
    let bundle = tmp.path().join("company-ca.pem");
    std::fs::write(&bundle, ca_pem).unwrap();
    let tunnels = Arc::new(Mutex::new(Vec::new()));
    let proxy = connect_proxy(port, tunnels.clone());
    let endpoint = format!("https://hub.test:{port}");
    let fetch = ["weights", "fetch", "someone/model", "--quiet"];
    // With the bundle: TLS through the tunnel verifies, and the hub's own answer comes back.
    let (o, took) = run_catdog(
        &endpoint,
        tmp.path(),
        &fetch,
        &[
            ("HTTPS_PROXY", proxy.as_str()),
            ("REQUESTS_CA_BUNDLE", bundle.to_str().unwrap()),
        ],
    );
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("no such repository"),
        "the hub's answer should come through the tunnel: {e}"
    );
    assert!(
        tunnels.lock().unwrap().iter().any(|t| t == &format!("hub.test:{port}")),
        "the proxy saw no CONNECT to the hub: {:?}",
        tunnels.lock().unwrap()
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
    // Without it the certificate is unknown: the error says which variable to set.
    let (o, _) = run_catdog(&endpoint, tmp.path(), &fetch, &[("HTTPS_PROXY", proxy.as_str())]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("REQUESTS_CA_BUNDLE") && !e.contains("no such repository"),
        "{e}"
    );
    // A bundle that is not one is refused by name.
    let (o, _) = run_catdog(
        &endpoint,
        tmp.path(),
        &fetch,
        &[
            ("HTTPS_PROXY", proxy.as_str()),
            ("SSL_CERT_FILE", "/nonexistent/ca.pem"),
        ],
    );
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains("SSL_CERT_FILE=/nonexistent/ca.pem cannot be read"), "{e}");
}

/// A SOCKS5 proxy (RFC 1928) that takes only user `user` with password `secret` (RFC 1929) and connects every
/// tunnel to 127.0.0.1 at the port asked for, whatever host is named (so only through it does `hub.invalid`
/// resolve); `targets` gets each target as it was asked for (`name:port` for a host name, `ip:port` for an
/// address).
fn socks5_proxy(targets: Arc<Mutex<Vec<String>>>) -> String {
    let url = serve(move |mut client| {
        let byte = |s: &mut TcpStream| -> Option<u8> {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).ok().map(|()| b[0])
        };
        let bytes = |s: &mut TcpStream, n: usize| -> Option<Vec<u8>> {
            let mut v = vec![0u8; n];
            s.read_exact(&mut v).ok().map(|()| v)
        };
        // Greeting: version 5, the methods offered; only user/password (2) is accepted.
        let (Some(5), Some(n)) = (byte(&mut client), byte(&mut client)) else {
            return;
        };
        let Some(methods) = bytes(&mut client, n as usize) else {
            return;
        };
        if !methods.contains(&2) {
            let _ = client.write_all(&[5, 0xff]);
            return;
        }
        let _ = client.write_all(&[5, 2]);
        let (Some(1), Some(ulen)) = (byte(&mut client), byte(&mut client)) else {
            return;
        };
        let Some(user) = bytes(&mut client, ulen as usize) else {
            return;
        };
        let Some(plen) = byte(&mut client) else { return };
        let Some(password) = bytes(&mut client, plen as usize) else {
            return;
        };
        if user != b"user" || password != b"secret" {
            let _ = client.write_all(&[1, 1]);
            return;
        }
        let _ = client.write_all(&[1, 0]);
        // Request: version, CONNECT, reserved, address type, address, port.
        let Some(head) = bytes(&mut client, 4) else { return };
        let host = match head[3] {
            1 => bytes(&mut client, 4).map(|a| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])),
            3 => byte(&mut client)
                .and_then(|n| bytes(&mut client, n as usize))
                .map(|n| String::from_utf8_lossy(&n).into_owned()),
            _ => None,
        };
        let (Some(host), Some(port)) = (host, bytes(&mut client, 2)) else {
            return;
        };
        let port = u16::from_be_bytes([port[0], port[1]]);
        targets.lock().unwrap().push(format!("{host}:{port}"));
        let Ok(upstream) = TcpStream::connect(("127.0.0.1", port)) else {
            let _ = client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
            return;
        };
        let _ = client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]);
        let (mut up_read, mut up_write) = (upstream.try_clone().unwrap(), upstream);
        let (mut client_read, mut client_write) = (client.try_clone().unwrap(), client);
        let to_hub = std::thread::spawn(move || {
            let _ = std::io::copy(&mut client_read, &mut up_write);
            let _ = up_write.shutdown(std::net::Shutdown::Write);
        });
        let _ = std::io::copy(&mut up_read, &mut client_write);
        let _ = client_write.shutdown(std::net::Shutdown::Write);
        let _ = to_hub.join();
    });
    url.trim_start_matches("http://").to_string()
}

#[test]
fn socks5_and_socks5h_proxies_with_a_password_reach_a_hub_only_they_can_resolve() {
    let hub = common::mock_hub::tiny_vgg_hub(common::mock_hub::Behaviour::default());
    let hub_port = hub.url.rsplit(':').next().unwrap();
    let endpoint = format!("http://hub.invalid:{hub_port}");
    let targets = Arc::new(Mutex::new(Vec::new()));
    let proxy = socks5_proxy(targets.clone());
    for scheme in ["socks5h", "socks5"] {
        let tmp = tempfile::tempdir().unwrap();
        let setting = format!("{scheme}://user:secret@{proxy}");
        let (o, took) = run_catdog(
            &endpoint,
            tmp.path(),
            &["weights", "fetch", "someone/tiny-vgg", "--quiet"],
            &[("ALL_PROXY", setting.as_str())],
        );
        assert!(o.status.success(), "{scheme}: {}", stderr(&o));
        assert!(took < Duration::from_secs(15), "{took:?}");
    }
    let seen = targets.lock().unwrap().clone();
    assert!(
        seen.iter().filter(|t| **t == format!("hub.invalid:{hub_port}")).count() >= 2,
        "the hub's name goes to the proxy to resolve: {seen:?}"
    );
    assert!(
        seen.iter().any(|t| t.ends_with(hub.cdn.rsplit(':').next().unwrap())),
        "the CDN is reached through the proxy too: {seen:?}"
    );
    // A wrong password: an error within the timeout that does not show the password.
    let tmp = tempfile::tempdir().unwrap();
    let setting = format!("socks5h://user:wrong-pw@{proxy}");
    let (o, took) = run_catdog(
        &endpoint,
        tmp.path(),
        &["weights", "fetch", "someone/tiny-vgg", "--quiet"],
        &[("ALL_PROXY", setting.as_str())],
    );
    let e = stderr(&o);
    assert!(!o.status.success() && !e.contains("wrong-pw"), "{e}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    // A scheme catdog cannot speak is refused as such, not as an unreachable host.
    let (o, _) = run_catdog(
        &endpoint,
        tmp.path(),
        &["weights", "fetch", "someone/tiny-vgg", "--quiet"],
        &[("ALL_PROXY", "socks4://127.0.0.1:1")],
    );
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("'socks4://'") && e.contains("socks5h://"),
        "{e}"
    );
}
