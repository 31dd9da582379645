//! (being written: the container side of networking)
