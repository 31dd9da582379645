//! `ulxc create -t download` against an image server run by the test on 127.0.0.1: a
//! busybox rootfs and its `meta.tar.xz`, signed with a key made here, listed, created
//! as the unprivileged test user, cached, and every kind of bad input.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex, OnceLock};

use common::{env, fails, ok, owner, Lxcpath};
use pgp::composed::{
    ArmorOptions, DetachedSignature, KeyType, SecretKeyParamsBuilder, SignedPublicKey,
    SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::Password;

/// How the server answers one path.
#[derive(Clone)]
enum Reply {
    Body(Vec<u8>),
    Status(u16),
    /// Announces the full length, sends half, closes.
    Truncated(Vec<u8>),
    /// The body after a pause of 2 s (so that two clients overlap).
    Slow(Vec<u8>),
}

/// The test's image server: files by path, and every request path it saw.
struct Server {
    url: String,
    files: Mutex<HashMap<String, Reply>>,
    requests: Mutex<Vec<String>>,
    /// `(path, first byte)` of every request with a `Range: bytes=N-` header.
    ranges: Mutex<Vec<(String, usize)>>,
    key: SignedSecretKey,
    public: String,
    other: SignedSecretKey,
    /// The same files over HTTPS, with a certificate from the test CA in `ca_pem`.
    tls_url: String,
    ca_pem: String,
}

impl Server {
    fn count(&self, suffix: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.ends_with(suffix))
            .count()
    }

    fn put(&self, path: &str, reply: Reply) {
        self.files.lock().unwrap().insert(path.to_string(), reply);
    }

    /// Publishes an image at `/SITE/` with the given index lines and files, each signed
    /// by `signer` (or unsigned when `None`).
    fn site(
        &self,
        site: &str,
        index: &str,
        files: &[(&str, Vec<u8>)],
        signer: Option<&SignedSecretKey>,
    ) {
        self.put(
            &format!("/{site}/meta/1.0/index-system"),
            Reply::Body(index.as_bytes().to_vec()),
        );
        for (name, data) in files {
            self.put(&format!("/{site}/{name}"), Reply::Body(data.clone()));
            if let Some(k) = signer {
                self.put(
                    &format!("/{site}/{name}.asc"),
                    Reply::Body(sign(k, data).into_bytes()),
                );
            }
        }
    }
}

fn handle<S: Read + Write>(server: &Server, mut stream: S) -> std::io::Result<()> {
    // The request head, byte by byte (tiny requests; no body).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let first = head.lines().next().unwrap_or("");
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    server.requests.lock().unwrap().push(path.clone());
    let reply = server.files.lock().unwrap().get(&path).cloned();
    let range: Option<usize> = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if !k.eq_ignore_ascii_case("range") {
            return None;
        }
        v.trim()
            .strip_prefix("bytes=")?
            .strip_suffix('-')?
            .parse()
            .ok()
    });
    if let Some(from) = range {
        server.ranges.lock().unwrap().push((path.clone(), from));
    }
    let out = &mut stream;
    match reply {
        Some(Reply::Body(b)) if range.is_some_and(|from| from < b.len()) => {
            let from = range.unwrap_or(0);
            write!(
                out,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                b.len() - 1,
                b.len(),
                b.len() - from
            )?;
            out.write_all(&b[from..])?;
        }
        Some(Reply::Slow(b)) => {
            std::thread::sleep(std::time::Duration::from_secs(2));
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                b.len()
            )?;
            out.write_all(&b)?;
        }
        Some(Reply::Body(b)) => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                b.len()
            )?;
            out.write_all(&b)?;
        }
        Some(Reply::Truncated(b)) => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                b.len()
            )?;
            out.write_all(&b[..b.len() / 2])?;
        }
        Some(Reply::Status(code)) => {
            write!(
                out,
                "HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
        }
        None => write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?,
    }
    out.flush()
}

