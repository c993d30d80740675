/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small validated parsers shared by the library and its tools. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int vdu_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: return -EINVAL;
	}
	/* Accept "1G", "1GiB" and "1GB" alike: all are powers of 1024. */
	if (shift && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
		end += strlen(end);
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

int vdu_name_valid(const char *name)
{
	size_t len;

	if (!name)
		return -EINVAL;
	len = strnlen(name, VDU_NAME_MAX + 1);
	if (len == 0 || len > VDU_NAME_MAX)
		return -EINVAL;
	/* "." and ".." are not file names; /dev/vduse/control is the
	 * kernel's own node. */
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
	    strcmp(name, "control") == 0)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = name[i];
		/* '/' would escape /dev/vduse; control characters and
		 * spaces break sysfs and netlink consumers. */
		if (c == '/' || c <= ' ' || c == 0x7f)
			return -EINVAL;
	}
	return 0;
}

size_t vdu_iov_size(const struct iovec *iov, int cnt)
{
	size_t n = 0;

	for (int i = 0; i < cnt; i++)
		n += iov[i].iov_len;
	return n;
}

size_t vdu_iov_to_buf(const struct iovec *iov, int cnt, size_t off,
		      void *buf, size_t len)
{
	size_t done = 0;

	for (int i = 0; i < cnt && done < len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t n = VDU_MIN(iov[i].iov_len - off, len - done);
		memcpy((char *)buf + done, (char *)iov[i].iov_base + off, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t vdu_iov_from_buf(const struct iovec *iov, int cnt, size_t off,
			const void *buf, size_t len)
{
	size_t done = 0;

	for (int i = 0; i < cnt && done < len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t n = VDU_MIN(iov[i].iov_len - off, len - done);
		memcpy((char *)iov[i].iov_base + off, (const char *)buf + done, n);
		done += n;
		off = 0;
	}
	return done;
}

/* Write a whole string to a sysfs attribute in one write(). */
int vdu_sysfs_write(const char *path, const char *val)
{
	size_t len = strlen(val);
	ssize_t n;
	int fd, r = 0;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	do {
		n = write(fd, val, len);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		r = -errno;
	else if ((size_t)n != len)
		r = -EIO;
	close(fd);
	return r;
}
