//! Chat templates (Jinja, from `tokenizer.chat_template`) rendered with minijinja.
//!
//! A template comes from the model file and is untrusted: rendering runs with a fuel budget, a
//! recursion limit and an output cap, and every failure is an error, never a panic.

use minijinja::{context, Environment, Error, ErrorKind};
use serde::Serialize;

/// Instructions a template may execute per render; real templates need a few thousand.
const FUEL: u64 = 5_000_000;
const RECURSION_LIMIT: usize = 64;
/// Rendered prompts above this size are rejected.
pub const MAX_RENDERED_BYTES: usize = 4 << 20;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("the model has no chat template")]
    NoTemplate,
    #[error("chat template is invalid: {0}")]
    Template(String),
    #[error("chat template failed to render: {0}")]
    Render(String),
    #[error("rendered chat prompt exceeds {MAX_RENDERED_BYTES} bytes")]
    TooLong,
}

pub struct ChatTemplate {
    env: Environment<'static>,
}

const TEMPLATE_NAME: &str = "chat";

impl ChatTemplate {
    pub fn new(source: &str) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|e| ChatError::Template(e.to_string()))?;
        Ok(ChatTemplate { env })
    }

    /// Renders `messages`; `add_generation_prompt` appends the assistant-turn opener.
    pub fn render(
        &self,
        messages: &[Message],
        bos_token: &str,
        eos_token: &str,
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| ChatError::Template(e.to_string()))?;
        let out = tmpl
            .render(context! {
                messages => messages,
                bos_token => bos_token,
                eos_token => eos_token,
                add_generation_prompt => add_generation_prompt,
            })
            .map_err(|e| ChatError::Render(e.to_string()))?;
        if out.len() > MAX_RENDERED_BYTES {
            return Err(ChatError::TooLong);
        }
        Ok(out)
    }
}

/// Renders `messages` with the model's template (with the assistant-turn opener) and tokenizes
/// the result, parsing special tokens. BOS is added unless the template already wrote it.
pub fn chat_prompt_tokens(
    metadata: &crate::gguf::Metadata,
    tokenizer: &super::tokenizer::Tokenizer,
    messages: &[Message],
) -> Result<Vec<u32>, ChatError> {
    let source = metadata
        .opt_str("tokenizer.chat_template")
        .ok()
        .flatten()
        .ok_or(ChatError::NoTemplate)?;
    let piece = |id: Option<u32>| {
        id.map(|t| String::from_utf8_lossy(&tokenizer.token_bytes(t)).into_owned())
            .unwrap_or_default()
    };
    let (bos, eos) = (piece(tokenizer.bos()), piece(tokenizer.eos()));
    let text = ChatTemplate::new(source)?.render(messages, &bos, &eos, true)?;
    let template_wrote_bos = !bos.is_empty() && text.starts_with(&bos);
    Ok(tokenizer.encode(&text, !template_wrote_bos, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Vec<Message> {
        vec![Message {
            role: "user".into(),
            content: text.into(),
        }]
    }

    #[test]
    fn renders_chatml() {
        let t = ChatTemplate::new(
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
             {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        )
        .unwrap();
        let s = t.render(&user("hi"), "", "", true).unwrap();
        assert_eq!(s, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn python_string_methods_work() {
        let t = ChatTemplate::new("{{ messages[0].content.strip() }}").unwrap();
        assert_eq!(t.render(&user("  x  "), "", "", false).unwrap(), "x");
    }

    #[test]
    fn hostile_templates_fail_cleanly() {
        let endless = ChatTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap();
        assert!(matches!(
            endless.render(&user("a"), "", "", false),
            Err(ChatError::Render(_))
        ));
        let recursive =
            ChatTemplate::new("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}").unwrap();
        assert!(recursive.render(&user("a"), "", "", false).is_err());
        let raises = ChatTemplate::new("{{ raise_exception('nope') }}").unwrap();
        assert!(raises
            .render(&user("a"), "", "", false)
            .unwrap_err()
            .to_string()
            .contains("nope"));
        assert!(ChatTemplate::new("{% for %}").is_err());
    }
}
