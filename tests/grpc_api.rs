//! The gRPC API against the real daemon binary and SmolLM2 on loopback: health, models,
//! tokenization, greedy/chat/seeded output equal to `ggufd run`, concurrency, cancellation,
//! deadlines, sessions, bad requests, auth and TLS.

mod common;
mod grpc_common;

use ggufd::server::proto;
use grpc_common::*;
use proto::generate_request::Input;
use proto::generate_response::Event;
use proto::models_client::ModelsClient;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

const PROMPT: &str = "The capital of France is";
/// Greedy decoding keeps counting for thousands of tokens.
const ENDLESS: &str = "Count: 1, 2, 3, 4, 5, 6, 7, 8,";

/// `ggufd run` with `args`: its stdout without the final newline it adds.
fn cli_run(args: &[&str]) -> String {
    let out = std::process::Command::new(common::ggufd())
        .arg("run")
        .args(args)
        .output()
        .expect("run ggufd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.strip_suffix('\n')
        .expect("run ends with a newline")
        .to_string()
}

async fn health(daemon: &Daemon, service: &str) -> ServingStatus {
    let mut h = HealthClient::new(daemon.channel().await);
    let r = h
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap();
    r.into_inner().status()
}

/// The services listed by server reflection v1 (v1alpha is what the Python test uses).
async fn reflected_services(daemon: &Daemon) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut client = ServerReflectionClient::new(daemon.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().expect("a response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("{response:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

#[tokio::test]
async fn health_models_and_tokenizer() {
    let Some(model) = smollm() else { return };
    let daemon = Daemon::start(&model, 1, "");
    for service in ["", "ggufd.v1.Inference", "ggufd.v1.Models"] {
        assert_eq!(health(&daemon, service).await, ServingStatus::Serving);
    }
    assert_eq!(
        reflected_services(&daemon).await,
        [
            "ggufd.v1.Inference",
            "ggufd.v1.Models",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection"
        ]
    );
    let mut models = ModelsClient::new(daemon.channel().await);
    let list = models
        .list_models(proto::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.models.len(), 1);
    let card = &list.models[0];
    assert_eq!(card.name, MODEL);
    assert_eq!(card.architecture, "llama");
    assert_eq!(card.kind, "dense");
    assert!(card.has_chat_template && card.layers == 30 && card.parameters > 100_000_000);
    let default = models
        .describe_model(proto::DescribeModelRequest {
            model: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&default, card);
    let missing = models
        .describe_model(proto::DescribeModelRequest {
            model: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let mut client = daemon.client().await;
    let text = "<|im_start|>user\nHello, world!<|im_end|>";
    let cli = std::process::Command::new(common::ggufd())
        .args(["tokenize", "--model"])
        .arg(&model)
        .args(["--text", text])
        .output()
        .unwrap();
    let cli_ids: Vec<u32> = serde_json::from_str(
        String::from_utf8(cli.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    let ids = client
        .tokenize(proto::TokenizeRequest {
            model: MODEL.into(),
            text: text.into(),
            add_special: true,
        })
        .await
        .unwrap()
        .into_inner()
        .ids;
    assert_eq!(ids, cli_ids);
    let plain = client
        .tokenize(proto::TokenizeRequest {
            text: "Hello".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ids;
    let back = client
        .detokenize(proto::DetokenizeRequest {
            model: String::new(),
            ids: plain,
        })
        .await
        .unwrap()
        .into_inner()
        .text;
    assert_eq!(back, "Hello");
}

#[tokio::test]
async fn greedy_chat_and_seeded_output_match_the_cli() {
    let Some(model) = smollm() else { return };
    let daemon = Daemon::start(&model, 1, "");
    let m = model.to_str().unwrap();
    let mut client = daemon.client().await;

    let out = generate(&mut client, prompt_request(PROMPT, 24))
        .await
        .unwrap();
    let cli = cli_run(&[
        "--model",
        m,
        "--prompt",
        PROMPT,
        "--temperature",
        "0",
        "-n",
        "24",
        "-t",
        "1",
    ]);
    assert_eq!(out.text, cli);
    assert_eq!(out.finish(), proto::FinishReason::Length);
    assert_eq!(out.ids.len(), 24);
    let usage = out.usage();
    assert_eq!((usage.completion_tokens, usage.cached_tokens), (24, 0));
    assert!(usage.prompt_tokens > 3);

    let question = "What is the capital of France?";
    let chat = generate(&mut client, chat_request(&[("user", question)], 200))
        .await
        .unwrap();
    let cli = cli_run(&[
        "--model",
        m,
        "--prompt",
        question,
        "--chat",
        "--temperature",
        "0",
        "-n",
        "200",
        "-t",
        "1",
    ]);
    assert_eq!(chat.text, cli);

    let seeded = |seed: u64| proto::GenerateRequest {
        sampling: Some(proto::Sampling {
            temperature: 0.9,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            seed,
        }),
        ..prompt_request("Once upon a time", 32)
    };
    let a = generate(&mut client, seeded(7)).await.unwrap();
    let b = generate(&mut client, seeded(7)).await.unwrap();
    let c = generate(&mut client, seeded(8)).await.unwrap();
    assert_eq!(a.ids, b.ids);
    assert_ne!(a.ids, c.ids, "another seed should give another text");
    let cli = cli_run(&[
        "--model",
        m,
        "--prompt",
        "Once upon a time",
        "--temperature",
        "0.9",
        "--seed",
        "7",
        "-n",
        "32",
        "-t",
        "1",
    ]);
    assert_eq!(
        a.text, cli,
        "the CLI's default top-k/top-p/min-p are the ones sent"
    );

    // Stop strings: the text ends right before the first occurrence, which is never sent.
    let full = &chat.text;
    let stop = full
        .split_whitespace()
        .nth(4)
        .expect("a few words of answer");
    let cut = generate(
        &mut client,
        proto::GenerateRequest {
            stop: vec![stop.into(), "never-appears".into()],
            ..chat_request(&[("user", question)], 200)
        },
    )
    .await
    .unwrap();
    assert_eq!(cut.finish(), proto::FinishReason::StopSequence);
    assert_eq!(cut.text, full[..full.find(stop).unwrap()]);
}

#[tokio::test]
async fn concurrent_streams_match_a_single_one() {
    let Some(model) = smollm() else { return };
    let daemon = Daemon::start(&model, 1, "");
    let mut client = daemon.client().await;
    let prompts = [
        "The capital of France is",
        "def fibonacci(n):",
        "Water boils at",
    ];
    let mut solo = Vec::new();
    for p in prompts {
        solo.push(
            generate(&mut client, prompt_request(p, 20))
                .await
                .unwrap()
                .ids,
        );
    }
    let channel = daemon.channel().await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let mut c = proto::inference_client::InferenceClient::new(channel.clone());
            let p = prompts[i % prompts.len()];
            tokio::spawn(async move { generate(&mut c, prompt_request(p, 20)).await.unwrap().ids })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), solo[i % prompts.len()], "stream {i}");
    }
}

/// Reads deltas until `n` have arrived.
async fn read_deltas(stream: &mut tonic::Streaming<proto::GenerateResponse>, n: usize) {
    for _ in 0..n {
        let msg = stream.message().await.unwrap().expect("a delta");
        assert!(matches!(msg.event, Some(Event::Delta(_))), "{msg:?}");
    }
}

#[tokio::test]
async fn cancel_by_id_and_by_dropping_the_stream() {
    let Some(model) = smollm() else { return };
    let daemon = Daemon::start(&model, 1, "");
    let mut client = daemon.client().await;
    let long = |id: &str| proto::GenerateRequest {
        request_id: id.into(),
        ..prompt_request(ENDLESS, 4000)
    };
    let mut stream = client.generate(long("story-1")).await.unwrap().into_inner();
    read_deltas(&mut stream, 3).await;
    // Another connection cancels it.
    let mut other = daemon.client().await;
    let found = other
        .cancel(proto::CancelRequest {
            request_id: "story-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .found;
    assert!(found);
    let t0 = Instant::now();
    let done = loop {
        match stream.message().await.unwrap().expect("Done").event {
            Some(Event::Done(d)) => break d,
            Some(Event::Delta(_)) => continue,
            None => panic!("empty event"),
        }
    };
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(done.finish_reason(), proto::FinishReason::Cancelled);
    let again = other
        .cancel(proto::CancelRequest {
            request_id: "story-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.found, "a finished request is no longer reachable");

    // A client that goes away: its id is released once the generation stops.
    let mut stream = client.generate(long("story-2")).await.unwrap().into_inner();
    read_deltas(&mut stream, 2).await;
    drop(stream);
    let t0 = Instant::now();
    loop {
        let r = other.generate(long("story-2")).await;
        match r {
            Ok(s) => {
                drop(s); // the id was free again: the dropped stream's generation ended
                break;
            }
            Err(e) => assert_eq!(e.code(), Code::InvalidArgument, "{e:?}"),
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the dropped stream kept running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And the daemon serves again as before.
    let out = generate(&mut client, prompt_request(PROMPT, 8))
        .await
        .unwrap();
    assert_eq!(out.ids.len(), 8);
}

#[tokio::test]
async fn deadline_covers_the_whole_stream() {
    let Some(model) = smollm() else { return };
    let daemon = Daemon::start(&model, 1, "");
    let mut client = daemon.client().await;
    let mut request = tonic::Request::new(prompt_request(ENDLESS, 4000));
    request.set_timeout(Duration::from_millis(1500));
    let t0 = Instant::now();
    let mut stream = client.generate(request).await.unwrap().into_inner();
    let mut deltas = 0;
    let status = loop {
        match stream.message().await {
            Ok(Some(msg)) => {
                assert!(matches!(msg.event, Some(Event::Delta(_))), "{msg:?}");
                deltas += 1;
            }
            Ok(None) => panic!("the stream ended without the deadline status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(deltas > 0, "tokens arrived before the deadline");
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    let out = generate(&mut client, prompt_request(PROMPT, 4))
        .await
        .unwrap();
    assert_eq!(out.ids.len(), 4);
}

#[tokio::test]
async fn sessions_keep_the_conversation_warm() {
    let Some(model) = smollm() else { return };
    let daemon = Daemon::start(&model, 1, "");
    let mut client = daemon.client().await;
    // A long system prompt makes the prefix worth caching.
    let system = "You are a meticulous assistant. ".repeat(40);
    let in_session = |messages: &[(&str, &str)]| proto::GenerateRequest {
        session_id: "conversation-1".into(),
        ..chat_request(messages, 16)
    };
    let q1 = "Name a large city in France.";
    let t1 = generate(
        &mut client,
        in_session(&[("system", &system), ("user", q1)]),
    )
    .await
    .unwrap();
    let p1 = t1.usage().prompt_tokens;
    assert!(p1 > 250, "{p1}");
    assert_eq!(t1.usage().cached_tokens, 0);

    let q2 = "And one in Italy?";
    let turn2 = [
        ("system", system.as_str()),
        ("user", q1),
        ("assistant", t1.text.as_str()),
        ("user", q2),
    ];
    let t2 = generate(&mut client, in_session(&turn2)).await.unwrap();
    assert!(
        t2.usage().cached_tokens >= p1,
        "{:?} vs first prompt {p1}",
        t2.usage()
    );

    // The same text without the session (nothing anonymous is cached yet) runs cold.
    let cold = generate(&mut client, chat_request(&turn2, 16))
        .await
        .unwrap();
    assert_eq!(cold.usage().cached_tokens, 0);
    assert_eq!(cold.ids, t2.ids, "warm and cold give the same tokens");
    let (warm_ms, cold_ms) = (
        t2.done.timings.unwrap().prompt_ms,
        cold.done.timings.unwrap().prompt_ms,
    );
    assert!(
        warm_ms * 3.0 < cold_ms,
        "time to first token: warm {warm_ms} ms, cold {cold_ms} ms"
    );
    assert!(t2.first_delta.unwrap() < cold.first_delta.unwrap());

    let q3 = "Which of the two is larger?";
    let turn3 = [
        ("system", system.as_str()),
        ("user", q1),
        ("assistant", t1.text.as_str()),
        ("user", q2),
        ("assistant", t2.text.as_str()),
        ("user", q3),
    ];
    let t3 = generate(&mut client, in_session(&turn3)).await.unwrap();
    assert!(
        t3.usage().cached_tokens >= t2.usage().prompt_tokens,
        "{:?}",
        t3.usage()
    );

    // Shared-prefix reuse without a session: the cold request above left its state behind.
    let again = generate(&mut client, chat_request(&turn2, 16))
        .await
        .unwrap();
    assert!(
        again.usage().cached_tokens + 1 >= again.usage().prompt_tokens,
        "{:?}",
        again.usage()
    );
    assert_eq!(again.ids, cold.ids);
}

/// A cheap request proving the daemon still answers.
async fn assert_alive(daemon: &mut Daemon) {
    assert!(daemon.alive(), "the daemon died");
    let mut client = daemon.client().await;
    let r = client
        .tokenize(proto::TokenizeRequest {
            text: "ok".into(),
            ..Default::default()
        })
        .await;
    assert!(r.is_ok(), "{r:?}");
}

async fn generate_status(daemon: &Daemon, request: proto::GenerateRequest) -> Code {
    let mut client = daemon.client().await;
    match generate(&mut client, request).await {
        Ok(out) => panic!("expected an error, got {out:?}"),
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn bad_requests_get_the_right_status_and_the_daemon_survives() {
    let Some(model) = smollm() else { return };
    let mut daemon = Daemon::start(&model, 1, "[limits]\nmax_message_bytes = 1048576\n");
    let ok = || prompt_request(PROMPT, 4);
    let sampling = |s: proto::Sampling| proto::GenerateRequest {
        sampling: Some(s),
        ..ok()
    };
    let tokens = |ids: Vec<u32>| proto::GenerateRequest {
        input: Some(Input::Tokens(proto::TokenIds { ids })),
        ..ok()
    };
    let cases: Vec<(&str, proto::GenerateRequest, Code)> = vec![
        (
            "unknown model",
            proto::GenerateRequest {
                model: "nope".into(),
                ..ok()
            },
            Code::NotFound,
        ),
        (
            "no input",
            proto::GenerateRequest {
                input: None,
                ..ok()
            },
            Code::InvalidArgument,
        ),
        ("empty prompt", prompt_request("", 4), Code::InvalidArgument),
        ("empty token list", tokens(vec![]), Code::InvalidArgument),
        (
            "token id beyond the vocabulary",
            tokens(vec![1, 49152]),
            Code::InvalidArgument,
        ),
        (
            "token id u32::MAX",
            tokens(vec![u32::MAX]),
            Code::InvalidArgument,
        ),
        (
            "prompt longer than the context",
            tokens(vec![1; 8193]),
            Code::ResourceExhausted,
        ),
        (
            "NaN temperature",
            sampling(proto::Sampling {
                temperature: f32::NAN,
                ..greedy()
            }),
            Code::InvalidArgument,
        ),
        (
            "negative temperature",
            sampling(proto::Sampling {
                temperature: -1.0,
                ..greedy()
            }),
            Code::InvalidArgument,
        ),
        (
            "huge temperature",
            sampling(proto::Sampling {
                temperature: 1e30,
                ..greedy()
            }),
            Code::InvalidArgument,
        ),
        (
            "top_p above 1",
            sampling(proto::Sampling {
                top_p: 1.5,
                ..greedy()
            }),
            Code::InvalidArgument,
        ),
        (
            "negative min_p",
            sampling(proto::Sampling {
                min_p: -0.1,
                ..greedy()
            }),
            Code::InvalidArgument,
        ),
        (
            "infinite repeat penalty",
            sampling(proto::Sampling {
                repeat_penalty: f32::INFINITY,
                ..greedy()
            }),
            Code::InvalidArgument,
        ),
        (
            "top_k beyond the vocabulary",
            sampling(proto::Sampling {
                top_k: 1_000_000,
                ..greedy()
            }),
            Code::InvalidArgument,
        ),
        (
            "max_tokens beyond the context",
            proto::GenerateRequest {
                max_tokens: u32::MAX,
                ..ok()
            },
            Code::InvalidArgument,
        ),
        ("empty chat", chat_request(&[], 4), Code::InvalidArgument),
        (
            "chat message without a role",
            chat_request(&[("", "hi")], 4),
            Code::InvalidArgument,
        ),
        (
            "too many stop strings",
            proto::GenerateRequest {
                stop: vec!["x".into(); 100],
                ..ok()
            },
            Code::InvalidArgument,
        ),
        (
            "huge request_id",
            proto::GenerateRequest {
                request_id: "r".repeat(10_000),
                ..ok()
            },
            Code::InvalidArgument,
        ),
        (
            "message over the size limit",
            prompt_request(&"word ".repeat(300_000), 4),
            Code::OutOfRange,
        ),
    ];
    let n = cases.len();
    for (what, request, code) in cases {
        let got = generate_status(&daemon, request).await;
        // tonic reports an oversized message as OUT_OF_RANGE or RESOURCE_EXHAUSTED by version.
        let same = got == code || (code == Code::OutOfRange && got == Code::ResourceExhausted);
        assert!(same, "{what}: expected {code:?}, got {got:?}");
        assert_alive(&mut daemon).await;
    }
    assert!(n >= 10);

    let mut client = daemon.client().await;
    let bad_detok = client
        .detokenize(proto::DetokenizeRequest {
            model: String::new(),
            ids: vec![u32::MAX],
        })
        .await
        .unwrap_err();
    assert_eq!(bad_detok.code(), Code::InvalidArgument);
    let bad_tok = client
        .tokenize(proto::TokenizeRequest {
            model: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_tok.code(), Code::NotFound);
    let bad_cancel = client
        .cancel(proto::CancelRequest::default())
        .await
        .unwrap_err();
    assert_eq!(bad_cancel.code(), Code::InvalidArgument);
    let mut request = tonic::Request::new(ok());
    request
        .metadata_mut()
        .insert("grpc-timeout", "soon".parse().unwrap());
    let status = client.generate(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_alive(&mut daemon).await;
    // Still generating correctly after all that.
    let out = generate(&mut client, ok()).await.unwrap();
    assert_eq!(out.ids.len(), 4);
}

#[tokio::test]
async fn a_full_queue_answers_resource_exhausted() {
    let Some(model) = smollm() else { return };
    let daemon = Daemon::start(&model, 1, "[scheduler]\nmax_batch = 1\nqueue_depth = 1\n");
    let mut client = daemon.client().await;
    let long = || prompt_request(ENDLESS, 4000);
    let mut running = client.generate(long()).await.unwrap().into_inner();
    read_deltas(&mut running, 1).await;
    let _queued = client.generate(long()).await.unwrap();
    let refused = client.generate(long()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
}

#[tokio::test]
async fn bearer_token_auth() {
    let Some(model) = smollm() else { return };
    let daemon = Daemon::start(&model, 1, "[auth]\ntoken = \"let-me-in\"\n");
    let channel = daemon.channel().await;
    let with_token = |token: Option<&str>| {
        let mut r = tonic::Request::new(proto::TokenizeRequest {
            text: "hi".into(),
            ..Default::default()
        });
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    };
    let mut client = proto::inference_client::InferenceClient::new(channel.clone());
    for bad in [None, Some("let-me"), Some("let-me-in-please")] {
        let e = client.tokenize(with_token(bad)).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{bad:?}");
    }
    assert!(client.tokenize(with_token(Some("let-me-in"))).await.is_ok());
    let mut models = ModelsClient::new(channel);
    let e = models
        .list_models(proto::ListModelsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(
        health(&daemon, "").await,
        ServingStatus::Serving,
        "health stays open"
    );
}

#[tokio::test]
async fn tls_and_mutual_tls() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let Some(model) = smollm() else { return };
    let dir = TempDir::new("tls");
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
    let (client_cert, client_key) = leaf(vec!["client".into()]);
    for (name, text) in [
        ("ca.pem", ca_cert.pem()),
        ("server.pem", server_cert),
        ("server.key", server_key),
    ] {
        std::fs::write(dir.path(name), text).unwrap();
    }
    let config = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n",
        dir.path("server.pem"),
        dir.path("server.key"),
        dir.path("ca.pem")
    );
    let daemon = Daemon::start(&model, 1, &config);
    let url = format!("https://{}", daemon.addrs[0]);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_cert.pem()))
        .domain_name("localhost");
    let connect = |tls: ClientTlsConfig| {
        let url = url.clone();
        async move {
            Channel::from_shared(url)
                .unwrap()
                .tls_config(tls)
                .unwrap()
                .connect()
                .await
        }
    };
    let channel = connect(
        tls.clone()
            .identity(Identity::from_pem(client_cert, client_key)),
    )
    .await
    .expect("mutual TLS connects");
    let mut client = proto::inference_client::InferenceClient::new(channel);
    let out = generate(&mut client, prompt_request(PROMPT, 4))
        .await
        .unwrap();
    assert_eq!(out.ids.len(), 4);

    // Without a client certificate the handshake (or the first call) fails.
    let anonymous = match connect(tls).await {
        Err(_) => true,
        Ok(ch) => proto::inference_client::InferenceClient::new(ch)
            .tokenize(proto::TokenizeRequest::default())
            .await
            .is_err(),
    };
    assert!(anonymous, "a client without a certificate was served");
    // Plain text to the TLS port fails too.
    let plain = match Channel::from_shared(format!("http://{}", daemon.addrs[0]))
        .unwrap()
        .connect()
        .await
    {
        Err(_) => true,
        Ok(ch) => proto::inference_client::InferenceClient::new(ch)
            .tokenize(proto::TokenizeRequest::default())
            .await
            .is_err(),
    };
    assert!(plain, "a plain-text client was served on the TLS port");
}

#[tokio::test]
async fn sigterm_drains_then_exits() {
    let Some(model) = smollm() else { return };
    let mut daemon = Daemon::start(&model, 1, "[limits]\ndrain_seconds = 2\n");
    let mut client = daemon.client().await;
    let mut running = client
        .generate(prompt_request(ENDLESS, 4000))
        .await
        .unwrap()
        .into_inner();
    read_deltas(&mut running, 2).await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(health(&daemon, "").await, ServingStatus::NotServing);
    let refused = generate(&mut client, prompt_request(PROMPT, 4))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    read_deltas(&mut running, 3).await; // the running stream goes on during the drain
                                        // Once the drain time is up it is cancelled, and still ends with its Done.
    let done = loop {
        match running.message().await.unwrap().expect("Done").event {
            Some(Event::Done(d)) => break d,
            _ => continue,
        }
    };
    assert_eq!(done.finish_reason(), proto::FinishReason::Cancelled);
    let t0 = Instant::now();
    while daemon.alive() {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no exit after the drain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn command_line_models_and_config_errors() {
    let Some(model) = smollm() else { return };
    let dir = TempDir::new("flags");
    let bad = dir.path("bad.toml");
    std::fs::write(&bad, "[scheduler]\nmax_bach = 4\n").unwrap();
    let out = std::process::Command::new(common::ggufd())
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("max_bach"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Flags alone: the model is named after its file, and is the default.
    let args = [
        "--model".as_ref(),
        model.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "-t".as_ref(),
        "1".as_ref(),
    ];
    let daemon = Daemon::start_with_args(TempDir::new("flags"), &args);
    let mut models = ModelsClient::new(daemon.channel().await);
    let card = models
        .describe_model(proto::DescribeModelRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(card.name, "SmolLM2-135M-Instruct.Q4_1");
}
