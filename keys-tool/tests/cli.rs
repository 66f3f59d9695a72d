//! keys-tool as a user runs it: the real binary in a temporary directory.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use gateway_tooling::keygen::PAIRS;

fn keys_tool(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keys-tool"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn keys_tool_stdin(args: &[&str], dir: &Path, stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_keys-tool"))
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn gen_keys(dir: &Path, bits: &str) {
    let out = keys_tool(&["gen", "--out", "keys", "--bits", bits], dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

const SIGNING_PRIVATE: &str = "keys/abcdesktop_jwt_desktop_signing_private_key.pem";
const SIGNING_PUBLIC: &str = "keys/abcdesktop_jwt_desktop_signing_public_key.pem";
const PAYLOAD_PRIVATE: &str = "keys/abcdesktop_jwt_desktop_payload_private_key.pem";
const PAYLOAD_PUBLIC: &str = "keys/abcdesktop_jwt_desktop_payload_public_key.pem";

fn mint_target(dir: &Path, target: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "mint",
        "--signing-key",
        SIGNING_PRIVATE,
        "--payload-key",
        PAYLOAD_PUBLIC,
        "--target",
        target,
    ];
    args.extend_from_slice(extra);
    keys_tool(&args, dir)
}

fn inspect_with(dir: &Path, token: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "inspect",
        token,
        "--signing-key",
        SIGNING_PUBLIC,
        "--payload-key",
        PAYLOAD_PRIVATE,
    ];
    args.extend_from_slice(extra);
    keys_tool(&args, dir)
}

