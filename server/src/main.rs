//! The `provisioning` binary.
fn main() {}
