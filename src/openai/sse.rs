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
    #[error("an event stream event holds more than {0} bytes of data")]
    EventTooLong(usize),
    #[error("the event stream is not UTF-8")]
    NotUtf8,
}

/// The longest line kept: a chunk of a chat completion is a few hundred bytes.
pub const MAX_LINE: usize = 1 << 20;

/// The most data one event may gather over its `data:` lines.
pub const MAX_EVENT: usize = 4 << 20;

/// The SSE form of one JSON payload.
pub fn encode(json: &str) -> String {
    format!("data: {json}\n\n")
}

pub const DONE: &str = "data: [DONE]\n\n";

/// Incremental decoder: `push` bytes, get the events they complete. Each byte is scanned once
/// however the stream is split, so work is linear in what a server sends.
#[derive(Debug, Default)]
pub struct SseDecoder {
    pending: Vec<u8>,
    /// Bytes at the start of `pending` already known to hold no newline.
    scanned: usize,
    event: Event,
}

/// The `data:` lines of the event being read.
#[derive(Debug, Default)]
struct Event {
    data: Vec<String>,
    bytes: usize,
}

impl SseDecoder {
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(i) = self.pending[from..].iter().position(|&b| b == b'\n') {
            let end = from + i;
            let mut line = &self.pending[start..end];
            if line.len() > MAX_LINE {
                return Err(SseError::LineTooLong(MAX_LINE));
            }
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
            self.event.line(line, &mut events)?;
            start = end + 1;
            from = start;
        }
        self.pending.drain(..start);
        self.scanned = self.pending.len();
        if self.pending.len() > MAX_LINE {
            return Err(SseError::LineTooLong(MAX_LINE));
        }
        Ok(events)
    }

    /// The stream ended: an event not closed by a blank line still counts.
    pub fn finish(&mut self) -> Result<Vec<SseEvent>, SseError> {
        let mut events = self.push(b"\n")?;
        self.event.line("", &mut events)?;
        Ok(events)
    }
}

impl Event {
    fn line(&mut self, line: &str, events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            if !self.data.is_empty() {
                let data = std::mem::take(&mut self.data).join("\n");
                self.bytes = 0;
                events.push(if data.trim() == "[DONE]" {
                    SseEvent::Done
                } else {
                    SseEvent::Data(data)
                });
            }
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        if field == "data" {
            let value = value.strip_prefix(' ').unwrap_or(value);
            self.bytes += value.len() + 1;
            if self.bytes > MAX_EVENT {
                return Err(SseError::EventTooLong(MAX_EVENT));
            }
            self.data.push(value.to_string());
        }
        Ok(())
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
        // A long line is refused even when its newline comes in the same push.
        let mut long = vec![b'x'; MAX_LINE + 1];
        long.push(b'\n');
        assert_eq!(
            SseDecoder::default().push(&long),
            Err(SseError::LineTooLong(MAX_LINE))
        );
        // Many short data lines cannot build an event past MAX_EVENT.
        let line = format!("data: {}\n", "y".repeat(1000));
        let mut d = SseDecoder::default();
        let mut r = Ok(vec![]);
        for _ in 0..(MAX_EVENT / 1000 + 2) {
            r = d.push(line.as_bytes());
            if r.is_err() {
                break;
            }
        }
        assert_eq!(r, Err(SseError::EventTooLong(MAX_EVENT)));
    }

    #[test]
    fn work_is_linear_in_the_bytes_sent() {
        // 8 MiB of newlines in one push once took minutes (each line shifted all the rest);
        // a 1 MiB line a byte at a time rescanned everything it held at each byte.
        let mut d = SseDecoder::default();
        assert_eq!(d.push(&vec![b'\n'; 8 << 20]), Ok(vec![]));
        let mut d = SseDecoder::default();
        d.push(b"data: ").unwrap();
        for _ in 0..(MAX_LINE - 16) {
            assert_eq!(d.push(b"z"), Ok(vec![]));
        }
        let events = d.push(b"\n\n").unwrap();
        assert!(matches!(&events[..], [SseEvent::Data(t)] if t.len() == MAX_LINE - 16));
    }
}
