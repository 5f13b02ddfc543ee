//! Standard Webhooks signing: secrets and `webhook-signature` values, in
//! both of the specification's schemes — `v1` (HMAC-SHA256 with a shared
//! `whsec_` secret) and `v1a` (ed25519: the server holds a `whsk_` signing
//! key, the endpoint only the `whpk_` public key). A handler's secret says
//! which it uses by its prefix.

use base64::{Engine, engine::general_purpose::STANDARD};
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const SECRET_PREFIX: &str = "whsec_";
const SIGNING_KEY_PREFIX: &str = "whsk_";
const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// How a handler's calls are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// HMAC-SHA256 with a secret shared with the endpoint.
    #[default]
    V1,
    /// ed25519: the endpoint verifies with a public key and can sign nothing.
    V1a,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::V1 => "v1",
            Scheme::V1a => "v1a",
        }
    }

    /// The scheme a stored secret signs with.
    pub fn of(secret: &str) -> Self {
        if secret.starts_with(SIGNING_KEY_PREFIX) { Scheme::V1a } else { Scheme::V1 }
    }
}

impl std::str::FromStr for Scheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "v1" => Ok(Scheme::V1),
            "v1a" => Ok(Scheme::V1a),
            _ => Err("Choose a signature: v1 (HMAC-SHA256, a shared secret) or v1a (ed25519, a public key)".into()),
        }
    }
}

/// A new signing secret: `whsec_` and 24 random bytes in base64.
pub fn generate_secret() -> String {
    let mut key = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// A new secret of `scheme`: a `whsec_` secret, or a `whsk_` ed25519
/// signing key (its 32-byte seed and 32-byte public key, in base64).
pub fn generate(scheme: Scheme) -> String {
    match scheme {
        Scheme::V1 => generate_secret(),
        Scheme::V1a => {
            let mut seed = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut seed);
            let key = SigningKey::from_bytes(&seed);
            let mut both = seed.to_vec();
            both.extend_from_slice(key.verifying_key().as_bytes());
            format!("{SIGNING_KEY_PREFIX}{}", STANDARD.encode(both))
        }
    }
}

fn signing_key(secret: &str) -> Option<SigningKey> {
    let bytes = STANDARD.decode(secret.strip_prefix(SIGNING_KEY_PREFIX)?).ok()?;
    let seed: [u8; 32] = bytes.get(..32)?.try_into().ok()?;
    Some(SigningKey::from_bytes(&seed))
}

/// The `whpk_` public key of a `v1a` secret, for the integrator; `None` for a `v1` secret.
pub fn public_key(secret: &str) -> Option<String> {
    signing_key(secret).map(|key| format!("{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(key.verifying_key().as_bytes())))
}

/// The `webhook-signature` header value for one or more secrets: each one's
/// signature, separated by spaces (during a rotation's overlap both the new
/// and the old secret sign, as the Standard Webhooks spec allows).
pub fn sign_all(secrets: &[&str], webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
    let signatures: Vec<String> = secrets.iter().map(|s| sign(s, webhook_id, timestamp, body)).collect();
    signatures.join(" ")
}

/// One signature of `id.timestamp.body`: `v1a,<base64 ed25519 signature>`
/// for a `whsk_` key; otherwise `v1,<base64 HMAC-SHA256>`, keyed with the
/// base64-decoded part of the secret after `whsec_`.
pub fn sign(secret: &str, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    if let Some(key) = signing_key(secret) {
        let mut message = Vec::with_capacity(webhook_id.len() + timestamp.len() + body.len() + 2);
        for part in [webhook_id.as_bytes(), b".", timestamp.as_bytes(), b".", body] {
            message.extend_from_slice(part);
        }
        return format!("v1a,{}", STANDARD.encode(key.sign(&message).to_bytes()));
    }
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key = STANDARD.decode(encoded).unwrap_or_else(|_| encoded.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(webhook_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_base64() {
        let a = generate_secret();
        assert!(a.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&a[6..]).unwrap().len(), 24);
        assert_ne!(a, generate_secret());
    }

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // The example of the Standard Webhooks specification.
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn v1a_signs_with_ed25519_and_the_public_key_verifies() {
        use ed25519_dalek::{Signature, Verifier, VerifyingKey};
        let secret = generate(Scheme::V1a);
        assert!(secret.starts_with("whsk_"));
        assert_eq!(Scheme::of(&secret), Scheme::V1a);
        assert_eq!(Scheme::of(&generate(Scheme::V1)), Scheme::V1);
        let public = public_key(&secret).unwrap();
        assert!(public.starts_with("whpk_"));
        assert_eq!(public_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), None);
        let header = sign(&secret, "msg_1", 1614265330, b"{}");
        let signature = STANDARD.decode(header.strip_prefix("v1a,").unwrap()).unwrap();
        let key: [u8; 32] = STANDARD.decode(&public[5..]).unwrap().try_into().unwrap();
        let key = VerifyingKey::from_bytes(&key).unwrap();
        let signature = Signature::from_slice(&signature).unwrap();
        assert!(key.verify(b"msg_1.1614265330.{}", &signature).is_ok());
        assert!(key.verify(b"msg_1.1614265330.{ }", &signature).is_err());
        assert_eq!(
            sign_all(&[&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "msg_1", 1, b"{}").split(' ').count(),
            2
        );
    }
}
