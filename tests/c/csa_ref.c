/* Test helper for tests/csa_libdvbcsa.rs: runs Debian's libdvbcsa on records
 * read from stdin and writes the results to stdout, so capbox's CSA engine is
 * checked against an implementation it did not write.
 *
 * Record in:  op (1 byte: 'd' dvbcsa_decrypt, 'e' dvbcsa_encrypt,
 *             'b' dvbcsa_bs_decrypt of a batch of one), cw (8 bytes),
 *             len (1 byte), payload (len bytes).
 * Record out: payload (len bytes) after the operation. */
#include <dvbcsa/dvbcsa.h>
#include <stdio.h>
#include <string.h>

static int read_all(unsigned char *p, size_t n) { return fread(p, 1, n, stdin) == n; }

int main(void) {
  struct dvbcsa_key_s *key = dvbcsa_key_alloc();
  struct dvbcsa_bs_key_s *bskey = dvbcsa_bs_key_alloc();
  unsigned char op, cw[8], len, buf[256];
  while (read_all(&op, 1)) {
    if (!read_all(cw, 8) || !read_all(&len, 1) || !read_all(buf, len)) return 2;
    if (op == 'd') {
      dvbcsa_key_set(cw, key);
      dvbcsa_decrypt(key, buf, len);
    } else if (op == 'e') {
      dvbcsa_key_set(cw, key);
      dvbcsa_encrypt(key, buf, len);
    } else if (op == 'b') {
      struct dvbcsa_bs_batch_s b[2] = {{buf, len}, {NULL, 0}};
      dvbcsa_bs_key_set(cw, bskey);
      dvbcsa_bs_decrypt(bskey, b, 184);
    } else {
      return 3;
    }
    if (fwrite(buf, 1, len, stdout) != len) return 4;
  }
  fflush(stdout);
  dvbcsa_key_free(key);
  dvbcsa_bs_key_free(bskey);
  return 0;
}
