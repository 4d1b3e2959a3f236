const MAX_LEN: usize = 100;

/// A user's display name: trimmed, 1 to 100 characters, no control characters.
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
}

impl UserName {
    pub fn parse(raw: &str) -> Result<Self, UserNameError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(UserNameError::Empty);
        }
        // Characters, not bytes: "Zoë" is three characters long.
        if trimmed.chars().count() > MAX_LEN {
            return Err(UserNameError::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(UserNameError::ControlCharacter);
        }
        Ok(Self(trimmed.to_owned()))
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
