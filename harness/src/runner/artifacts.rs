//! Artifacts of a failed run under `<workspace>/target/harness-artifacts/<run>/`:
//! per VM the serial log (`serial-<vm>.log`), `journalctl -b` (`journal-<vm>.txt`) and
//! `dmesg` (`dmesg-<vm>.txt`) fetched from the guest if it still answers (otherwise the file
//! says why it is empty), the transcript (`transcript.txt`, `transcript.json`) and a copy of
//! the scenario file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::scenario::{workspace_root, Scenario};
use crate::vm::Vm;

use super::report::RunReport;

/// `<workspace>/target/harness-artifacts` (or `$CARGO_TARGET_DIR/harness-artifacts`).
pub fn default_root() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("harness-artifacts")
}

/// Names of the files written for one VM: (serial, journal, dmesg).
pub fn vm_files(vm: &str) -> [String; 3] {
    [
        format!("serial-{vm}.log"),
        format!("journal-{vm}.txt"),
        format!("dmesg-{vm}.txt"),
    ]
}

/// Writes `transcript.txt` and `transcript.json`.
pub fn write_transcripts(dir: &Path, report: &RunReport) -> std::io::Result<()> {
    std::fs::write(dir.join("transcript.txt"), report.render_transcript())?;
    std::fs::write(dir.join("transcript.json"), report.to_json())
}

async fn fetch(vm: &Vm, command: &str, timeout: Duration) -> Vec<u8> {
    match vm.exec("root", command, timeout).await {
        Ok(out) if out.status == 0 => out.stdout,
        Ok(out) => {
            let mut v = format!("# `{command}` exited with status {}\n", out.status).into_bytes();
            v.extend_from_slice(&out.stdout);
            v.extend_from_slice(b"\n# stderr:\n");
            v.extend_from_slice(&out.stderr);
            v
        }
        Err(e) => format!("# `{command}` could not be fetched, the guest did not answer: {e}\n")
            .into_bytes(),
    }
}

/// Saves every artifact of a failed run into `dir` (created).
pub async fn save(
    dir: &Path,
    report: &RunReport,
    scenario: &Scenario,
    vms: &[(&str, &Vm)],
    timeout: Duration,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, vm) in vms {
        let [serial, journal, dmesg] = vm_files(name);
        if let Err(e) = std::fs::copy(vm.serial_log(), dir.join(&serial)) {
            std::fs::write(
                dir.join(&serial),
                format!(
                    "# serial log {} could not be copied: {e}\n",
                    vm.serial_log().display()
                ),
            )?;
        }
        std::fs::write(
            dir.join(journal),
            fetch(vm, "journalctl -b --no-pager -o short-precise", timeout).await,
        )?;
        std::fs::write(
            dir.join(dmesg),
            fetch(vm, "dmesg -T || dmesg", timeout).await,
        )?;
    }
    if let Some(file) = scenario.path.file_name() {
        if let Err(e) = std::fs::copy(&scenario.path, dir.join(file)) {
            tracing::warn!(?e, "cannot copy the scenario file into the artifacts");
        }
    }
    write_transcripts(dir, report)
}
