//! ulxc-net (being written).
fn main() {}
