//! Signed stream names: a page may only subscribe to streams the server rendered for it.
//!
//! A token is `base64url(name) "." base64url(HMAC-SHA256(secret, domain ‖ name))`. The
//! name is readable (it is not a secret), but it cannot be changed or invented without
//! the key. With an expiry ([`Builder::token_ttl`](crate::Builder::token_ttl)), it is
//! `base64url(name) "." expiry "." signature`, the expiry (Unix seconds) signed too.
//!
//! # Rotating the key
//!
//! A new key signs; previous keys still verify
//! ([`Builder::previous_secrets`](crate::Builder::previous_secrets),
//! `TURBO_MODEL_PREVIOUS_SECRETS`), so pages rendered before the change keep working.
//! A page whose tokens are refused anyway (a key dropped, a restart without a fixed key,
//! an expired token) refreshes itself, with backoff, and gets new ones. The key comes from `TURBO_MODEL_SECRET` (at least 32 bytes), from code
//! ([`Builder::secret`](crate::Builder::secret)), or in development from a random key made
//! at start-up (tokens then stop working when the process restarts, which is logged).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

pub use crate::error::TokenError;
use crate::error::{Error, Result};
use crate::name::{ConnectionId, StreamName};

type HmacSha256 = hmac::Hmac<Sha256>;

/// Separates these MACs from any other use of the same secret.
const DOMAIN: &[u8] = b"turbo-model/stream-name/v1\0";

/// The domain of connection tokens, which name a page's stream connection in its
/// requests and must not double as stream tokens.
const CONNECTION_DOMAIN: &[u8] = b"turbo-model/connection/v1\0";

/// The environment variable holding the key that signs stream names.
pub const SECRET_ENV: &str = "TURBO_MODEL_SECRET";

/// The environment variable holding previous keys, separated by whitespace: tokens they
/// signed are still accepted.
pub const PREVIOUS_SECRETS_ENV: &str = "TURBO_MODEL_PREVIOUS_SECRETS";

/// The domain of tokens that carry an expiry.
const EXPIRING_DOMAIN: &[u8] = b"turbo-model/stream-name/expiring/v1\0";

/// The longest token accepted; a valid one for the longest stream name is shorter.
pub const MAX_TOKEN_LEN: usize = 512;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Signs stream names with one secret key, and verifies them with it and with the
/// previous keys it was given.
#[derive(Clone)]
pub struct Signer {
    mac: HmacSha256,
    previous: Vec<HmacSha256>,
    ttl: Option<Duration>,
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
        Ok(Self {
            mac,
            previous: Vec::new(),
            ttl: None,
        })
    }

    /// Also accepts tokens signed with these keys (the ones used before this one).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSecret`] when one is shorter than [`MIN_SECRET_LEN`] bytes.
    pub fn with_previous<S: AsRef<[u8]>>(
        mut self,
        secrets: impl IntoIterator<Item = S>,
    ) -> Result<Self> {
        for secret in secrets {
            self.previous.push(Self::new(secret.as_ref())?.mac);
        }
        Ok(self)
    }

    /// Signs tokens that expire `ttl` after they are made (rounded up to the minute, so
    /// that a page's tokens stay the same for a while); verification refuses them after.
    pub fn with_expiry(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The keys that verify, the signing one first.
    fn keys(&self) -> impl Iterator<Item = &HmacSha256> {
        std::iter::once(&self.mac).chain(&self.previous)
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
            previous: Vec::new(),
            ttl: None,
        }
    }

    fn mac_in(&self, domain: &[u8], text: &str) -> HmacSha256 {
        keyed(&self.mac, domain, text)
    }

    /// Whether `tag` is the MAC of `text` in `domain` under any of the keys.
    fn verifies(&self, domain: &[u8], text: &str, tag: &[u8]) -> bool {
        self.keys()
            .any(|key| keyed(key, domain, text).verify_slice(tag).is_ok())
    }

    /// The token a page uses to name its stream connection: `process.number.signature`.
    /// Only a server with the key can make one, so a request cannot name another page's
    /// connection; the process in it keeps connections of different processes apart.
    pub(crate) fn sign_connection(&self, id: ConnectionId) -> String {
        let id = id.to_string();
        let tag = self.mac_in(CONNECTION_DOMAIN, &id).finalize().into_bytes();
        format!("{id}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The connection inside a token made by [`sign_connection`](Self::sign_connection).
    pub(crate) fn verify_connection(&self, token: &str) -> Option<ConnectionId> {
        let (id, tag) = token.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if !self.verifies(CONNECTION_DOMAIN, id, &tag) {
            return None;
        }
        ConnectionId::parse(id)
    }

    /// The token for `name`. Without an expiry the same name always gives the same
    /// token; with one, the same token for a minute at least.
    pub fn sign(&self, name: &StreamName) -> String {
        let mut token = URL_SAFE_NO_PAD.encode(name.as_str());
        token.push('.');
        let tag = match self.ttl {
            None => self.mac_in(DOMAIN, name.as_str()).finalize().into_bytes(),
            Some(ttl) => {
                let expires = (unix_seconds() + ttl.as_secs()).div_ceil(60) * 60;
                token.push_str(&expires.to_string());
                token.push('.');
                self.mac_in(EXPIRING_DOMAIN, &expiring(name.as_str(), expires))
                    .finalize()
                    .into_bytes()
            }
        };
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
        let (name_part, rest) = token
            .split_once('.')
            .ok_or(TokenError::Malformed("expected `name.signature`"))?;
        let (expires, tag_part) = match rest.split_once('.') {
            None => (None, rest),
            Some((expires, tag)) => {
                let expires: u64 = expires
                    .parse()
                    .map_err(|_| TokenError::Malformed("the expiry is not a number"))?;
                (Some(expires), tag)
            }
        };
        let name_bytes = URL_SAFE_NO_PAD
            .decode(name_part)
            .map_err(|_| TokenError::Malformed("the name is not base64url"))?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_part)
            .map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
        let name = String::from_utf8(name_bytes)
            .map_err(|_| TokenError::Malformed("the name is not UTF-8"))?;
        let signed = match expires {
            None => self.verifies(DOMAIN, &name, &tag),
            Some(expires) => self.verifies(EXPIRING_DOMAIN, &expiring(&name, expires), &tag),
        };
        if !signed {
            return Err(TokenError::BadSignature);
        }
        if expires.is_some_and(|expires| expires <= unix_seconds()) {
            return Err(TokenError::Expired);
        }
        StreamName::new(name).map_err(|_| TokenError::Malformed("the stream name is invalid"))
    }
}

