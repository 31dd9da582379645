//! (being written: the ulxc-user-nic helper's part)
