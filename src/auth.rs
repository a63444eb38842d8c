//! JWT verification and minting. Tokens come from the Socket.IO handshake `auth.token`, the
//! `token` query parameter, or `Authorization: Bearer`, for every connection type alike.

use std::time::Duration;

use jsonwebtoken::{decode, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{config::Config, core::presence::Identity, error::AppError};

/// The claims Switchboard reads. Issuers differ in how they name the user: the standard `sub`,
/// or `userId` (real SUP and Mrezhen tokens carry no `sub`), see SPEC §4 and `protocols/`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The user id of tokens without `sub`; some issuers write it as a number.
    #[serde(
        default,
        rename = "userId",
        deserialize_with = "string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_id: Option<String>,
    /// The device the token was issued to (SUP), carried on the identity.
    #[serde(default, rename = "deviceId", skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// SUP's token type (`access`); read by nobody, minted for the SUP shape.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Required; the default only lets a token without it reach the check that says so.
    #[serde(default)]
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

/// Why a token that verified is still refused: it names no user.
pub const NO_USER_ID: &str = "invalid token payload: no user id";

/// `"u1"` or `42` (as `"42"`); anything else is not a user id.
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(serde_json::Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string())),
        Some(_) => Err(serde::de::Error::custom("userId must be a string or an integer")),
    }
}

impl Claims {
    /// The identity these claims name: the user is `sub`, else `userId`; the device is
    /// `deviceId`. Empty strings count as absent; the user and device ids must be subject ids
    /// ([`check_subject`]).
    pub fn identity(self) -> Result<Identity, AppError> {
        let present = |v: Option<String>| v.filter(|s| !s.is_empty());
        let user_id = present(self.sub)
            .or_else(|| present(self.user_id))
            .ok_or_else(|| AppError::Unauthorized(NO_USER_ID.into()))?;
        check_subject(&user_id).map_err(|why| AppError::Unauthorized(format!("token subject {why}")))?;
        let device_id = present(self.device_id);
        if let Some(device) = &device_id {
            check_subject(device).map_err(|why| AppError::Unauthorized(format!("token deviceId {why}")))?;
        }
        // Anonymous session members are users named `session:…` (domain::session); no token
        // may speak as one of them.
        if user_id.starts_with(crate::domain::SESSION_CHAT_PREFIX) {
            return Err(AppError::Unauthorized("token subjects beginning with `session:` are reserved".into()));
        }
        // A NUL cannot be stored on PostgreSQL (the claims are written to the user row); it is
        // refused the same on both databases.
        let texts = [self.username.as_ref(), self.name.as_ref(), self.avatar.as_ref()];
        if texts.into_iter().flatten().any(|t| t.contains('\0')) {
            return Err(AppError::Unauthorized("token claims must not contain NUL characters".into()));
        }
        Ok(Identity {
            user_id: user_id.into(),
            device_id: device_id.map(Into::into),
            username: self.username,
            name: self.name,
            avatar: self.avatar,
            expires_at: expiry(self.exp),
        })
    }
}

/// A device id a client named at connect (Socket.IO `auth.deviceId`): a string that is a
/// subject id ([`check_subject`]).
pub fn device_from_handshake(value: &serde_json::Value) -> Result<String, AppError> {
    let refused = |why: &str| AppError::validation(format!("auth.deviceId {why}"));
    let id = value.as_str().ok_or_else(|| refused("must be a string"))?;
    check_subject(id).map_err(refused)?;
    Ok(id.to_string())
}

/// Longest subject id (user or device), in bytes: what a column and a log line hold.
pub const MAX_SUBJECT_LEN: usize = 128;

/// The one rule for ids that name a principal (a token's user and device, a device a client
/// names at connect): 1 to [`MAX_SUBJECT_LEN`] bytes of printable text, with no whitespace at
/// either end. Refused: control characters (NUL, newlines, escapes), invisible formatting
/// characters (bidirectional overrides and isolates such as U+202E, zero-width spaces and
/// joiners, the BOM), line and paragraph separators, and ids that are only spaces. Such an id
/// would show one user as another in every client that prints it (an RTL override turns
/// `alice\u{202E}nimda` into what reads as `alice` + `admin` reversed), break log lines, or
/// differ from what a person typed only by what nobody can see. Surrounding whitespace is
/// refused rather than trimmed: `" alice"` is another principal to the issuer that signed it,
/// and must not become `alice` here.
pub fn check_subject(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > MAX_SUBJECT_LEN {
        return Err("must be 1 to 128 characters");
    }
    if id.trim() != id {
        return Err("must not begin or end with whitespace");
    }
    if let Some(c) = id.chars().find(|c| !printable(*c)) {
        return Err(if c.is_control() {
            "must not contain control characters (NUL, newlines, escapes)"
        } else {
            "must not contain invisible formatting characters (direction overrides, zero-width characters)"
        });
    }
    Ok(())
}

