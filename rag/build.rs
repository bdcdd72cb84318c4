//! Rebuild when the embedded docs or the evaluation set change (`include_dir` cannot tell cargo).

fn main() {
    println!("cargo:rerun-if-changed=../knowledge/docs");
    println!("cargo:rerun-if-changed=eval");
}
