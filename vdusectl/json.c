/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * JSON for the control socket replies and the saved device configs,
 * through json-c: small helpers to build objects (strings made valid
 * UTF-8 first: paths need not be) and to read them back strictly.
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

struct json_object *jv_str(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	struct json_object *v;
	char *clean, *q;

	if (!s)
		return NULL; /* json-c's null */
	for (; *p; p += utf8_len(p))
		if (!utf8_len(p))
			break;
	if (!*p)
		return json_object_new_string(s);
	/* Paths need not be UTF-8, JSON must be: U+FFFD (3 bytes) for each
	 * invalid byte. */
	clean = malloc(strlen(s) * 3 + 1);
	if (!clean)
		return NULL;
	for (p = (const unsigned char *)s, q = clean; *p;) {
		size_t n = utf8_len(p);

		if (n) {
			memcpy(q, p, n);
			q += n;
			p += n;
		} else {
			memcpy(q, "\xef\xbf\xbd", 3);
			q += 3;
			p++;
		}
	}
	*q = '\0';
	v = json_object_new_string(clean);
	free(clean);
	return v;
}

void jo_str(struct json_object *o, const char *key, const char *s)
{
	json_object_object_add(o, key, jv_str(s));
}

void jo_strf(struct json_object *o, const char *key, const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	jo_str(o, key, buf);
}

void jo_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

void jo_bool(struct json_object *o, const char *key, bool v)
{
	json_object_object_add(o, key, json_object_new_boolean(v));
}

void jo_null(struct json_object *o, const char *key)
{
	json_object_object_add(o, key, NULL);
}

void jo_add(struct json_object *o, const char *key, struct json_object *v)
{
	json_object_object_add(o, key, v);
}

const char *jv_text(struct json_object *v)
{
	const char *t = v ? json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
							   JSON_C_TO_STRING_NOSLASHESCAPE)
			  : NULL;

	return t ? t : "null"; /* NULL from json-c: out of memory */
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
