//! A client no one here wrote: Python's grpcio, with every message type taken from the daemon's
//! server reflection (tests/python/reflection_client.py), over TCP and over a Unix socket.

mod common;
mod grpc_common;

use grpc_common::*;
use serde_json::Value;
use std::process::Command;

fn python_has_grpc() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import grpc, grpc_reflection, google.protobuf"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = "python3 with grpcio, grpcio-reflection and protobuf is missing — run `bash tools/test.sh`";
        assert!(!common::in_ci(), "{msg}");
        eprintln!("\n!!!!!!!! SKIPPING: {msg} !!!!!!!!\n");
    }
    ok
}

fn reflection_client(target: &str) -> Value {
    let script = common::repo_root().join("tests/python/reflection_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[tokio::test]
async fn python_grpcio_through_reflection_over_tcp_and_unix() {
    let Some(model) = smollm() else { return };
    if !python_has_grpc() {
        return;
    }
    let dir = TempDir::new("python");
    let socket = dir.path("ggufd.sock");
    let listen = [
        "127.0.0.1:0".to_string(),
        format!("unix:{}", socket.display()),
    ];
    let daemon = Daemon::start_listening(&model, 1, "", &listen);
    assert_eq!(daemon.addrs[1], listen[1]);
    let mut client = daemon.client().await;
    let expected = generate(&mut client, prompt_request("The capital of France is", 16))
        .await
        .unwrap();
    for target in [daemon.addrs[0].clone(), daemon.addrs[1].clone()] {
        let r = reflection_client(&target);
        let services: Vec<&str> = r["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        for s in [
            "ggufd.v1.Inference",
            "ggufd.v1.Models",
            "grpc.health.v1.Health",
        ] {
            assert!(services.contains(&s), "{target}: {services:?}");
        }
        assert_eq!(r["health"], "SERVING");
        assert_eq!(r["models"], serde_json::json!([MODEL]));
        assert_eq!(r["text"], expected.text.as_str(), "{target}");
        assert_eq!(r["ids"], serde_json::json!(expected.ids));
        assert_eq!(r["finish"], "LENGTH");
        assert_eq!(r["completion_tokens"], 16);
        assert_eq!(r["unknown_model"], "NOT_FOUND");
    }
}
