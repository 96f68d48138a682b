//! Showing text that came from elsewhere (a record's holder, a store's message)
//! without letting it forge lines or drive a terminal, and URLs without their secrets.

use std::fmt;

/// Whether `c` is an invisible formatting character that can reorder or hide text on
/// a terminal (bidirectional overrides and isolates, zero-width joiners and the like).
#[must_use]
pub fn is_format_control(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Shows a string quoted, with control and formatting characters escaped (`\n`,
/// `\u{1b}`), so a record written by anyone can be printed in a log line, a status
/// line or an HTTP body without forging another line or driving the terminal.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        write_escaped(f, self.0)?;
        f.write_str("\"")
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// As [`Escaped`], without the quotes: for text shown on a line of its own.
#[derive(Clone, Copy)]
pub struct Unquoted<'a>(pub &'a str);

impl fmt::Display for Unquoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0)
    }
}

fn write_escaped(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() || is_format_control(c) => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            c => fmt::Write::write_char(f, c)?,
        }
    }
    Ok(())
}

/// A URL (or anything that may be one) with its user-info replaced: `http://u:pw@h/`
/// → `http://***@h/`. Text that is not a URL is returned unchanged, except that an
/// `@` before the first `/` is treated as ending user-info too, because a URL with a
/// typo is still someone's password.
#[must_use]
pub fn redact_userinfo(text: &str) -> String {
    let (scheme, rest) = match text.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, text),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some(at) = authority.rfind('@') else { return text.to_string() };
    let host = &authority[at + 1..];
    match scheme {
        Some(s) => format!("{s}://***@{host}{tail}"),
        None => format!("***@{host}{tail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_forge_lines_or_drive_a_terminal() {
        let forged = "eve\nholder         mallory\u{1b}[2J\u{202e}";
        let shown = Escaped(forged).to_string();
        assert_eq!(shown, r#""eve\nholder         mallory\u{1b}[2J\u{202e}""#);
        assert!(!shown.chars().any(|c| c.is_control() || is_format_control(c)));
        assert_eq!(Unquoted("plain-name_1.2").to_string(), "plain-name_1.2");
        assert_eq!(Escaped("ünïcødé").to_string(), "\"ünïcødé\"");
    }

    #[test]
    fn user_info_is_redacted_wherever_a_url_carries_it() {
        for (url, shown) in [
            ("http://user:hunter2@host:8000/x", "http://***@host:8000/x"),
            ("https://hunter2@h", "https://***@h"),
            ("http://u:p@ss@h:1", "http://***@h:1"),
            ("http://host:8000/a@b", "http://host:8000/a@b"),
            ("user:hunter2@host:2379", "***@host:2379"),
            ("http://host:8000", "http://host:8000"),
            ("plain", "plain"),
        ] {
            assert_eq!(redact_userinfo(url), shown, "{url}");
        }
    }
}
