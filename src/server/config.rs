//! The daemon's configuration: a TOML file, then command-line overrides. Unknown keys are errors
//! naming the key, so a typo fails at start-up instead of silently using a default.

use crate::engine::scheduler::SchedulerConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `host:port` or `unix:/path`; default [`DEFAULT_LISTEN`].
    #[serde(default)]
    pub listen: Vec<String>,
    /// Compute threads (default: all cores).
    pub threads: Option<usize>,
    /// Lock every model's mapped file in RAM (mlock) so it is never paged out; a model that
    /// cannot be locked (RLIMIT_MEMLOCK too low) fails to load.
    #[serde(default)]
    pub mlock: bool,
    /// The first model is the default one (an empty `model` in a request).
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub scheduler: SchedulerSection,
    #[serde(default)]
    pub auth: Auth,
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub path: PathBuf,
    /// Default: the file name without its extension.
    pub name: Option<String>,
    /// Context length (default: the model's training context).
    pub ctx_size: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request or response message.
    pub max_message_bytes: usize,
    /// Concurrent requests one connection may have in flight.
    pub max_requests_per_connection: usize,
    /// `max_tokens` when a request leaves it 0.
    pub default_max_tokens: u32,
    pub max_stop_strings: usize,
    pub max_stop_bytes: usize,
    /// Longest `request_id` / `session_id`.
    pub max_id_bytes: usize,
    /// How long a drain (SIGTERM) waits for running streams before closing them.
    pub drain_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 4 << 20,
            max_requests_per_connection: 64,
            default_max_tokens: 256,
            max_stop_strings: 16,
            max_stop_bytes: 256,
            max_id_bytes: 256,
            drain_seconds: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSection {
    pub max_batch: usize,
    pub queue_depth: usize,
    pub cache_bytes: usize,
    pub step_tokens: usize,
}

impl Default for SchedulerSection {
    fn default() -> Self {
        let d = SchedulerConfig::default();
        SchedulerSection {
            max_batch: d.max_batch,
            queue_depth: d.queue_depth,
            cache_bytes: d.cache_bytes,
            step_tokens: d.step_tokens,
        }
    }
}

impl SchedulerSection {
    pub fn scheduler_config(&self) -> SchedulerConfig {
        SchedulerConfig {
            max_batch: self.max_batch,
            queue_depth: self.queue_depth,
            cache_bytes: self.cache_bytes,
            step_tokens: self.step_tokens,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Bearer token clients must send; prefer `token_file` to keep it out of the config.
    pub token: Option<String>,
    /// File holding the token (surrounding whitespace ignored).
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain and private key of the server.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// PEM CA: when set, clients must present a certificate it signed (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        match s.strip_prefix("unix:") {
            Some("") => anyhow::bail!("listen address `{s}` has an empty socket path"),
            Some(path) => Ok(ListenAddr::Unix(PathBuf::from(path))),
            None => s.parse().map(ListenAddr::Tcp).map_err(|_| {
                anyhow::anyhow!("listen address `{s}` is neither `host:port` nor `unix:/path`")
            }),
        }
    }
}

impl Config {
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config {}: {}", path.display(), e.message()))
    }

    /// Checks what serde cannot: numbers in range, at least one model, usable addresses.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = |field: &str, v: usize| {
            if v == 0 {
                anyhow::bail!("config field `{field}` must be at least 1");
            }
            Ok(())
        };
        if let Some(t) = self.threads {
            positive("threads", t)?;
        }
        positive("scheduler.max_batch", self.scheduler.max_batch)?;
        positive("scheduler.queue_depth", self.scheduler.queue_depth)?;
        positive("scheduler.step_tokens", self.scheduler.step_tokens)?;
        positive("limits.max_message_bytes", self.limits.max_message_bytes)?;
        positive(
            "limits.max_requests_per_connection",
            self.limits.max_requests_per_connection,
        )?;
        positive(
            "limits.default_max_tokens",
            self.limits.default_max_tokens as usize,
        )?;
        positive("limits.max_id_bytes", self.limits.max_id_bytes)?;
        if self.models.is_empty() {
            anyhow::bail!("no model configured: give `--model PATH` or a `[[models]]` entry");
        }
        for (i, m) in self.models.iter().enumerate() {
            if m.ctx_size == Some(0) {
                anyhow::bail!("config field `models[{i}].ctx_size` must be at least 1");
            }
            if m.name.as_deref() == Some("") {
                anyhow::bail!("config field `models[{i}].name` is empty");
            }
        }
        for l in &self.listen {
            ListenAddr::parse(l)?;
        }
        if self.auth.token.is_some() && self.auth.token_file.is_some() {
            anyhow::bail!("config fields `auth.token` and `auth.token_file` exclude each other");
        }
        Ok(())
    }

    pub fn listen_addrs(&self) -> anyhow::Result<Vec<ListenAddr>> {
        if self.listen.is_empty() {
            return Ok(vec![ListenAddr::parse(DEFAULT_LISTEN)?]);
        }
        self.listen.iter().map(|l| ListenAddr::parse(l)).collect()
    }

    /// The bearer token, if auth is on.
    pub fn auth_token(&self) -> anyhow::Result<Option<String>> {
        let token = match (&self.auth.token, &self.auth.token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    anyhow::anyhow!("cannot read auth.token_file {}: {e}", path.display())
                })?
                .trim()
                .to_string(),
            (None, None) => return Ok(None),
        };
        if token.is_empty() {
            anyhow::bail!("the auth token is empty");
        }
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_named() {
        let err = toml::from_str::<Config>("[scheduler]\nmax_bach = 4\n").unwrap_err();
        assert!(err.message().contains("max_bach"), "{}", err.message());
        let err = toml::from_str::<Config>("lisen = []\n").unwrap_err();
        assert!(err.message().contains("lisen"), "{}", err.message());
    }

    #[test]
    fn full_config_parses_and_validates() {
        let c: Config = toml::from_str(
            r#"
            listen = ["127.0.0.1:0", "unix:/tmp/ggufd.sock"]
            threads = 2
            mlock = true
            [[models]]
            path = "a.gguf"
            name = "a"
            ctx_size = 1024
            [scheduler]
            max_batch = 4
            [limits]
            default_max_tokens = 32
            [auth]
            token = "secret"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.listen_addrs().unwrap().len(), 2);
        assert!(c.mlock);
        assert_eq!(
            c.scheduler.queue_depth,
            SchedulerConfig::default().queue_depth
        );
        assert_eq!(c.auth_token().unwrap().as_deref(), Some("secret"));
    }

    #[test]
    fn bad_values_fail_validation() {
        let mut c = Config {
            models: vec![ModelConfig {
                path: "a.gguf".into(),
                name: None,
                ctx_size: None,
            }],
            ..Config::default()
        };
        c.validate().unwrap();
        c.scheduler.max_batch = 0;
        assert!(c.validate().unwrap_err().to_string().contains("max_batch"));
        c.scheduler.max_batch = 1;
        c.listen = vec!["nonsense".into()];
        assert!(c.validate().is_err());
        assert!(Config::default().validate().is_err(), "no model");
    }
}
