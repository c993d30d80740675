/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A tiny TAP producer for the host tests: "ok N - desc" / "not ok N - desc",
 * the plan printed at the end, exit status 1 when anything failed (automake
 * runs the tests as plain programs, so the exit code is what counts).
 */
#ifndef VDU_TESTS_TAP_H
#define VDU_TESTS_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static unsigned tap_count, tap_failed;

static inline void tap_vreport(int pass, const char *file, int line,
			       const char *fmt, va_list ap)
{
	tap_count++;
	if (!pass)
		tap_failed++;
	printf("%sok %u - ", pass ? "" : "not ", tap_count);
	vprintf(fmt, ap);
	printf("\n");
	if (!pass)
		printf("#   failed at %s:%d\n", file, line);
	fflush(stdout);
}

static inline int tap_ok_(int pass, const char *file, int line,
			  const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static inline int tap_ok_(int pass, const char *file, int line,
			  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tap_vreport(pass, file, line, fmt, ap);
	va_end(ap);
	return pass;
}

/* ok(condition, "description %d", ...): one test point. */
#define ok(cond, ...) tap_ok_(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* is_int(got, want, desc...): integer comparison with a diagnostic. */
#define is_int(got, want, ...)                                                \
	({                                                                     \
		long long got_ = (long long)(got), want_ = (long long)(want);  \
		int p_ = tap_ok_(got_ == want_, __FILE__, __LINE__, __VA_ARGS__); \
		if (!p_)                                                       \
			printf("#   got %lld, expected %lld\n", got_, want_);  \
		p_;                                                            \
	})

static inline void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* Print the plan and return the process exit status. */
static inline int tap_done(void)
{
	printf("1..%u\n", tap_count);
	if (tap_failed)
		printf("# %u of %u tests failed\n", tap_failed, tap_count);
	fflush(stdout);
	return tap_failed || tap_count == 0 ? 1 : 0;
}

#endif