/// Visible text or an ordinary space: not a control character, not an invisible format
/// character (Unicode category Cf, the ones that matter listed), not a line or paragraph
/// separator, and not a noncharacter.
fn printable(c: char) -> bool {
    if c.is_control() {
        return false;
    }
    !matches!(c,
        '\u{00AD}'                     // soft hyphen
        | '\u{061C}'                   // Arabic letter mark
        | '\u{115F}' | '\u{1160}'       // Hangul fillers
        | '\u{180E}'                   // Mongolian vowel separator
        | '\u{200B}'..='\u{200F}'       // zero-width space, (non-)joiner, LRM, RLM
        | '\u{2028}'..='\u{202E}'       // line / paragraph separator, embeddings, overrides
        | '\u{2060}'..='\u{206F}'       // word joiner, invisible operators, isolates
        | '\u{3164}' | '\u{FFA0}'       // Hangul fillers
        | '\u{FE00}'..='\u{FE0F}'       // variation selectors
        | '\u{FEFF}'                   // BOM / zero-width no-break space
        | '\u{FFF0}'..='\u{FFFB}'       // specials, interlinear annotation
        | '\u{FFFE}' | '\u{FFFF}'
        | '\u{E0000}'..='\u{E007F}'     // tags
    ) && !(('\u{FDD0}'..='\u{FDEF}').contains(&c))
}

/// How long past its `exp` a token is still accepted (clock skew between issuer and server).
pub const LEEWAY_SECS: u64 = 5;

/// When a token whose `exp` is `exp` stops being accepted: `exp` plus the leeway.
fn expiry(exp: u64) -> Option<chrono::DateTime<chrono::Utc>> {
    let until = i64::try_from(exp.saturating_add(LEEWAY_SECS)).ok()?;
    chrono::DateTime::from_timestamp(until, 0)
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
            // The user may be `sub` or `userId`: checked after decoding (`Claims::identity`).
            v.set_required_spec_claims(&["exp"]);
            v.leeway = LEEWAY_SECS;
            if let Some(iss) = &cfg.jwt_issuer {
                // `set_issuer` alone checks `iss` only when a token has one.
                v.set_required_spec_claims(&["exp", "iss"]);
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
                Ok(data) => return data.claims.identity(),
                Err(e) => last = AppError::Unauthorized(describe(e.kind())),
            }
        }
        Err(last)
    }
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token expired".into(),
        ErrorKind::InvalidSignature => "invalid token signature".into(),
        ErrorKind::InvalidIssuer => "token issuer not accepted".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("token lacks a required claim ({claim})"),
        ErrorKind::ImmatureSignature => "token not valid yet".into(),
        ErrorKind::InvalidAlgorithm => "token algorithm not accepted".into(),
        _ => "invalid token".into(),
    }
}

/// The claim layout of a minted token: Switchboard's own, or that of a service whose
/// unchanged clients and tools expect theirs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenShape {
    /// `{ sub, exp, iat, iss?, username?, name?, deviceId? }`.
    #[default]
    Standard,
    /// SUP Messenger's: `{ userId, deviceId?, type: "access", exp, iat }`, no `sub`, no
    /// issuer (unless `JWT_ISSUER` requires one); `--name` adds `username`.
    Sup,
    /// Mrezhen's `generate-token.js`: `{ userId, name, iss, exp, iat }`, no `sub`; the issuer
    /// is `JWT_ISSUER`, else `mrezhen`, and the name defaults to the user id.
    Mrezhen,
}

/// What a minted token says.
#[derive(Clone, Debug, Default)]
pub struct TokenRequest<'a> {
    pub shape: TokenShape,
    pub user_id: &'a str,
    pub name: Option<&'a str>,
    pub device_id: Option<&'a str>,
    pub ttl: Duration,
}

/// Mints an HS256 development token (the `switchboard token` command and the tests).
pub fn mint(
    secret: &str,
    issuer: Option<&str>,
    user_id: &str,
    name: Option<&str>,
    ttl: Duration,
) -> anyhow::Result<String> {
    mint_as(secret, issuer, &TokenRequest { user_id, name, ttl, ..TokenRequest::default() })
}

