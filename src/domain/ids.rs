//! Ids valid by construction: seats, users, sessions, booking references, idempotency keys.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A seat id: a row letter `A`–`Z` and a seat number `1`–`99` without a leading zero.
///
/// Ordering is plain string order (`A10` before `A2`), the same byte order PostgreSQL uses
/// under `collate "C"`: every multi-seat statement locks rows in this order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct SeatId(String);

impl TryFrom<String> for SeatId {
    type Error = SeatIdError;

    fn try_from(raw: String) -> Result<Self, SeatIdError> {
        Self::parse(&raw)
    }
}

impl From<SeatId> for String {
    fn from(seat: SeatId) -> Self {
        seat.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SeatIdError {
    #[error(
        "a seat id is a row letter A-Z followed by a seat number without leading zero, like C7"
    )]
    Malformed,
    #[error("that seat does not exist in this room")]
    OutsideGrid,
}

impl SeatId {
    pub fn parse(raw: &str) -> Result<Self, SeatIdError> {
        let bytes = raw.as_bytes();
        let well_formed = matches!(bytes.len(), 2 | 3)
            && bytes[0].is_ascii_uppercase()
            && (b'1'..=b'9').contains(&bytes[1])
            && bytes[2..].iter().all(u8::is_ascii_digit);
        if well_formed {
            Ok(Self(raw.to_owned()))
        } else {
            Err(SeatIdError::Malformed)
        }
    }

    /// The seat at zero-based `row` (below 26) and one-based `number` (below 100).
    pub(crate) fn at(row: i32, number: i32) -> Self {
        let letter = char::from(b'A' + u8::try_from(row).expect("a row letter"));
        Self(format!("{letter}{number}"))
    }

