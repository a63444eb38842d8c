//! An incremental scanner of WebSocket frames (RFC 6455 §5.2), fed the bytes of one direction
//! of a connection as they pass, in pieces of any size.
//!
//! Also the end of hyper's `101 Switching Protocols` head, where a connection becomes a
//! WebSocket. The frame scanner decodes only what delivery receipts need: complete frames whose payload is a single
//! byte of text (an Engine.IO packet without data: `2` ping, `3` pong, `5` upgrade) and close
//! frames. Every other payload is skipped, not copied or unmasked, so watching a connection
//! costs a few comparisons per frame.

/// A frame of interest, reported once its last byte has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// An unfragmented text frame of exactly one byte (unmasked).
    Tiny(u8),
    /// A close frame.
    Close,
}

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;

#[derive(Debug)]
enum Stage {
    /// Collecting a frame header: up to 2 + 8 (length) + 4 (mask key) bytes.
    Head { buf: [u8; 14], have: usize },
    /// Passing over a payload.
    Payload { left: u64, kind: Kind },
}

/// What to do with the payload being passed over.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Skip,
    /// A one-byte text frame: its byte once seen, unmasked with the first byte of the key.
    Tiny {
        key: u8,
        byte: Option<u8>,
    },
    Close,
}

#[derive(Debug)]
pub struct FrameScanner {
    stage: Stage,
}

impl Default for FrameScanner {
    fn default() -> Self {
        Self { stage: Stage::Head { buf: [0; 14], have: 0 } }
    }
}

impl FrameScanner {
    /// Scans `bytes`, the next bytes of the stream, calling `seen` for each frame of interest
    /// that ends within them.
    pub fn feed(&mut self, mut bytes: &[u8], mut seen: impl FnMut(Frame)) {
        while !bytes.is_empty() {
            match &mut self.stage {
                Stage::Head { buf, have } => {
                    buf[*have] = bytes[0];
                    *have += 1;
                    bytes = &bytes[1..];
                    if header_len(&buf[..*have]) == Some(*have) {
                        let (left, kind) = decode_header(&buf[..*have]);
                        self.stage = Stage::Payload { left, kind };
                    }
                }
                Stage::Payload { left, kind } => {
                    let take = (*left).min(bytes.len() as u64) as usize;
                    if let Kind::Tiny { key, byte: byte @ None } = kind {
                        *byte = bytes.first().map(|b| b ^ *key);
                    }
                    *left -= take as u64;
                    bytes = &bytes[take..];
                }
            }
            // A frame ends with its last payload byte, or with its header when it has none.
            if let Stage::Payload { left: 0, kind } = self.stage {
                match kind {
                    Kind::Tiny { byte: Some(b), .. } => seen(Frame::Tiny(b)),
                    Kind::Close => seen(Frame::Close),
                    _ => {}
                }
                self.stage = Stage::Head { buf: [0; 14], have: 0 };
            }
        }
    }
}

