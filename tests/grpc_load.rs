//! Bounded loopback load: 64 concurrent streams for a fixed time with random cancels (dropped
//! streams, Cancel calls, short deadlines). Only the expected errors may occur, and the daemon's
//! memory returns near its idle level afterwards.

mod common;
mod grpc_common;

use ggufd::server::proto;
use grpc_common::*;
use proto::generate_response::Event;
use proto::inference_client::InferenceClient;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;

const STREAMS: usize = 64;
const RUN_FOR: Duration = Duration::from_secs(60);
/// Deadline of the requests still running when the run ends.
const END_GRACE: Duration = Duration::from_secs(5);
const CACHE_BYTES: u64 = 32 << 20;

/// xorshift64*: deterministic per-task choices without another dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[derive(Default, Debug)]
struct Tally {
    completed: usize,
    dropped: usize,
    cancelled: usize,
    deadline: usize,
    refused: usize,
    tokens: usize,
    unexpected: Vec<String>,
}

fn prompts() -> Vec<String> {
    vec![
        "The capital of France is".into(),
        "Write a poem about the sea.".into(),
        "def quicksort(xs):".into(),
        format!(
            "Summarise this text: {}",
            "The quick brown fox jumps over the lazy dog. ".repeat(20)
        ),
    ]
}

async fn one_request(
    client: &mut InferenceClient<Channel>,
    rng: &mut Rng,
    id: String,
    prompt: &str,
    end: Instant,
    tally: &mut Tally,
) {
    let action = rng.below(4);
    let mut request = tonic::Request::new(proto::GenerateRequest {
        request_id: id.clone(),
        session_id: if rng.below(4) == 0 {
            format!("s{}", rng.below(8))
        } else {
            String::new()
        },
        ..prompt_request(prompt, 8 + rng.below(56) as u32)
    });
    // Every request ends soon after the run does; action 3 also gets a short deadline.
    let mut timeout = end.saturating_duration_since(Instant::now()) + END_GRACE;
    if action == 3 {
        timeout = timeout.min(Duration::from_millis(200 + rng.below(800)));
    }
    request.set_timeout(timeout);
    let mut stream = match client.generate(request).await {
        Ok(s) => s.into_inner(),
        Err(s) if s.code() == Code::ResourceExhausted => {
            tally.refused += 1;
            // A real client backs off before retrying a full queue.
            return tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(s) => return tally.unexpected.push(format!("start: {s:?}")),
    };
    let stop_after = 1 + rng.below(6) as usize;
    let mut deltas = 0;
    loop {
        match stream.message().await {
            Ok(Some(msg)) => match msg.event {
                Some(Event::Delta(d)) => {
                    deltas += 1;
                    tally.tokens += d.token_ids.len();
                    if deltas == stop_after && action == 1 {
                        return tally.dropped += 1; // drops the stream
                    }
                    if deltas == stop_after && action == 2 {
                        let r = client
                            .cancel(proto::CancelRequest {
                                request_id: id.clone(),
                            })
                            .await;
                        if let Err(e) = r {
                            tally.unexpected.push(format!("cancel: {e:?}"));
                        }
                    }
                }
                Some(Event::Done(d)) => {
                    match d.finish_reason() {
                        proto::FinishReason::Cancelled => tally.cancelled += 1,
                        _ => tally.completed += 1,
                    }
                    return;
                }
                None => return tally.unexpected.push("empty event".into()),
            },
            Ok(None) => return tally.unexpected.push("stream ended without Done".into()),
            Err(s) if s.code() == Code::DeadlineExceeded => return tally.deadline += 1,
            Err(s) => return tally.unexpected.push(format!("stream: {s:?}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_streams_with_random_cancels() {
    let Some(model) = smollm() else { return };
    let config =
        format!("[scheduler]\nmax_batch = 16\nqueue_depth = 64\ncache_bytes = {CACHE_BYTES}\n");
    let daemon = Daemon::start(&model, 2, &config);
    let mut client = daemon.client().await;
    for p in prompts() {
        generate(&mut client, prompt_request(&p, 16)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = daemon.rss_bytes();

    // A few connections, each carrying a share of the streams.
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(daemon.channel().await);
    }
    let end = Instant::now() + RUN_FOR;
    let tasks: Vec<_> = (0..STREAMS)
        .map(|task| {
            let mut client = InferenceClient::new(channels[task % channels.len()].clone());
            tokio::spawn(async move {
                let prompts = prompts();
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (task as u64 + 1));
                let mut tally = Tally::default();
                let mut n = 0;
                while Instant::now() < end {
                    let prompt = &prompts[rng.below(prompts.len() as u64) as usize];
                    let id = format!("t{task}-{n}");
                    one_request(&mut client, &mut rng, id, prompt, end, &mut tally).await;
                    n += 1;
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for t in tasks {
        let t = t.await.unwrap();
        total.completed += t.completed;
        total.dropped += t.dropped;
        total.cancelled += t.cancelled;
        total.deadline += t.deadline;
        total.refused += t.refused;
        total.tokens += t.tokens;
        total.unexpected.extend(t.unexpected);
    }
    println!("load: {total:?} in {RUN_FOR:?}");
    assert!(total.unexpected.is_empty(), "{:?}", total.unexpected);
    assert!(total.completed > 0 && total.dropped + total.cancelled + total.deadline > 0);

    // Still serving, and the memory of the finished streams is back (the cache may keep its budget).
    let out = generate(&mut client, prompt_request("The capital of France is", 8))
        .await
        .unwrap();
    assert_eq!(out.ids.len(), 8);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = daemon.rss_bytes();
    println!(
        "rss: idle {} MiB, after load {} MiB",
        idle >> 20,
        after >> 20
    );
    let slack = CACHE_BYTES + (64 << 20);
    assert!(
        after < idle + slack,
        "rss grew from {idle} to {after} bytes"
    );
}
