//! Finds `import` expressions in Nickel source, so configs from outside (MCP, REST) cannot read
//! files of the machine the server runs on. A small lexer: comments and string text are skipped,
//! string interpolations (`%{ ... }`) are code and are scanned.

/// Byte offset of the first `import` keyword in code position, if any.
pub(crate) fn find_import(source: &str) -> Option<usize> {
    let b = source.as_bytes();
    // Stack of open interpolations: each entry is the brace depth inside it and the string kind
    // to return to (`None` = ordinary string, `Some(n)` = multiline string with n `%`).
    let mut stack: Vec<(usize, Option<usize>)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    // Code state at the top of the loop.
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' => {
                depth += 1;
                i += 1;
            }
            b'}' => {
                if depth == 0 {
                    if let Some((d, kind)) = stack.pop() {
                        depth = d;
                        i = skip_string(b, i + 1, kind, &mut stack, &mut depth)?;
                        continue;
                    }
                } else {
                    depth -= 1;
                }
                i += 1;
            }
            b'"' => {
                i = skip_string(b, i + 1, None, &mut stack, &mut depth)?;
            }
            b'm' if b.get(i + 1) == Some(&b'%') && !is_ident(b, i.wrapping_sub(1)) => {
                let mut n = 0;
                while b.get(i + 1 + n) == Some(&b'%') {
                    n += 1;
                }
                if b.get(i + 1 + n) == Some(&b'"') {
                    i = skip_string(b, i + 2 + n, Some(n), &mut stack, &mut depth)?;
                } else {
                    i += 1;
                }
            }
            b'i' if source[i..].starts_with("import")
                && !is_ident(b, i.wrapping_sub(1))
                && !is_ident(b, i + 6) =>
            {
                return Some(i);
            }
            _ => i += 1,
        }
    }
    None
}

fn is_ident(b: &[u8], i: usize) -> bool {
    b.get(i)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-' || *c == b'\'')
}

/// Skips string text from `i`; returns where code resumes. On `%{` it records the string on
/// `stack` and returns the position after the brace. Returns `None` at end of input.
fn skip_string(
    b: &[u8],
    mut i: usize,
    kind: Option<usize>,
    stack: &mut Vec<(usize, Option<usize>)>,
    depth: &mut usize,
) -> Option<usize> {
    let interp_open = |i: usize| -> Option<usize> {
        let n = kind.unwrap_or(1);
        (0..n)
            .all(|k| b.get(i + k) == Some(&b'%'))
            .then_some(n)
            .filter(|n| b.get(i + n) == Some(&b'{'))
            .map(|n| i + n + 1)
    };
    while i < b.len() {
        if let Some(next) = interp_open(i) {
            stack.push((*depth, kind));
            *depth = 0;
            return Some(next);
        }
        match (kind, b[i]) {
            (None, b'\\') => i += 2,
            (None, b'"') => return Some(i + 1),
            (Some(n), b'"') if (1..=n).all(|k| b.get(i + k) == Some(&b'%')) => {
                return Some(i + 1 + n);
            }
            _ => i += 1,
        }
    }
    Some(b.len())
}

#[cfg(test)]
mod tests {
    use super::find_import;

    #[test]
    fn finds_imports_in_code_only() {
        assert_eq!(find_import(r#"import "/etc/passwd""#), Some(0));
        assert!(find_import(r#"{ a = import "x.ncl" }"#).is_some());
        assert!(find_import(r#"{ a = "%{import "x" as 'Text}" }"#).is_some());
        assert!(find_import("{ a = m%\"text %{import \"x\"}\"% }").is_some());
        assert_eq!(
            find_import(r#"{ stage = "import", note = "we import data" }"#),
            None
        );
        assert_eq!(
            find_import("# import here is a comment\n{ important = 1, reimport = 2 }"),
            None
        );
        assert_eq!(find_import("{ a = m%\"import %{ \"x\" } import\"% }"), None);
        assert_eq!(find_import(r#"{ a = "esc \" import" }"#), None);
    }
}
