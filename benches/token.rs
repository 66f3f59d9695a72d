//! Criterion micro benchmarks of the token pipeline (see `benches/README.md`).
//!
//! Run with `cargo bench -p benches --bench token`; one group, e.g. `-- verify_rsa1024`.
//!
//! Keys are generated fresh at start-up (`gateway_tooling::keygen`), tokens are minted like pyos mints
//! them (`gateway_tooling::mint`), and every measured call is first checked to succeed (or, for the
//! negative cache, to be refused) so that no row times an error path by accident.
//!
//! Groups, each named by key size:
//! - `verify_rsa*`: `jws::verify` beside raw aws-lc-rs `ParsedPublicKey::verify_sig` on the
//!   same signing input, signature and key;
//! - `decrypt_rsa*`: `PayloadKey::decrypt` per mode, beside the `rsa` crate (1024) and
//!   aws-lc-rs's safe decrypting keys (2048; they refuse 1024-bit keys);
//! - `cold_check_*`: `token::check`, the whole uncached pipeline;
//! - `cache_hit_rsa*`: `Authenticator::authenticate` on a cached token, and `digest` alone;
//! - `negative_hit_rsa*`: `Authenticator::authenticate` on an already-refused token.

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rsa::{
    OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, Pkcs1PrivateDecryptingKey,
    PrivateDecryptingKey,
};
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters};
use base64::Engine as _;
use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use gateway::token::cache::CacheConfig;
use gateway::token::target::DEFAULT_DNS_SUFFIX;
use gateway::token::{
    self, AuthConfig, AuthStats, Authenticator, Keys, PayloadKey, PayloadPadding, Refusal,
    SigningKey, TargetPolicy, jws,
};
use gateway_tooling::keygen::{self, GeneratedPair, PAIRS};
use gateway_tooling::mint::{self, MintMode, Minter};
use rsa::pkcs1::EncodeRsaPublicKey as _;
use rsa::pkcs8::EncodePrivateKey as _;
use tokio::runtime::Runtime;

/// A pod IP, what pyos encrypts by default.
const TARGET: &str = "10.244.1.23";

/// The `now` every token is minted and checked at: fixed, so no token expires mid-run.
fn now() -> i64 {
    static NOW: OnceLock<i64> = OnceLock::new();
    *NOW.get_or_init(|| {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        i64::try_from(secs).expect("clock before 2262")
    })
}

/// Every key pair the benchmarks use, generated once.
struct KeySet {
    signing_1024: GeneratedPair,
    signing_2048: GeneratedPair,
    payload_1024: GeneratedPair,
    payload_2048: GeneratedPair,
    payload_4096: GeneratedPair,
}

fn key_set() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let [payload, signing, _] = PAIRS;
        let pair = |spec, bits| keygen::generate_pair(spec, bits).expect("key generation");
        KeySet {
            signing_1024: pair(signing, 1024),
            signing_2048: pair(signing, 2048),
            payload_1024: pair(payload, 1024),
            payload_2048: pair(payload, 2048),
            payload_4096: pair(payload, 4096),
        }
    })
}

/// A signing pair and a payload pair, as the gateway would be configured with them.
struct Fixture {
    signing: &'static GeneratedPair,
    payload: &'static GeneratedPair,
}

impl Fixture {
    /// Both pairs of `bits` bits (4096: payload only, signed with the 2048-bit key).
    fn bits(bits: usize) -> Self {
        let k = key_set();
        match bits {
            1024 => Fixture {
                signing: &k.signing_1024,
                payload: &k.payload_1024,
            },
            2048 => Fixture {
                signing: &k.signing_2048,
                payload: &k.payload_2048,
            },
            4096 => Fixture {
                signing: &k.signing_2048,
                payload: &k.payload_4096,
            },
            _ => unreachable!("no {bits}-bit fixture"),
        }
    }

