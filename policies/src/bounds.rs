//! Bounds on Cedar policy text, checked before Cedar's parser sees it. Cedar's parser and
//! evaluator recurse over the expression tree, so deep nesting (brackets, runs of unary
//! operators, nested `if`) or one very long operator chain in text from outside could overflow a
//! thread's stack and abort the whole process. A small scanner (strings and comments skipped)
//! measures each policy first; real policies stay far below every limit.

use crate::PolicyError;

/// Largest policy text accepted from one file or request, in bytes.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
/// Deepest nesting of `(`, `[` and `{` in one policy.
pub const MAX_NESTING: usize = 32;
/// Longest run of unary operators (`!`, `-`) in a row.
pub const MAX_UNARY_RUN: usize = 4;
/// Most `if` expressions in one policy.
pub const MAX_IFS: usize = 32;
/// Most operators (binary and unary operators, `.`, `has`, `like`, `in`, `is`) in one policy:
/// an operator chain becomes a tree as deep as it is long.
pub const MAX_OPERATORS: usize = 256;

/// Checks `text` (named `file` in errors) against the limits above.
pub fn check(file: &str, text: &str) -> Result<(), PolicyError> {
    let too = |what: String| PolicyError::TooComplex {
        file: file.to_owned(),
        what,
    };
    if text.len() > MAX_TEXT_BYTES {
        return Err(too(format!(
            "the text is {} bytes, over the limit of {MAX_TEXT_BYTES}",
            text.len()
        )));
    }
    let b = text.as_bytes();
    let mut policy = 1usize;
    let (mut depth, mut unary, mut ifs, mut ops) = (0usize, 0usize, 0usize, 0usize);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let mut next = i + 1;
        let mut is_unary = false;
        match c {
            b'"' => {
                next = end_of_string(b, i + 1);
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                next = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p);
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(too(format!(
                        "policy {policy} nests brackets deeper than {MAX_NESTING} levels"
                    )));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b';' => {
                policy += 1;
                (depth, ifs, ops) = (0, 0, 0);
            }
            b'!' | b'-' if b.get(i + 1) != Some(&b'=') => {
                is_unary = true;
                ops += 1;
            }
            b'&' | b'|' | b'=' | b'<' | b'>' | b'+' | b'*' | b'.' => {
                ops += 1;
                // Two-character operators count once.
                if matches!(b.get(i + 1), Some(b'&' | b'|' | b'=')) {
                    next = i + 2;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                next = b[i..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                    .map_or(b.len(), |p| i + p);
                match &text[i..next] {
                    "if" => {
                        ifs += 1;
                        if ifs > MAX_IFS {
                            return Err(too(format!(
                                "policy {policy} has more than {MAX_IFS} `if` expressions"
                            )));
                        }
                    }
                    "has" | "like" | "in" | "is" => ops += 1,
                    _ => {}
                }
            }
            _ => {}
        }
        if is_unary {
            unary += 1;
            if unary > MAX_UNARY_RUN {
                return Err(too(format!(
                    "policy {policy} has more than {MAX_UNARY_RUN} unary operators in a row"
                )));
            }
        } else if !c.is_ascii_whitespace() {
            unary = 0;
        }
        if ops > MAX_OPERATORS {
            return Err(too(format!(
                "policy {policy} has more than {MAX_OPERATORS} operators"
            )));
        }
        i = next;
    }
    Ok(())
}

/// Index just past the closing quote of a string starting at `i` (after its opening quote).
fn end_of_string(b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        check("t.cedar", text).unwrap_err().to_string()
    }

    #[test]
    fn the_default_policies_pass() {
        for (name, text) in crate::default_files() {
            check(&name, &text).unwrap();
        }
    }

    #[test]
    fn each_limit_names_what_it_bounds() {
        let deep = format!(
            "permit(principal, action, resource) when {{ {}true{} }};",
            "(".repeat(40),
            ")".repeat(40)
        );
        assert!(
            err(&deep).contains("nests brackets deeper than 32"),
            "{}",
            err(&deep)
        );
        let nots = format!(
            "permit(principal, action, resource) when {{ {}true }};",
            "!".repeat(9)
        );
        assert!(err(&nots).contains("unary operators in a row"));
        let chain = format!(
            "permit(principal, action, resource) when {{ true{} }};",
            " && true".repeat(300)
        );
        assert!(err(&chain).contains("more than 256 operators"));
        let ifs = format!(
            "permit(principal, action, resource) when {{ {}true }};",
            "if true then true else ".repeat(40)
        );
        assert!(err(&ifs).contains("`if` expressions"));
        let big = "/".repeat(MAX_TEXT_BYTES + 1);
        assert!(err(&big).contains("over the limit"));
    }

    #[test]
    fn strings_and_comments_do_not_count() {
        let text = format!(
            "// {}\npermit(principal, action, resource) when {{ context.note == \"{}\\\"\" }};",
            "((((".repeat(50),
            "!!!! && && ((((".repeat(100)
        );
        check("t.cedar", &text).unwrap();
    }

    #[test]
    fn limits_reset_between_policies() {
        let one = format!(
            "permit(principal, action, resource) when {{ true{} }};\n",
            " && true".repeat(200)
        );
        check("t.cedar", &one.repeat(5)).unwrap();
    }
}