/// A test CA and a certificate for 127.0.0.1 signed by it.
fn tls_config() -> (Arc<rustls::ServerConfig>, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ulxc test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    (Arc::new(config), ca_cert.pem())
}

fn server() -> &'static Server {
    static SERVER: OnceLock<&'static Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let tls_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (tls, ca_pem) = tls_config();
        let (key, public) = keypair();
        let (other, _) = keypair();
        let server: &'static Server = Box::leak(Box::new(Server {
            url: format!("http://{}", listener.local_addr().unwrap()),
            tls_url: format!("https://{}", tls_listener.local_addr().unwrap()),
            ca_pem,
            files: Mutex::default(),
            requests: Mutex::default(),
            ranges: Mutex::default(),
            key,
            public,
            other,
        }));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = handle(server, stream);
                });
            }
        });
        std::thread::spawn(move || {
            for stream in tls_listener.incoming().flatten() {
                let tls = tls.clone();
                std::thread::spawn(move || {
                    if let Ok(conn) = rustls::ServerConnection::new(tls) {
                        let _ = handle(server, rustls::StreamOwned::new(conn, stream));
                    }
                });
            }
        });
        publish(server);
        server
    })
}

const IMAGE: &str = "images/busybox/test/amd64/default";

fn index_line(release: &str, build: &str, path: &str) -> String {
    format!("busybox;{release};amd64;default;{build};{path}\n")
}

