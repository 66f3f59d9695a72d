//! `keys-tool`: abcdesktop's key pairs, desktop tokens, and why a token is refused.
//!
//! Usage:
//!   keys-tool gen [--out DIR|-] [--bits N] [--kubernetes] [--namespace NS] [--force]
//!   keys-tool mint --signing-key F --payload-key F --target HOST [--exp SECS] [--mode M]
//!                  [--dns-suffix S]… [--allow-loopback] [--force]
//!   keys-tool inspect TOKEN|- [--signing-key F]… [--payload-key F]
//!
//! Errors: one line on stderr, exit 2 (`mint` of a target the gateway would refuse is one,
//! unless `--force`). `inspect` exits 1 when the gateway would refuse.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use gateway::token::{AuthConfig, PayloadPadding, TargetPolicy};
use gateway_tooling::keygen::{
    self as generate, BITS_CHOICES, DEFAULT_BITS, DEFAULT_NAMESPACE, SECRETS_FILE,
};
use gateway_tooling::mint::{DEFAULT_LIFETIME_SECS, MintMode, Minter};
use keys_tool::inspect::{self, InspectOptions, Verdict};
use keys_tool::{read_text, target, unix_now};

#[derive(Debug, Parser)]
#[command(
    name = "keys-tool",
    version,
    about = "abcdesktop desktop-token keys and tokens"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Padding {
    Pkcs1,
    OaepSha1,
    OaepSha256,
    OaepSha512,
}

