//! Tests against the real QEMU (ignored by default: `cargo test -p ulxc-harness --lib vm::
//! -- --ignored`). The guest is the `bookworm` image built by [`crate::image::build`] (cached;
//! the first run builds it), or the directory named by `ULXC_HARNESS_TEST_GUEST` holding
//! `disk.qcow2`, `vmlinuz`, `initrd.img` and `key` (root and `user` accept the key).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::lifetime::pid_alive;
use super::*;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Guest {
    disk: PathBuf,
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    cmdline: String,
    key: PathBuf,
    user: String,
}

fn guest() -> Guest {
    // Set by `signal_parent` for its child process: the guest the parent already resolved.
    if let Ok(json) = std::env::var("ULXC_HARNESS_TEST_GUEST_JSON") {
        return serde_json::from_str(&json).expect("ULXC_HARNESS_TEST_GUEST_JSON");
    }
    if let Some(dir) = std::env::var_os("ULXC_HARNESS_TEST_GUEST").map(PathBuf::from) {
        return Guest {
            disk: dir.join("disk.qcow2"),
            kernel: dir.join("vmlinuz"),
            initrd: Some(dir.join("initrd.img")),
            cmdline: "root=/dev/vda rw console=ttyS0".into(),
            key: dir.join("key"),
            user: "user".into(),
        };
    }
    static IMAGE: std::sync::OnceLock<crate::image::BuiltImage> = std::sync::OnceLock::new();
    let img = IMAGE.get_or_init(|| {
        let recipe = crate::image::load_recipe(&crate::image::recipe_path("bookworm"))
            .expect("loading the bookworm recipe");
        let mut opts = crate::image::BuildOptions::from_env();
        opts.progress = false;
        crate::image::build(&recipe, &opts).expect("building the bookworm image")
    });
    let k = img.kernels.first().expect("the image has a kernel");
    Guest {
        disk: img.disk.clone(),
        kernel: k.vmlinuz.clone(),
        initrd: k.initrd.clone(),
        cmdline: k.cmdline.clone(),
        key: img.ssh_private_key.clone(),
        user: img
            .users
            .iter()
            .find(|u| *u != "root")
            .cloned()
            .unwrap_or_else(|| "root".into()),
    }
}