    /// abcdesktop's shipped defaults: 2048-bit signing key, 1024-bit payload key.
    fn shipped_defaults() -> Self {
        let k = key_set();
        Fixture {
            signing: &k.signing_2048,
            payload: &k.payload_1024,
        }
    }

    /// A pyos-shaped token for [`TARGET`], minted at [`now`].
    fn token(&self, mode: MintMode) -> String {
        let payload_pem: &str = match mode {
            MintMode::Rsapublickey => &self.payload.private_pem,
            _ => &self.payload.public_pem,
        };
        Minter::from_pem(&self.signing.private_pem, payload_pem, mode)
            .expect("minter")
            .mint(TARGET, now(), mint::DEFAULT_LIFETIME_SECS)
            .expect("mint")
    }

    fn signing_key(&self) -> SigningKey {
        SigningKey::from_pem(&self.signing.public_pem).expect("signing key")
    }

    /// The payload key as the gateway loads it for `mode`.
    fn payload_key(&self, mode: MintMode) -> PayloadKey {
        let (pem, padding): (&str, _) = match mode {
            MintMode::Pkcs1 => (&self.payload.private_pem, PayloadPadding::Pkcs1),
            MintMode::OaepSha1 => (&self.payload.private_pem, PayloadPadding::OaepSha1),
            MintMode::OaepSha256 => (&self.payload.private_pem, PayloadPadding::OaepSha256),
            MintMode::OaepSha512 => (&self.payload.private_pem, PayloadPadding::OaepSha512),
            MintMode::Rsapublickey => (&self.payload.public_pem, PayloadPadding::Pkcs1),
        };
        PayloadKey::from_pem(pem, padding).expect("payload key")
    }

    fn keys(&self, mode: MintMode) -> Keys {
        Keys {
            signing: vec![self.signing_key()],
            payload: Some(self.payload_key(mode)),
        }
    }

    /// The `hash` claim of a `mode` token.
    fn hash(&self, mode: MintMode) -> String {
        jws::verify(&self.token(mode), &[self.signing_key()], now(), 0)
            .expect("fresh token verifies")
            .hash
    }
}

/// The production target policy: no loopback, names only under `.svc.cluster.local`.
fn auth_config() -> AuthConfig {
    AuthConfig {
        target: TargetPolicy {
            allow_loopback: false,
            dns_suffixes: vec![DEFAULT_DNS_SUFFIX.to_owned()],
        },
        cache: CacheConfig {
            // The default 10 s would let refusals expire during a long measurement, turning
            // some negative hits into full verifications.
            negative_ttl: Duration::from_secs(600),
            ..CacheConfig::default()
        },
        ..AuthConfig::default()
    }
}

fn current_thread_runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g
}

// === verify ===

fn bench_verify(c: &mut Criterion) {
    for (bits, params) in [
        (
            1024,
            &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
        ),
        (2048, &signature::RSA_PKCS1_2048_8192_SHA256),
    ] {
        let fx = Fixture::bits(bits);
        let token = fx.token(MintMode::Pkcs1);
        let keys = [fx.signing_key()];
        jws::verify(&token, &keys, now(), 0).expect("token verifies");

        let segments = jws::split(&token).expect("three segments");
        let message = segments.signing_input.as_bytes();
        let sig = jws::decode_segment(segments.signature).expect("base64url signature");
        let der = mint::public_key_from_pem(&fx.signing.public_pem)
            .expect("public key")
            .to_pkcs1_der()
            .expect("PKCS#1 DER");
        let raw =
            ParsedPublicKey::new(params as &RsaParameters, der.as_bytes()).expect("aws-lc-rs key");
        raw.verify_sig(message, &sig).expect("raw verify");

        let mut g = group(c, &format!("verify_rsa{bits}"));
        g.bench_function("gateway_jws_verify", |b| {
            b.iter(|| jws::verify(black_box(&token), &keys, now(), 0))
        });
        g.bench_function("aws_lc_rs_verify_sig", |b| {
            b.iter(|| raw.verify_sig(black_box(message), black_box(&sig)))
        });
        g.finish();
    }
}