fn keyed(key: &HmacSha256, domain: &[u8], text: &str) -> HmacSha256 {
    let mut mac = key.clone();
    mac.update(domain);
    mac.update(text.as_bytes());
    mac
}

/// What an expiring token signs: the name, a NUL (never in a name), the expiry.
fn expiring(name: &str, expires: u64) -> String {
    format!("{name}\0{expires}")
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
        let id = ConnectionId::new(0xabc, 17);
        let token = s.sign_connection(id);
        assert!(token.starts_with("0000000000000abc.17."), "{token}");
        assert_eq!(s.verify_connection(&token), Some(id));
        let (_, tag) = token.rsplit_once('.').expect("dot");
        assert_eq!(
            s.verify_connection(&format!("0000000000000abc.18.{tag}")),
            None,
            "another number"
        );
        assert_eq!(
            s.verify_connection(&format!("0000000000000abd.17.{tag}")),
            None,
            "another process"
        );
        assert_eq!(s.verify_connection("0000000000000abc.17"), None);
        assert!(s.verify(&token).is_err(), "not a stream token");
        let stream_token = s.sign(&name("0000000000000abc.17"));
        assert_eq!(s.verify_connection(&stream_token), None);
    }

    #[test]
    fn previous_keys_still_verify_and_the_new_one_signs() {
        let old = Signer::new(b"the old secret, thirty-two bytes long").expect("valid");
        let token = old.sign(&name("room:1"));
        let rotated = signer()
            .with_previous([b"the old secret, thirty-two bytes long"])
            .expect("valid");
        assert_eq!(rotated.verify(&token), Ok(name("room:1")));
        assert_eq!(
            rotated.sign(&name("room:1")),
            signer().sign(&name("room:1"))
        );
        assert_eq!(signer().verify(&token), Err(TokenError::BadSignature));
        let connection = ConnectionId::new(1, 2);
        assert_eq!(
            rotated.verify_connection(&old.sign_connection(connection)),
            Some(connection)
        );
        assert!(signer().with_previous([b"short"]).is_err());
    }

    #[test]
    fn expiring_tokens_carry_a_signed_expiry() {
        let s = signer().with_expiry(Duration::from_secs(3600));
        let token = s.sign(&name("room:1"));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");
        let expires: u64 = parts[1].parse().expect("a number");
        assert!(
            expires >= unix_seconds() + 3600 && expires.is_multiple_of(60),
            "{expires}"
        );
        assert_eq!(s.verify(&token), Ok(name("room:1")));
        assert_eq!(
            signer().verify(&token),
            Ok(name("room:1")),
            "any verifier checks it"
        );
        let later = format!("{}.{}.{}", parts[0], expires + 60, parts[2]);
        assert_eq!(
            s.verify(&later),
            Err(TokenError::BadSignature),
            "the expiry is signed"
        );
        let past = expires - 7200;
        let tag = s
            .mac_in(EXPIRING_DOMAIN, &expiring("room:1", past))
            .finalize()
            .into_bytes();
        let expired = format!("{}.{past}.{}", parts[0], URL_SAFE_NO_PAD.encode(tag));
        assert_eq!(s.verify(&expired), Err(TokenError::Expired));
    }

    #[test]
    fn random_signers_do_not_accept_each_others_tokens() {
        let a = Signer::random();
        let b = Signer::random();
        assert_eq!(b.verify(&a.sign(&name("x"))), Err(TokenError::BadSignature));
    }
}
