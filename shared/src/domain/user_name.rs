use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

const MAX_LEN: usize = 100;

/// A user's display name: at most 100 characters as sent; trimmed, in Unicode normalization
/// form C (so "é" is stored one way however it was typed), 1 to 100 characters, with no
/// control characters and no invisible formatting characters (bidirectional overrides such as
/// U+202E, zero-width spaces and joiners), which can make a name display as something it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserNameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_LEN} characters")]
    TooLong,
    #[error("must not contain control characters")]
    ControlCharacter,
    #[error("must not contain invisible formatting characters (such as U+{0:04X})")]
    FormatCharacter(u32),
}

impl UserName {
    pub fn parse(raw: &str) -> Result<Self, UserNameError> {
        let name: String = raw.trim().nfc().collect();
        if name.is_empty() {
            return Err(UserNameError::Empty);
        }
        // Characters, not bytes: "Zoë" is three characters long. As sent (openapi.yaml's
        // maxLength, which a client can check) and as stored (the database's limit).
        if raw.chars().count() > MAX_LEN || name.chars().count() > MAX_LEN {
            return Err(UserNameError::TooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(UserNameError::ControlCharacter);
        }
        if let Some(format) = name
            .chars()
            .find(|c| c.general_category() == GeneralCategory::Format)
        {
            return Err(UserNameError::FormatCharacter(u32::from(format)));
        }
        Ok(Self(name))
    }
}

impl AsRef<str> for UserName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed() {
        assert_eq!(
            UserName::parse("  Ada Lovelace\t").map(|n| n.0),
            Ok("Ada Lovelace".into())
        );
    }

    #[test]
    fn names_are_measured_in_characters_not_bytes() {
        let hundred_accented = "é".repeat(100);
        assert!(UserName::parse(&hundred_accented).is_ok());
        assert_eq!(
            UserName::parse(&"é".repeat(101)),
            Err(UserNameError::TooLong)
        );
    }

    #[test]
    fn names_are_stored_composed_however_they_were_typed() {
        let decomposed = "Zoe\u{0308}"; // "e" followed by a combining diaeresis
        let composed = "Zo\u{00eb}";

        let name = UserName::parse(decomposed).unwrap();

        assert_eq!(name.as_ref(), composed);
        assert_eq!(name, UserName::parse(composed).unwrap());
    }

    #[test]
    fn invisible_formatting_characters_are_rejected_by_code_point() {
        for (raw, code_point) in [
            ("Ada\u{202e}ecalevol", 0x202e),  // right-to-left override
            ("Ada\u{2066}x\u{2069}", 0x2066), // left-to-right isolate
            ("Ad\u{200b}a", 0x200b),          // zero-width space
            ("Ad\u{200d}a", 0x200d),          // zero-width joiner
            ("\u{feff}Ada", 0xfeff),          // byte order mark
            ("Ada\u{ad}", 0xad),              // soft hyphen
        ] {
            assert_eq!(
                UserName::parse(raw),
                Err(UserNameError::FormatCharacter(code_point)),
                "{raw:?}"
            );
        }
        assert_eq!(
            UserName::parse("Ada\u{202e}").unwrap_err().to_string(),
            "must not contain invisible formatting characters (such as U+202E)"
        );
    }

    #[test]
    fn invalid_names_are_rejected_with_a_reason() {
        for (raw, expected) in [
            ("", UserNameError::Empty),
            (" \t\n ", UserNameError::Empty),
            ("Ada\nLovelace", UserNameError::ControlCharacter),
            ("Ada\u{0}", UserNameError::ControlCharacter),
            ("Ada\u{7f}", UserNameError::ControlCharacter),
            ("Ada\u{9b}x", UserNameError::ControlCharacter),
        ] {
            assert_eq!(UserName::parse(raw), Err(expected), "{raw:?}");
        }
        assert_eq!(
            UserName::parse(&"a".repeat(101)),
            Err(UserNameError::TooLong)
        );
    }
}

/// The contract's side of [`UserName::parse`]: the `pattern` openapi.yaml gives a name, built
/// here from the same Unicode tables, so the document and the code cannot drift apart.
#[cfg(test)]
mod contract {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

    /// Code point ranges, as a YAML double-quoted string writes them in a regular expression's
    /// character class: `\\uXXXX` (the expression's escape) in the Basic Multilingual Plane, a
    /// YAML escape (the character itself) above it, which every engine reads as one character.
    fn class(test: impl Fn(char) -> bool) -> String {
        let escape = |c: char| match u32::from(c) {
            bmp @ ..=0xFFFF => format!("\\\\u{bmp:04X}"),
            astral => format!("\\U{astral:08X}"),
        };
        let mut class = String::new();
        let mut chars = (0..=0x10FFFF).filter_map(char::from_u32).peekable();
        while let Some(first) = chars.next() {
            if !test(first) {
                continue;
            }
            let mut last = first;
            while let Some(&next) = chars.peek() {
                if !test(next) || u32::from(next) != u32::from(last) + 1 {
                    break;
                }
                last = next;
                chars.next();
            }
            class.push_str(&escape(first));
            if last != first {
                class.push('-');
                class.push_str(&escape(last));
            }
        }
        class
    }

    #[test]
    fn openapi_yaml_gives_a_name_the_pattern_of_what_parse_accepts() {
        let refused = class(|c| c.is_control() || c.general_category() == GeneralCategory::Format);
        let blank = class(|c| c.is_whitespace() && !c.is_control());
        let line = format!("pattern: \"^[^{refused}]*[^{refused}{blank}][^{refused}]*$\"");

        let document = test_support::openapi_document();

        assert!(
            document.contains(&line),
            "openapi.yaml's UserName pattern is out of date with the Unicode tables; make \
             it\n{line}"
        );
    }
}
