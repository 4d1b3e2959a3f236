//! The position in the users listing that a page ends at, handed to the client as an opaque
//! `next_cursor`.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use sha2::{Digest, Sha256};

use super::UserId;

/// The format's first byte: a later change of format is told apart, not misread.
const FORMAT: u8 = 1;
/// What the checksum is over besides the payload: a cursor is not any 13 bytes.
const DOMAIN: &[u8] = b"users-api listing cursor";
const CHECKSUM_LEN: usize = 4;
const ENCODED_LEN: usize = 1 + 8 + CHECKSUM_LEN;

/// The listing continues after this user (ids ascending). Encoded as base64url of the format
/// byte, the id (8 bytes, big-endian) and a 4-byte checksum, so that an edited or truncated
/// cursor is refused rather than read as another position.
///
/// The checksum is not a signature: a client that forges a cursor only chooses where its own
/// listing starts, which reveals nothing a listing does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub after: UserId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("is not a cursor this API issued; pass next_cursor from a previous page unchanged")]
pub struct CursorError;

impl Cursor {
    pub fn encode(self) -> String {
        let mut bytes = Vec::with_capacity(ENCODED_LEN);
        bytes.push(FORMAT);
        bytes.extend_from_slice(&self.after.get().to_be_bytes());
        let checksum = checksum(&bytes);
        bytes.extend_from_slice(&checksum);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn parse(raw: &str) -> Result<Self, CursorError> {
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| CursorError)?;
        if bytes.len() != ENCODED_LEN || bytes[0] != FORMAT {
            return Err(CursorError);
        }
        let (payload, sum) = bytes.split_at(ENCODED_LEN - CHECKSUM_LEN);
        if checksum(payload) != sum {
            return Err(CursorError);
        }
        let id = payload[1..]
            .try_into()
            .map(i64::from_be_bytes)
            .map_err(|_| CursorError)?;
        let after = UserId::new(id).map_err(|_| CursorError)?;
        Ok(Self { after })
    }
}

fn checksum(payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest = Sha256::new()
        .chain_update(DOMAIN)
        .chain_update(payload)
        .finalize();
    let mut sum = [0; CHECKSUM_LEN];
    sum.copy_from_slice(&digest[..CHECKSUM_LEN]);
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(id: i64) -> Cursor {
        Cursor {
            after: UserId::new(id).unwrap(),
        }
    }

    #[test]
    fn a_cursor_reads_back_as_itself() {
        for id in [1, 42, i64::MAX] {
            let encoded = cursor(id).encode();

            assert_eq!(Cursor::parse(&encoded), Ok(cursor(id)), "{encoded}");
            assert!(encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }

    #[test]
    fn any_edit_of_a_cursor_is_refused() {
        let encoded = cursor(1234).encode();
        let mut edits = vec![
            String::new(),
            format!("{encoded}A"),
            encoded[1..].to_owned(),
            encoded[..encoded.len() - 1].to_owned(),
            format!("{encoded}="),
            "not a cursor!".to_owned(),
            // Another position's payload with this one's checksum.
            format!("{}{}", &cursor(1235).encode()[..12], &encoded[12..]),
        ];
        for position in 0..encoded.len() {
            let mut bytes = encoded.clone().into_bytes();
            bytes[position] = if bytes[position] == b'A' { b'B' } else { b'A' };
            edits.push(String::from_utf8(bytes).unwrap());
        }

        for edit in edits {
            assert_eq!(Cursor::parse(&edit), Err(CursorError), "{edit:?}");
        }
    }
}
