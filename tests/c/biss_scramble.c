/* Test helper for tests/e2e_biss.rs: scrambles a transport stream with
 * Debian's libdvbcsa, as a BISS-1 uplink would (one constant session word,
 * even parity), so capbox's descrambling is checked against a stream it did
 * not write.
 *
 * Usage: biss_scramble <16 hex digits cw> <pid>... < clear.ts > scrambled.ts
 * Packets of the given PIDs whose payload (after the adaptation field) is at
 * least 8 bytes get it encrypted and transport_scrambling_control = 10;
 * everything else is copied unchanged. */
#include <dvbcsa/dvbcsa.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  unsigned char cw[8], p[188];
  int pids[16], npids = 0;
  if (argc < 3 || argc > 18) return 1;
  for (int i = 0; i < 8; i++) {
    unsigned int b;
    if (sscanf(argv[1] + 2 * i, "%2x", &b) != 1) return 1;
    cw[i] = (unsigned char)b;
  }
  for (int i = 2; i < argc; i++) pids[npids++] = (int)strtol(argv[i], NULL, 0);
  struct dvbcsa_key_s *key = dvbcsa_key_alloc();
  dvbcsa_key_set(cw, key);
  while (fread(p, 1, 188, stdin) == 188) {
    int pid = ((p[1] & 0x1f) << 8) | p[2], want = 0;
    for (int i = 0; i < npids; i++) want |= pids[i] == pid;
    int off = 4;
    if (p[3] & 0x20) off = 5 + p[4];
    if (want && p[0] == 0x47 && (p[3] & 0x10) && (p[3] & 0xc0) == 0 && off <= 180) {
      dvbcsa_encrypt(key, p + off, 188 - off);
      p[3] = (p[3] & 0x3f) | 0x80;
    }
    if (fwrite(p, 1, 188, stdout) != 188) return 4;
  }
  dvbcsa_key_free(key);
  return 0;
}
