//! Sealed model files: a GGUF encrypted so that only an app holding its key can use it, in a
//! form that still downloads in ranges, resumes after a cut and is checked chunk by chunk. Each
//! chunk is sealed on its own with AES-256-GCM, its nonce the file's nonce and the chunk's
//! index, and its index and the file's length in the additional data, so chunks cannot be
//! swapped, dropped or cut short without failing to open.
//!
//! Layout: a 32-byte header (`CLSEAL01`, plain chunk size u32 LE, 0 u32, plain length u64 LE,
//! file nonce 8 bytes), then chunk after chunk, each its ciphertext and 16-byte tag. The
//! [`SealedStore`] presents the plain file over any store holding the sealed one, opening chunks
//! as they are read; the cipher is a trait, WebCrypto in the browser and [`AesKey`] elsewhere.

use std::cell::RefCell;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use super::{check_range, ChunkStore, StoreError};

pub const MAGIC: [u8; 8] = *b"CLSEAL01";
pub const HEADER_BYTES: u64 = 32;
pub const TAG_BYTES: u64 = 16;
/// Plain bytes per chunk unless the sealer says otherwise.
pub const DEFAULT_CHUNK: u32 = 4 << 20;
/// Largest chunk taken from a header: a chunk is held whole while it is opened.
const MAX_CHUNK: u32 = 64 << 20;

/// What a sealed file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedHeader {
    pub chunk: u32,
    pub plain_len: u64,
    pub nonce: [u8; 8],
}

impl SealedHeader {
    pub fn to_bytes(&self) -> [u8; HEADER_BYTES as usize] {
        let mut h = [0u8; HEADER_BYTES as usize];
        h[..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&self.chunk.to_le_bytes());
        h[16..24].copy_from_slice(&self.plain_len.to_le_bytes());
        h[24..32].copy_from_slice(&self.nonce);
        h
    }

    /// The header of a sealed file `file_len` bytes long; every field is checked against it.
    pub fn parse(h: &[u8], file_len: u64) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::NotSealed(why.into());
        if h.len() < HEADER_BYTES as usize || h[..8] != MAGIC {
            return Err(bad("no CLSEAL01 header"));
        }
        let chunk = u32::from_le_bytes(h[8..12].try_into().unwrap());
        let plain_len = u64::from_le_bytes(h[16..24].try_into().unwrap());
        if chunk == 0 || chunk > MAX_CHUNK {
            return Err(bad("chunk size out of range"));
        }
        let header = Self {
            chunk,
            plain_len,
            nonce: h[24..32].try_into().unwrap(),
        };
        if header.sealed_len() != Some(file_len) {
            return Err(bad("length does not match the header"));
        }
        Ok(header)
    }

    pub fn chunks(&self) -> u64 {
        self.plain_len.div_ceil(u64::from(self.chunk))
    }

    /// The sealed file's length, None if it overflows.
    pub fn sealed_len(&self) -> Option<u64> {
        self.chunks()
            .checked_mul(TAG_BYTES)?
            .checked_add(self.plain_len)?
            .checked_add(HEADER_BYTES)
    }

    /// Plain bytes in chunk `index`.
    fn plain_in(&self, index: u64) -> u64 {
        (self.plain_len - index * u64::from(self.chunk)).min(u64::from(self.chunk))
    }

    /// Chunk `index`'s nonce and additional data.
    pub fn nonce_and_aad(&self, index: u64) -> ([u8; 12], [u8; 16]) {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&self.nonce);
        nonce[8..].copy_from_slice(&(index as u32).to_be_bytes());
        let mut aad = [0u8; 16];
        aad[..8].copy_from_slice(&index.to_le_bytes());
        aad[8..].copy_from_slice(&self.plain_len.to_le_bytes());
        (nonce, aad)
    }
}

/// Opens sealed chunks: None when the key is wrong or the chunk was tampered with.
#[allow(async_fn_in_trait)]
pub trait ChunkCipher {
    async fn open(&self, nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>>;
}

/// A raw 256-bit key, for sealing (`examples/encrypt`) and opening without WebCrypto.
pub struct AesKey(Aes256Gcm);

impl AesKey {
    /// None unless `key` is 32 bytes.
    pub fn new(key: &[u8]) -> Option<Self> {
        Aes256Gcm::new_from_slice(key).ok().map(Self)
    }

