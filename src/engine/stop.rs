//! Stop strings over streamed text: text is released only once it can no longer be the start of
//! a stop string, so a client never sees part of a stop sequence.

pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

/// What the matcher lets through after a piece of text arrives.
#[derive(Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// Text that is safe to emit (possibly empty).
    Continue(String),
    /// A stop string matched: emit this text (what preceded the stop string) and finish.
    Stopped(String),
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            pending: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> StopOutcome {
        self.pending.push_str(text);
        let first_match = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = first_match {
            let before = self.pending[..at].to_string();
            self.pending.clear();
            return StopOutcome::Stopped(before);
        }
        // Hold back the longest tail that could still grow into a stop string.
        let hold = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.pending, s))
            .max()
            .unwrap_or(0);
        let cut = self.pending.len() - hold;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        StopOutcome::Continue(out)
    }

    /// The held-back text at the end of generation (it did not turn into a stop string).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// Length in bytes of the longest suffix of `text` that is a proper prefix of `stop`, on a char
/// boundary.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = stop.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| {
            let start = text.len() - n;
            text.is_char_boundary(start) && stop.starts_with(&text[start..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_partial_matches_and_stops_before_the_stop_string() {
        let mut m = StopMatcher::new(vec!["\n\nUser:".into(), "###".into()]);
        assert_eq!(m.push("Hello"), StopOutcome::Continue("Hello".into()));
        assert_eq!(m.push(" world\n"), StopOutcome::Continue(" world".into()));
        assert_eq!(m.push("\nUs"), StopOutcome::Continue("".into()));
        assert_eq!(m.push("er: hi"), StopOutcome::Stopped("".into()));
    }

    #[test]
    fn releases_held_text_when_the_match_fails() {
        let mut m = StopMatcher::new(vec!["###".into()]);
        assert_eq!(m.push("a#"), StopOutcome::Continue("a".into()));
        assert_eq!(m.push("#b"), StopOutcome::Continue("##b".into()));
        assert_eq!(m.push("c##"), StopOutcome::Continue("c".into()));
        assert_eq!(m.finish(), "##");
        assert_eq!(m.push("x###y"), StopOutcome::Stopped("x".into()));
    }

    #[test]
    fn no_stops_passes_everything_and_handles_multibyte() {
        let mut m = StopMatcher::new(vec![]);
        assert_eq!(m.push("héllo"), StopOutcome::Continue("héllo".into()));
        let mut m = StopMatcher::new(vec!["é!".into()]);
        assert_eq!(m.push("caf"), StopOutcome::Continue("caf".into()));
        assert_eq!(m.push("é"), StopOutcome::Continue("".into()));
        assert_eq!(m.push("!"), StopOutcome::Stopped("".into()));
    }
}
