//! What a provider's programs print while a step runs (the SSH runner's scripts): lines handed
//! to the executor, which records them in the workflow's event log as `step_output` events.
//!
//! The executor opens a [`capture`] around each provider call; a provider reports lines with
//! [`line`], wherever in that call's future it reads them. Outside a capture (drift checks,
//! a provider used directly) lines go nowhere. The text is data from a host: [`clean`] keeps it
//! to one printable line of bounded length, and the executor redacts every known secret before
//! the event is stored or sent.

use std::future::Future;

use tokio::sync::mpsc;

/// Longest line kept, in characters; the rest is cut with a marker.
pub const MAX_LINE_CHARS: usize = 400;

/// Lines waiting for the executor; when it falls this far behind, lines are counted, not kept.
const QUEUE: usize = 1024;

/// Which of a program's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of output, already cleaned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub stream: Stream,
    pub text: String,
}

#[derive(Clone)]
struct Sink {
    lines: mpsc::Sender<Line>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

tokio::task_local! {
    static SINK: Sink;
}

/// Receives what [`capture`]d calls printed.
pub struct Captured {
    pub lines: mpsc::Receiver<Line>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Captured {
    /// Lines lost because the receiver fell [`QUEUE`] lines behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A channel for one provider call: run the call with [`Capturing::scope`], read the lines from
/// [`Captured::lines`] (the channel closes when the call's future ends).
pub fn channel() -> (Capturing, Captured) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    (
        Capturing(Sink {
            lines: tx,
            dropped: dropped.clone(),
        }),
        Captured { lines: rx, dropped },
    )
}

/// The sending half of [`channel`].
pub struct Capturing(Sink);

impl Capturing {
    /// Runs `f` with its output going to this channel.
    pub async fn scope<F: Future>(self, f: F) -> F::Output {
        SINK.scope(self.0, f).await
    }
}

/// Whether lines reported now go anywhere (a provider can skip reading line by line when not).
pub fn capturing() -> bool {
    SINK.try_with(|_| ()).is_ok()
}

/// Reports one line a program printed. Never blocks: a full queue drops the line (counted).
pub fn line(stream: Stream, raw: &str) {
    let _ = SINK.try_with(|sink| {
        let text = clean(raw);
        if text.is_empty() {
            return;
        }
        if sink.lines.try_send(Line { stream, text }).is_err() {
            sink.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
}

/// `raw` as one printable line: control characters (escape sequences, carriage returns, NUL)
/// become spaces, trailing space goes, and more than [`MAX_LINE_CHARS`] characters are cut.
pub fn clean(raw: &str) -> String {
    let mut out = String::new();
    for (n, c) in raw.chars().enumerate() {
        if n == MAX_LINE_CHARS {
            out.push_str(" [line cut]");
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_printable_line() {
        assert_eq!(clean("ok\r\x1b[31mred\x1b[0m\0"), "ok  [31mred [0m");
        let long = "x".repeat(MAX_LINE_CHARS + 50);
        let cut = clean(&long);
        assert!(cut.ends_with("[line cut]"));
        assert_eq!(cut.chars().filter(|c| *c == 'x').count(), MAX_LINE_CHARS);
    }

    #[tokio::test]
    async fn lines_reach_the_capture_they_were_reported_in() {
        line(Stream::Stdout, "before: nobody listens");
        let (sender, mut captured) = channel();
        sender
            .scope(async {
                assert!(capturing());
                tokio::task::yield_now().await;
                line(Stream::Stderr, "inside\n");
            })
            .await;
        assert!(!capturing());
        let got = captured.lines.recv().await.unwrap();
        assert_eq!(
            got,
            Line {
                stream: Stream::Stderr,
                text: "inside".into()
            }
        );
        assert!(
            captured.lines.recv().await.is_none(),
            "closed after the call"
        );
    }
}
