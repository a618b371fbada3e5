//! JWK Set parsing into verification keys, and key selection.
//!
//! INTERFACE STUB: to be implemented.

/// Signature algorithms Portcullis knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    HS256,
    HS384,
    HS512,
    None,
}

impl Algorithm {
    /// Every algorithm, in spec order (`none` last).
    pub const ALL: [Algorithm; 13] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::None,
    ];

    /// Parses a JOSE `alg` value (case-sensitive, `none` lower case).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.iter().copied().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::None => "none",
        }
    }
}

/// A parsed JWK Set: the usable verification keys.
#[derive(Debug, Default)]
pub struct KeySet {}

impl KeySet {
    /// Parses a JWK Set document. Keys of unknown type, malformed keys and RSA keys
    /// under 2048 bits are skipped; each skip is described in the returned warnings.
    /// Only a document that is not a JWK Set at all is an error.
    pub fn from_json(_bytes: &[u8]) -> Result<(KeySet, Vec<String>), String> {
        Ok((KeySet {}, Vec::new()))
    }

    pub fn len(&self) -> usize {
        0
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a key with this `kid` is in the set.
    pub fn has_kid(&self, _kid: &str) -> bool {
        false
    }
}