/// The full length of the header that starts with `head`, once its first two bytes are known.
fn header_len(head: &[u8]) -> Option<usize> {
    if head.len() < 2 {
        return None;
    }
    let masked = head[1] & 0x80 != 0;
    let extended = match head[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    Some(2 + extended + if masked { 4 } else { 0 })
}

fn decode_header(head: &[u8]) -> (u64, Kind) {
    let fin = head[0] & 0x80 != 0;
    let opcode = head[0] & 0x0f;
    let (len, at) = match head[1] & 0x7f {
        126 => (u64::from(u16::from_be_bytes([head[2], head[3]])), 4),
        127 => {
            let mut be = [0u8; 8];
            be.copy_from_slice(&head[2..10]);
            (u64::from_be_bytes(be), 10)
        }
        short => (u64::from(short), 2),
    };
    let key = if head[1] & 0x80 != 0 { head[at] } else { 0 };
    let kind = match opcode {
        OP_TEXT if fin && len == 1 => Kind::Tiny { key, byte: None },
        OP_CLOSE => Kind::Close,
        _ => Kind::Skip,
    };
    (len, kind)
}

/// Finds the end of hyper's `101 Switching Protocols` head in the outgoing bytes.
#[derive(Debug, Default)]
pub struct UpgradeHead {
    /// How much of `HTTP/1.1 101 ` has matched, then how much of the blank line.
    matched: usize,
    in_head: bool,
}

impl UpgradeHead {
    const START: &'static [u8] = b"HTTP/1.1 101 ";
    const END: &'static [u8] = b"\r\n\r\n";

    /// The offset just past the head's end, if it ends within `bytes`.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            let pattern = if self.in_head { Self::END } else { Self::START };
            if b == pattern[self.matched] {
                self.matched += 1;
            } else {
                // In both patterns, no proper suffix of a matched part followed by a byte
                // that does not match is longer than one byte and a prefix of the pattern.
                self.matched = usize::from(b == pattern[0]);
            }
            if self.matched == pattern.len() {
                self.matched = 0;
                if self.in_head {
                    return Some(i + 1);
                }
                self.in_head = true;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a server writes it (unmasked) or a client does (masked with `key`).
    fn frame(fin: bool, opcode: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let mask_bit = if key.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n <= 0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match key {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    fn scan_in_pieces(stream: &[u8], piece: usize) -> Vec<Frame> {
        let mut scanner = FrameScanner::default();
        let mut seen = Vec::new();
        for chunk in stream.chunks(piece) {
            scanner.feed(chunk, |f| seen.push(f));
        }
        seen
    }

    #[test]
    fn finds_pings_pongs_and_closes_among_other_frames_whatever_the_pieces() {
        let key = Some([0x37, 0xfa, 0x21, 0x3d]);
        let mut stream = Vec::new();
        stream.extend(frame(true, OP_TEXT, b"3", key));
        stream.extend(frame(true, OP_TEXT, br#"42["message:new",{"chatId":"c"}]"#, key));
        stream.extend(frame(true, OP_TEXT, &vec![b'x'; 300], key)); // 16-bit length
        stream.extend(frame(true, 0x2, &vec![7u8; 70_000], key)); // 64-bit length, binary
        stream.extend(frame(true, 0x9, b"", key)); // a WebSocket ping, empty
        stream.extend(frame(true, OP_TEXT, b"5", key));
        stream.extend(frame(true, OP_CLOSE, &[0x03, 0xe8], key));
        let expected = vec![Frame::Tiny(b'3'), Frame::Tiny(b'5'), Frame::Close];
        for piece in [1, 2, 3, 7, 64, 1000, stream.len()] {
            assert_eq!(scan_in_pieces(&stream, piece), expected, "pieces of {piece}");
        }
    }

    #[test]
    fn reads_unmasked_server_frames_and_empty_closes() {
        let mut stream = frame(true, OP_TEXT, b"2", None);
        stream.extend(frame(true, OP_TEXT, b"4", None));
        stream.extend(frame(true, OP_CLOSE, b"", None));
        assert_eq!(scan_in_pieces(&stream, 1), vec![Frame::Tiny(b'2'), Frame::Tiny(b'4'), Frame::Close]);
    }

    #[test]
    fn a_one_byte_fragment_is_not_a_packet() {
        let mut stream = frame(false, OP_TEXT, b"3", None);
        stream.extend(frame(true, 0x0, b"3", None));
        assert!(scan_in_pieces(&stream, 2).is_empty());
    }

    #[test]
    fn finds_the_end_of_the_upgrade_head_in_any_pieces() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 101 Switching Protocols\r\n\
            upgrade: websocket\r\nconnection: Upgrade\r\n\r\n\x81\x012";
        let end = head.len() - 3;
        for piece in [1, 2, 5, head.len()] {
            let mut finder = UpgradeHead::default();
            let mut at = 0;
            let mut found = None;
            for chunk in head.chunks(piece) {
                if let Some(i) = finder.feed(chunk) {
                    found = Some(at + i);
                    break;
                }
                at += chunk.len();
            }
            assert_eq!(found, Some(end), "pieces of {piece}");
        }
    }
}