/// Mints an HS256 development token in the requested shape.
pub fn mint_as(secret: &str, issuer: Option<&str>, req: &TokenRequest<'_>) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let owned = |v: Option<&str>| v.map(str::to_string);
    let mut claims = Claims {
        exp: now + req.ttl.as_secs(),
        iat: Some(now),
        iss: owned(issuer),
        device_id: owned(req.device_id),
        ..Claims::default()
    };
    match req.shape {
        TokenShape::Standard => {
            claims.sub = Some(req.user_id.to_string());
            claims.username = owned(req.name);
            claims.name = owned(req.name);
        }
        TokenShape::Sup => {
            claims.user_id = Some(req.user_id.to_string());
            claims.kind = Some("access".into());
            claims.username = owned(req.name);
        }
        TokenShape::Mrezhen => {
            claims.user_id = Some(req.user_id.to_string());
            claims.name = Some(req.name.unwrap_or(req.user_id).to_string());
            claims.iss = Some(issuer.unwrap_or("mrezhen").to_string());
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "unit-test-secret";

    fn verifier(issuer: Option<&str>) -> Verifier {
        let mut vars = vec![("JWT_SECRET".to_string(), SECRET.to_string())];
        vars.extend(issuer.map(|i| ("JWT_ISSUER".to_string(), i.to_string())));
        Verifier::from_config(&Config::from_vars(vars).expect("config")).expect("verifier")
    }

    /// Signs arbitrary claims, as another service's issuer would.
    fn sign(claims: serde_json::Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).expect("sign")
    }

    fn in_an_hour() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() + 3600
    }

    fn refusal(result: Result<Identity, AppError>) -> String {
        match result {
            Ok(id) => panic!("accepted as {}", id.user_id),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_user_is_sub_else_user_id_and_the_device_is_carried() {
        let v = verifier(None);
        // A real SUP access token: userId, deviceId, type, exp; no sub, no issuer.
        let sup = sign(
            serde_json::json!({ "userId": "u-sup", "deviceId": "phone-1", "type": "access", "exp": in_an_hour() }),
        );
        let id = v.verify(Some(&sup)).expect("SUP token accepted");
        assert_eq!(id.user_id, "u-sup");
        assert_eq!(id.device_id.as_deref(), Some("phone-1"));
        // A real Mrezhen token: userId and name, issuer mrezhen.
        let mrezhen =
            sign(serde_json::json!({ "userId": "u-mz", "name": "Mira", "iss": "mrezhen", "exp": in_an_hour() }));
        let id = v.verify(Some(&mrezhen)).expect("Mrezhen token accepted");
        assert_eq!((id.user_id.as_str(), id.name.as_deref(), id.device_id), ("u-mz", Some("Mira"), None));
        // sub wins over userId when both are there.
        let both = sign(serde_json::json!({ "sub": "by-sub", "userId": "by-user-id", "exp": in_an_hour() }));
        assert_eq!(v.verify(Some(&both)).expect("accepted").user_id, "by-sub");
        // A numeric userId is the same user as its decimal string.
        let numeric = sign(serde_json::json!({ "userId": 42, "exp": in_an_hour() }));
        assert_eq!(v.verify(Some(&numeric)).expect("accepted").user_id, "42");
    }

    #[test]
    fn a_token_without_a_user_id_is_refused_with_the_reason() {
        let v = verifier(None);
        for claims in [
            serde_json::json!({ "exp": in_an_hour(), "deviceId": "d1", "type": "access" }),
            serde_json::json!({ "sub": "", "userId": "", "exp": in_an_hour() }),
            serde_json::json!({ "userId": null, "exp": in_an_hour() }),
        ] {
            assert_eq!(refusal(v.verify(Some(&sign(claims)))), NO_USER_ID);
        }
    }

    #[test]
    fn subjects_must_be_printable_trimmed_and_bounded() {
        let v = verifier(None);
        for good in ["alice", "u-42", "Zoë Ü", "用户", "a b", "x".repeat(128).as_str()] {
            let token = sign(serde_json::json!({ "sub": good, "exp": in_an_hour() }));
            assert_eq!(v.verify(Some(&token)).expect(good).user_id, good);
        }
        for bad in [
            "a\u{0}b",
            "line\nbreak",
            "tab\t",
            "   ",
            " alice",
            "alice ",
            "evil\u{202E}nimda",
            "zero\u{200B}width",
            "iso\u{2066}late",
            "bom\u{FEFF}",
            "sep\u{2028}",
            "esc\u{1B}[31m",
            &"x".repeat(129),
        ] {
            let token = sign(serde_json::json!({ "sub": bad, "exp": in_an_hour() }));
            let refused = refusal(v.verify(Some(&token)));
            assert!(refused.starts_with("token subject"), "{bad:?}: {refused}");
            // The same rule holds for a userId token and for the device a token names.
            let token = sign(serde_json::json!({ "userId": bad, "exp": in_an_hour() }));
            assert!(refusal(v.verify(Some(&token))).starts_with("token subject"), "{bad:?}");
            let token = sign(serde_json::json!({ "sub": "ok", "deviceId": bad, "exp": in_an_hour() }));
            assert!(refusal(v.verify(Some(&token))).starts_with("token deviceId"), "{bad:?}");
            assert!(device_from_handshake(&serde_json::json!(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_identity_expires_with_its_token_plus_the_leeway() {
        let v = verifier(None);
        let now = in_an_hour() - 3600;
        let id = v.verify(Some(&sign(serde_json::json!({ "sub": "u1", "exp": now + 60 })))).expect("valid");
        let at = id.expires_at.expect("expires").timestamp() as u64;
        assert_eq!(at, now + 60 + LEEWAY_SECS);
        assert!(!id.expired());
        // Within the leeway: accepted, and already past its exp by a second.
        let id = v.verify(Some(&sign(serde_json::json!({ "sub": "u1", "exp": now - 1 })))).expect("leeway");
        assert!(!id.expired());
        let gone = Identity { expires_at: Some(chrono::Utc::now() - chrono::Duration::seconds(1)), ..id };
        assert!(gone.expired());
    }

    #[test]
    fn exp_stays_required_and_the_issuer_is_checked_when_configured() {
        let v = verifier(None);
        let no_exp = sign(serde_json::json!({ "userId": "u1" }));
        assert_eq!(refusal(v.verify(Some(&no_exp))), "token lacks a required claim (exp)");
        let expired = sign(serde_json::json!({ "userId": "u1", "exp": 1_000_000 }));
        assert_eq!(refusal(v.verify(Some(&expired))), "token expired");

        let strict = verifier(Some("mrezhen"));
        let mrezhen =
            sign(serde_json::json!({ "userId": "u-mz", "name": "Mira", "iss": "mrezhen", "exp": in_an_hour() }));
        assert_eq!(strict.verify(Some(&mrezhen)).expect("right issuer").user_id, "u-mz");
        let sup = sign(serde_json::json!({ "userId": "u-sup", "type": "access", "exp": in_an_hour() }));
        assert_eq!(refusal(strict.verify(Some(&sup))), "token lacks a required claim (iss)");
        let other = sign(serde_json::json!({ "userId": "u1", "iss": "elsewhere", "exp": in_an_hour() }));
        assert_eq!(refusal(strict.verify(Some(&other))), "token issuer not accepted");
    }

    #[test]
    fn minted_shapes_carry_the_claims_of_their_service() {
        let ttl = Duration::from_secs(600);
        let decode_raw = |token: &str| -> serde_json::Value {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.set_required_spec_claims(&["exp"]);
            decode::<serde_json::Value>(token, &DecodingKey::from_secret(SECRET.as_bytes()), &validation)
                .expect("decodes")
                .claims
        };
        let req = |shape| TokenRequest { shape, user_id: "u1", name: Some("Ann"), device_id: Some("d1"), ttl };

        let sup = decode_raw(&mint_as(SECRET, None, &req(TokenShape::Sup)).expect("mint"));
        assert_eq!(
            (sup["userId"].as_str(), sup["deviceId"].as_str(), sup["type"].as_str()),
            (Some("u1"), Some("d1"), Some("access"))
        );
        assert!(sup.get("sub").is_none() && sup.get("iss").is_none());

        let mrezhen = decode_raw(&mint_as(SECRET, None, &req(TokenShape::Mrezhen)).expect("mint"));
        assert_eq!(
            (mrezhen["userId"].as_str(), mrezhen["name"].as_str(), mrezhen["iss"].as_str()),
            (Some("u1"), Some("Ann"), Some("mrezhen"))
        );
        assert!(mrezhen.get("sub").is_none());

        let standard = decode_raw(&mint_as(SECRET, Some("me"), &req(TokenShape::Standard)).expect("mint"));
        assert_eq!((standard["sub"].as_str(), standard["iss"].as_str()), (Some("u1"), Some("me")));

        // Each shape verifies to the same user and device.
        let v = verifier(None);
        for shape in [TokenShape::Standard, TokenShape::Sup, TokenShape::Mrezhen] {
            let id = v.verify(Some(&mint_as(SECRET, None, &req(shape)).expect("mint"))).expect("accepted");
            assert_eq!((id.user_id.as_str(), id.device_id.as_deref()), ("u1", Some("d1")), "{shape:?}");
        }
    }
}
