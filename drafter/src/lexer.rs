//! Splits intent text into lowercase words and the punctuation that separates phrases.

/// A word (lowercase, inner `.`, `-`, `_`, `@` and `'` kept, so `t3.medium`, `us-east-1` and
/// `ops@example.com` stay whole) or a separating punctuation mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    Word(String),
    Punct(char),
}

impl Tok {
    pub(crate) fn word(&self) -> Option<&str> {
        match self {
            Tok::Word(w) => Some(w),
            Tok::Punct(_) => None,
        }
    }
}

const PUNCT: &[char] = &[',', ';', ':', '(', ')', '+', '&', '/', '=', '!', '?'];

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | '\'')
}

/// Lowercases and splits `text`. A line break separates like a comma, so bullet lists work.
pub(crate) fn lex(text: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        let c = match c {
            '×' => 'x',
            '’' | '‘' | '`' => '\'',
            '–' | '—' => '-',
            other => other,
        };
        if is_word_char(c) {
            word.extend(c.to_lowercase());
            continue;
        }
        flush(&mut word, &mut out);
        if c == '\n' {
            out.push(Tok::Punct(','));
        } else if PUNCT.contains(&c) {
            out.push(Tok::Punct(c));
        }
    }
    flush(&mut word, &mut out);
    out
}

fn flush(word: &mut String, out: &mut Vec<Tok>) {
    if word.is_empty() {
        return;
    }
    let raw = std::mem::take(word);
    let ends_sentence = raw.ends_with('.');
    let mut w = raw
        .trim_matches(|c| matches!(c, '.' | '-' | '_' | '\''))
        .to_owned();
    if let Some(stem) = w.strip_suffix("'s") {
        w = stem.to_owned();
    }
    if !w.is_empty() {
        out.push(Tok::Word(w));
    }
    if ends_sentence {
        out.push(Tok::Punct('.'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        lex(text)
            .into_iter()
            .map(|t| match t {
                Tok::Word(w) => w,
                Tok::Punct(c) => c.to_string(),
            })
            .collect()
    }

    #[test]
    fn keeps_plan_zone_and_email_words_whole() {
        assert_eq!(
            words("2x t3.medium in us-east-1, owner Ops@Example.com."),
            [
                "2x",
                "t3.medium",
                "in",
                "us-east-1",
                ",",
                "owner",
                "ops@example.com",
                "."
            ]
        );
    }

    #[test]
    fn splits_separators_and_lines() {
        assert_eq!(
            words("grafana+loki (4c/8g)\n- db; env=prod"),
            [
                "grafana", "+", "loki", "(", "4c", "/", "8g", ")", ",", "db", ";", "env", "=",
                "prod"
            ]
        );
        assert_eq!(words("2 × cpx21 — team's"), ["2", "x", "cpx21", "team"]);
        assert!(lex("  \t ").is_empty());
    }
}
