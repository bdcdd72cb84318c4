//! The embedded folders (`include_dir!`) are read at compile time; a file added to one of them
//! must rebuild the crate, which `include_dir` alone does not ask for.
fn main() {
    for dir in ["schemas", "catalog", "taskservs"] {
        println!("cargo:rerun-if-changed={dir}");
    }
}
