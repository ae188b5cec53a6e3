// Self-test of router/overlay/native/sleeve-aead.h (OpenSSL EVP ChaCha20-Poly1305),
// compiled and run by test/unit/sleeve-aead-c.test.ts. Prints "ok N" and exits 0,
// or prints the failed check and exits 1. Interop with the JS side (sodium-native)
// is tested through the UDP addon in test/unit/native-aead.test.ts.
#include "sleeve-aead.h"

#include <stdio.h>
#include <stdlib.h>
#include <vector>

static int checks = 0;
#define CHECK(c)                                                   \
  do {                                                             \
    checks++;                                                      \
    if (!(c)) {                                                    \
      fprintf(stderr, "FAIL line %d: %s\n", __LINE__, #c);         \
      exit(1);                                                     \
    }                                                              \
  } while (0)

static std::vector<uint8_t> Hex(const char* h) {
  std::vector<uint8_t> v;
  for (size_t i = 0; h[i] && h[i + 1]; i += 2) {
    unsigned b;
    sscanf(h + i, "%2x", &b);
    v.push_back(static_cast<uint8_t>(b));
  }
  return v;
}

namespace sa = sleeve_aead;

int main() {
  CHECK(sa::Init());

  // RFC 8439 section 2.8.2: the AEAD_CHACHA20_POLY1305 test vector.
  uint8_t key[32];
  for (int i = 0; i < 32; i++) key[i] = static_cast<uint8_t>(0x80 + i);
  const auto nonce = Hex("070000004041424344454647");
  const auto aad = Hex("50515253c0c1c2c3c4c5c6c7");
  const char* text = "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
  const std::vector<uint8_t> pt(text, text + strlen(text));
  const auto ct = Hex(
      "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b"
      "1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
      "3ff4def08e4b7a9de576d26586cec64b6116");
  const auto tag = Hex("1ae10b594f09e26a7e902ecbd0600691");
  CHECK(pt.size() == 114 && ct.size() == 114 && tag.size() == 16);
  std::vector<uint8_t> out(pt.size());
  uint8_t t[16];
  CHECK(sa::detail::SealRaw(key, nonce.data(), aad.data(), aad.size(), pt.data(), pt.size(), out.data(), t));
  CHECK(out == ct);
  CHECK(memcmp(t, tag.data(), 16) == 0);
  std::vector<uint8_t> back(pt.size());
  CHECK(sa::detail::OpenRaw(key, nonce.data(), aad.data(), aad.size(), ct.data(), ct.size(), tag.data(), back.data()));
  CHECK(back == pt);
  // in place
  std::vector<uint8_t> inplace = pt;
  CHECK(sa::detail::SealRaw(key, nonce.data(), aad.data(), aad.size(), inplace.data(), inplace.size(), inplace.data(), t));
  CHECK(inplace == ct);

  // Tampering: every bit of tag, AAD, ciphertext (sampled), and the nonce, is rejected
  // and the output holds no unauthenticated plaintext afterwards.
  auto rejects = [&](std::vector<uint8_t> c, std::vector<uint8_t> a, std::vector<uint8_t> tg, std::vector<uint8_t> n) {
    std::vector<uint8_t> o(c.size(), 0xaa);
    bool ok = sa::detail::OpenRaw(key, n.data(), a.data(), a.size(), c.data(), c.size(), tg.data(), o.data());
    for (uint8_t b : o)
      if (b != 0) return false;  // wiped
    return !ok;
  };
  const std::vector<uint8_t> tagv(tag.begin(), tag.end());
  for (int bit = 0; bit < 128; bit++) {
    auto tg = tagv;
    tg[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
    CHECK(rejects(ct, aad, tg, nonce));
  }
  for (int bit = 0; bit < 96; bit++) {
    auto a = aad;
    a[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
    CHECK(rejects(ct, a, tagv, nonce));
    auto n = nonce;
    n[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
    CHECK(rejects(ct, aad, tagv, n));
  }
  for (size_t i = 0; i < ct.size(); i += 7) {
    auto c = ct;
    c[i] ^= 0x01;
    CHECK(rejects(c, aad, tagv, nonce));
  }
  {  // AAD shortened or dropped
    CHECK(rejects(ct, std::vector<uint8_t>(aad.begin(), aad.end() - 1), tagv, nonce));
    std::vector<uint8_t> o(ct.size());
    CHECK(!sa::detail::OpenRaw(key, nonce.data(), nullptr, 0, ct.data(), ct.size(), tag.data(), o.data()));
  }

  // Wire format (sleeve-aead.h Seal/Open): header | epoch | counter(56) | ct | tag, AAD = bytes 0..16,
  // nonce = 00000000 | bytes 8..16; checked against the raw construction.
  alignas(8) uint8_t seal_st[16];
  double sst[2] = {12345.0, 7.0};
  memcpy(seal_st, sst, 16);
  const uint8_t hdr[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<uint8_t> dg(1400 + sa::kOverhead);
  long dl = sa::Seal(reinterpret_cast<double*>(seal_st), key, hdr, pt.data(), pt.size(), dg.data(), dg.size());
  CHECK(dl == static_cast<long>(pt.size() + sa::kOverhead));
  CHECK(memcmp(dg.data(), hdr, 8) == 0 && dg[8] == 7);
  CHECK(dg[14] == (12345 >> 8) && dg[15] == (12345 & 0xff));
  {
    uint8_t n[12] = {0};
    memcpy(n + 4, dg.data() + 8, 8);
    std::vector<uint8_t> o(pt.size());
    CHECK(sa::detail::OpenRaw(key, n, dg.data(), 16, dg.data() + 16, pt.size(), dg.data() + 16 + pt.size(), o.data()));
    CHECK(o == pt);
  }
  // Open with a 64-bit window state: ok once, then replay; tampered header -> auth.
  std::vector<uint8_t> ost(sa::OpenStateBytes(64), 0);
  double ohdr[8] = {7.0, -1.0, 0, 0, 0, 0, 0, 2.0};
  memcpy(ost.data(), ohdr, sizeof ohdr);
  CHECK(sa::OpenStateValid(ost.data(), ost.size()));
  std::vector<uint8_t> o(pt.size());
  auto bad = dg;
  bad[3] ^= 0x40;  // header (AAD)
  CHECK(sa::Open(ost.data(), key, bad.data(), dl, o.data(), o.size()) == sa::kOpenAuth);
  bad = dg;
  bad[dl - 1] ^= 0x01;  // tag
  CHECK(sa::Open(ost.data(), key, bad.data(), dl, o.data(), o.size()) == sa::kOpenAuth);
  bad = dg;
  bad[20] ^= 0x80;  // ciphertext
  CHECK(sa::Open(ost.data(), key, bad.data(), dl, o.data(), o.size()) == sa::kOpenAuth);
  bad = dg;
  bad[8] ^= 0x01;  // epoch byte: another epoch goes to JavaScript
  CHECK(sa::Open(ost.data(), key, bad.data(), dl, o.data(), o.size()) == sa::kAeadPunt);
  double counts[8];
  memcpy(counts, ost.data(), sizeof counts);
  CHECK(counts[sa::kAuth] == 3 && counts[sa::kOk] == 0);
  CHECK(sa::Open(ost.data(), key, dg.data(), dl, o.data(), o.size()) == static_cast<long>(pt.size()) && o == pt);
  CHECK(sa::Open(ost.data(), key, dg.data(), dl, o.data(), o.size()) == sa::kOpenReplay);
  memcpy(counts, ost.data(), sizeof counts);
  CHECK(counts[sa::kOk] == 1 && counts[sa::kReplay] == 1);
  CHECK(sa::Open(ost.data(), key, dg.data(), 31, o.data(), o.size()) == sa::kOpenMalformed);

  // The per-thread context cache: more keys than slots, interleaved, each key
  // opens only its own datagrams (no stale context is ever used for another key).
  const int kKeys = 3 * sa::detail::kCtxSlots + 1;
  std::vector<std::vector<uint8_t>> keys(kKeys, std::vector<uint8_t>(32));
  for (int k = 0; k < kKeys; k++)
    for (int i = 0; i < 32; i++) keys[k][i] = static_cast<uint8_t>(k * 31 + i * 7 + 1);
  for (int round = 0; round < 4; round++) {
    for (int k0 = 0; k0 < kKeys; k0++) {
      int k = (k0 * (round + 1)) % kKeys;
      uint8_t n[12] = {0};
      n[11] = static_cast<uint8_t>(round);
      std::vector<uint8_t> c(pt.size());
      uint8_t tg[16];
      CHECK(sa::detail::SealRaw(keys[k].data(), n, aad.data(), aad.size(), pt.data(), pt.size(), c.data(), tg));
      std::vector<uint8_t> p(pt.size());
      CHECK(sa::detail::OpenRaw(keys[k].data(), n, aad.data(), aad.size(), c.data(), c.size(), tg, p.data()) && p == pt);
      CHECK(!sa::detail::OpenRaw(keys[(k + 1) % kKeys].data(), n, aad.data(), aad.size(), c.data(), c.size(), tg, p.data()));
    }
  }
  // Empty plaintext: tag only.
  {
    uint8_t n[12] = {0}, tg[16];
    CHECK(sa::detail::SealRaw(key, n, aad.data(), aad.size(), nullptr, 0, nullptr, tg));
    CHECK(sa::detail::OpenRaw(key, n, aad.data(), aad.size(), nullptr, 0, tg, nullptr));
    tg[0] ^= 1;
    CHECK(!sa::detail::OpenRaw(key, n, aad.data(), aad.size(), nullptr, 0, tg, nullptr));
  }
  printf("ok %d\n", checks);
  return 0;
}