fn mint(dir: &Path, extra: &[&str]) -> String {
    let out = mint_target(dir, "10.244.1.23", extra);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

fn inspect(dir: &Path, token: &str) -> Output {
    inspect_with(dir, token, &[])
}

#[test]
fn gen_writes_the_three_pairs_with_abcdesktop_names_formats_and_modes() {
    let dir = tempfile::tempdir().unwrap();
    gen_keys(dir.path(), "1024");
    let keys = dir.path().join("keys");
    for pair in PAIRS {
        let private = keys.join(pair.private_file);
        let public = keys.join(pair.public_file);
        assert_eq!(
            std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&public).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let private_pem = std::fs::read_to_string(&private).unwrap();
        assert!(private_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        // openssl reads every file, and the public half matches the private key.
        let modulus = openssl(
            dir.path(),
            &[
                "rsa",
                "-in",
                private.to_str().unwrap(),
                "-noout",
                "-modulus",
            ],
        );
        let public_pem = std::fs::read_to_string(&public).unwrap();
        let public_modulus = if pair.private_file.contains("payload") {
            assert!(public_pem.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
            openssl(
                dir.path(),
                &[
                    "rsa",
                    "-RSAPublicKey_in",
                    "-in",
                    public.to_str().unwrap(),
                    "-noout",
                    "-modulus",
                ],
            )
        } else {
            assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
            openssl(
                dir.path(),
                &[
                    "rsa",
                    "-pubin",
                    "-in",
                    public.to_str().unwrap(),
                    "-noout",
                    "-modulus",
                ],
            )
        };
        assert_eq!(modulus, public_modulus, "{}", pair.public_file);
        let text = openssl(
            dir.path(),
            &["rsa", "-in", private.to_str().unwrap(), "-noout", "-text"],
        );
        assert!(text.contains("Private-Key: (1024 bit"), "{text}");
    }
    assert_eq!(std::fs::read_dir(&keys).unwrap().count(), 6);
}

#[test]
fn gen_refuses_to_overwrite_keys_without_force() {
    let dir = tempfile::tempdir().unwrap();
    gen_keys(dir.path(), "1024");
    let before = std::fs::read_to_string(dir.path().join(SIGNING_PRIVATE)).unwrap();
    let out = keys_tool(&["gen", "--out", "keys", "--bits", "1024"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join(SIGNING_PRIVATE)).unwrap(),
        before
    );
    let out = keys_tool(
        &["gen", "--out", "keys", "--bits", "1024", "--force"],
        dir.path(),
    );
    assert!(out.status.success());
    assert_ne!(
        std::fs::read_to_string(dir.path().join(SIGNING_PRIVATE)).unwrap(),
        before
    );
}

#[test]
fn gen_default_is_2048_bits_and_bad_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = keys_tool(&["gen", "--out", "keys"], dir.path());
    assert!(out.status.success());
    let t = openssl(
        dir.path(),
        &["rsa", "-in", SIGNING_PRIVATE, "-noout", "-text"],
    );
    assert!(t.contains("Private-Key: (2048 bit"), "{t}");
    let out = keys_tool(&["gen", "--out", "other", "--bits", "512"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.path().join("other").exists());
}

#[test]
fn gen_kubernetes_prints_the_three_secrets_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let out = keys_tool(
        &[
            "gen",
            "--out",
            "-",
            "--bits",
            "1024",
            "--namespace",
            "desk-ns",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "--out - writes no file"
    );
    let yaml = text(&out.stdout);
    let docs: Vec<&str> = yaml.split("---\n").filter(|d| !d.is_empty()).collect();
    assert_eq!(docs.len(), 3);
    for (doc, pair) in docs.iter().zip(PAIRS) {
        assert!(doc.contains("kind: Secret\n"));
        assert!(doc.contains(&format!("  name: {}\n", pair.secret_name)));
        assert!(doc.contains("  namespace: desk-ns\n"));
        assert!(doc.contains(&format!("    abcdesktop/role: {}\n", pair.role)));
        for file in [pair.private_file, pair.public_file] {
            let line = doc
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{file}: ")))
                .unwrap();
            let value = line.split_once(": ").unwrap().1;
            let pem = base64::engine::general_purpose::STANDARD
                .decode(value)
                .unwrap();
            assert!(text(&pem).starts_with("-----BEGIN "), "{file}");
        }
    }
    let names: Vec<_> = PAIRS.iter().map(|p| p.secret_name).collect();
    assert_eq!(
        names,
        [
            "abcdesktopjwtdesktoppayload",
            "abcdesktopjwtdesktopsigning",
            "abcdesktopjwtusersigning"
        ]
    );
    let bad = keys_tool(&["gen", "--out", "-", "--namespace", "Bad NS"], dir.path());
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn gen_kubernetes_with_a_directory_writes_keys_and_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let out = keys_tool(
        &["gen", "--out", "keys", "--bits", "1024", "--kubernetes"],
        dir.path(),
    );
    assert!(out.status.success());
    let yaml =
        std::fs::read_to_string(dir.path().join("keys/abcdesktop-jwt-secrets.yaml")).unwrap();
    let signing = std::fs::read_to_string(dir.path().join(SIGNING_PUBLIC)).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(signing);
    assert!(
        yaml.contains(&encoded),
        "the Secret holds the very key written beside it"
    );
}

#[test]
fn minted_token_is_accepted_by_inspect_and_by_pyjwt() {
    let dir = tempfile::tempdir().unwrap();
    gen_keys(dir.path(), "1024");
    let token = mint(dir.path(), &[]);
    let out = inspect(dir.path(), &token);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("verdict      accepted"), "{report}");
    assert!(report.contains("target       10.244.1.23"), "{report}");
    assert!(
        report.contains(r#"header       {"typ":"JWT","alg":"RS256"}"#),
        "{report}"
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../gateway-bin/tests/interop/pyos.py"
    );
    let py = Command::new("python3")
        .args([
            script,
            "check",
            &token,
            SIGNING_PUBLIC,
            PAYLOAD_PRIVATE,
            "pkcs1",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", text(&py.stderr));
    assert_eq!(text(&py.stdout).trim(), "10.244.1.23");
}

#[test]
fn inspect_names_the_refusal_reason_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    gen_keys(dir.path(), "1024");
    let expired = mint(dir.path(), &["--exp", "-10"]);
    let out = inspect(dir.path(), &expired);
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    assert!(report.contains("verdict      refused: expired"), "{report}");
    assert!(report.contains("ago)"), "{report}");

    let other = tempfile::tempdir().unwrap();
    gen_keys(other.path(), "1024");
    let foreign = mint(other.path(), &[]);
    let report = text(&inspect(dir.path(), &foreign).stdout);
    assert!(report.contains("NOT verified"), "{report}");
    assert!(report.contains("refused: bad_signature"), "{report}");

    let report = text(&inspect(dir.path(), "garbage").stdout);
    assert!(report.contains("refused: malformed"), "{report}");
}

#[test]
fn inspect_rsapublickey_mode_with_the_public_payload_key() {
    let dir = tempfile::tempdir().unwrap();
    gen_keys(dir.path(), "1024");
    let out = keys_tool(
        &[
            "mint",
            "--signing-key",
            SIGNING_PRIVATE,
            "--payload-key",
            PAYLOAD_PRIVATE,
            "--target",
            "10.1.2.3",
            "--mode",
            "rsapublickey",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let out = keys_tool(
        &[
            "inspect",
            &token,
            "--signing-key",
            SIGNING_PUBLIC,
            "--payload-key",
            PAYLOAD_PUBLIC,
        ],
        dir.path(),
    );
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("rsapublickey"), "{report}");
    assert!(report.contains("target       10.1.2.3"), "{report}");
}

#[test]
fn inspect_reads_the_token_from_stdin_and_decodes_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    gen_keys(dir.path(), "1024");
    let token = mint(dir.path(), &["--exp", "60"]);
    let out = keys_tool_stdin(&["inspect", "-"], dir.path(), &format!("{token}\n"));
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("signature    not checked"), "{report}");
    assert!(report.contains("verdict      not checked"), "{report}");
    assert!(report.contains("\"key\":0,\"nfb\":"), "{report}");
    assert!(report.contains("(in "), "{report}");
}

#[test]
fn errors_are_one_line_on_stderr_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = keys_tool(
        &[
            "mint",
            "--signing-key",
            "nope.pem",
            "--payload-key",
            "nope.pem",
            "--target",
            "10.0.0.1",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("keys-tool: cannot read nope.pem"), "{err}");
    // A public key where a private one is needed.
    gen_keys(dir.path(), "1024");
    let out = keys_tool(
        &[
            "mint",
            "--signing-key",
            SIGNING_PUBLIC,
            "--payload-key",
            PAYLOAD_PUBLIC,
            "--target",
            "10.0.0.1",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr).lines().count(), 1);
}

#[test]
fn help_lists_every_command_and_option() {
    let dir = tempfile::tempdir().unwrap();
    let top = text(&keys_tool(&["--help"], dir.path()).stdout);
    for cmd in ["gen", "mint", "inspect"] {
        assert!(top.contains(cmd), "{top}");
    }
    for (cmd, options) in [
        (
            "gen",
            &["--out", "--bits", "--kubernetes", "--namespace", "--force"][..],
        ),
        (
            "mint",
            &[
                "--signing-key",
                "--payload-key",
                "--target",
                "--exp",
                "--mode",
                "--dns-suffix",
                "--allow-loopback",
                "--force",
            ][..],
        ),
        (
            "inspect",
            &[
                "--signing-key",
                "--payload-key",
                "--payload-padding",
                "--leeway",
            ][..],
        ),
    ] {
        let help = text(&keys_tool(&[cmd, "--help"], dir.path()).stdout);
        for option in options {
            assert!(help.contains(option), "{cmd} --help lacks {option}: {help}");
        }
    }
}

#[test]
fn inspect_refuses_a_malformed_token_even_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    for token in ["garbage", "a.b", "not.a.jws.at.all"] {
        let out = keys_tool(&["inspect", token], dir.path());
        let report = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{token}: {report}");
        assert!(
            report.contains("verdict      refused: malformed"),
            "{report}"
        );
    }
    // A header naming another algorithm is refused before any key too.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let hs256 = format!(
        "{}.{}.c2ln",
        b64.encode(r#"{"alg":"HS256"}"#),
        b64.encode(r#"{"exp":1}"#)
    );
    let out = keys_tool(&["inspect", &hs256], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("refused: bad_alg"));
}

#[test]
fn inspect_hint_names_only_the_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    gen_keys(dir.path(), "1024");
    let token = mint(dir.path(), &[]);
    for (args, hint) in [
        (
            &[][..],
            "verdict      not checked (give --signing-key and --payload-key)\n",
        ),
        (
            &["--signing-key", SIGNING_PUBLIC][..],
            "verdict      not checked (give --payload-key)\n",
        ),
        (
            &["--payload-key", PAYLOAD_PRIVATE][..],
            "verdict      not checked (give --signing-key)\n",
        ),
    ] {
        let mut all = vec!["inspect", token.as_str()];
        all.extend_from_slice(args);
        let out = keys_tool(&all, dir.path());
        let report = text(&out.stdout);
        assert!(out.status.success(), "{report}");
        assert!(report.contains(hint), "{args:?}: {report}");
    }
}

#[test]
fn mint_refuses_targets_the_gateway_refuses_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    gen_keys(dir.path(), "1024");
    let gateway_policy = gateway::token::TargetPolicy::default();
    for (target, kind) in [
        ("", "(empty)"),
        ("169.254.169.254", "(IPv4 address): link-local"),
        ("10.0.0.1:8080", "(address with a port)"),
        (
            "evil.example.com",
            "(DNS name): not under an allowed suffix",
        ),
        ("127.0.0.1", "(IPv4 address): loopback"),
        ("pod..svc.cluster.local", "(DNS name): not a valid DNS name"),
    ] {
        // The gateway itself refuses each of these.
        assert!(
            gateway_policy.validate(target.as_bytes()).is_err(),
            "{target}"
        );
        let out = mint_target(dir.path(), target, &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{target}: {err}");
        assert!(out.stdout.is_empty(), "{target}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("keys-tool: the gateway would refuse target") && err.contains(kind),
            "{target}: {err}"
        );
        assert!(err.contains("--force"), "{err}");

        let forced = mint_target(dir.path(), target, &["--force"]);
        assert!(forced.status.success(), "{}", text(&forced.stderr));
        assert!(text(&forced.stderr).contains("warning: the gateway will refuse target"));
        let token = text(&forced.stdout).trim().to_owned();
        let out = inspect_with(dir.path(), &token, &[]);
        assert_eq!(out.status.code(), Some(1));
        let report = text(&out.stdout);
        assert!(report.contains("refused: invalid_target"), "{report}");
        assert!(report.contains(kind), "{target}: {report}");
    }
    // What the gateway accepts mints without a word; the policy flags are the gateway's.
    for (target, extra) in [
        ("10.244.1.23", &[][..]),
        ("pod.desktop.abcdesktop.svc.cluster.local", &[][..]),
        ("127.0.0.1", &["--allow-loopback"][..]),
        ("pod.example.com", &["--dns-suffix", ".example.com"][..]),
    ] {
        let out = mint_target(dir.path(), target, extra);
        assert!(out.status.success(), "{target}: {}", text(&out.stderr));
        assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    }
}

#[test]
fn inspect_invalid_target_names_the_flag_that_would_allow_it() {
    let dir = tempfile::tempdir().unwrap();
    gen_keys(dir.path(), "1024");
    for (target, flag) in [
        ("127.0.0.1", &["--allow-loopback"][..]),
        ("Pod.Example.com", &["--dns-suffix", ".example.com"][..]),
    ] {
        let forced = mint_target(dir.path(), target, &["--force"]);
        let token = text(&forced.stdout).trim().to_owned();
        let out = inspect_with(dir.path(), &token, &[]);
        assert_eq!(out.status.code(), Some(1));
        let report = text(&out.stdout);
        let target_line = report
            .lines()
            .find(|l| l.starts_with("target "))
            .unwrap_or_else(|| panic!("{report}"));
        assert!(
            target_line.contains(&format!("{target:?}"))
                && target_line.contains(&format!("{} allows it", flag.join(" "))),
            "{report}"
        );
        // The suggestion is right: with the flag the gateway accepts it.
        let out = inspect_with(dir.path(), &token, flag);
        let report = text(&out.stdout);
        assert!(out.status.success(), "{report}");
        assert!(report.contains("verdict      accepted"), "{report}");
    }
    // A value no flag allows says so by naming none.
    let forced = mint_target(dir.path(), "169.254.169.254", &["--force"]);
    let report = text(&inspect_with(dir.path(), text(&forced.stdout).trim(), &[]).stdout);
    assert!(!report.contains("allows it"), "{report}");
}

#[test]
fn gen_help_lists_the_allowed_bits_and_what_kubectl_apply_does() {
    let dir = tempfile::tempdir().unwrap();
    let help = text(&keys_tool(&["gen", "--help"], dir.path()).stdout);
    let bits = gateway_tooling::keygen::BITS_CHOICES
        .map(|b| b.to_string())
        .join(", ");
    assert!(
        help.contains(&format!("[possible values: {bits}]")),
        "{help}"
    );
    assert!(help.contains("kubectl apply -f -` REPLACES"), "{help}");
    assert!(
        help.contains("`kubectl create -f -` instead fails safely"),
        "{help}"
    );
    let out = keys_tool(&["gen", "--out", "k", "--bits", "1000"], dir.path());
    assert!(text(&out.stderr).contains(&bits), "{}", text(&out.stderr));
}

#[test]
fn mint_oaep_sha512_is_what_the_gateway_decrypts_with_that_padding() {
    let dir = tempfile::tempdir().unwrap();
    gen_keys(dir.path(), "2048");
    let out = mint_target(dir.path(), "10.1.2.3", &["--mode", "oaep-sha512"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let out = inspect_with(dir.path(), &token, &["--payload-padding", "oaep-sha512"]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("target       10.1.2.3"), "{report}");
    let out = inspect_with(dir.path(), &token, &["--payload-padding", "oaep-sha256"]);
    assert!(text(&out.stdout).contains("refused: undecryptable"));
}