// === decrypt ===

fn ciphertext(hash: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(hash)
        .expect("base64 hash")
}

/// Benches `PayloadKey::decrypt` of a `mode` token's hash, after checking it yields [`TARGET`].
fn bench_gateway_decrypt(g: &mut BenchmarkGroup<'_, WallTime>, fx: &Fixture, mode: MintMode) {
    let key = fx.payload_key(mode);
    let hash = fx.hash(mode);
    assert_eq!(key.decrypt(&hash).expect("decrypts"), TARGET.as_bytes());
    let name = match mode {
        MintMode::Pkcs1 => "gateway_pkcs1",
        MintMode::OaepSha1 => "gateway_oaep_sha1",
        MintMode::OaepSha256 => "gateway_oaep_sha256",
        MintMode::OaepSha512 => "gateway_oaep_sha512",
        MintMode::Rsapublickey => "gateway_rsapublickey",
    };
    g.bench_function(name, |b| b.iter(|| key.decrypt(black_box(&hash))));
}

fn aws_lc_rs_decrypting_key(fx: &Fixture) -> PrivateDecryptingKey {
    let pkcs8 = mint::private_key_from_pem(&fx.payload.private_pem)
        .expect("private key")
        .to_pkcs8_der()
        .expect("PKCS#8 DER");
    PrivateDecryptingKey::from_pkcs8(pkcs8.as_bytes()).expect("aws-lc-rs decrypting key")
}

fn bench_decrypt(c: &mut Criterion) {
    let modes = [
        MintMode::Pkcs1,
        MintMode::OaepSha256,
        MintMode::Rsapublickey,
    ];

    let fx = Fixture::bits(1024);
    let mut g = group(c, "decrypt_rsa1024");
    for mode in modes {
        bench_gateway_decrypt(&mut g, &fx, mode);
    }
    let rsa_key = mint::private_key_from_pem(&fx.payload.private_pem).expect("private key");
    let ct = ciphertext(&fx.hash(MintMode::Pkcs1));
    let pt = rsa_key
        .decrypt(rsa::Pkcs1v15Encrypt, &ct)
        .expect("decrypts");
    assert_eq!(pt, TARGET.as_bytes());
    g.bench_function("rsa_crate_pkcs1", |b| {
        b.iter(|| rsa_key.decrypt(rsa::Pkcs1v15Encrypt, black_box(&ct)))
    });
    g.finish();

    let fx = Fixture::bits(2048);
    let mut g = group(c, "decrypt_rsa2048");
    for mode in modes {
        bench_gateway_decrypt(&mut g, &fx, mode);
    }
    let pkcs1 = Pkcs1PrivateDecryptingKey::new(aws_lc_rs_decrypting_key(&fx)).expect("pkcs1 key");
    let ct = ciphertext(&fx.hash(MintMode::Pkcs1));
    let mut out = vec![0; pkcs1.min_output_size()];
    assert_eq!(
        pkcs1.decrypt(&ct, &mut out).expect("decrypts"),
        TARGET.as_bytes()
    );
    g.bench_function("aws_lc_rs_pkcs1", |b| {
        b.iter(|| pkcs1.decrypt(black_box(&ct), &mut out).map(|p| p.len()))
    });
    let oaep = OaepPrivateDecryptingKey::new(aws_lc_rs_decrypting_key(&fx)).expect("oaep key");
    let ct = ciphertext(&fx.hash(MintMode::OaepSha256));
    let mut out = vec![0; oaep.min_output_size()];
    let pt = oaep
        .decrypt(&OAEP_SHA256_MGF1SHA256, &ct, &mut out, None)
        .expect("decrypts");
    assert_eq!(pt, TARGET.as_bytes());
    g.bench_function("aws_lc_rs_oaep_sha256", |b| {
        b.iter(|| {
            oaep.decrypt(&OAEP_SHA256_MGF1SHA256, black_box(&ct), &mut out, None)
                .map(|p| p.len())
        })
    });
    g.finish();

    let fx = Fixture::bits(4096);
    let mut g = group(c, "decrypt_rsa4096");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    bench_gateway_decrypt(&mut g, &fx, MintMode::Pkcs1);
    g.finish();
}

