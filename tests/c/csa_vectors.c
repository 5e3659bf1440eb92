/* Test vectors for the AVX-512 batch engine self-test that runs inside Bochs
 * (hw-tests/run-bochs.sh, tests/csa_avx512_bochs.rs): random control words
 * and random clear TS packets, scrambled here by Debian's libdvbcsa
 * (dvbcsa_encrypt, per packet), so the guest checks capbox against an
 * implementation it did not write.
 *
 * Usage: csa_vectors SEED OUT
 * OUT (little endian): "CSAVEC01", u32 groups, then per group: even cw[8],
 * odd cw[8], u16 n, n x (scrambled packet[188], expected packet[188]).
 * A group is what the guest pushes into one Batch (one Keys): sizes cover
 * partial batches, exactly one full batch (256) and more than one.
 * Every payload length 0..=184 appears in both parities; lengths < 184 are
 * made with an adaptation field (length 0 with adaptation_field_control 10).
 * The expected packet is the clear one with transport_scrambling_control 00;
 * a few packets per group are clear to begin with and must come out as
 * they went in. */
#include <dvbcsa/dvbcsa.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng;
static uint8_t rnd8(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint8_t)(rng >> 24);
}

static const unsigned sizes[] = {1, 2, 7, 8, 63, 64, 65, 127, 128, 129, 200,
                                 255, 256, 257, 300, 185, 185, 370, 511,
                                 3, 256, 256, 512, 1024};

static void put16(FILE *f, unsigned v) { fputc(v & 255, f), fputc(v >> 8, f); }

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  rng = strtoull(argv[1], NULL, 0) | 1;
  FILE *f = fopen(argv[2], "wb");
  if (!f) return 3;
  unsigned ngroups = sizeof sizes / sizeof sizes[0];
  fwrite("CSAVEC01", 1, 8, f);
  put16(f, ngroups), put16(f, 0);
  struct dvbcsa_key_s *key[2] = {dvbcsa_key_alloc(), dvbcsa_key_alloc()};
  unsigned counter = 0, checked = 0;
  for (unsigned g = 0; g < ngroups; g++) {
    unsigned char cw[2][8];
    for (int p = 0; p < 2; p++) {
      for (int i = 0; i < 8; i++) cw[p][i] = rnd8();
      /* Half the groups with 48-bit words (checksum bytes), as cards send. */
      if (g & 1) cw[p][3] = cw[p][0] + cw[p][1] + cw[p][2], cw[p][7] = cw[p][4] + cw[p][5] + cw[p][6];
      dvbcsa_key_set(cw[p], key[p]);
    }
    fwrite(cw[0], 1, 8, f), fwrite(cw[1], 1, 8, f);
    put16(f, sizes[g]);
    for (unsigned n = 0; n < sizes[g]; n++, counter++) {
      unsigned char clear[188], scr[188];
      /* Lengths walk 0..184 (185 values), parities alternate per pass, so
       * the 185-packet groups and the whole file cover every length with
       * both keys; every 16th packet starts clear. */
      unsigned len = counter % 185;
      int odd = (counter / 185 + n) & 1;
      int is_clear = rnd8() < 16;
      unsigned pid = 0x100 + (rnd8() & 0x3f);
      clear[0] = 0x47;
      clear[1] = pid >> 8;
      clear[2] = pid & 255;
      unsigned afc = len == 184 ? 1 : len == 0 ? 2 : 3;
      clear[3] = (afc << 4) | (counter & 15);
      unsigned off = 4;
      if (afc != 1) {
        unsigned aflen = 183 - len; /* 183 for afc 10, else 0..182 */
        clear[4] = aflen;
        if (aflen > 0) {
          clear[5] = 0; /* no flags: the rest is stuffing */
          memset(clear + 6, 0xff, aflen - 1);
        }
        off = 5 + aflen;
      }
      for (unsigned i = off; i < 188; i++) clear[i] = rnd8();
      memcpy(scr, clear, 188);
      if (!is_clear) {
        dvbcsa_encrypt(key[odd], scr + off, 188 - off);
        scr[3] |= (odd ? 3 : 2) << 6;
        /* Self-check: libdvbcsa's own decrypt gives the clear payload back. */
        unsigned char back[188];
        memcpy(back, scr, 188);
        dvbcsa_decrypt(key[odd], back + off, 188 - off);
        if (memcmp(back + off, clear + off, 188 - off)) return 4;
        checked++;
      }
      fwrite(scr, 1, 188, f), fwrite(clear, 1, 188, f);
    }
  }
  if (fclose(f)) return 5;
  fprintf(stderr, "csa_vectors: %u groups, %u packets (%u scrambled)\n", ngroups, counter, checked);
  return 0;
}
