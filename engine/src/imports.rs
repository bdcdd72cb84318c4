//! Finds `import` in Nickel source with Nickel's own lexer (the one evaluation uses), so every
//! string form, escape and interpolation is read exactly as Nickel reads it. This is the fast
//! first answer for configs from outside, with a precise span; what keeps files unreadable is
//! the confined evaluator (`sandbox`), which does not depend on this check.

use nickel_lang_parser::lexer::{Lexer, NormalToken, Token};

/// Byte offset of the first `import` keyword token, if any. Scanning stops at the first lexical
/// error: Nickel refuses to evaluate a source it cannot lex.
pub(crate) fn find_import(source: &str) -> Option<usize> {
    Lexer::new(source)
        .map_while(Result::ok)
        .find(|(_, token, _)| matches!(token, Token::Normal(NormalToken::Import)))
        .map(|(start, _, _)| start)
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
        assert!(find_import("{ a = m%%\"text %%{import \"x\"}\"%% }").is_some());
        // Symbolic strings interpolate too.
        assert!(find_import("{ a = foo-s%\"t %{import \"/etc/hostname\" as 'Text}\"% }").is_some());
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
        // A multiline string's `"` does not end it; only `"%` does.
        assert_eq!(find_import("{ a = m%\" \" import \"% }"), None);
        assert!(find_import("{ a = m%\" \" \"%, b = import \"/etc/passwd\" }").is_some());
    }
}
