//! What the cloud providers' HTTP clients share.

/// Percent-encodes a label value for a query string.
pub(crate) fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A reqwest error without its URL (which may carry a query we do not want to repeat).
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_encoded_for_the_query() {
        assert_eq!(encode("web-1"), "web-1");
        assert_eq!(encode("a b&c=d"), "a%20b%26c%3Dd");
    }
}