/// Every site the tests use.
fn publish(s: &Server) {
    let rootfs = busybox_tarball(false);
    let meta = meta_tarball();
    let files = |p: &str| {
        vec![
            (format!("{IMAGE}/{p}/rootfs.tar.xz"), rootfs.clone()),
            (format!("{IMAGE}/{p}/meta.tar.xz"), meta.clone()),
        ]
    };
    let refs = |v: &Vec<(String, Vec<u8>)>| -> Vec<(String, Vec<u8>)> { v.clone() };
    let site =
        |name: &str, index: String, f: Vec<(String, Vec<u8>)>, signer: Option<&SignedSecretKey>| {
            let f: Vec<(&str, Vec<u8>)> = f.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
            s.site(name, &index, &f, signer);
        };
    let good = files("b1");
    site(
        "good",
        index_line("test", "b1", &format!("{IMAGE}/b1/")),
        refs(&good),
        Some(&s.key),
    );
    site(
        "tls",
        index_line("test", "b1", &format!("{IMAGE}/b1/")),
        refs(&good),
        Some(&s.key),
    );
    site(
        "resume",
        index_line("test", "b8", &format!("{IMAGE}/b1/")),
        refs(&good),
        Some(&s.key),
    );
    s.put(
        &format!("/resume/{IMAGE}/b1/rootfs.tar.xz"),
        Reply::Truncated(rootfs.clone()),
    );
    site(
        "fields",
        "busybox;test;amd64;default\n".into(),
        refs(&good),
        Some(&s.key),
    );
    site(
        "escape",
        index_line("test", "b2", &format!("../good/{IMAGE}/b1")),
        vec![],
        Some(&s.key),
    );
    site(
        "othersig",
        index_line("test", "b3", &format!("{IMAGE}/b1")),
        refs(&good),
        Some(&s.other),
    );
    site(
        "unsigned",
        index_line("test", "b4", &format!("{IMAGE}/b1")),
        refs(&good),
        None,
    );
    site(
        "truncated",
        index_line("test", "b5", &format!("{IMAGE}/b1")),
        vec![],
        None,
    );
    s.put(
        &format!("/truncated/{IMAGE}/b1/rootfs.tar.xz"),
        Reply::Truncated(rootfs.clone()),
    );
    s.put("/error500/meta/1.0/index-system", Reply::Status(500));
    site(
        "shared",
        index_line("test", "b9", &format!("{IMAGE}/b1")),
        refs(&good),
        Some(&s.key),
    );
    s.put(
        &format!("/shared/{IMAGE}/b1/rootfs.tar.xz"),
        Reply::Slow(rootfs.clone()),
    );
    let sums = |rootfs_data: &[u8]| {
        let hex = |d: &[u8]| -> String {
            HashAlgorithm::Sha256
                .digest(d)
                .unwrap()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        format!(
            "{}  rootfs.tar.xz\n{}  meta.tar.xz\n",
            hex(rootfs_data),
            hex(&meta)
        )
        .into_bytes()
    };
    let with_sums = |sums_text: Vec<u8>| {
        let mut f = good.clone();
        f.push((format!("{IMAGE}/b1/SHA256SUMS"), sums_text));
        f
    };
    site(
        "sums",
        index_line("test", "b11", &format!("{IMAGE}/b1")),
        with_sums(sums(&rootfs)),
        Some(&s.key),
    );
    // Signed, but the rootfs's line is wrong (the rootfs is signed and intact).
    site(
        "badsums",
        index_line("test", "b12", &format!("{IMAGE}/b1")),
        with_sums(sums(b"another rootfs")),
        Some(&s.key),
    );
    // SHA256SUMS offered without its signature.
    site(
        "nosumsig",
        index_line("test", "b13", &format!("{IMAGE}/b1")),
        refs(&good),
        Some(&s.key),
    );
    s.put(
        &format!("/nosumsig/{IMAGE}/b1/SHA256SUMS"),
        Reply::Body(sums(&rootfs)),
    );
    site(
        "excl",
        index_line("test", "b10", &format!("{IMAGE}/excl")),
        vec![
            (format!("{IMAGE}/excl/rootfs.tar.xz"), rootfs.clone()),
            (
                format!("{IMAGE}/excl/meta.tar.xz"),
                meta_tarball_with(&[
                    // LXC uses `excludes-user` for an unprivileged user, not `excludes`.
                    ("excludes", "./bin\n"),
                    ("excludes-user", "./home/user\n./etc/pass*\n"),
                ]),
            ),
        ],
        Some(&s.key),
    );
    site(
        "evil",
        index_line("test", "b6", &format!("{IMAGE}/evil")),
        vec![
            (format!("{IMAGE}/evil/rootfs.tar.xz"), busybox_tarball(true)),
            (format!("{IMAGE}/evil/meta.tar.xz"), meta.clone()),
        ],
        Some(&s.key),
    );
    site(
        "corrupt",
        index_line("test", "b7", &format!("{IMAGE}/b1")),
        refs(&good),
        Some(&s.key),
    );
    // The rootfs changes after it was signed.
    let mut altered = rootfs.clone();
    let n = altered.len() / 2;
    altered[n] ^= 0xff;
    s.put(
        &format!("/corrupt/{IMAGE}/b1/rootfs.tar.xz"),
        Reply::Body(altered),
    );
}

fn keypair() -> (SignedSecretKey, String) {
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id("ulxc test images <images@example.invalid>".into());
    let mut rng = rand::thread_rng();
    let secret = params.build().unwrap().generate(&mut rng).unwrap();
    let signed = secret.sign(&mut rng, &Password::empty()).unwrap();
    let public = SignedPublicKey::from(signed.clone())
        .to_armored_string(ArmorOptions::default())
        .unwrap();
    (signed, public)
}

fn sign(key: &SignedSecretKey, data: &[u8]) -> String {
    DetachedSignature::sign_binary_data(
        rand::thread_rng(),
        &key.primary_key,
        &Password::empty(),
        HashAlgorithm::Sha256,
        data,
    )
    .unwrap()
    .to_armored_string(ArmorOptions::default())
    .unwrap()
}

fn xz(data: Vec<u8>) -> Vec<u8> {
    let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 1);
    enc.write_all(&data).unwrap();
    enc.finish().unwrap()
}

