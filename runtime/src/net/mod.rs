//! Container networking: veth pairs made by the setuid helper `ulxc-user-nic` on a host
//! bridge, the no-privilege user-mode types (pasta, slirp4netns), the quota file
//! `/etc/lxc/lxc-usernet` and the helper's nic database, and the host side that
//! `ulxc-net` runs (bridge, dnsmasq, NAT rules). See ARCHITECTURE.md for who calls what.

pub mod hostnet;
pub mod netlink;
pub mod nicdb;
pub mod usermode;
pub mod usernet;
pub mod usernic;
pub mod veth;
