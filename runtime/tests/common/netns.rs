//! (being written: network namespaces that a test creates, and servers inside them)
