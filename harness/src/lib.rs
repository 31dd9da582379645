//! ulxc-harness: builds Debian guest images, boots them in QEMU, drives scenarios over SSH
//! and controls the VMs over QMP. See ARCHITECTURE.md for the map of modules.

pub mod image;
pub mod publish;
pub mod qmp;
pub mod runner;
pub mod scenario;
pub mod serve;
pub mod ssh;
pub mod vm;
