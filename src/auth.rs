//! JWT verification and minting. Tokens come from the Socket.IO handshake `auth.token`, the
//! `token` query parameter, or `Authorization: Bearer`, for every connection type alike.

use std::time::Duration;

use jsonwebtoken::{decode, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{config::Config, core::presence::Identity, error::AppError};

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
}

/// Verifies tokens with the configured key(s).
pub struct Verifier {
    keys: Vec<(DecodingKey, Validation)>,
}

impl Verifier {
    pub fn from_config(cfg: &Config) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        let validation = |alg: Algorithm| {
            let mut v = Validation::new(alg);
            v.set_required_spec_claims(&["exp", "sub"]);
            v.leeway = 5;
            if let Some(iss) = &cfg.jwt_issuer {
                v.set_issuer(&[iss]);
            }
            v
        };
        if let Some(secret) = &cfg.jwt_secret {
            keys.push((DecodingKey::from_secret(secret.as_bytes()), validation(Algorithm::HS256)));
        }
        if let Some(pem) = &cfg.jwt_public_key {
            let pem = pem.as_bytes();
            if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
                keys.push((k, validation(Algorithm::RS256)));
            } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
                keys.push((k, validation(Algorithm::ES256)));
            } else {
                anyhow::bail!("JWT_PUBLIC_KEY is neither an RSA nor an EC public key in PEM form");
            }
        }
        Ok(Self { keys })
    }

    /// Checks a token and returns who it names, or an `UNAUTHORIZED` error saying why.
    pub fn verify(&self, token: Option<&str>) -> Result<Identity, AppError> {
        let token = token.map(str::trim).filter(|t| !t.is_empty()).ok_or_else(|| {
            AppError::Unauthorized("authentication token missing (auth.token, ?token= or Authorization: Bearer)".into())
        })?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| AppError::Unauthorized("malformed token".into()))?;
        let mut last = AppError::Unauthorized(format!("token algorithm {:?} is not accepted", header.alg));
        for (key, validation) in &self.keys {
            if !validation.algorithms.contains(&header.alg) {
                continue;
            }
            match decode::<Claims>(token, key, validation) {
                Ok(data) => {
                    let c = data.claims;
                    if c.sub.is_empty() || c.sub.len() > 128 {
                        return Err(AppError::Unauthorized("token subject must be 1 to 128 characters".into()));
                    }
                    return Ok(Identity { user_id: c.sub, username: c.username, name: c.name, avatar: c.avatar });
                }
                Err(e) => last = AppError::Unauthorized(describe(e.kind()).into()),
            }
        }
        Err(last)
    }
}

fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::InvalidSignature => "invalid token signature",
        ErrorKind::InvalidIssuer => "token issuer not accepted",
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim (sub, exp)",
        ErrorKind::ImmatureSignature => "token not valid yet",
        ErrorKind::InvalidAlgorithm => "token algorithm not accepted",
        _ => "invalid token",
    }
}

/// Mints an HS256 development token (the `switchboard token` command and the tests).
pub fn mint(
    secret: &str,
    issuer: Option<&str>,
    user_id: &str,
    name: Option<&str>,
    ttl: Duration,
) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let claims = Claims {
        sub: user_id.to_string(),
        exp: now + ttl.as_secs(),
        iat: Some(now),
        iss: issuer.map(str::to_string),
        username: name.map(str::to_string),
        name: name.map(str::to_string),
        avatar: None,
    };
    Ok(encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))?)
}

/// The token of an HTTP request: `Authorization: Bearer …`, else the `token` query parameter.
pub fn token_from_request(headers: &http::HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        if let Some(rest) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
            return Some(rest.trim().to_string());
        }
    }
    query.and_then(|q| form_urlencoded::parse(q.as_bytes()).find_map(|(k, v)| (k == "token").then(|| v.into_owned())))
}
