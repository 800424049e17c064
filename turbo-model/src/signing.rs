//! Signed stream names: a page may only subscribe to streams the server rendered for it.
//!
//! A token is `base64url(name) "." base64url(HMAC-SHA256(secret, domain ‖ name))`. The
//! name is readable (it is not a secret), but it cannot be changed or invented without
//! the key. The key comes from `TURBO_MODEL_SECRET` (at least 32 bytes), from code
//! ([`Builder::secret`](crate::Builder::secret)), or in development from a random key made
//! at start-up (tokens then stop working when the process restarts, which is logged).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

pub use crate::error::TokenError;
use crate::error::{Error, Result};
use crate::name::StreamName;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Separates these MACs from any other use of the same secret.
const DOMAIN: &[u8] = b"turbo-model/stream-name/v1\0";

/// The domain of connection tokens, which name a page's stream connection in its
/// requests and must not double as stream tokens.
const CONNECTION_DOMAIN: &[u8] = b"turbo-model/connection/v1\0";

/// The environment variable holding the key that signs stream names.
pub const SECRET_ENV: &str = "TURBO_MODEL_SECRET";

/// The longest token accepted; a valid one for the longest stream name is shorter.
pub const MAX_TOKEN_LEN: usize = 512;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Signs and verifies stream names with one secret key.
#[derive(Clone)]
pub struct Signer {
    mac: HmacSha256,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { .. }")
    }
}