// === cold path ===

fn bench_cold_check(c: &mut Criterion) {
    let config = auth_config();
    for (name, fx) in [
        ("cold_check_rsa1024", Fixture::bits(1024)),
        ("cold_check_rsa2048", Fixture::bits(2048)),
        (
            "cold_check_signing2048_payload1024",
            Fixture::shipped_defaults(),
        ),
    ] {
        let token = fx.token(MintMode::Pkcs1);
        let keys = fx.keys(MintMode::Pkcs1);
        let stats = AuthStats::default();
        let checked = token::check(&token, &keys, &config, now(), &stats).expect("token passes");
        assert_eq!(checked.target.to_string(), TARGET);

        let mut g = group(c, name);
        g.bench_function("check_pkcs1", |b| {
            b.iter(|| token::check(black_box(&token), &keys, &config, now(), &stats))
        });
        g.finish();
    }
}

// === caches ===

fn bench_cache_hit(c: &mut Criterion) {
    let rt = current_thread_runtime();
    for bits in [1024, 2048] {
        let fx = Fixture::bits(bits);
        let token = fx.token(MintMode::Pkcs1);
        let auth = Authenticator::new(auth_config(), fx.keys(MintMode::Pkcs1));
        let target = rt
            .block_on(auth.authenticate(&token, now()))
            .expect("token passes");
        assert_eq!(target.to_string(), TARGET);

        let mut g = group(c, &format!("cache_hit_rsa{bits}"));
        g.bench_function("digest", |b| {
            b.iter(|| token::digest(black_box(token.as_bytes())))
        });
        let (auth, token) = (&auth, token.as_str());
        // One `block_on` per batch of iterations: the cost of the lookup itself.
        g.bench_function("authenticate_to_async", |b| {
            b.to_async(&rt)
                .iter(|| auth.authenticate(black_box(token), now()))
        });
        // One `block_on` per call: adds entering the runtime, for comparison.
        g.bench_function("authenticate_block_on", |b| {
            b.iter(|| rt.block_on(auth.authenticate(black_box(token), now())))
        });
        g.finish();

        let stats = auth.stats();
        assert_eq!(
            AuthStats::get(&stats.verifications),
            1,
            "every call but one hit"
        );
        assert_eq!(
            AuthStats::get(&stats.decryptions),
            1,
            "every call but one hit"
        );
    }
}

/// `token` with one base64url character of its signature changed.
fn with_bad_signature(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let i = bytes.len() - 20;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII")
}

fn bench_negative_hit(c: &mut Criterion) {
    let rt = current_thread_runtime();
    for bits in [1024, 2048] {
        let fx = Fixture::bits(bits);
        let bad = with_bad_signature(&fx.token(MintMode::Pkcs1));
        let auth = Authenticator::new(auth_config(), fx.keys(MintMode::Pkcs1));
        let refusal = rt.block_on(auth.authenticate(&bad, now()));
        assert_eq!(refusal, Err(Refusal::BadSignature));

        let mut g = group(c, &format!("negative_hit_rsa{bits}"));
        let (auth, bad) = (&auth, bad.as_str());
        g.bench_function("authenticate_to_async", |b| {
            b.to_async(&rt)
                .iter(|| auth.authenticate(black_box(bad), now()))
        });
        g.finish();

        let stats = auth.stats();
        assert_eq!(
            AuthStats::get(&stats.verifications),
            1,
            "refusal was remembered"
        );
    }
}

criterion_group! {
    name = benches;
    // Plots take longer to draw than most of these benchmarks take to run.
    config = Criterion::default().without_plots();
    targets = bench_verify, bench_decrypt, bench_cold_check, bench_cache_hit, bench_negative_hit
}
criterion_main!(benches);
