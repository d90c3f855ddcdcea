//! Starts the real `ggufd serve` binary on loopback for the gRPC tests and talks to it.
#![allow(dead_code)] // each test binary uses a different subset

use ggufd::server::proto;
use proto::generate_request::Input;
use proto::generate_response::Event;
use proto::inference_client::InferenceClient;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub const SMOLLM: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The served name of the test model (its config entry names it).
pub const MODEL: &str = "smol";

/// The SmolLM2 test model, or None (after a loud message; a failure in CI) when it is missing.
pub fn smollm() -> Option<PathBuf> {
    let path = super::common::model_dir().join(SMOLLM);
    super::common::require(&path, "SmolLM2 test model").then_some(path)
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ggufd-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running daemon, killed on drop.
pub struct Daemon {
    child: Child,
    /// The bound addresses from the ready file (`host:port` or `unix:/path`).
    pub addrs: Vec<String>,
    pub dir: TempDir,
}

impl Daemon {
    /// Starts `ggufd serve` on 127.0.0.1 (a free port) with `threads` compute threads, the
    /// test model named [`MODEL`], and `config` (TOML tables, e.g. `[scheduler]`) added.
    pub fn start(model: &Path, threads: usize, config: &str) -> Daemon {
        Self::start_listening(model, threads, config, &["127.0.0.1:0".to_string()])
    }

    pub fn start_listening(
        model: &Path,
        threads: usize,
        config: &str,
        listen: &[String],
    ) -> Daemon {
        let dir = TempDir::new("daemon");
        let listen: Vec<String> = listen.iter().map(|l| format!("{l:?}")).collect();
        let text = format!(
            "listen = [{}]\nthreads = {threads}\n{config}\n[[models]]\npath = {:?}\nname = \"{MODEL}\"\n",
            listen.join(", "),
            model.display().to_string()
        );
        let config_path = dir.path("ggufd.toml");
        std::fs::write(&config_path, text).unwrap();
        Self::start_with_args(dir, &["--config".as_ref(), config_path.as_os_str()])
    }

    /// Starts `ggufd serve ARGS --ready-file F` and waits until it is ready.
    pub fn start_with_args(dir: TempDir, args: &[&std::ffi::OsStr]) -> Daemon {
        let ready = dir.path("ready");
        let child = Command::new(super::common::ggufd())
            .arg("serve")
            .args(args)
            .arg("--ready-file")
            .arg(&ready)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start ggufd serve");
        let mut daemon = Daemon {
            child,
            addrs: Vec::new(),
            dir,
        };
        let t0 = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                if text.ends_with('\n') {
                    daemon.addrs = text.lines().map(str::to_string).collect();
                    return daemon;
                }
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("ggufd serve exited before it was ready: {status}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "ggufd serve not ready after 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addrs[0])
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .expect("connect to the daemon")
    }

    pub async fn client(&self) -> InferenceClient<Channel> {
        InferenceClient::new(self.channel().await)
    }

    /// Resident memory of the daemon, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kb * 1024
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn greedy() -> proto::Sampling {
    proto::Sampling::default()
}

pub fn prompt_request(prompt: &str, max_tokens: u32) -> proto::GenerateRequest {
    proto::GenerateRequest {
        input: Some(Input::Prompt(prompt.to_string())),
        max_tokens,
        sampling: Some(greedy()),
        ..Default::default()
    }
}

pub fn chat_request(messages: &[(&str, &str)], max_tokens: u32) -> proto::GenerateRequest {
    let messages = messages
        .iter()
        .map(|(role, content)| proto::Message {
            role: role.to_string(),
            content: content.to_string(),
        })
        .collect();
    proto::GenerateRequest {
        input: Some(Input::Chat(proto::Chat { messages })),
        max_tokens,
        sampling: Some(greedy()),
        ..Default::default()
    }
}

/// A whole generation as the client saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub text: String,
    pub ids: Vec<u32>,
    pub done: proto::Done,
    /// Client-side time from sending the request to the first delta.
    pub first_delta: Option<Duration>,
}

impl Output {
    pub fn finish(&self) -> proto::FinishReason {
        self.done.finish_reason()
    }

    pub fn usage(&self) -> proto::Usage {
        self.done.usage.unwrap_or_default()
    }
}

/// Runs a Generate to the end; the stream's status on failure.
pub async fn generate(
    client: &mut InferenceClient<Channel>,
    request: proto::GenerateRequest,
) -> Result<Output, tonic::Status> {
    let t0 = Instant::now();
    let mut stream = client.generate(request).await?.into_inner();
    let (mut text, mut ids, mut first_delta) = (String::new(), Vec::new(), None);
    while let Some(msg) = stream.message().await? {
        match msg.event {
            Some(Event::Delta(d)) => {
                first_delta.get_or_insert_with(|| t0.elapsed());
                text.push_str(&d.text);
                ids.extend(d.token_ids);
            }
            Some(Event::Done(done)) => {
                assert!(stream.message().await?.is_none(), "a message after Done");
                return Ok(Output {
                    text,
                    ids,
                    done,
                    first_delta,
                });
            }
            None => panic!("a GenerateResponse without an event"),
        }
    }
    panic!("the stream ended without Done");
}
