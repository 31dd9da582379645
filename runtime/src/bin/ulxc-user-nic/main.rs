//! ulxc-user-nic (being written).
fn main() {}