impl From<Padding> for PayloadPadding {
    fn from(p: Padding) -> Self {
        match p {
            Padding::Pkcs1 => PayloadPadding::Pkcs1,
            Padding::OaepSha1 => PayloadPadding::OaepSha1,
            Padding::OaepSha256 => PayloadPadding::OaepSha256,
            Padding::OaepSha512 => PayloadPadding::OaepSha512,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate the three key pairs (desktop payload, desktop signing, user signing) with
    /// abcdesktop's file names: private keys PKCS#1 PEM (mode 0600), the payload public key
    /// RSAPublicKey PEM, the signing public keys SPKI PEM.
    ///
    /// On a cluster that already runs abcdesktop, `keys-tool gen --out - | kubectl apply -f -`
    /// REPLACES that installation's keys: every desktop token pyos has minted stops working
    /// and pyos and the gateway must be restarted or reloaded on the new keys.
    /// `kubectl create -f -` instead fails safely when the Secrets already exist.
    Gen {
        /// Directory to write the keys into, or `-` to write nothing and print the Kubernetes
        /// Secrets to stdout (implies --kubernetes; see above before piping it to
        /// `kubectl apply`).
        #[arg(long, default_value = ".")]
        out: String,
        #[arg(long, default_value_t = DEFAULT_BITS, value_parser = parse_bits, help = bits_help())]
        bits: usize,
        /// Also write the three Secrets (abcdesktopjwtdesktoppayload, abcdesktopjwtdesktopsigning,
        /// abcdesktopjwtusersigning) to DIR/abcdesktop-jwt-secrets.yaml (`kubectl create -f`
        /// it; `kubectl apply -f` replaces existing keys).
        #[arg(long)]
        kubernetes: bool,
        /// Namespace of the Secrets.
        #[arg(long, default_value = DEFAULT_NAMESPACE)]
        namespace: String,
        /// Overwrite existing key files.
        #[arg(long)]
        force: bool,
    },
    /// Mint a desktop token exactly as pyos does, printed on stdout.
    Mint {
        /// The desktop signing private key (PEM).
        #[arg(long)]
        signing_key: PathBuf,
        /// The payload key: public key for pkcs1/oaep modes, private key for rsapublickey.
        #[arg(long)]
        payload_key: PathBuf,
        /// The desktop address to encrypt into `hash` (pod IP or pod FQDN).
        #[arg(long)]
        target: String,
        /// Token lifetime in seconds (pyos's reference od.config: 420).
        #[arg(long, default_value_t = DEFAULT_LIFETIME_SECS, allow_negative_numbers = true)]
        exp: i64,
        /// How `hash` is encrypted.
        #[arg(long, value_enum, default_value = "pkcs1")]
        mode: MintMode,
        /// Issue time, Unix seconds (default: now).
        #[arg(long)]
        now: Option<i64>,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Mint even for a target the gateway would refuse (the refusal becomes a warning).
        #[arg(long)]
        force: bool,
    },
    /// Decode a token and, given keys, say whether and why the gateway refuses it.
    Inspect {
        /// The token, or `-` to read it from stdin.
        token: String,
        /// A desktop signing public key (PEM); repeat for a rotation.
        #[arg(long)]
        signing_key: Vec<PathBuf>,
        /// The payload key the gateway holds (private key, or RSA PUBLIC KEY).
        #[arg(long)]
        payload_key: Option<PathBuf>,
        /// Padding pyos used, for a payload private key.
        #[arg(long, value_enum, default_value = "pkcs1")]
        payload_padding: Padding,
        /// Clock leeway in seconds for exp/nbf.
        #[arg(long, default_value_t = 0)]
        leeway: u64,
        #[command(flatten)]
        policy: PolicyArgs,
    },
}

/// The gateway's target rules, as `[auth]` in its config sets them.
#[derive(Debug, clap::Args)]
struct PolicyArgs {
    /// DNS suffix a target name must end with (repeatable; the gateway's `[auth] dns_suffixes`).
    #[arg(long, default_values_t = [gateway::token::target::DEFAULT_DNS_SUFFIX.to_owned()])]
    dns_suffix: Vec<String>,
    /// Accept loopback targets (as the demo gateway does; the gateway's `[auth] allow_loopback`).
    #[arg(long)]
    allow_loopback: bool,
}

impl From<PolicyArgs> for TargetPolicy {
    fn from(args: PolicyArgs) -> Self {
        TargetPolicy {
            dns_suffixes: args.dns_suffix,
            allow_loopback: args.allow_loopback,
        }
    }
}

fn bits_list() -> String {
    BITS_CHOICES.map(|b| b.to_string()).join(", ")
}

fn bits_help() -> String {
    format!("RSA modulus size [possible values: {}]", bits_list())
}

fn parse_bits(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|b| BITS_CHOICES.contains(b))
        .ok_or_else(|| format!("must be one of {}", bits_list()))
}

fn valid_namespace(ns: &str) -> bool {
    (1..=63).contains(&ns.len())
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-')
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Gen {
            out,
            bits,
            kubernetes,
            namespace,
            force,
        } => {
            if !valid_namespace(&namespace) {
                bail!("--namespace must be a DNS label (lowercase letters, digits, '-')");
            }
            let pairs = generate::generate_all(bits)?;
            if out == "-" {
                print!("{}", generate::secrets_yaml(&pairs, &namespace));
                return Ok(ExitCode::SUCCESS);
            }
            let dir = PathBuf::from(out);
            for path in generate::write_pairs(&dir, &pairs, force)? {
                eprintln!("wrote {}", path.display());
            }
            if kubernetes {
                let path = dir.join(SECRETS_FILE);
                if path.exists() && !force {
                    bail!(
                        "{} exists; refusing to overwrite (use --force)",
                        path.display()
                    );
                }
                std::fs::write(&path, generate::secrets_yaml(&pairs, &namespace))
                    .with_context(|| format!("cannot write {}", path.display()))?;
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )?;
                eprintln!(
                    "wrote {} (kubectl apply -f {})",
                    path.display(),
                    path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Mint {
            signing_key,
            payload_key,
            target,
            exp,
            mode,
            now,
            policy,
            force,
        } => {
            if let Some(problem) = target::explain(&policy.into(), target.as_bytes()) {
                if !force {
                    bail!("the gateway would refuse target {problem} (--force mints it anyway)");
                }
                eprintln!("keys-tool: warning: the gateway will refuse target {problem}");
            }
            let minter =
                Minter::from_pem(&read_text(&signing_key)?, &read_text(&payload_key)?, mode)?;
            println!(
                "{}",
                minter.mint(&target, now.unwrap_or_else(unix_now), exp)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect {
            token,
            signing_key,
            payload_key,
            payload_padding,
            leeway,
            policy,
        } => {
            let token = if token == "-" {
                let mut buf = String::new();
                std::io::stdin()
                    .read_to_string(&mut buf)
                    .context("cannot read stdin")?;
                buf.trim().to_owned()
            } else {
                token
            };
            let options = InspectOptions {
                signing: signing_key
                    .iter()
                    .map(|p| read_text(p))
                    .collect::<Result<_, _>>()?,
                payload: payload_key.as_deref().map(read_text).transpose()?,
                padding: payload_padding.into(),
                config: AuthConfig {
                    leeway,
                    target: policy.into(),
                    ..AuthConfig::default()
                },
            };
            let report = inspect::inspect(&token, &options, unix_now())?;
            print!("{}", report.text);
            Ok(match report.verdict {
                Verdict::Refused(_) => ExitCode::from(1),
                _ => ExitCode::SUCCESS,
            })
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keys-tool: {e:#}");
            ExitCode::from(2)
        }
    }
}
