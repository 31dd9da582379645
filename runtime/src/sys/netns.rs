//! (being written: namespace ownership checks for ulxc-user-nic)
