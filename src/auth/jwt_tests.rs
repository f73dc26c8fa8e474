//! Unit tests of the key ring and the verified-token cache.

use super::*;

#[test]
fn a_token_verifies_only_with_its_own_key() {
    let keys = JwtKeys::from_secret(&[7; 32], Duration::from_secs(60));
    let (t, _) = keys
        .issue(UserId(Uuid::nil()), Role::Admin, Uuid::nil())
        .unwrap();
    assert_eq!(keys.verify(&t).unwrap().role, Role::Admin);
    let other = JwtKeys::from_secret(&[8; 32], Duration::from_secs(60));
    assert!(other.verify(&t).is_none());
}

#[test]
fn a_token_names_its_key_and_an_unknown_key_is_told_apart() {
    let keys = JwtKeys::from_secret(&[7; 32], Duration::from_secs(60));
    let (t, _) = keys
        .issue(UserId(Uuid::nil()), Role::User, Uuid::nil())
        .unwrap();
    let kid = decode_header(&t).unwrap().kid.unwrap();
    assert_eq!(kid, keys.signing_kid());
    let other = JwtKeys::from_secret(&[8; 32], Duration::from_secs(60));
    assert!(matches!(other.check(&t), Verified::UnknownKey));
    assert!(matches!(other.check("not.a.token"), Verified::Invalid));
}

#[test]
fn a_retired_key_verifies_until_its_time_then_not() {
    let key = |kid: &str, secret: u8, until: Option<DateTime<Utc>>| Key {
        kid: kid.into(),
        secret: vec![secret; 32],
        verify_until: until,
    };
    let ttl = Duration::from_secs(60);
    let old = JwtKeys::new(vec![key("old", 1, None)], [0; 32], ttl, None).unwrap();
    let (t, _) = old
        .issue(UserId(Uuid::nil()), Role::User, Uuid::nil())
        .unwrap();
    let later = Utc::now() + chrono::Duration::seconds(30);
    let ring = JwtKeys::new(
        vec![key("new", 2, None), key("old", 1, Some(later))],
        [0; 32],
        ttl,
        None,
    )
    .unwrap();
    assert!(ring.verify(&t).is_some());
    assert_eq!(ring.verified.len(), 1);
    assert_eq!(ring.signing_kid(), "new");
    let past = Utc::now() - chrono::Duration::seconds(1);
    ring.replace(vec![key("new", 2, None), key("old", 1, Some(past))])
        .unwrap();
    assert_eq!(
        ring.verified.len(),
        0,
        "a key whose retirement changed has its tokens checked again"
    );
    assert!(matches!(ring.check(&t), Verified::Invalid));
}

#[test]
fn a_reload_keeps_the_tokens_of_keys_it_still_holds_and_odd_key_ids_cause_none() {
    let key = |kid: &str, secret: u8| Key {
        kid: kid.into(),
        secret: vec![secret; 32],
        verify_until: None,
    };
    let (a, b) = ("00000000000000aa", "00000000000000bb");
    let ttl = Duration::from_secs(60);
    let ring = JwtKeys::new(vec![key(a, 1)], [0; 32], ttl, None).unwrap();
    let (t, _) = ring
        .issue(UserId(Uuid::nil()), Role::User, Uuid::nil())
        .unwrap();
    assert!(ring.verify(&t).is_some());
    ring.replace(vec![key(a, 1)]).unwrap();
    assert_eq!(ring.verified.len(), 1, "the same keys: nothing forgotten");
    ring.replace(vec![key(b, 2), key(a, 1)]).unwrap();
    assert_eq!(
        ring.verified.len(),
        1,
        "a new key: the old one's tokens stay"
    );
    assert_eq!(ring.signing_kid(), b);
    ring.replace(vec![key(b, 2)]).unwrap();
    assert_eq!(ring.verified.len(), 0, "a key gone: its tokens go");
    // A token naming a key id of another form is invalid at once: no reload for it.
    let mut header = Header::new(Algorithm::HS256);
    for (kid, unknown) in [("no-such-key", false), ("00000000000000cc", true)] {
        header.kid = Some(kid.into());
        let claims = Claims {
            sub: Uuid::nil(),
            role: "USER".into(),
            sid: Uuid::nil(),
            iss: ISSUER.into(),
            iat: 0,
            exp: i64::MAX / 2,
        };
        let forged = encode(&header, &claims, &EncodingKey::from_secret(&[9; 32])).unwrap();
        assert_eq!(
            matches!(ring.check(&forged), Verified::UnknownKey),
            unknown,
            "{kid}"
        );
    }
}

#[test]
fn a_verified_token_is_remembered_only_until_its_key_retires() {
    let soon = Utc::now() + chrono::Duration::milliseconds(600);
    let key = Key {
        kid: "k".into(),
        secret: vec![3; 32],
        verify_until: Some(soon),
    };
    let keys = JwtKeys::new(vec![key], [0; 32], Duration::from_secs(60), None).unwrap();
    let (t, _) = keys
        .issue(UserId(Uuid::nil()), Role::User, Uuid::nil())
        .unwrap();
    assert!(keys.verify(&t).is_some());
    assert_eq!(keys.verified.len(), 1, "remembered");
    assert!(keys.verify(&t).is_some(), "a second check, from the cache");
    let mut forged = t.clone();
    forged.push('x');
    assert!(
        keys.verify(&forged).is_none(),
        "only the very token is remembered"
    );
    assert_eq!(
        keys.verified.len(),
        1,
        "a token that fails is not remembered"
    );
    std::thread::sleep(Duration::from_millis(700));
    assert!(matches!(keys.check(&t), Verified::Invalid));
}