impl Signer {
    /// A signer with this secret.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSecret`] when the secret is shorter than [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: &[u8]) -> Result<Self> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(Error::InvalidSecret(
                "the secret must be at least 32 bytes; generate one with `openssl rand -hex 32`",
            ));
        }
        let mac = HmacSha256::new_from_slice(secret)
            .map_err(|_| Error::InvalidSecret("the secret cannot key HMAC-SHA256"))?;
        Ok(Self { mac })
    }

    /// A signer with a fresh random key: fine for development and tests; tokens die with
    /// the process.
    ///
    /// # Panics
    ///
    /// If the operating system has no source of randomness.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut key).expect("the operating system provides randomness");
        Self {
            mac: <HmacSha256 as KeyInit>::new_from_slice(&key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length")),
        }
    }

    fn mac_of(&self, name: &str) -> HmacSha256 {
        self.mac_in(DOMAIN, name)
    }

    fn mac_in(&self, domain: &[u8], text: &str) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(domain);
        mac.update(text.as_bytes());
        mac
    }

    /// The token a page uses to name its stream connection: `id.signature`. Only the
    /// server that issued it can make one, so a request cannot name another page's
    /// connection.
    pub(crate) fn sign_connection(&self, id: u64) -> String {
        let id = id.to_string();
        let tag = self.mac_in(CONNECTION_DOMAIN, &id).finalize().into_bytes();
        format!("{id}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The connection id inside a token made by [`sign_connection`](Self::sign_connection).
    pub(crate) fn verify_connection(&self, token: &str) -> Option<u64> {
        let (id, tag) = token.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac_in(CONNECTION_DOMAIN, id).verify_slice(&tag).ok()?;
        id.parse().ok()
    }

    /// The token for `name`. The same name always gives the same token.
    pub fn sign(&self, name: &StreamName) -> String {
        let tag = self.mac_of(name.as_str()).finalize().into_bytes();
        let mut token = URL_SAFE_NO_PAD.encode(name.as_str());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut token);
        token
    }

    /// The stream name inside `token`, if its signature is ours.
    ///
    /// The comparison is constant-time.
    ///
    /// # Errors
    ///
    /// A [`TokenError`] saying why the token was refused.
    pub fn verify(&self, token: &str) -> Result<StreamName, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let (name_part, tag_part) = token
            .split_once('.')
            .ok_or(TokenError::Malformed("expected `name.signature`"))?;
        let name_bytes = URL_SAFE_NO_PAD
            .decode(name_part)
            .map_err(|_| TokenError::Malformed("the name is not base64url"))?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_part)
            .map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
        let name = String::from_utf8(name_bytes)
            .map_err(|_| TokenError::Malformed("the name is not UTF-8"))?;
        self.mac_of(&name)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        StreamName::new(name).map_err(|_| TokenError::Malformed("the stream name is invalid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn signer() -> Signer {
        Signer::new(SECRET).expect("valid secret")
    }

    fn name(s: &str) -> StreamName {
        StreamName::new(s).expect("valid name")
    }

    #[test]
    fn token_is_stable_and_round_trips() {
        let s = signer();
        let token = s.sign(&name("room:1"));
        assert_eq!(token, s.sign(&name("room:1")));
        assert!(token.starts_with("cm9vbTox."), "{token}");
        assert_eq!(s.verify(&token), Ok(name("room:1")));
    }

    #[test]
    fn tampered_name_is_refused() {
        let s = signer();
        let token = s.sign(&name("room:1"));
        let (_, tag) = token.split_once('.').expect("dot");
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("room:2"));
        assert_eq!(s.verify(&forged), Err(TokenError::BadSignature));
    }

    #[test]
    fn truncated_signature_is_refused() {
        let s = signer();
        let token = s.sign(&name("room:1"));
        let (name_part, tag) = token.split_once('.').expect("dot");
        let tag = URL_SAFE_NO_PAD.decode(tag).expect("base64");
        let short = format!("{name_part}.{}", URL_SAFE_NO_PAD.encode(&tag[..16]));
        assert_eq!(s.verify(&short), Err(TokenError::BadSignature));
        assert!(s.verify(&token[..token.len() - 1]).is_err());
        assert!(s.verify(&token[..token.len() - 2]).is_err());
    }

    #[test]
    fn foreign_key_is_refused() {
        let other = Signer::new(b"another secret that is long enough!!").expect("valid");
        let token = other.sign(&name("room:1"));
        assert_eq!(signer().verify(&token), Err(TokenError::BadSignature));
    }

    #[test]
    fn malformed_tokens_say_why() {
        let s = signer();
        assert_eq!(s.verify(""), Err(TokenError::Empty));
        assert_eq!(
            s.verify("room:1"),
            Err(TokenError::Malformed("expected `name.signature`"))
        );
        assert_eq!(
            s.verify("!!.AAAA"),
            Err(TokenError::Malformed("the name is not base64url"))
        );
        assert_eq!(
            s.verify("cm9vbTox.***"),
            Err(TokenError::Malformed("the signature is not base64url"))
        );
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            s.verify(&long),
            Err(TokenError::TooLong {
                len: MAX_TOKEN_LEN + 1,
                max: MAX_TOKEN_LEN
            })
        );
    }

    #[test]
    fn short_secret_is_refused() {
        let err = Signer::new(b"short").expect_err("too short");
        assert!(err.to_string().contains("at least 32 bytes"), "{err}");
    }

    #[test]
    fn connection_tokens_round_trip_and_are_not_stream_tokens() {
        let s = signer();
        let token = s.sign_connection(17);
        assert!(token.starts_with("17."), "{token}");
        assert_eq!(s.verify_connection(&token), Some(17));
        let (_, tag) = token.split_once('.').expect("dot");
        assert_eq!(s.verify_connection(&format!("18.{tag}")), None);
        assert_eq!(s.verify_connection("17"), None);
        assert!(s.verify(&token).is_err(), "not a stream token");
        let stream_token = s.sign(&name("17"));
        assert_eq!(s.verify_connection(&stream_token), None);
    }

    #[test]
    fn random_signers_do_not_accept_each_others_tokens() {
        let a = Signer::random();
        let b = Signer::random();
        assert_eq!(b.verify(&a.sign(&name("x"))), Err(TokenError::BadSignature));
    }
}
