//! API identities: a user id the server issues and a bearer token that proves it, an HMAC of
//! the id. Checking a token needs no database: only the secret, which every instance shares.
//!
//! A token is `<user id>.<signature>`: the id (`v1.` and 32 hex digits) and the base64url
//! HMAC-SHA256 of it under the secret. A token signed with the previous secret is still
//! accepted, so the secret can be rotated without turning every page away.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::UserId;

type Signer = Hmac<Sha256>;

/// Signs and checks tokens. `Debug` shows no secret.
#[derive(Clone)]
pub struct Identities {
    current: Signer,
    previous: Option<Signer>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("previous", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

/// Longest token accepted: an id and a signature, with room to spare. Anything longer is
/// refused before any work.
pub const MAX_TOKEN_LEN: usize = 128;

/// A new signing secret: 32 bytes from two version 4 UUIDs (the operating system's random
/// source; 244 of the 256 bits are random).
pub fn random_secret() -> Vec<u8> {
    [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| u.into_bytes())
        .collect()
}

impl Identities {
    pub fn new(current: &[u8], previous: Option<&[u8]>) -> Self {
        let signer = |secret: &[u8]| Signer::new_from_slice(secret).expect("HMAC takes any key");
        Self {
            current: signer(current),
            previous: previous.map(signer),
        }
    }

    /// A new identity: its user id and its token.
    pub fn issue(&self) -> (UserId, String) {
        let user = UserId::issue();
        let token = format!(
            "{user}.{}",
            URL_SAFE_NO_PAD.encode(self.sign(&self.current, &user))
        );
        (user, token)
    }

    /// The user a token proves, if it is one of ours.
    pub fn verify(&self, token: &str) -> Option<UserId> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let (id, signature) = token.rsplit_once('.')?;
        let user = UserId::parse_api(id).ok()?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .any(|signer| {
                let mut mac = signer.clone();
                mac.update(user.as_str().as_bytes());
                // Constant time.
                mac.verify_slice(&signature).is_ok()
            })
            .then_some(user)
    }

    fn sign(&self, signer: &Signer, user: &UserId) -> Vec<u8> {
        let mut mac = signer.clone();
        mac.update(user.as_str().as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_proves_its_user_and_nothing_else() {
        let ids = Identities::new(b"a secret of at least thirty-two bytes", None);
        let (user, token) = ids.issue();
        assert!(user.is_api());
        assert_eq!(ids.verify(&token), Some(user.clone()));

        let other = Identities::new(b"another secret, just as long as that", None);
        assert_eq!(other.verify(&token), None, "signed with another secret");
        let (stranger, _) = ids.issue();
        let (_, signature) = token.rsplit_once('.').unwrap();
        assert_eq!(
            ids.verify(&format!("{stranger}.{signature}")),
            None,
            "another id"
        );
        for bad in [
            "",
            ".",
            "v1.",
            "alice.abc",
            &format!("{user}."),
            &format!("{user}.{signature}x"),
            &format!("{user}.{}", &signature[1..]),
            &format!("{user}"),
            &format!("{token}{}", "A".repeat(MAX_TOKEN_LEN)),
        ] {
            assert_eq!(ids.verify(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_previous_secret_is_still_accepted_while_rotating() {
        let old = Identities::new(b"the old secret, thirty-two bytes long", None);
        let (user, token) = old.issue();
        let rotated = Identities::new(
            b"the new secret, thirty-two bytes long",
            Some(b"the old secret, thirty-two bytes long"),
        );
        assert_eq!(rotated.verify(&token), Some(user));
        let (fresh, new_token) = rotated.issue();
        assert_eq!(rotated.verify(&new_token), Some(fresh));
        assert_eq!(
            old.verify(&new_token),
            None,
            "new tokens use the new secret"
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let ids = Identities::new(b"a secret of at least thirty-two bytes", None);
        assert!(!format!("{ids:?}").contains("secret of"));
    }
}
