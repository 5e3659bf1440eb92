/* Test helper for tests/e2e_biss.rs: scrambles a transport stream with
 * Debian's libdvbcsa, as a BISS-1 uplink would (one constant session word,
 * even parity), so capbox's descrambling is checked against a stream it did
 * not write.
 *
 * Usage: biss_scramble <16 hex digits cw> [pmt=<pid> ecm=<pid> [caid=<id>]] <pid>|<lo>-<hi>...
 *        < clear.ts > scrambled.ts
 * A <lo>-<hi> argument (e.g. 0x100-0x8ff) selects every PID in that range:
 * the benchmarks scramble all services of a mux that way.
 * Packets of the given PIDs whose payload (after the adaptation field) is at
 * least 8 bytes get it encrypted and transport_scrambling_control = 10.
 * With pmt= and ecm=, each one-packet PMT section on that PID gets a
 * CA_descriptor (CA_system_id 0x2600, BISS, unless caid= says another) naming the ECM PID in its
 * program_info (CRC recomputed by libbitstream), and is followed by one
 * dummy ECM packet on the ECM PID, as a scrambled service signals itself.
 * Everything else is copied unchanged. */
#include <dvbcsa/dvbcsa.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bitstream/mpeg/psi.h>

/* Insert the CA_descriptor into the PMT section starting at s (room up to
 * end); returns 0 if it does not fit in the packet. */
static int add_ca(uint8_t *s, uint8_t *end, int ecm_pid, int caid) {
  int slen = ((s[1] & 0x0f) << 8) | s[2];
  if (s + 3 + slen + 6 > end || slen < 13) return 0;
  int pil = ((s[10] & 0x0f) << 8) | s[11];
  uint8_t *at = s + 12 + pil;
  memmove(at + 6, at, (size_t)(s + 3 + slen - at));
  uint8_t ca[6] = {0x09, 4, (uint8_t)(caid >> 8), (uint8_t)caid, (uint8_t)(0xe0 | (ecm_pid >> 8)), (uint8_t)ecm_pid};
  memcpy(at, ca, 6);
  slen += 6;
  pil += 6;
  s[1] = (s[1] & 0xf0) | (slen >> 8);
  s[2] = slen & 0xff;
  s[10] = (s[10] & 0xf0) | (pil >> 8);
  s[11] = pil & 0xff;
  psi_set_crc(s);
  return 1;
}

int main(int argc, char **argv) {
  unsigned char cw[8], p[188];
  int pids[16], npids = 0, lo = -1, hi = -1;
  if (argc < 3 || argc > 18) return 1;
  for (int i = 0; i < 8; i++) {
    unsigned int b;
    if (sscanf(argv[1] + 2 * i, "%2x", &b) != 1) return 1;
    cw[i] = (unsigned char)b;
  }
  int pmt_pid = -1, ecm_pid = -1, ecm_cc = 0, caid = 0x2600;
  for (int i = 2; i < argc; i++) {
    if (!strncmp(argv[i], "pmt=", 4))
      pmt_pid = (int)strtol(argv[i] + 4, NULL, 0);
    else if (!strncmp(argv[i], "ecm=", 4))
      ecm_pid = (int)strtol(argv[i] + 4, NULL, 0);
    else if (!strncmp(argv[i], "caid=", 5))
      caid = (int)strtol(argv[i] + 5, NULL, 0);
    else if (strchr(argv[i], '-')) {
      char *dash;
      lo = (int)strtol(argv[i], &dash, 0);
      hi = (int)strtol(dash + 1, NULL, 0);
    } else
      pids[npids++] = (int)strtol(argv[i], NULL, 0);
  }
  struct dvbcsa_key_s *key = dvbcsa_key_alloc();
  dvbcsa_key_set(cw, key);
  while (fread(p, 1, 188, stdin) == 188) {
    int pid = ((p[1] & 0x1f) << 8) | p[2], want = pid >= lo && pid <= hi;
    for (int i = 0; i < npids; i++) want |= pids[i] == pid;
    int off = 4;
    if (p[3] & 0x20) off = 5 + p[4];
    if (want && p[0] == 0x47 && (p[3] & 0x10) && (p[3] & 0xc0) == 0 && off <= 180) {
      dvbcsa_encrypt(key, p + off, 188 - off);
      p[3] = (p[3] & 0x3f) | 0x80;
    }
    bool ecm = false;
    if (pid == pmt_pid && ecm_pid >= 0 && (p[1] & 0x40) && !(p[3] & 0x20)) {
      if (p[4] != 0 || !add_ca(p + 5, p + 188, ecm_pid, caid)) return 5;
      ecm = true;
    }
    if (fwrite(p, 1, 188, stdout) != 188) return 4;
    if (ecm) {
      uint8_t e[188];
      memset(e, 0xff, 188);
      e[0] = 0x47;
      e[1] = 0x40 | (ecm_pid >> 8);
      e[2] = ecm_pid & 0xff;
      e[3] = 0x10 | ecm_cc;
      ecm_cc = (ecm_cc + 1) & 0x0f;
      /* An ECM section header (table_id 0x80) with a dummy body. */
      uint8_t sec[] = {0x00, 0x80, 0x70, 0x05, 1, 2, 3, 4, 5};
      memcpy(e + 4, sec, sizeof sec);
      if (fwrite(e, 1, 188, stdout) != 188) return 4;
    }
  }
  dvbcsa_key_free(key);
  return 0;
}
