//! (being written: ulxc-net, the host bridge, DHCP and NAT)
