//! Server-sent events as the chat-completions API streams them: `data: {json}` events ending
//! in `data: [DONE]`. The decoder takes bytes as they arrive, split anywhere, and bounds what a
//! misbehaving server can make it hold.

/// One event's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    Data(String),
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event stream line is longer than {0} bytes")]
    LineTooLong(usize),
    #[error("the event stream is not UTF-8")]
    NotUtf8,
}

/// The longest line kept: a chunk of a chat completion is a few hundred bytes.
pub const MAX_LINE: usize = 1 << 20;

/// The SSE form of one JSON payload.
pub fn encode(json: &str) -> String {
    format!("data: {json}\n\n")
}

pub const DONE: &str = "data: [DONE]\n\n";

/// Incremental decoder: `push` bytes, get the events they complete.
#[derive(Debug, Default)]
pub struct SseDecoder {
    pending: Vec<u8>,
    data: Vec<String>,
}

impl SseDecoder {
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
            self.line(&line, &mut events);
        }
        if self.pending.len() > MAX_LINE {
            return Err(SseError::LineTooLong(MAX_LINE));
        }
        Ok(events)
    }

    /// The stream ended: an event not closed by a blank line still counts.
    pub fn finish(&mut self) -> Result<Vec<SseEvent>, SseError> {
        let mut events = self.push(b"\n")?;
        self.line("", &mut events);
        Ok(events)
    }

    fn line(&mut self, line: &str, events: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if !self.data.is_empty() {
                let data = std::mem::take(&mut self.data).join("\n");
                events.push(if data.trim() == "[DONE]" {
                    SseEvent::Done
                } else {
                    SseEvent::Data(data)
                });
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        if field == "data" {
            self.data
                .push(value.strip_prefix(' ').unwrap_or(value).to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_any_split() {
        let stream = ": keep-alive\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: {\"b\":\ndata: 2}\n\ndata: [DONE]\n\n";
        let expect = vec![
            SseEvent::Data("{\"a\":1}".into()),
            SseEvent::Data("{\"b\":\n2}".into()),
            SseEvent::Done,
        ];
        for split in 0..stream.len() {
            let mut d = SseDecoder::default();
            let mut got = d.push(&stream.as_bytes()[..split]).unwrap();
            got.extend(d.push(&stream.as_bytes()[split..]).unwrap());
            got.extend(d.finish().unwrap());
            assert_eq!(got, expect, "split at {split}");
        }
        let mut d = SseDecoder::default();
        assert_eq!(d.push(b"data: {\"tail\":true}").unwrap(), vec![]);
        assert_eq!(
            d.finish().unwrap(),
            vec![SseEvent::Data("{\"tail\":true}".into())]
        );
        assert_eq!(encode("{}"), "data: {}\n\n");
    }

    #[test]
    fn garbage_is_bounded_and_typed() {
        let mut d = SseDecoder::default();
        assert_eq!(
            d.push(&vec![b'x'; MAX_LINE + 1]),
            Err(SseError::LineTooLong(MAX_LINE))
        );
        let mut d = SseDecoder::default();
        assert_eq!(d.push(b"data: \xff\xfe\n"), Err(SseError::NotUtf8));
    }
}
