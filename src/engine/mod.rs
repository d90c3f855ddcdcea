//! Engine: tokenizer, chat templates, sampling and generation over a loaded model.

pub mod chat;
pub mod generate;
pub mod sampler;
pub mod scheduler;
pub mod sessions;
pub mod stop;
pub mod text_stream;
pub mod tokenizer;