fn spec(name: &str, work: &std::path::Path, snapshot_cache: Option<PathBuf>) -> (VmSpec, Guest) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let g = guest();
    let spec = VmSpec {
        name: name.into(),
        disk_base: g.disk.clone(),
        kernel: g.kernel.clone(),
        initrd: g.initrd.clone(),
        cmdline: g.cmdline.clone(),
        memory_mib: 1024,
        cpus: 2,
        accel: None,
        guestfwds: vec![],
        work_dir: work.join(name),
        ssh_private_key: g.key.clone(),
        snapshot_cache,
        timeouts: Timeouts::default(),
    };
    (spec, g)
}

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots a VM: run with --ignored"]
async fn exec_upload_link_reboot_shutdown() {
    let work = tempfile::tempdir().unwrap();
    let (spec, g) = spec("basic", work.path(), None);
    let t0 = Instant::now();
    let mut vm = Vm::start(spec).await.unwrap();
    eprintln!("cold boot to SSH: {:?} ({})", t0.elapsed(), vm.accel());
    assert_eq!(vm.accel(), detect_accel());
    assert_eq!(vm.query_status().await.unwrap(), "running");
    let pid = vm.pid().unwrap();
    assert!(vm
        .ssh_command("root")
        .contains(&format!("-p {}", vm.ssh_port())));

    // Exit statuses: 0, 3, and a signal (128+9).
    let ok = vm.exec("root", "echo out; echo err >&2", T).await.unwrap();
    assert_eq!(
        (
            ok.status,
            ok.stdout_text().as_str(),
            ok.stderr_text().as_str()
        ),
        (0, "out\n", "err\n")
    );
    assert_eq!(vm.exec("root", "exit 3", T).await.unwrap().status, 3);
    assert_eq!(
        vm.exec("root", "kill -KILL $$", T).await.unwrap().status,
        137
    );
    // Another user.
    let who = vm.exec(&g.user, "id -un", T).await.unwrap();
    assert_eq!(who.stdout_text().trim(), g.user);
    // A silent 30 s command is not cut off; a timeout is an error.
    let slow = vm
        .exec("root", "sleep 30; echo done", Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(slow.stdout_text(), "done\n");
    assert!(slow.duration >= Duration::from_secs(30));
    let late = vm
        .exec("root", "sleep 20", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(late.to_string().contains("did not finish"), "{late}");

    // Upload.
    let local = work.path().join("payload");
    std::fs::write(&local, b"hello\x00world").unwrap();
    vm.upload("root", &local, "/tmp/payload file", 0o750)
        .await
        .unwrap();
    let st = vm
        .exec(
            "root",
            "stat -c %a \"/tmp/payload file\"; od -c \"/tmp/payload file\" | head -1",
            T,
        )
        .await
        .unwrap();
    assert!(
        st.stdout_text().starts_with("750\n"),
        "{}",
        st.stdout_text()
    );
    assert!(st.stdout_text().contains("\\0"), "{}", st.stdout_text());
    vm.upload_bytes(&g.user, b"x", "/tmp/by-user", 0o600)
        .await
        .unwrap();
    let own = vm
        .exec("root", "stat -c '%U %a' /tmp/by-user", T)
        .await
        .unwrap();
    assert_eq!(own.stdout_text().trim(), format!("{} 600", g.user));

    // Link down: the guest sees NO-CARRIER; up again: it comes back.
    let iface = "ip -o link show | awk -F': ' '$2 ~ /^en/ {print $2; exit}'";
    vm.set_link(false).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // SSH itself goes through the NIC: check from the console side through QMP events is not
    // possible, so reconnect after link up and read the kernel log.
    vm.set_link(true).await.unwrap();
    let log = vm
        .exec("root", &format!("i=$({iface}); dmesg | grep -i \"$i\" | grep -ci 'link is\\|link becomes\\|carrier' ; dmesg | tail -5"), T)
        .await
        .unwrap();
    eprintln!("after link down/up: {}", log.stdout_text());
    let carrier = vm
        .exec(
            "root",
            &format!("cat /sys/class/net/$({iface})/carrier_changes"),
            T,
        )
        .await
        .unwrap();
    let changes: u32 = carrier.stdout_text().trim().parse().unwrap();
    assert!(
        changes >= 2,
        "carrier_changes {changes}: the guest did not see the link go down and up"
    );

    // Reboot keeps the disk.
    vm.exec("root", "echo persisted > /root/mark; sync", T)
        .await
        .unwrap();
    vm.reboot().await.unwrap();
    let new_pid = vm.pid().unwrap();
    assert!(!pid_alive(pid), "old QEMU gone after reboot");
    let mark = vm.exec("root", "cat /root/mark", T).await.unwrap();
    assert_eq!(mark.stdout_text(), "persisted\n");
    assert_eq!(vm.console_problem(), None);

    let overlay = work.path().join("basic/overlay.qcow2");
    assert!(overlay.exists());
    let t = Instant::now();
    vm.shutdown().await.unwrap();
    eprintln!("shutdown took {:?}", t.elapsed());
    assert!(!pid_alive(new_pid), "no QEMU after shutdown");
    assert!(!overlay.exists(), "overlay removed");
    assert!(lifetime::live_pids().iter().all(|p| *p != new_pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots a VM: run with --ignored"]
async fn snapshot_save_restore_and_fallback() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("snapshots");
    let (spec1, _) = spec("first", work.path(), Some(cache.clone()));
    let t0 = Instant::now();
    let vm = Vm::start(spec1.clone()).await.unwrap();
    eprintln!(
        "cold boot + save: {:?} (ready after {:?})",
        t0.elapsed(),
        vm.ready_after()
    );
    assert!(!vm.restored());
    // The saving VM runs on.
    assert_eq!(
        vm.exec("root", "echo alive", T)
            .await
            .unwrap()
            .stdout_text(),
        "alive\n"
    );
    vm.exec("root", "echo after-save > /root/after", T)
        .await
        .unwrap();
    drop(vm);

    let mut times = Vec::new();
    for i in 0..3 {
        let (s, _) = spec(&format!("restored{i}"), work.path(), Some(cache.clone()));
        let t = Instant::now();
        let vm = Vm::start(s).await.unwrap();
        let took = t.elapsed();
        times.push(took);
        assert!(vm.restored(), "started from the snapshot");
        // The guest clock was set: within 5 s of the host's.
        let out = vm.exec("root", "date +%s", T).await.unwrap();
        let guest: i64 = out.stdout_text().trim().parse().unwrap();
        let host = i64::try_from(now_epoch().as_secs()).unwrap();
        assert!(
            (guest - host).abs() <= 5,
            "guest clock {guest} vs host {host}"
        );
        // The disk is the one of the save moment, not the later writes of the first VM.
        let after = vm
            .exec("root", "test -e /root/after; echo $?", T)
            .await
            .unwrap();
        assert_eq!(after.stdout_text(), "1\n");
        let pid = vm.pid().unwrap();
        vm.shutdown().await.unwrap();
        assert!(!pid_alive(pid));
    }
    eprintln!("restored start to SSH ready: {times:?}");

    // A corrupt state falls back to a cold boot and is replaced by a fresh save.
    let dirs: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(dirs.len(), 1);
    let state = dirs[0].path().join(snapshot::STATE_FILE);
    std::fs::write(&state, b"garbage").unwrap();
    let (s, _) = spec("fallback", work.path(), Some(cache.clone()));
    let vm = Vm::start(s).await.unwrap();
    assert!(!vm.restored());
    assert_eq!(vm.exec("root", "true", T).await.unwrap().status, 0);
    drop(vm);
    assert!(SnapshotPaths::new(&cache, &dirs[0].file_name().to_string_lossy()).is_complete());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots a VM: run with --ignored"]
async fn no_orphan_after_drop_panic_or_deadline() {
    let work = tempfile::tempdir().unwrap();
    // Drop.
    let (s, _) = spec("dropped", work.path(), None);
    let vm = Vm::start(s).await.unwrap();
    let pid = vm.pid().unwrap();
    assert!(pid_alive(pid));
    drop(vm);
    assert!(!pid_alive(pid), "QEMU {pid} survived the drop");
    assert!(!work.path().join("dropped/overlay.qcow2").exists());

    // Panic inside a task that owns the VM.
    let (s, _) = spec("panicking", work.path(), None);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let vm = Vm::start(s).await.unwrap();
        tx.send(vm.pid().unwrap()).unwrap();
        panic!("test panics while holding VM {}", vm.name());
    });
    let pid = rx.await.unwrap();
    assert!(task.await.unwrap_err().is_panic());
    assert!(!pid_alive(pid), "QEMU {pid} survived the panic");

    // A deadline that passes while the VM is running a command: the future owning the VM
    // is dropped by the timeout.
    let (s, _) = spec("deadline", work.path(), None);
    let vm = Vm::start(s).await.unwrap();
    let pid = vm.pid().unwrap();
    let r = tokio::time::timeout(Duration::from_secs(3), async move {
        vm.exec("root", "sleep 1000", Duration::from_secs(2000))
            .await
    })
    .await;
    assert!(r.is_err(), "the deadline passed");
    assert!(!pid_alive(pid), "QEMU {pid} survived the deadline");
    assert!(!lifetime::live_pids().contains(&pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots a VM: run with --ignored"]
async fn kernel_panic_fails_fast_with_the_console() {
    let work = tempfile::tempdir().unwrap();
    let (mut s, _) = spec("panic", work.path(), None);
    // init exits at once: "Kernel panic - not syncing: Attempted to kill init!"
    s.cmdline.push_str(" init=/bin/false");
    let t = Instant::now();
    let err = Vm::start(s).await.unwrap_err();
    eprintln!("failed after {:?}: {err}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(100), "failed fast");
    let msg = err.to_string();
    assert!(msg.contains("Kernel panic"), "{msg}");
}

/// Child half of the signal test: starts a VM, prints its pid, waits to be signalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots a VM: run with --ignored"]
async fn signal_child() {
    if std::env::var_os("ULXC_HARNESS_SIGNAL_CHILD").is_none() {
        // Run on its own it checks nothing else than that a VM starts.
        return signal_parent().await;
    }
    install_signal_cleanup();
    let work = PathBuf::from(std::env::var_os("ULXC_HARNESS_SIGNAL_CHILD").unwrap());
    let (s, _) = spec("signalled", &work, None);
    let vm = Vm::start(s).await.unwrap();
    println!("QEMU_PID={}", vm.pid().unwrap());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    drop(vm);
}

/// SIGTERM to a harness process kills its QEMU and exits 143.
async fn signal_parent() {
    use std::io::BufRead;
    let work = tempfile::tempdir().unwrap();
    // /proc/self/exe still works when a concurrent build has replaced the test binary.
    let mut child = std::process::Command::new("/proc/self/exe")
        .args([
            "--exact",
            "vm::vm_tests::signal_child",
            "--ignored",
            "--nocapture",
        ])
        .env("ULXC_HARNESS_SIGNAL_CHILD", work.path())
        .env(
            "ULXC_HARNESS_TEST_GUEST_JSON",
            serde_json::to_string(&guest()).unwrap(),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let pid = tokio::task::spawn_blocking(move || {
        for line in std::io::BufReader::new(out).lines() {
            let line = line.unwrap();
            if let Some(p) = line.strip_prefix("QEMU_PID=") {
                return p.trim().parse::<u32>().unwrap();
            }
        }
        panic!("the child never printed its QEMU pid");
    })
    .await
    .unwrap();
    assert!(pid_alive(pid));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(143));
    for _ in 0..50 {
        if !pid_alive(pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !pid_alive(pid),
        "QEMU {pid} survived SIGTERM to the harness"
    );
}

/// Boot figures for BENCHMARKS.md: one cold boot (no snapshot) and three restores from the
/// snapshot cache under the harness cache directory (saved first if missing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots a VM: run with --ignored"]
async fn boot_figures() {
    let work = tempfile::tempdir().unwrap();
    let (cold, _) = spec("cold", work.path(), None);
    let t = Instant::now();
    let vm = Vm::start(cold).await.unwrap();
    let cold_time = t.elapsed();
    drop(vm);
    let cache = accel::cache_dir().join("snapshots");
    let (first, _) = spec("prime", work.path(), Some(cache.clone()));
    drop(Vm::start(first).await.unwrap());
    let mut restores = Vec::new();
    for i in 0..3 {
        let (s, _) = spec(&format!("r{i}"), work.path(), Some(cache.clone()));
        let t = Instant::now();
        let vm = Vm::start(s).await.unwrap();
        restores.push(t.elapsed());
        assert!(vm.restored());
        // Where the time goes: a second SSH login and a second command on the warm guest.
        let t = Instant::now();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], vm.ssh_port()));
        let s2 = crate::ssh::Session::connect(addr, "root", vm.key.clone())
            .await
            .unwrap();
        let login = t.elapsed();
        let t = Instant::now();
        s2.exec("true", T).await.unwrap();
        eprintln!(
            "restored VM: second login {login:.2?}, a command {:.2?}",
            t.elapsed()
        );
        drop(vm);
    }
    eprintln!(
        "BOOT FIGURES ({}): cold boot to SSH {:.2?}; restored start to SSH {:.2?}",
        detect_accel(),
        cold_time,
        restores
    );
}

/// Rounds of boot figures for `bench/harness`: `ULXC_BENCH_ROUNDS` (default 3) cold boots
/// to SSH ready without saved state, then one cold boot that saves the state into a fresh
/// snapshot cache of this run, then as many restored starts to SSH ready. Each VM is shut
/// down (QEMU gone) before the next starts. Prints one line `BENCH_JSON {...}` (seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots VMs: run by bench/harness"]
async fn bench_boot_rounds() {
    let rounds: usize = std::env::var("ULXC_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("snapshots");
    let mut cold = Vec::new();
    for i in 0..rounds {
        let (s, _) = spec(&format!("cold{i}"), work.path(), None);
        let t = Instant::now();
        let vm = Vm::start(s).await.unwrap();
        cold.push(t.elapsed().as_secs_f64());
        assert!(!vm.restored());
        assert_eq!(vm.exec("root", "true", T).await.unwrap().status, 0);
        vm.shutdown().await.unwrap();
        eprintln!("cold boot {i}: {:.2} s", cold[i]);
    }
    let (s, _) = spec("prime", work.path(), Some(cache.clone()));
    let t = Instant::now();
    let vm = Vm::start(s).await.unwrap();
    let prime = t.elapsed().as_secs_f64();
    assert!(!vm.restored());
    vm.shutdown().await.unwrap();
    let mut restored = Vec::new();
    for i in 0..rounds {
        let (s, _) = spec(&format!("restored{i}"), work.path(), Some(cache.clone()));
        let t = Instant::now();
        let vm = Vm::start(s).await.unwrap();
        restored.push(t.elapsed().as_secs_f64());
        assert!(vm.restored(), "restored start {i} fell back to a cold boot");
        assert_eq!(vm.exec("root", "true", T).await.unwrap().status, 0);
        vm.shutdown().await.unwrap();
        eprintln!("restored start {i}: {:.2} s", restored[i]);
    }
    println!(
        "BENCH_JSON {}",
        serde_json::json!({
            "accel": detect_accel().to_string(),
            "cold": cold,
            "prime_cold_boot_and_save": prime,
            "restored": restored,
        })
    );
}