    /// Zero-based row index and one-based seat number.
    pub(crate) fn position(&self) -> (i32, i32) {
        let row = i32::from(self.0.as_bytes()[0] - b'A');
        let number = self.0[1..].parse().expect("checked by parse");
        (row, number)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SeatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who holds seats: a user of the seed routes, who names themselves (1–64 characters of
/// ASCII letters, digits, `-` and `_`), or an API user, whose id the server issued
/// (`UserId::issue`) and who proves it with a token. An API id contains a `.`, which the seed
/// format forbids, so no seed request can name an API user or spend their hold limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct UserId(String);

/// Either kind, as the stores keep it.
impl TryFrom<String> for UserId {
    type Error = UserIdError;

    fn try_from(raw: String) -> Result<Self, UserIdError> {
        Self::parse_stored(raw)
    }
}

impl From<UserId> for String {
    fn from(user: UserId) -> Self {
        user.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("user_id must be 1 to 64 characters of letters, digits, '-' and '_'")]
pub struct UserIdError;

/// How an API user id starts; the rest is 32 lowercase hex digits.
const API_PREFIX: &str = "v1.";
const API_RANDOM_LEN: usize = 32;

impl UserId {
    pub const MAX_LEN: usize = 64;

    /// What the seed routes' seat map shows for an API user's seat: no seed user can have it
    /// (it has parentheses), and it is the same for every API user.
    pub const HIDDEN: &str = "(hidden)";

    /// A seed user id, as the seed routes take it.
    pub fn parse(raw: String) -> Result<Self, UserIdError> {
        let valid = (1..=Self::MAX_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(raw))
        } else {
            Err(UserIdError)
        }
    }

    /// A new API user id, random (122 bits).
    pub fn issue() -> Self {
        Self(format!("{API_PREFIX}{}", Uuid::new_v4().simple()))
    }

    /// An API user id, as tokens carry it.
    pub fn parse_api(raw: &str) -> Result<Self, UserIdError> {
        let random = raw.strip_prefix(API_PREFIX).ok_or(UserIdError)?;
        let valid = random.len() == API_RANDOM_LEN
            && random
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(UserIdError)
        }
    }

    /// A user id of either kind, as the stores keep it.
    pub fn parse_stored(raw: String) -> Result<Self, UserIdError> {
        match Self::parse_api(&raw) {
            Ok(api) => Ok(api),
            Err(_) => Self::parse(raw),
        }
    }

    /// Whether the server issued this id (an API user).
    pub fn is_api(&self) -> bool {
        self.0.starts_with(API_PREFIX)
    }

    /// The id as the seed routes show it: an API user's is hidden.
    pub fn public(&self) -> &str {
        if self.is_api() { Self::HIDDEN } else { &self.0 }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A confirmed booking's reference, for people to read out: `K7Q-4M2`, six characters of an
/// alphabet without look-alikes (no 0/O, 1/I/L, 2/Z, 5/S, 8/B). PostgreSQL makes its own
/// with the same alphabet (migrations/0008); the column is unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct BookingReference(String);

impl TryFrom<String> for BookingReference {
    type Error = &'static str;

    fn try_from(raw: String) -> Result<Self, &'static str> {
        Self::parse(raw).ok_or("a booking reference is three and three of its alphabet")
    }
}

impl From<BookingReference> for String {
    fn from(reference: BookingReference) -> Self {
        reference.0
    }
}

/// The characters of a booking reference, as a literal for `concat!`.
macro_rules! reference_alphabet {
    () => {
        "ACDEFGHJKMNPQRTUVWXY34679"
    };
}

impl BookingReference {
    /// Every character a reference may have: the one home of the alphabet, which
    /// PostgreSQL's `new_booking_reference()` and its check on `hold_sessions` must match
    /// (a test compares them).
    pub const ALPHABET: &str = reference_alphabet!();

    /// A reference as a regular expression: three, a dash, three.
    pub const PATTERN: &str = concat!(
        "^[",
        reference_alphabet!(),
        "]{3}-[",
        reference_alphabet!(),
        "]{3}$"
    );

    /// A random reference (from a UUID's random bytes).
    pub fn random() -> Self {
        let bytes = Uuid::new_v4().into_bytes();
        let alphabet = Self::ALPHABET.as_bytes();
        let pick = |i: usize| char::from(alphabet[usize::from(bytes[i]) % alphabet.len()]);
        let mut reference: String = (0..3).map(pick).collect();
        reference.push('-');
        reference.extend((3..6).map(pick));
        Self(reference)
    }

    pub fn parse(raw: String) -> Option<Self> {
        let b = raw.as_bytes();
        let valid = b.len() == 7
            && b[3] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 3 || Self::ALPHABET.as_bytes().contains(c));
        valid.then_some(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An idempotency key: 1 to `MAX_LEN` visible ASCII characters, as the client chose them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an idempotency key is 1 to 255 visible ASCII characters")]
pub struct IdempotencyKeyError;

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &[u8]) -> Result<Self, IdempotencyKeyError> {
        let valid =
            (1..=Self::MAX_LEN).contains(&raw.len()) && raw.iter().all(u8::is_ascii_graphic);
        if !valid {
            return Err(IdempotencyKeyError);
        }
        Ok(Self(String::from_utf8_lossy(raw).into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A hold session id (a UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub Uuid);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a session id is a UUID")]
pub struct SessionIdError;

impl SessionId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn parse(raw: &str) -> Result<Self, SessionIdError> {
        Uuid::try_parse(raw).map(Self).map_err(|_| SessionIdError)
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Movie;

    fn room() -> Movie {
        Movie {
            id: "inception".into(),
            title: "Inception".into(),
            rows: 5,
            seats_per_row: 8,
        }
    }

    #[test]
    fn seats_inside_the_grid_parse() {
        for ok in ["A1", "E8", "C5"] {
            assert_eq!(room().seat(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn seats_outside_the_grid_do_not_exist() {
        for outside in ["F1", "Z9", "A9", "E10"] {
            assert_eq!(
                room().seat(outside),
                Err(SeatIdError::OutsideGrid),
                "{outside}"
            );
        }
    }

    #[test]
    fn malformed_seat_ids_are_rejected() {
        for bad in [
            "", "A", "A0", "A01", "a1", "A1;--", "1A", "A100", "AA1", "Ä1", "A-1",
        ] {
            assert_eq!(SeatId::parse(bad), Err(SeatIdError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn seat_ids_sort_in_byte_order() {
        let mut seats: Vec<_> = ["A2", "B1", "A10", "A1"]
            .into_iter()
            .map(|s| SeatId::parse(s).unwrap())
            .collect();
        seats.sort();
        let sorted: Vec<_> = seats.iter().map(SeatId::as_str).collect();
        assert_eq!(sorted, ["A1", "A10", "A2", "B1"]);
    }

    #[test]
    fn user_ids_are_short_and_plain() {
        assert!(UserId::parse("user-1_X".into()).is_ok());
        assert!(UserId::parse("a".repeat(64)).is_ok());
        for bad in [
            String::new(),
            "a".repeat(65),
            "a b".into(),
            "é".into(),
            "x'--".into(),
        ] {
            assert_eq!(UserId::parse(bad.clone()), Err(UserIdError), "{bad:?}");
        }
    }

    #[test]
    fn no_seed_user_id_is_an_api_user_id_or_the_hidden_placeholder() {
        let api = UserId::issue();
        assert!(api.is_api());
        assert_eq!(UserId::parse(api.to_string()), Err(UserIdError));
        assert_eq!(UserId::parse(UserId::HIDDEN.into()), Err(UserIdError));
        assert_eq!(UserId::parse_stored(api.to_string()), Ok(api.clone()));
        assert_eq!(api.public(), UserId::HIDDEN);
        let seed = UserId::parse("alice".into()).unwrap();
        assert!(!seed.is_api());
        assert_eq!(seed.public(), "alice");
        assert_eq!(UserId::parse_stored("alice".into()), Ok(seed));
    }

    #[test]
    fn api_user_ids_are_the_prefix_and_32_lowercase_hex_digits() {
        for bad in [
            "v1.",
            "v1.0123456789abcdef0123456789abcde",
            "v1.0123456789abcdef0123456789abcdef0",
            "v1.0123456789ABCDEF0123456789abcdef",
            "v2.0123456789abcdef0123456789abcdef",
            "v1.0123456789abcdef0123456789abcdeg",
        ] {
            assert_eq!(UserId::parse_api(bad), Err(UserIdError), "{bad:?}");
        }
        assert!(UserId::parse_api("v1.0123456789abcdef0123456789abcdef").is_ok());
    }

    #[test]
    fn idempotency_keys_are_short_visible_ascii() {
        for good in ["k", "order-42/try:1", &"x".repeat(255)] {
            assert_eq!(
                IdempotencyKey::parse(good.as_bytes()).unwrap().as_str(),
                good
            );
        }
        for bad in ["", "with space", "tab\t", "é", &"x".repeat(256)] {
            assert_eq!(
                IdempotencyKey::parse(bad.as_bytes()),
                Err(IdempotencyKeyError),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn booking_references_are_three_and_three_unambiguous_characters() {
        for _ in 0..100 {
            let reference = BookingReference::random();
            assert_eq!(
                BookingReference::parse(reference.as_str().to_owned()),
                Some(reference.clone())
            );
            assert!(
                !reference
                    .as_str()
                    .contains(['0', 'O', '1', 'I', 'L', '2', 'Z', '5', 'S', '8', 'B'])
            );
        }
        for bad in ["K7Q4M2", "K7Q-4M", "K7Q-4M0", "k7q-4m2", "K7Q_4M2"] {
            assert_eq!(BookingReference::parse(bad.into()), None, "{bad:?}");
        }
    }
}
