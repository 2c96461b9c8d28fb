//! Reversible escaping of raw log bytes into printable text.
//!
//! Rules (also in `docs/logd.md`):
//! * valid UTF-8 characters are kept as they are, except the ones below;
//! * `\` becomes `\\`;
//! * tab is kept; every other C0 control byte (0x00-0x1F) and DEL (0x7F) becomes `\xHH`;
//! * C1 control characters (U+0080-U+009F) become `\u{HH}`;
//! * every byte that is not part of valid UTF-8 becomes `\xHH`.
//!
//! Nothing is dropped, and [`unescape`] gives back the original bytes.

/// Escapes `raw` into printable text, appending to `out`.
pub fn escape_into(raw: &[u8], out: &mut String) {
    let mut rest = raw;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                escape_str(s, out);
                return;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // SAFETY-free: from_utf8 told us this prefix is valid.
                if let Ok(s) = std::str::from_utf8(&rest[..valid]) {
                    escape_str(s, out);
                }
                let bad = e.error_len().unwrap_or(rest.len() - valid);
                for b in &rest[valid..valid + bad] {
                    push_hex(*b, out);
                }
                rest = &rest[valid + bad..];
            }
        }
    }
}

/// Escapes `raw` into a new `String` (see the module rules).
pub fn escape(raw: &[u8]) -> String {
    let mut s = String::with_capacity(raw.len() + 8);
    escape_into(raw, &mut s);
    s
}

fn escape_str(s: &str, out: &mut String) {
    // Fast path: nothing to escape.
    if s.bytes()
        .all(|b| (b >= 0x20 && b != 0x7f && b != b'\\' && b < 0x80) || b == b'\t')
    {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push('\t'),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => push_hex(c as u8, out),
            c if (0x80..0xa0).contains(&(c as u32)) => {
                out.push_str("\\u{");
                push_two_hex(c as u32 as u8, out);
                out.push('}');
            }
            c => out.push(c),
        }
    }
}

fn push_hex(b: u8, out: &mut String) {
    out.push_str("\\x");
    push_two_hex(b, out);
}

fn push_two_hex(b: u8, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Reverses [`escape`]. Sequences that are not valid escapes are kept literally, so any
/// text unescapes to something (text written by [`escape`] round-trips exactly).
pub fn unescape(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => match (
                b.get(i + 2).copied().and_then(hex_val),
                b.get(i + 3).copied().and_then(hex_val),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 4;
                }
                _ => {
                    out.push(b'\\');
                    i += 1;
                }
            },
            Some(b'u')
                if b.get(i + 2) == Some(&b'{')
                    && b.get(i + 5) == Some(&b'}')
                    && b.get(i + 3).copied().and_then(hex_val).is_some()
                    && b.get(i + 4).copied().and_then(hex_val).is_some() =>
            {
                let v = hex_val(b[i + 3]).unwrap_or(0) << 4 | hex_val(b[i + 4]).unwrap_or(0);
                let mut buf = [0u8; 4];
                out.extend_from_slice(char::from(v).encode_utf8(&mut buf).as_bytes());
                i += 6;
            }
            _ => {
                out.push(b'\\');
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_kept() {
        assert_eq!(escape(b"hello world\tok"), "hello world\tok");
        assert_eq!(escape("grüße €".as_bytes()), "grüße €");
    }

    #[test]
    fn controls_backslash_and_invalid_bytes_are_escaped() {
        assert_eq!(escape(b"a\\b"), "a\\\\b");
        assert_eq!(escape(b"\x00\x1b[31m\x7f\r"), "\\x00\\x1b[31m\\x7f\\x0d");
        assert_eq!(escape(b"ok\xff\xfe end"), "ok\\xff\\xfe end");
        // A truncated multi-byte sequence at the end.
        assert_eq!(escape(b"x\xe2\x82"), "x\\xe2\\x82");
        assert_eq!(escape("\u{9b}".as_bytes()), "\\u{9b}");
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255u8).chain(b"\\x41\\u{9b}".iter().copied()).collect();
        let e = escape(&all);
        assert!(e.chars().all(|c| c == '\t' || !c.is_control()));
        assert_eq!(unescape(&e), all);
        let utf = "日本語 \u{85} \\ \u{1F600}".as_bytes();
        assert_eq!(unescape(&escape(utf)), utf);
    }
}
