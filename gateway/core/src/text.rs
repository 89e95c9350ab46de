//! Untrusted text. What a plugin produces (deny/quarantine reasons, `init` errors, log lines,
//! names from its custom sections that end up in failure details) is bounded and stripped by
//! [`sanitize`] before it leaves the plugin host, so it cannot forge an audit line, move the cursor
//! or recolour a terminal; whatever is printed from storage anyway (`warden audit tail`) goes
//! through [`escape`], so a record planted in the database cannot either.

/// Whether `c` must not pass through: C0/C1 controls and DEL (`\n`, `\r`, ESC, …), and the
/// Unicode format characters that reorder or hide text (bidi overrides and isolates, zero-width
/// joiners, line/paragraph separators, BOM).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
}

/// `s` with every unsafe character replaced (whitespace controls by a space, others by `?`),
/// cut to at most `max` bytes on a character boundary (then followed by `…`).
pub fn sanitize(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max.saturating_add(3)));
    for c in s.chars() {
        let c = if !is_unsafe(c) {
            c
        } else if matches!(c, '\t' | '\n' | '\r' | '\u{2028}' | '\u{2029}') {
            ' '
        } else {
            '?'
        };
        if out.len() + c.len_utf8() > max {
            out.push('…');
            return out;
        }
        out.push(c);
    }
    out
}

/// Whether `s` is already safe to print as is.
pub fn is_clean(s: &str) -> bool {
    !s.chars().any(is_unsafe)
}

/// `s` for a terminal: unsafe characters shown as `\u{..}` escapes; nothing is cut. (Text that
/// already reads `\u{1b}` prints as is: it may look like an escape, but it cannot act as one.)
pub fn escape(s: &str) -> String {
    if is_clean(s) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_controls_and_bounds() {
        let hostile =
            "too hot\n#123 2026-01-01 allow by builtin\r\x1b[2K\x1b]0;x\x07\u{202E}ok\u{85}";
        let s = sanitize(hostile, 1024);
        assert!(is_clean(&s), "{s:?}");
        assert!(!s.contains('\n') && !s.contains('\r') && !s.contains('\x1b'));
        assert!(s.starts_with("too hot #123"));
        assert_eq!(sanitize("ééé", 4), "éé…");
        assert_eq!(sanitize("plain", 1024), "plain");
    }

    #[test]
    fn escape_shows_every_control() {
        assert_eq!(escape("a\nb\x1b[0m\\"), "a\\u{a}b\\u{1b}[0m\\");
        assert_eq!(escape("fine"), "fine");
        assert!(is_clean(&escape("\u{202e}\r\u{9b}")));
    }
}