/// A busybox rootfs: directories, `/bin/busybox`, `sh` linked to it, a file of uid 1000;
/// with `evil`, also an entry that climbs out with `..`.
fn busybox_tarball(evil: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, name: &str, uid: u64| {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_size(0);
        h.set_cksum();
        b.append_data(&mut h, name, std::io::empty()).unwrap();
    };
    for d in ["bin", "etc", "dev", "proc", "sys", "tmp", "root", "home"] {
        dir(&mut b, d, 0);
    }
    dir(&mut b, "home/user", 1000);
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (package busybox-static)");
    let mut h = header();
    h.set_mode(0o755);
    h.set_size(busybox.len() as u64);
    h.set_cksum();
    b.append_data(&mut h, "bin/busybox", &busybox[..]).unwrap();
    let mut h = header();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "bin/sh", "busybox").unwrap();
    let passwd = b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n";
    let mut h = header();
    h.set_mode(0o644);
    h.set_size(passwd.len() as u64);
    h.set_cksum();
    b.append_data(&mut h, "etc/passwd", &passwd[..]).unwrap();
    // Filled in by the image's `templates` list, as in the public images.
    let hostname = b"LXC_NAME\n";
    let mut h = header();
    h.set_mode(0o644);
    h.set_size(hostname.len() as u64);
    h.set_cksum();
    b.append_data(&mut h, "etc/hostname", &hostname[..])
        .unwrap();
    if evil {
        let mut h = header();
        h.set_mode(0o644);
        h.set_size(4);
        let name = b"../../escaped";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, &b"evil"[..]).unwrap();
    }
    xz(b.into_inner().unwrap())
}

/// A GNU header with owner 0:0 and a fixed mtime; the caller sets type, mode and size.
fn header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

fn meta_tarball() -> Vec<u8> {
    meta_tarball_with(&[])
}

/// The test image's `meta.tar.xz` with `extra` files.
fn meta_tarball_with(extra: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let base = [
        ("config", "lxc.arch = x86_64\n"),
        (
            "config-user",
            // What the public Debian images carry.
            "lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf\n\
             lxc.include = LXC_TEMPLATE_CONFIG/debian.userns.conf\n\
             lxc.arch = x86_64\n# for LXC_NAME\n",
        ),
        ("create-message", "You just created a busybox test amd64 container (LXC_NAME).\nNo root password is set.\n"),
        ("templates", "/etc/hostname\n"),
    ];
    for (name, text) in base.iter().chain(extra) {
        let mut h = header();
        h.set_mode(0o644);
        h.set_size(text.len() as u64);
        h.set_cksum();
        b.append_data(&mut h, name, text.as_bytes()).unwrap();
    }
    xz(b.into_inner().unwrap())
}

/// Per-test settings: its own cache and config directories and the trusted key.
struct Setup {
    lxc: Lxcpath,
    cache: PathBuf,
    config: PathBuf,
    keyring: PathBuf,
}

fn setup(test: &str) -> Setup {
    let lxc = env().lxcpath(test);
    let cache = lxc.path.join(".cache");
    let config = lxc.path.join(".config");
    std::fs::create_dir_all(config.join("ulxc")).unwrap();
    let keyring = lxc.path.join("trusted.asc");
    std::fs::write(&keyring, &server().public).unwrap();
    Setup {
        lxc,
        cache,
        config,
        keyring,
    }
}

impl Setup {
    fn run(&self, name: &str, tpl: &[&str], envs: &[(&str, &str)]) -> Output {
        let e = env();
        let mut cmd = e.command(&e.bin);
        cmd.env("XDG_CACHE_HOME", &self.cache)
            .env("XDG_CONFIG_HOME", &self.config);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.args([
            "create",
            "-P",
            self.lxc.path.to_str().unwrap(),
            "-n",
            name,
            "-t",
            "download",
            "--",
        ]);
        cmd.args(tpl);
        cmd.output().unwrap()
    }

    fn create(&self, name: &str, site: &str, extra: &[&str]) -> Output {
        let url = format!("{}/{site}", server().url);
        let mut args = vec![
            "--server",
            &url,
            "--keyring",
            self.keyring.to_str().unwrap(),
            "-d",
            "busybox",
            "-r",
            "test",
            "-a",
            "amd64",
        ];
        args.extend_from_slice(extra);
        self.run(name, &args, &[])
    }

