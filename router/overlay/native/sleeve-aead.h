// Sealing and opening sleeve datagrams in C, for the flow caches (udp.cc, tap.cc).
//
// Cipher: ChaCha20-Poly1305, IETF construction (RFC 8439: 32-byte key, 96-bit
// nonce, 16-byte tag) from libsodium (crypto_aead_chacha20poly1305_ietf_*), the
// same library and construction router/crypto/aead.ts uses through
// sodium-native. No cipher code of our own.
//
// Wire format: identical to aead.ts (see its header comment):
//   header (8 B, clear) | epoch (1 B) | counter (56 bit, big-endian) | ciphertext | tag (16 B)
//   associated data = bytes 0..16, nonce = 00 00 00 00 | bytes 8..16.
//
// State shared with JavaScript (plain memory inside a Buffer both sides use, so
// JS and C never disagree about the next counter or which counters were seen):
//
//   seal state, 16 bytes = 2 doubles:
//     [0] next counter (a safe integer, < 2^53 - 1)   [1] key epoch (0..255)
//   open state, 64 + 4 * nBlocks bytes:
//     doubles [0] current epoch  [1] highest counter accepted (-1: none)
//             [2] ok [3] replay [4] auth [5] malformed [6] unknown-key   (outcome counters)
//             [7] nBlocks (ring size in 32-bit blocks, a power of two >= 2)
//     uint32 blocks[nBlocks] from byte 64: the replay window of the current
//     epoch, RFC 6479 ring (the same acceptance rule as crypto/replay-window.ts).
//
// Doubles rather than 64-bit integers because JS reads them through a
// Float64Array at no cost; every value stays below 2^53, so they are exact.
// Only the current epoch is handled here: a datagram of another epoch returns
// kAeadPunt, and the caller hands it to the JS Opener (which keeps the previous
// and next keys and promotes epochs).
#pragma once

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace sleeve_aead {

constexpr size_t kHeaderBytes = 8;
constexpr size_t kSeqBytes = 8;
constexpr size_t kTagBytes = 16;
constexpr size_t kOverhead = kHeaderBytes + kSeqBytes + kTagBytes;
constexpr size_t kKeyBytes = 32;
constexpr double kMaxSeq = 9007199254740991.0;  // 2^53 - 1, as aead.ts MAX_SEQ
constexpr size_t kSealStateBytes = 16;
constexpr size_t kOpenStateHeader = 64;

// open results (the same numbers as aead.ts OPEN_*), plus kAeadPunt.
constexpr int kOpenReplay = -1;
constexpr int kOpenAuth = -2;
constexpr int kOpenMalformed = -3;
constexpr int kOpenUnknownKey = -4;
constexpr int kAeadPunt = -5;
// seal errors
constexpr int kSealExhausted = -1;
constexpr int kSealTooSmall = -2;

enum OpenCounter { kOk = 2, kReplay = 3, kAuth = 4, kMalformed = 5, kUnknownKey = 6 };

inline bool Init() { return sodium_init() >= 0; }

// Size of an open state with a window of `bits` bits (power of two >= 64).
inline size_t OpenStateBytes(uint32_t bits) { return kOpenStateHeader + bits / 8; }

// Validates an open state's self-described size against the buffer holding it.
inline bool OpenStateValid(const uint8_t* st, size_t bytes) {
  if (bytes < kOpenStateHeader) return false;
  double nb;
  memcpy(&nb, st + 56, sizeof nb);
  if (!(nb >= 2 && nb <= (1 << 19))) return false;
  uint32_t n = static_cast<uint32_t>(nb);
  if (static_cast<double>(n) != nb || (n & (n - 1)) != 0) return false;
  return bytes >= kOpenStateHeader + 4ull * n;
}

// Seal `plain[0, len)` into `out` (capacity `cap`); plain may be out + 16
// (in place). Returns the datagram length, or kSealExhausted / kSealTooSmall.
inline long Seal(double* st, const uint8_t key[kKeyBytes], const uint8_t header[kHeaderBytes],
                 const uint8_t* plain, size_t len, uint8_t* out, size_t cap) {
  if (cap < len + kOverhead) return kSealTooSmall;
  double c = st[0];
  if (!(c >= 0 && c < kMaxSeq)) return kSealExhausted;
  uint64_t seq = static_cast<uint64_t>(c);
  st[0] = c + 1;
  uint32_t epoch = static_cast<uint32_t>(st[1]) & 0xff;
  uint32_t hi = (epoch << 24) | static_cast<uint32_t>((seq >> 32) & 0xffffff);
  uint32_t lo = static_cast<uint32_t>(seq);
  if (plain != out + 16) memmove(out + 16, plain, len);  // then encrypt in place
  memcpy(out, header, kHeaderBytes);
  out[8] = hi >> 24; out[9] = hi >> 16; out[10] = hi >> 8; out[11] = hi;
  out[12] = lo >> 24; out[13] = lo >> 16; out[14] = lo >> 8; out[15] = lo;
  uint8_t nonce[12] = {0};
  memcpy(nonce + 4, out + 8, 8);
  unsigned long long clen = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt(out + 16, &clen, out + 16, len, out, 16, nullptr, nonce, key);
  return static_cast<long>(len + kOverhead);
}

// Verify and decrypt the datagram `d[0, len)` into `out` (capacity `cap`, not
// overlapping d) WITHOUT touching the shared state: no counter is bumped and the
// replay window is not updated. Returns the plaintext length (and its counter in
// *seq_out: pass it to Accept() to take the datagram), an open error (not
// counted) or kAeadPunt (another epoch). The flow caches use it so that a
// datagram they end up not forwarding is left, untouched, to the JS Opener.
inline long Peek(const uint8_t* st, const uint8_t key[kKeyBytes], const uint8_t* d, size_t len, uint8_t* out, size_t cap,
                 uint64_t* seq_out) {
  const double* f = reinterpret_cast<const double*>(st);
  if (len < kOverhead || cap < len - kOverhead) return kOpenMalformed;
  uint32_t hi = (uint32_t(d[8]) << 24) | (uint32_t(d[9]) << 16) | (uint32_t(d[10]) << 8) | d[11];
  uint32_t lo = (uint32_t(d[12]) << 24) | (uint32_t(d[13]) << 16) | (uint32_t(d[14]) << 8) | d[15];
  uint64_t seq = (uint64_t(hi & 0xffffff) << 32) | lo;
  if (static_cast<double>(seq) >= kMaxSeq) return kOpenMalformed;
  if ((hi >> 24) != (static_cast<uint32_t>(f[0]) & 0xff)) return kAeadPunt;
  const uint32_t* blocks = reinterpret_cast<const uint32_t*>(st + kOpenStateHeader);
  const uint64_t nb = static_cast<uint64_t>(f[7]);
  const uint64_t size = nb * 32 - 32;
  const double top = f[1];
  if (top >= 0 && static_cast<double>(seq) <= top) {
    uint64_t t = static_cast<uint64_t>(top);
    if (seq + size <= t || (blocks[(seq / 32) % nb] & (1u << (seq % 32))) != 0) return kOpenReplay;
  }
  uint8_t nonce[12] = {0};
  memcpy(nonce + 4, d + 8, 8);
  unsigned long long mlen = 0;
  if (crypto_aead_chacha20poly1305_ietf_decrypt(out, &mlen, nullptr, d + 16, len - 16, d, 16, nonce, key) != 0) return kOpenAuth;
  *seq_out = seq;
  return static_cast<long>(mlen);
}

// Takes a datagram Peek() verified: marks `seq` in the current epoch's replay
// window (RFC 6479 ring, as crypto/replay-window.ts) and counts it ok.
inline void Accept(uint8_t* st, uint64_t seq) {
  double* f = reinterpret_cast<double*>(st);
  uint32_t* blocks = reinterpret_cast<uint32_t*>(st + kOpenStateHeader);
  const uint64_t nb = static_cast<uint64_t>(f[7]);
  const double top = f[1];
  const uint64_t block = seq / 32;
  if (top < 0 || static_cast<double>(seq) > top) {
    int64_t topBlock = top < 0 ? -1 : static_cast<int64_t>(static_cast<uint64_t>(top) / 32);
    uint64_t diff = static_cast<uint64_t>(static_cast<int64_t>(block) - topBlock);
    if (diff > nb) diff = nb;
    for (uint64_t i = 1; i <= diff; i++) blocks[static_cast<uint64_t>(topBlock + static_cast<int64_t>(i)) % nb] = 0;
    f[1] = static_cast<double>(seq);
  }
  blocks[block % nb] |= 1u << (seq % 32);
  f[kOk] += 1;
}

// Verify and decrypt the datagram `d[0, len)` into `out` (capacity `cap`, not
// overlapping d). Returns the plaintext length, an open error (counted in the
// shared counters) or kAeadPunt (another epoch; not counted, not touched).
inline long Open(uint8_t* st, const uint8_t key[kKeyBytes], const uint8_t* d, size_t len, uint8_t* out, size_t cap) {
  double* f = reinterpret_cast<double*>(st);
  uint64_t seq = 0;
  long r = Peek(st, key, d, len, out, cap, &seq);
  switch (r) {
    case kAeadPunt: return r;
    case kOpenMalformed: f[kMalformed] += 1; return r;
    case kOpenReplay: f[kReplay] += 1; return r;
    case kOpenAuth: f[kAuth] += 1; return r;
    default: break;
  }
  Accept(st, seq);
  return r;
}

}  // namespace sleeve_aead
