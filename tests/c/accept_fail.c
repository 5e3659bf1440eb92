/* LD_PRELOAD shim for the hostile suite: while the file named by
 * CAPBOX_ACCEPT_FAIL_FILE exists, accept() and accept4() fail with the errno
 * in CAPBOX_ACCEPT_FAIL_ERRNO (default ENOBUFS) without taking the pending
 * connection, the way a kernel short of socket buffers answers. Lets a test
 * see whether capbox backs off or spins on an accept() error other than
 * EMFILE. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int failing(void)
{
	const char *f = getenv("CAPBOX_ACCEPT_FAIL_FILE");
	const char *e;
	if (f == NULL || access(f, F_OK) != 0)
		return 0;
	e = getenv("CAPBOX_ACCEPT_FAIL_ERRNO");
	errno = e ? atoi(e) : ENOBUFS;
	return 1;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	static int (*real)(int, struct sockaddr *, socklen_t *, int);
	if (failing())
		return -1;
	if (real == NULL)
		real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
	return real(fd, addr, len, flags);
}

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	static int (*real)(int, struct sockaddr *, socklen_t *);
	if (failing())
		return -1;
	if (real == NULL)
		real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
	return real(fd, addr, len);
}