    fn exists(&self, name: &str) -> bool {
        std::fs::symlink_metadata(self.lxc.path.join(name)).is_ok()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn lists_creates_and_caches() {
    let s = setup("dl-create");
    let srv = server();
    let url = format!("{}/good", srv.url);

    // Listing prints LXC's table and creates nothing.
    let out = ok(&s.run("c0", &["--server", &url, "--list"], &[]));
    assert!(out.contains("DIST\tRELEASE\tARCH\tVARIANT\tBUILD"), "{out}");
    assert!(out.contains("busybox\ttest\tamd64\tdefault\tb1"), "{out}");
    assert!(!s.exists("c0"));
    // The index was tried with LXC's compat suffix first.
    assert_eq!(srv.count("/good/meta/1.0/index-system.7"), 1);

    // No terminal: the table, then which flags are missing.
    let o = s.run("c0", &["--server", &url, "-d", "busybox"], &[]);
    let err = fails(&o);
    assert!(err.contains("needs -r RELEASE -a ARCH"), "{err}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("busybox\ttest"),
        "{err}"
    );
    assert!(!s.exists("c0"));

    // Create.
    let before = srv.count("/good/images/busybox/test/amd64/default/b1/rootfs.tar.xz");
    let out = ok(&s.create("c1", "good", &[]));
    assert!(
        out.contains("---\nYou just created a busybox test amd64 container (c1)."),
        "{out}"
    );
    assert_eq!(
        srv.count("/good/images/busybox/test/amd64/default/b1/rootfs.tar.xz"),
        before + 1
    );
    let rootfs = s.lxc.path.join("c1/rootfs");
    let e = env();
    assert_eq!(owner(&rootfs.join("bin/busybox")), (e.subuid, e.subgid));
    assert_eq!(
        owner(&rootfs.join("home/user")),
        (e.subuid + 1000, e.subgid + 1000)
    );
    let config = std::fs::read_to_string(s.lxc.path.join("c1/config")).unwrap();
    assert!(
        config.contains(
            "# Distribution configuration\n\
             lxc.include = /usr/share/lxc/config/debian.common.conf\n\
             lxc.include = /usr/share/lxc/config/debian.userns.conf\n\
             lxc.arch = x86_64\n# for c1\n"
        ),
        "{config}"
    );
    assert!(config.contains("lxc.uts.name = c1"), "{config}");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/hostname")).unwrap(),
        "c1\n"
    );
    assert_eq!(owner(&rootfs.join("etc/hostname")), (e.subuid, e.subgid));
    let entry = s.cache.join("lxc/download/busybox/test/amd64/default/b1");
    assert_eq!(
        std::fs::read_to_string(entry.join("build_id")).unwrap(),
        "b1\n"
    );
    assert_eq!(owner(&entry.join("rootfs.tar.xz")).0, e.uid);

    // A second create downloads nothing.
    let rootfs_before = srv.count(&format!("/good/{IMAGE}/b1/rootfs.tar.xz"));
    let meta_before = srv.count(&format!("/good/{IMAGE}/b1/meta.tar.xz"));
    let out = s.create("c2", "good", &[]);
    ok(&out);
    assert!(
        stderr(&out).contains("Using image from local cache"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        srv.count(&format!("/good/{IMAGE}/b1/rootfs.tar.xz")),
        rootfs_before
    );
    assert_eq!(
        srv.count(&format!("/good/{IMAGE}/b1/meta.tar.xz")),
        meta_before
    );
    assert!(s.lxc.path.join("c2/rootfs/bin/busybox").is_file());

    // --flush-cache downloads again.
    let out = s.create("c3", "good", &["--flush-cache"]);
    ok(&out);
    assert!(
        stderr(&out).contains("Flushing the cache"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        srv.count(&format!("/good/{IMAGE}/b1/rootfs.tar.xz")),
        rootfs_before + 1
    );

    // Server and keyring from the settings file and its default keyring path.
    std::fs::write(
        s.config.join("ulxc/download.conf"),
        format!("# the test's server\nserver = {url}\n"),
    )
    .unwrap();
    std::fs::write(s.config.join("ulxc/trusted.asc"), &srv.public).unwrap();
    ok(&s.run("c4", &["-d", "busybox", "-r", "test", "-a", "amd64"], &[]));
    // ... and from the environment, which wins over the file.
    std::fs::write(
        s.config.join("ulxc/download.conf"),
        "server = http://127.0.0.1:1\n",
    )
    .unwrap();
    ok(&s.run(
        "c5",
        &["-d", "busybox", "-r", "test", "-a", "amd64"],
        &[("ULXC_DOWNLOAD_SERVER", &url)],
    ));
    std::fs::write(s.config.join("ulxc/download.conf"), "colour = blue\n").unwrap();
    let err = fails(&s.run("c6", &["-d", "busybox", "-r", "test", "-a", "amd64"], &[]));
    assert!(
        err.contains("download.conf:1: unknown setting `colour`"),
        "{err}"
    );
    assert!(!s.exists("c6"));
}

#[test]
fn bad_input_leaves_nothing_behind() {
    let s = setup("dl-bad");
    let srv = server();
    let cases: &[(&str, &str, &[&str])] = &[
        ("fields", "has 4 fields", &[]),
        ("escape", "escapes the server's root", &[]),
        ("othersig", "does not verify with any key", &[]),
        ("corrupt", "does not verify with any key", &[]),
        ("unsigned", "has no signature", &[]),
        ("truncated", "is truncated", &["--no-validate"]),
        ("error500", "HTTP 500", &[]),
        ("evil", "refusing to unpack", &[]),
        (
            "unsigned",
            "no image busybox test amd64 (variant cloud)",
            &["--variant", "cloud"],
        ),
    ];
    for (i, (site, want, extra)) in cases.iter().enumerate() {
        let name = format!("bad{i}");
        let err = fails(&s.create(&name, site, extra));
        assert!(err.contains(want), "{site}: expected `{want}` in: {err}");
        assert!(!s.exists(&name), "{site}: {name} was left behind");
    }
    // No partial entry looks complete.
    let variant = s.cache.join("lxc/download/busybox/test/amd64/default");
    for build in ["b3", "b4", "b5", "b7"] {
        assert!(
            !variant.join(build).exists(),
            "cache entry {build} exists after a failure"
        );
    }
    assert!(
        !s.lxc.path.join("escaped").exists()
            && !s.lxc.path.parent().unwrap().join("escaped").exists()
    );

    // --no-validate must be spelled out, and warns.
    let out = s.create("nv", "unsigned", &["--no-validate"]);
    ok(&out);
    assert!(stderr(&out).contains("NOT checked"), "{}", stderr(&out));

    // Unreachable server: a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let err = fails(&s.run(
        "down",
        &[
            "--server",
            &url,
            "--keyring",
            s.keyring.to_str().unwrap(),
            "-d",
            "x",
            "-r",
            "y",
            "-a",
            "z",
        ],
        &[],
    ));
    assert!(err.contains("cannot fetch"), "{err}");
    // Plain HTTP to anything but loopback is refused before any traffic.
    let err = fails(&s.run(
        "plain",
        &[
            "--server",
            "http://192.0.2.1",
            "-d",
            "x",
            "-r",
            "y",
            "-a",
            "z",
            "--no-validate",
        ],
        &[],
    ));
    assert!(err.contains("only used for a loopback"), "{err}");
    // A missing keyring says what to do.
    let err = fails(&s.run(
        "nokey",
        &[
            "--server",
            &format!("{}/good", srv.url),
            "-d",
            "busybox",
            "-r",
            "test",
            "-a",
            "amd64",
        ],
        &[],
    ));
    assert!(
        err.contains("trusted.asc") && err.contains("--keyring"),
        "{err}"
    );
    for n in ["down", "plain", "nokey"] {
        assert!(!s.exists(n));
    }
}

#[test]
fn https_with_an_extra_ca() {
    let s = setup("dl-tls");
    let srv = server();
    let ca = s.lxc.path.join("test-ca.pem");
    std::fs::write(&ca, &srv.ca_pem).unwrap();
    let url = format!("{}/tls", srv.tls_url);
    let args = |extra: &[&'static str]| {
        let mut v: Vec<String> = ["--server", &url, "--keyring", s.keyring.to_str().unwrap()]
            .iter()
            .map(|a| a.to_string())
            .collect();
        v.extend(["-d", "busybox", "-r", "test", "-a", "amd64"].map(String::from));
        v.extend(extra.iter().map(|a| a.to_string()));
        v
    };
    // Without the test CA the server is not trusted.
    let a = args(&[]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let err = fails(&s.run("t0", &a, &[]));
    assert!(err.contains("cannot fetch https://127.0.0.1:"), "{err}");
    assert!(!s.exists("t0"));
    // With --ca-file it is.
    let mut a = args(&[]);
    a.extend(["--ca-file".to_string(), ca.display().to_string()]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = ok(&s.run("t1", &a, &[]));
    assert!(out.contains("You just created"), "{out}");
    assert!(s.lxc.path.join("t1/rootfs/bin/busybox").is_file());
    // And with the setting in the environment.
    let a = args(&[]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    ok(&s.run("t2", &a, &[("ULXC_DOWNLOAD_CA_FILE", ca.to_str().unwrap())]));
}

#[test]
fn truncated_download_resumes() {
    let s = setup("dl-resume");
    let srv = server();
    let err = fails(&s.create("r0", "resume", &[]));
    assert!(err.contains("is truncated"), "{err}");
    assert!(!s.exists("r0"));
    let variant = s.cache.join("lxc/download/busybox/test/amd64/default");
    assert!(
        !variant.join("b8").exists(),
        "a partial entry looks complete"
    );
    let partial = variant.join(".partial-b8/rootfs.tar.xz");
    let have = usize::try_from(std::fs::metadata(&partial).unwrap().len()).unwrap();
    let full = busybox_tarball(false);
    assert_eq!(have, full.len() / 2);
    // The server now sends the whole file; the client asks only for the rest.
    srv.put(
        &format!("/resume/{IMAGE}/b1/rootfs.tar.xz"),
        Reply::Body(full),
    );
    ok(&s.create("r1", "resume", &[]));
    let path = format!("/resume/{IMAGE}/b1/rootfs.tar.xz");
    assert!(
        srv.ranges.lock().unwrap().contains(&(path, have)),
        "no Range request from byte {have}"
    );
    assert!(variant.join("b8/build_id").is_file());
    assert!(!variant.join(".partial-b8").exists());
    assert!(s.lxc.path.join("r1/rootfs/bin/busybox").is_file());
}

#[test]
fn concurrent_creates_of_one_image_share_one_download() {
    let s = setup("dl-concurrent");
    let srv = server();
    let rootfs = format!("/shared/{IMAGE}/b1/rootfs.tar.xz");
    let before = srv.count(&rootfs);
    // The server holds the rootfs back 2 s, so the second create comes while the first
    // is downloading.
    let (a, b) = std::thread::scope(|scope| {
        let first = scope.spawn(|| s.create("p1", "shared", &[]));
        std::thread::sleep(std::time::Duration::from_millis(300));
        let second = scope.spawn(|| s.create("p2", "shared", &[]));
        (first.join().unwrap(), second.join().unwrap())
    });
    ok(&a);
    ok(&b);
    assert_eq!(
        srv.count(&rootfs),
        before + 1,
        "the rootfs was fetched once"
    );
    let both = format!("{}\n{}", stderr(&a), stderr(&b));
    assert!(
        both.contains("Waiting for another create of the same image"),
        "{both}"
    );
    assert!(both.contains("Using image from local cache"), "{both}");
    for name in ["p1", "p2"] {
        assert!(s.lxc.path.join(name).join("rootfs/bin/busybox").is_file());
    }
    let variant = s.cache.join("lxc/download/busybox/test/amd64/default");
    let names: Vec<String> = std::fs::read_dir(&variant)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".partial")),
        "{names:?}"
    );
}

#[test]
fn excludes_user_is_applied_and_the_fast_copy_is_used_and_checked() {
    let s = setup("dl-excludes");
    let e = env();
    ok(&s.create("x1", "excl", &[]));
    let rootfs = s.lxc.path.join("x1/rootfs");
    assert!(
        rootfs.join("bin/busybox").is_file(),
        "`excludes` is not the user's list"
    );
    assert!(rootfs.join("home").is_dir());
    assert!(
        !rootfs.join("home/user").exists(),
        "excludes-user left out ./home/user"
    );
    assert!(
        !rootfs.join("etc/passwd").exists(),
        "excludes-user left out ./etc/pass*"
    );
    assert!(rootfs.join("etc/hostname").is_file());

    // The first unpack left a zstd copy of the verified tarball, with its SHA-256.
    let entry = s.cache.join("lxc/download/busybox/test/amd64/default/b10");
    let copy = entry.join("rootfs.cache.tar.zst");
    let sum = std::fs::read_to_string(entry.join("rootfs.cache.tar.zst.sha256")).unwrap();
    assert!(sum.ends_with("  rootfs.cache.tar.zst\n"), "{sum}");
    assert_eq!(owner(&copy).0, e.uid);
    let zst_magic = [0x28, 0xb5, 0x2f, 0xfd];
    assert_eq!(std::fs::read(&copy).unwrap()[..4], zst_magic);

    // A cached create unpacks the copy (the same rootfs, the same excludes).
    ok(&s.create("x2", "excl", &[]));
    let rootfs2 = s.lxc.path.join("x2/rootfs");
    assert!(rootfs2.join("bin/busybox").is_file());
    assert!(!rootfs2.join("home/user").exists());

    // A corrupted copy is noticed, the signed tarball is used, and the copy made again.
    let mut bytes = std::fs::read(&copy).unwrap();
    let n = bytes.len() / 2;
    bytes[n] ^= 0xff;
    std::fs::write(&copy, &bytes).unwrap();
    let out = s.create("x3", "excl", &[]);
    ok(&out);
    assert!(
        stderr(&out).contains("fails its SHA-256 check"),
        "{}",
        stderr(&out)
    );
    assert!(s.lxc.path.join("x3/rootfs/bin/busybox").is_file());
    assert_ne!(
        std::fs::read(&copy).unwrap(),
        bytes,
        "the copy was made again"
    );
    assert!(entry.join("rootfs.cache.tar.zst.sha256").is_file());
}

#[test]
fn signed_sha256sums_are_checked_when_offered() {
    let s = setup("dl-sums");
    let srv = server();
    ok(&s.create("s1", "sums", &[]));
    assert_eq!(srv.count(&format!("/sums/{IMAGE}/b1/SHA256SUMS")), 1);
    assert_eq!(srv.count(&format!("/sums/{IMAGE}/b1/SHA256SUMS.asc")), 1);
    assert!(s.lxc.path.join("s1/rootfs/bin/busybox").is_file());

    let err = fails(&s.create("s2", "badsums", &[]));
    assert!(
        err.contains("rootfs.tar.xz does not match the image's SHA256SUMS (SHA-256 "),
        "{err}"
    );
    assert!(!s.exists("s2"));
    let variant = s.cache.join("lxc/download/busybox/test/amd64/default");
    assert!(!variant.join("b12").exists() && !variant.join(".partial-b12").exists());

    let err = fails(&s.create("s3", "nosumsig", &[]));
    assert!(
        err.contains("SHA256SUMS has no signature (") && err.contains("refusing an unsigned"),
        "{err}"
    );
    assert!(!s.exists("s3"));
}
