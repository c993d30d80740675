/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * JSON for the control socket replies and the saved device configs: a
 * small streaming writer (growable buffer, string escaper that also
 * replaces invalid UTF-8, since paths need not be valid UTF-8) and the
 * reader, which is json-c's.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vdusectl.h"

#define JSON_DEPTH_MAX 32

/* ---------------------------------------------------------------- writer */

void jb_init(struct vctl_jbuf *b)
{
	memset(b, 0, sizeof(*b));
}

void jb_free(struct vctl_jbuf *b)
{
	free(b->p);
	jb_init(b);
}

static bool jb_reserve(struct vctl_jbuf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->oom)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1) {
		if (cap > SIZE_MAX / 2) {
			b->oom = true;
			return false;
		}
		cap *= 2;
	}
	p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void jb_putc(struct vctl_jbuf *b, char c)
{
	if (!jb_reserve(b, 1))
		return;
	b->p[b->len++] = c;
	b->p[b->len] = '\0';
}

static void jb_putn(struct vctl_jbuf *b, const char *s, size_t n)
{
	if (!jb_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void jb_raw(struct vctl_jbuf *b, const char *s)
{
	jb_putn(b, s, strlen(s));
}

void jb_printf(struct vctl_jbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	if (!jb_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned c = s[0];
	size_t n;
	unsigned cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

void jb_str(struct vctl_jbuf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	if (!s) {
		jb_raw(b, "null");
		return;
	}
	jb_putc(b, '"');
	while (*p) {
		size_t n;

		switch (*p) {
		case '"': jb_raw(b, "\\\""); p++; continue;
		case '\\': jb_raw(b, "\\\\"); p++; continue;
		case '\n': jb_raw(b, "\\n"); p++; continue;
		case '\r': jb_raw(b, "\\r"); p++; continue;
		case '\t': jb_raw(b, "\\t"); p++; continue;
		case '\b': jb_raw(b, "\\b"); p++; continue;
		case '\f': jb_raw(b, "\\f"); p++; continue;
		default: break;
		}
		if (*p < 0x20 || *p == 0x7f) {
			jb_printf(b, "\\u%04x", *p);
			p++;
			continue;
		}
		n = utf8_len(p);
		if (!n) {
			jb_raw(b, "\\ufffd"); /* invalid byte */
			p++;
			continue;
		}
		jb_putn(b, (const char *)p, n);
		p += n;
	}
	jb_putc(b, '"');
}

void jb_sep(struct vctl_jbuf *b)
{
	char last;

	if (!b->len || !b->p)
		return;
	last = b->p[b->len - 1];
	if (last != '{' && last != '[' && last != ':' && last != ',')
		jb_putc(b, ',');
}

void jb_key(struct vctl_jbuf *b, const char *key)
{
	jb_sep(b);
	jb_str(b, key);
	jb_putc(b, ':');
}

void jb_kstr(struct vctl_jbuf *b, const char *key, const char *s)
{
	jb_key(b, key);
	jb_str(b, s);
}

void jb_ku64(struct vctl_jbuf *b, const char *key, uint64_t v)
{
	jb_key(b, key);
	jb_printf(b, "%" PRIu64, v);
}

void jb_ki64(struct vctl_jbuf *b, const char *key, int64_t v)
{
	jb_key(b, key);
	jb_printf(b, "%" PRId64, v);
}

void jb_kbool(struct vctl_jbuf *b, const char *key, bool v)
{
	jb_key(b, key);
	jb_raw(b, v ? "true" : "false");
}

void jb_knull(struct vctl_jbuf *b, const char *key)
{
	jb_key(b, key);
	jb_raw(b, "null");
}

const char *jb_get(const struct vctl_jbuf *b)
{
	if (b->oom)
		return NULL;
	return b->p ? b->p : "";
}

/* ---------------------------------------------------------------- reader */

struct json_object *json_parse(const char *text)
{
	struct json_tokener *tok;
	struct json_object *v;
	size_t len;

	if (!text)
		return NULL;
	len = strlen(text);
	if (len > INT_MAX)
		return NULL;
	tok = json_tokener_new_ex(JSON_DEPTH_MAX);
	if (!tok)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	v = json_tokener_parse_ex(tok, text, (int)len);
	if (v) {
		/* One value, then only white space. */
		size_t end = json_tokener_get_parse_end(tok);

		if (json_tokener_get_error(tok) != json_tokener_success ||
		    text[end + strspn(text + end, " \t\r\n")]) {
			json_object_put(v);
			v = NULL;
		}
	}
	json_tokener_free(tok);
	return v;
}

void json_free(struct json_object *v)
{
	json_object_put(v);
}

const char *json_text(const struct json_object *v)
{
	if (!json_object_is_type(v, json_type_string) &&
	    !json_object_is_type(v, json_type_int))
		return NULL;
	/* json-c keeps a number's text once asked: not const in its API. */
	return json_object_get_string((struct json_object *)v);
}

const struct json_object *json_get(const struct json_object *obj, const char *key)
{
	struct json_object *v = NULL;

	if (!json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, key, &v))
		return NULL;
	return v;
}

const char *json_get_str(const struct json_object *obj, const char *key)
{
	const struct json_object *v = json_get(obj, key);

	return json_object_is_type(v, json_type_string) ?
	       json_object_get_string((struct json_object *)v) : NULL;
}

int json_get_u64(const struct json_object *obj, const char *key, uint64_t *out)
{
	const struct json_object *v = json_get(obj, key);

	if (!json_object_is_type(v, json_type_int))
		return -EINVAL;
	errno = 0;
	if (json_object_get_int64(v) < 0)
		return -EINVAL;
	*out = json_object_get_uint64(v);
	return errno ? -EINVAL : 0;
}

int json_get_bool(const struct json_object *obj, const char *key, bool *out)
{
	const struct json_object *v = json_get(obj, key);

	if (!json_object_is_type(v, json_type_boolean))
		return -EINVAL;
	*out = json_object_get_boolean(v);
	return 0;
}

void json_write(struct vctl_jbuf *b, const struct json_object *v)
{
	jb_raw(b, v ? json_object_to_json_string_ext((struct json_object *)v,
						     JSON_C_TO_STRING_PLAIN |
						     JSON_C_TO_STRING_NOSLASHESCAPE)
		    : "null");
}
