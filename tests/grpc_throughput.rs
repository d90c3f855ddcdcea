//! Aggregate generation speed for 1, 4 and 16 concurrent streams (printed for the record), and
//! that batching the streams' decode steps is not slower than one stream alone.

mod common;
mod grpc_common;

use grpc_common::*;
use std::time::Instant;

const TOKENS: u32 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_tokens_per_second() {
    let Some(model) = smollm() else { return };
    let daemon = Daemon::start(&model, 2, "[scheduler]\nmax_batch = 16\n");
    let channel = daemon.channel().await;
    let mut warm = proto_client(&channel);
    generate(&mut warm, prompt_request("Hello", 8))
        .await
        .unwrap();
    let mut rates = Vec::new();
    for streams in [1usize, 4, 16] {
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..streams)
            .map(|i| {
                let mut client = proto_client(&channel);
                let prompt = format!("Story number {i}: once upon a time");
                tokio::spawn(async move {
                    generate(&mut client, prompt_request(&prompt, TOKENS))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut tokens = 0;
        for t in tasks {
            tokens += t.await.unwrap().usage().completion_tokens as usize;
        }
        let rate = tokens as f64 / t0.elapsed().as_secs_f64();
        println!("throughput: {streams:>2} concurrent streams: {rate:.1} tokens/s aggregate ({tokens} tokens)");
        rates.push(rate);
    }
    // Loose on purpose: the gain depends on the kernels and on what else the machine runs.
    assert!(
        rates[2] > rates[0],
        "16 batched streams were slower than one: {rates:?}"
    );
}

fn proto_client(
    channel: &tonic::transport::Channel,
) -> ggufd::server::proto::inference_client::InferenceClient<tonic::transport::Channel> {
    ggufd::server::proto::inference_client::InferenceClient::new(channel.clone())
}
