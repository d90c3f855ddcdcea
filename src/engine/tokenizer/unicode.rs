//! Unicode facts the pre-tokenizers need, with llama.cpp's conventions.
//!
//! llama.cpp classifies every code point into exactly one general-category group (number, letter,
//! separator, mark, punctuation, symbol, control, or "undefined" for unassigned code points), plus a
//! separate whitespace flag (the Unicode `White_Space` set). Its tables were generated from
//! Unicode 15.1, so the tables here are built from regex-syntax's Unicode data restricted to code
//! points assigned by 15.1; newer code points are "undefined", as in llama.cpp.

use regex_syntax::hir::{Class, HirKind};
use std::sync::OnceLock;

/// The general-category group of a code point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cat {
    /// Unassigned (as of Unicode 15.1).
    Undefined,
    Number,
    Letter,
    Separator,
    Mark,
    Punctuation,
    Symbol,
    /// Cc, Cf, Co (Cs cannot occur in a Rust string).
    Control,
}

/// Flags of one code point; `None` (see [`flags_at`]) stands for "outside the text".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flags {
    pub cat: Cat,
    pub whitespace: bool,
}

impl Flags {
    pub fn is_letter(self) -> bool {
        self.cat == Cat::Letter
    }
    pub fn is_number(self) -> bool {
        self.cat == Cat::Number
    }
}

/// Unicode `White_Space` (llama.cpp's `unicode_set_whitespace`).
const WHITESPACE: [u32; 25] = [
    0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004,
    0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
];

fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    // The patterns are constants; a failure here is a bug caught by the unit tests.
    let Ok(hir) = regex_syntax::Parser::new().parse(pattern) else {
        debug_assert!(false, "bad class pattern {pattern}");
        return Vec::new();
    };
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => c
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
        _ => {
            debug_assert!(false, "pattern {pattern} is not a Unicode class");
            Vec::new()
        }
    }
}

/// Sorted, disjoint `(first, last, category)` ranges; code points in no range are undefined.
fn category_table() -> &'static [(u32, u32, Cat)] {
    static TABLE: OnceLock<Vec<(u32, u32, Cat)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let groups = [
            (r"[\p{N}&&\p{Age=V15_1}]", Cat::Number),
            (r"[\p{L}&&\p{Age=V15_1}]", Cat::Letter),
            (r"[\p{Z}&&\p{Age=V15_1}]", Cat::Separator),
            (r"[\p{M}&&\p{Age=V15_1}]", Cat::Mark),
            (r"[\p{P}&&\p{Age=V15_1}]", Cat::Punctuation),
            (r"[\p{S}&&\p{Age=V15_1}]", Cat::Symbol),
            (r"[[\p{Cc}\p{Cf}\p{Co}]&&\p{Age=V15_1}]", Cat::Control),
        ];
        let mut table = Vec::new();
        for (pattern, cat) in groups {
            table.extend(class_ranges(pattern).into_iter().map(|(a, b)| (a, b, cat)));
        }
        table.sort_by_key(|r| r.0);
        table
    })
}

pub(crate) fn category(c: char) -> Cat {
    let cp = c as u32;
    if cp < 0x80 {
        // Fast path for ASCII (same answers as the table).
        let b = cp as u8;
        return match b {
            b'0'..=b'9' => Cat::Number,
            b'A'..=b'Z' | b'a'..=b'z' => Cat::Letter,
            b' ' => Cat::Separator,
            0..=0x1F | 0x7F => Cat::Control,
            b'$' | b'+' | b'<' | b'=' | b'>' | b'^' | b'`' | b'|' | b'~' => Cat::Symbol,
            _ => Cat::Punctuation,
        };
    }
    let table = category_table();
    let i = table.partition_point(|r| r.0 <= cp);
    if i > 0 && table[i - 1].1 >= cp {
        table[i - 1].2
    } else {
        Cat::Undefined
    }
}

pub(crate) fn is_whitespace(c: char) -> bool {
    WHITESPACE.contains(&(c as u32))
}

pub(crate) fn flags(c: char) -> Flags {
    Flags {
        cat: category(c),
        whitespace: is_whitespace(c),
    }
}

/// llama.cpp's `unicode_tolower`, as far as the pre-tokenizers use it (they only compare the result
/// with ASCII letters, and no non-ASCII code point lower-cases to one of `s t m d r e v l`).
pub(crate) fn to_lower(c: char) -> char {
    c.to_ascii_lowercase()
}

/// GPT-2's byte-to-unicode table: printable bytes map to themselves, the others to U+0100 onwards.
pub(crate) fn byte_to_char(b: u8) -> char {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = ['\0'; 256];
        let mut n = 0u32;
        for (b, slot) in t.iter_mut().enumerate() {
            let printable = (0x21..=0x7E).contains(&b)
                || (0xA1..=0xAC).contains(&b)
                || (0xAE..=0xFF).contains(&b);
            *slot = if printable {
                char::from(b as u8)
            } else {
                n += 1;
                char::from_u32(255 + n).unwrap_or('\u{FFFD}')
            };
        }
        t
    })[b as usize]
}

/// The inverse of [`byte_to_char`].
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    static TABLE: OnceLock<Vec<i16>> = OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = vec![-1i16; 0x200];
        for b in 0..=255u8 {
            t[byte_to_char(b) as usize] = b as i16;
        }
        t
    });
    t.get(c as usize)
        .copied()
        .filter(|&b| b >= 0)
        .map(|b| b as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_match_llama_cpp_tables() {
        assert_eq!(category('a'), Cat::Letter);
        assert_eq!(category('é'), Cat::Letter);
        assert_eq!(category('日'), Cat::Letter);
        assert_eq!(category('٣'), Cat::Number);
        assert_eq!(category('½'), Cat::Number);
        assert_eq!(category('\u{301}'), Cat::Mark);
        assert_eq!(category('—'), Cat::Punctuation);
        assert_eq!(category('∑'), Cat::Symbol);
        assert_eq!(category('🦀'), Cat::Symbol);
        assert_eq!(category('\u{200D}'), Cat::Control);
        assert_eq!(category('\u{E000}'), Cat::Control);
        assert_eq!(category('\u{3000}'), Cat::Separator);
        // Unassigned, and assigned only in Unicode 16 (Kawi digit U+11F5A): undefined in llama.cpp.
        assert_eq!(category('\u{378}'), Cat::Undefined);
        assert_eq!(category('\u{11F5A}'), Cat::Undefined);
        assert_eq!(category('\u{11F50}'), Cat::Number);
        // The ASCII fast path agrees with the table.
        for b in 0u8..0x80 {
            let c = char::from(b);
            let table = category_table();
            let i = table.partition_point(|r| r.0 <= b as u32);
            let slow = if i > 0 && table[i - 1].1 >= b as u32 {
                table[i - 1].2
            } else {
                Cat::Undefined
            };
            assert_eq!(category(c), slow, "{b:#x}");
        }
        assert!(is_whitespace('\u{A0}') && is_whitespace('\n') && !is_whitespace('\u{200B}'));
    }

    #[test]
    fn byte_table_round_trips() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(char_to_byte('日'), None);
    }
}
