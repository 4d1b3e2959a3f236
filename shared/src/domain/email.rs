use email_address::{EmailAddress, Options};

/// RFC 5321's limit on a forward path, the longest address a mail server will accept.
const MAX_LEN: usize = 254;

/// A syntactically valid email address, trimmed, at most 254 characters.
///
/// Case is preserved as given; uniqueness is case-insensitive and enforced by the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_LEN} characters")]
    TooLong,
    #[error("must be a valid email address, such as name@example.com")]
    Invalid,
}

impl Email {
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.chars().count() > MAX_LEN {
            return Err(EmailError::TooLong);
        }
        // A bare addr-spec with a dotted domain: no `Name <a@b>` display form, no `[1.2.3.4]`
        // literals and no single-label hosts such as `a@localhost`, none of which can be mailed
        // from the public internet.
        let options = Options::default()
            .without_display_text()
            .without_domain_literal()
            .with_required_tld();
        EmailAddress::parse_with_options(trimmed, options).map_err(|_| EmailError::Invalid)?;
        Ok(Self(trimmed.to_owned()))
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_addresses_are_accepted_and_trimmed() {
        for (raw, expected) in [
            ("ada@example.com", "ada@example.com"),
            (
                "  Ada.Lovelace+tag@Example.co.uk \n",
                "Ada.Lovelace+tag@Example.co.uk",
            ),
            ("o'brien@example.ie", "o'brien@example.ie"),
        ] {
            assert_eq!(
                Email::parse(raw).map(|e| e.0),
                Ok(expected.to_owned()),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn invalid_addresses_are_rejected_with_a_reason() {
        let too_long = format!("{}@example.com", "a".repeat(243));
        for (raw, expected) in [
            ("", EmailError::Empty),
            ("   ", EmailError::Empty),
            ("plainaddress", EmailError::Invalid),
            ("@example.com", EmailError::Invalid),
            ("ada@", EmailError::Invalid),
            ("ada@@example.com", EmailError::Invalid),
            ("ada @example.com", EmailError::Invalid),
            ("ada@localhost", EmailError::Invalid),
            ("ada@[127.0.0.1]", EmailError::Invalid),
            ("Ada <ada@example.com>", EmailError::Invalid),
            ("ada@exa mple.com", EmailError::Invalid),
            (too_long.as_str(), EmailError::TooLong),
        ] {
            assert_eq!(Email::parse(raw), Err(expected), "{raw:?}");
        }
    }

    #[test]
    fn an_address_of_exactly_254_characters_is_accepted() {
        // 64 is the longest local part RFC 5321 allows; pad the domain with 63-character labels.
        let domain = format!(
            "{}.{}.{}.com",
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(57)
        );
        let raw = format!("{}@{domain}", "a".repeat(64));
        assert_eq!(raw.len(), 254);
        assert!(Email::parse(&raw).is_ok());
    }
}
