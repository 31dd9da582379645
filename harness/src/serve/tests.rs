//! Path refusal, and real fetches over HTTP and HTTPS from a server on 127.0.0.1:0.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use super::*;

fn root_with_files() -> (tempfile::TempDir, tempfile::TempDir) {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "secret\n").unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("meta/1.0")).unwrap();
    std::fs::write(
        root.path().join("meta/1.0/index-system"),
        "debian;bookworm;amd64;default;b1;/images/x/\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("leak")).unwrap();
    std::os::unix::fs::symlink("meta/1.0/index-system", root.path().join("inside")).unwrap();
    (root, outside)
}

#[test]
fn paths_that_escape_the_root_are_refused() {
    let (root, _outside) = root_with_files();
    let root = root.path().canonicalize().unwrap();
    let ok = resolve(&root, "/meta/1.0/index-system?x=1").unwrap();
    assert_eq!(ok, root.join("meta/1.0/index-system"));
    assert_eq!(
        resolve(&root, "/./meta//1.0/index%2Dsystem").unwrap(),
        root.join("meta/1.0/index-system")
    );
    assert!(resolve(&root, "/inside").is_ok());
    for bad in [
        "/../etc/passwd",
        "/meta/../../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/leak",
    ] {
        assert_eq!(resolve(&root, bad), Err(http::Refusal::Forbidden), "{bad}");
    }
    assert_eq!(resolve(&root, "/a%00b"), Err(http::Refusal::BadRequest));
    assert_eq!(resolve(&root, "etc/passwd"), Err(http::Refusal::BadRequest));
    assert_eq!(resolve(&root, "/meta"), Err(http::Refusal::NotFound));
    assert_eq!(resolve(&root, "/nope"), Err(http::Refusal::NotFound));
}

fn request<S: Read + Write>(mut s: S, path: &str, extra: &str) -> (String, Vec<u8>) {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    match s.read_to_end(&mut all) {
        Ok(_) => {}
        // rustls reports a peer that closes without close_notify; ours sends it.
        Err(e) => panic!("read: {e}"),
    }
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(all[..split].to_vec()).unwrap();
    (head, all[split + 4..].to_vec())
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn serves_files_over_http_with_ranges_and_refusals() {
    let (root, _outside) = root_with_files();
    let server = Server::bind(root.path(), loopback(), None).unwrap().spawn();
    assert!(server.url().starts_with("http://127.0.0.1:"));
    let get =
        |path: &str, extra: &str| request(TcpStream::connect(server.addr()).unwrap(), path, extra);
    let (head, body) = get("/meta/1.0/index-system", "");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(body, b"debian;bookworm;amd64;default;b1;/images/x/\n");
    let (head, body) = get("/meta/1.0/index-system", "Range: bytes=7-14\r\n");
    assert!(head.starts_with("HTTP/1.1 206"), "{head}");
    assert!(head.contains("Content-Range: bytes 7-14/44"), "{head}");
    assert_eq!(body, b"bookworm");
    let (head, _) = get("/meta/1.0/index-system", "Range: bytes=44-\r\n");
    assert!(head.starts_with("HTTP/1.1 416"), "{head}");
    let (head, body) = get("/../leak", "");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(!String::from_utf8_lossy(&body).contains("secret"));
    let (head, _) = get("/leak", "");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (head, _) = get("/missing", "");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let mut s = TcpStream::connect(server.addr()).unwrap();
    write!(s, "DELETE /meta/1.0/index-system HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
}

#[test]
fn serves_files_over_https_trusting_the_generated_ca() {
    let (root, _outside) = root_with_files();
    let state = tempfile::tempdir().unwrap();
    let ca = TestCa::generate(state.path(), &["127.0.0.1".to_owned()]).unwrap();
    let pem = std::fs::read_to_string(&ca.ca_path).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let server = Server::bind(root.path(), loopback(), Some(&ca))
        .unwrap()
        .spawn();
    assert!(server.url().starts_with("https://127.0.0.1:"));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.ca_der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    for name in ["127.0.0.1", "localhost"] {
        let conn = rustls::ClientConnection::new(cfg.clone(), name.to_owned().try_into().unwrap())
            .unwrap();
        let tcp = TcpStream::connect(server.addr()).unwrap();
        let (head, body) = request(
            rustls::StreamOwned::new(conn, tcp),
            "/meta/1.0/index-system",
            "",
        );
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert_eq!(body, b"debian;bookworm;amd64;default;b1;/images/x/\n");
    }

    // A client that does not trust the test CA is refused by the handshake.
    let other = TestCa::generate(&state.path().join("other"), &[]).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(other.ca_der.clone()).unwrap();
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let conn = rustls::ClientConnection::new(cfg, "localhost".try_into().unwrap()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, TcpStream::connect(server.addr()).unwrap());
    let err = s
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .and_then(|()| s.flush())
        .and_then(|()| {
            let mut b = Vec::new();
            s.read_to_end(&mut b).map(|_| ())
        });
    let err = err.unwrap_err().to_string();
    assert!(
        err.contains("UnknownIssuer") || err.contains("invalid peer certificate"),
        "{err}"
    );
}

#[test]
fn published_image_fetched_over_https_verifies_with_the_public_key() {
    use crate::publish;
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = publish::keygen(&dir.path().join("keys"), "test").unwrap();
    let key = publish::load_secret_key(&secret).unwrap();
    let www = dir.path().join("www");
    let tarball = dir.path().join("busybox.tar.gz");
    std::fs::write(&tarball, vec![7u8; 300_000]).unwrap();
    let spec = publish::ImageSpec {
        dist: "busybox".into(),
        release: "1.36".into(),
        arch: "amd64".into(),
        variant: "default".into(),
        build: "20261129_03:50".into(),
    };
    publish::publish(&www, &spec, &tarball, &key).unwrap();
    let ca = TestCa::generate(&dir.path().join("tls"), &[]).unwrap();
    let server = Server::bind(&www, loopback(), Some(&ca)).unwrap().spawn();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.ca_der.clone()).unwrap();
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let fetch = |path: &str| {
        let conn =
            rustls::ClientConnection::new(cfg.clone(), "localhost".try_into().unwrap()).unwrap();
        let tcp = TcpStream::connect(server.addr()).unwrap();
        let (head, body) = request(rustls::StreamOwned::new(conn, tcp), path, "");
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{path}: {head}");
        body
    };
    let index = String::from_utf8(fetch("/meta/1.0/index-system")).unwrap();
    let image_path = index.trim().rsplit(';').next().unwrap().to_owned();
    assert_eq!(
        image_path,
        "/images/busybox/1.36/amd64/default/20261129_03:50/"
    );
    let got = dir.path().join("got");
    std::fs::create_dir_all(&got).unwrap();
    for f in [
        "rootfs.tar.gz",
        "rootfs.tar.gz.asc",
        "meta.tar.xz",
        "meta.tar.xz.asc",
    ] {
        std::fs::write(got.join(f), fetch(&format!("{image_path}{f}"))).unwrap();
    }
    assert_eq!(
        std::fs::read(got.join("rootfs.tar.gz")).unwrap().len(),
        300_000
    );
    publish::verify_file(&public, &got.join("rootfs.tar.gz")).unwrap();
    publish::verify_file(&public, &got.join("meta.tar.xz")).unwrap();
}
