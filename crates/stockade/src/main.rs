//! The `stockade` binary.

fn main() {}