    /// Seals `plain` (a whole GGUF) in chunks of `chunk` bytes under `nonce`.
    pub fn seal(&self, plain: &[u8], chunk: u32, nonce: [u8; 8]) -> Vec<u8> {
        let header = SealedHeader {
            chunk,
            plain_len: plain.len() as u64,
            nonce,
        };
        let mut out = header.to_bytes().to_vec();
        for (i, piece) in plain.chunks(chunk.max(1) as usize).enumerate() {
            let (n, aad) = header.nonce_and_aad(i as u64);
            let sealed = self
                .0
                .encrypt(
                    Nonce::from_slice(&n),
                    Payload {
                        msg: piece,
                        aad: &aad,
                    },
                )
                .expect("AES-GCM seals any length below 64 GiB");
            out.extend_from_slice(&sealed);
        }
        out
    }
}

impl ChunkCipher for AesKey {
    async fn open(&self, nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        self.0
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
            .ok()
    }
}

/// The plain model file over a store holding its sealed form.
pub struct SealedStore<S, C> {
    inner: S,
    cipher: C,
    header: SealedHeader,
    /// The last chunk opened: reads go through a tensor a piece at a time.
    last: RefCell<Option<(u64, Vec<u8>)>>,
}

impl<S: ChunkStore, C: ChunkCipher> SealedStore<S, C> {
    /// Reads the header and opens the first chunk: a wrong key fails here, before any use.
    pub async fn open(inner: S, cipher: C) -> Result<Self, StoreError> {
        let mut h = [0u8; HEADER_BYTES as usize];
        if inner.len() < HEADER_BYTES {
            return Err(StoreError::NotSealed("shorter than its header".into()));
        }
        inner.read_at(0, &mut h).await?;
        let header = SealedHeader::parse(&h, inner.len())?;
        let store = Self {
            inner,
            cipher,
            header,
            last: RefCell::new(None),
        };
        if header.plain_len > 0 {
            store.chunk(0).await?;
        }
        Ok(store)
    }

    pub fn header(&self) -> SealedHeader {
        self.header
    }

    /// Plain chunk `index`, opened (or the one opened last).
    async fn chunk(&self, index: u64) -> Result<(), StoreError> {
        if self
            .last
            .borrow()
            .as_ref()
            .is_some_and(|(i, _)| *i == index)
        {
            return Ok(());
        }
        let chunk = u64::from(self.header.chunk);
        let plain = self.header.plain_in(index);
        let at = HEADER_BYTES + index * (chunk + TAG_BYTES);
        let mut sealed = vec![0u8; (plain + TAG_BYTES) as usize];
        self.inner.read_at(at, &mut sealed).await?;
        let (nonce, aad) = self.header.nonce_and_aad(index);
        let opened = self
            .cipher
            .open(&nonce, &aad, &sealed)
            .await
            .filter(|p| p.len() as u64 == plain)
            .ok_or(StoreError::Decryption { index })?;
        *self.last.borrow_mut() = Some((index, opened));
        Ok(())
    }
}

impl<S: ChunkStore, C: ChunkCipher> ChunkStore for SealedStore<S, C> {
    fn len(&self) -> u64 {
        self.header.plain_len
    }

    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        check_range(offset, buf.len(), self.header.plain_len)?;
        let chunk = u64::from(self.header.chunk);
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let index = pos / chunk;
            self.chunk(index).await?;
            let last = self.last.borrow();
            let (_, plain) = last.as_ref().expect("chunk() keeps the chunk it opened");
            let start = (pos - index * chunk) as usize;
            let n = (plain.len() - start).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&plain[start..start + n]);
            done += n;
        }
        Ok(())
    }
}

impl<C: ChunkCipher> ChunkCipher for std::rc::Rc<C> {
    async fn open(&self, nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        (**self).open(nonce, aad, sealed).await
    }
}
