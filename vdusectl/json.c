/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A very small JSON writer (growable buffer, string escaper) and reader
 * (recursive descent into a tree), enough for the control socket replies
 * and the saved device configs.  Not a general purpose library.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
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

struct parser {
	const char *p;
	int depth;
};

static void skip_ws(struct parser *ps)
{
	while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' ||
	       *ps->p == '\r')
		ps->p++;
}

static struct vctl_json *jnew(enum vctl_jtype t)
{
	struct vctl_json *v = calloc(1, sizeof(*v));

	if (v)
		v->type = t;
	return v;
}

void json_free(struct vctl_json *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++) {
		json_free(v->kids[i]);
		if (v->keys)
			free(v->keys[i]);
	}
	free(v->kids);
	free(v->keys);
	free(v->s);
	free(v);
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static void put_utf8(struct vctl_jbuf *b, unsigned cp)
{
	if (cp < 0x80) {
		jb_putc(b, (char)cp);
	} else if (cp < 0x800) {
		jb_putc(b, (char)(0xc0 | (cp >> 6)));
		jb_putc(b, (char)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		jb_putc(b, (char)(0xe0 | (cp >> 12)));
		jb_putc(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
		jb_putc(b, (char)(0x80 | (cp & 0x3f)));
	} else {
		jb_putc(b, (char)(0xf0 | (cp >> 18)));
		jb_putc(b, (char)(0x80 | ((cp >> 12) & 0x3f)));
		jb_putc(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
		jb_putc(b, (char)(0x80 | (cp & 0x3f)));
	}
}

/* Parses a string literal at ps->p (which is '"'); malloc'd result. */
static char *parse_string(struct parser *ps)
{
	struct vctl_jbuf b;

	jb_init(&b);
	ps->p++;
	for (;;) {
		unsigned char c = (unsigned char)*ps->p;

		if (c == '"') {
			ps->p++;
			break;
		}
		if (c < 0x20) /* includes the terminating NUL */
			goto bad;
		if (c != '\\') {
			jb_putc(&b, (char)c);
			ps->p++;
			continue;
		}
		ps->p++;
		c = (unsigned char)*ps->p++;
		switch (c) {
		case '"': jb_putc(&b, '"'); break;
		case '\\': jb_putc(&b, '\\'); break;
		case '/': jb_putc(&b, '/'); break;
		case 'b': jb_putc(&b, '\b'); break;
		case 'f': jb_putc(&b, '\f'); break;
		case 'n': jb_putc(&b, '\n'); break;
		case 'r': jb_putc(&b, '\r'); break;
		case 't': jb_putc(&b, '\t'); break;
		case 'u': {
			unsigned cp, lo;

			if (hex4(ps->p, &cp) < 0)
				goto bad;
			ps->p += 4;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (ps->p[0] != '\\' || ps->p[1] != 'u' ||
				    hex4(ps->p + 2, &lo) < 0 ||
				    lo < 0xdc00 || lo > 0xdfff)
					goto bad;
				ps->p += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     (lo - 0xdc00);
			} else if (cp >= 0xdc00 && cp <= 0xdfff) {
				goto bad;
			}
			if (cp == 0)
				goto bad; /* no NULs inside C strings */
			put_utf8(&b, cp);
			break;
		}
		default:
			goto bad;
		}
	}
	if (b.oom)
		goto bad;
	if (!b.p) {
		b.p = strdup("");
		if (!b.p)
			return NULL;
	}
	return b.p;
bad:
	jb_free(&b);
	return NULL;
}

static struct vctl_json *parse_value(struct parser *ps);

static int append(struct vctl_json *v, char *key, struct vctl_json *kid)
{
	struct vctl_json **kids;
	char **keys;

	kids = realloc(v->kids, (v->n + 1) * sizeof(*kids));
	if (!kids)
		return -1;
	v->kids = kids;
	if (v->type == J_OBJ) {
		keys = realloc(v->keys, (v->n + 1) * sizeof(*keys));
		if (!keys)
			return -1;
		v->keys = keys;
		keys[v->n] = key;
	}
	kids[v->n++] = kid;
	return 0;
}

static struct vctl_json *parse_container(struct parser *ps, bool obj)
{
	struct vctl_json *v = jnew(obj ? J_OBJ : J_ARR);
	char close = obj ? '}' : ']';

	if (!v)
		return NULL;
	if (++ps->depth > JSON_DEPTH_MAX)
		goto bad;
	ps->p++;
	skip_ws(ps);
	if (*ps->p == close) {
		ps->p++;
		ps->depth--;
		return v;
	}
	for (;;) {
		char *key = NULL;
		struct vctl_json *kid;

		skip_ws(ps);
		if (obj) {
			if (*ps->p != '"')
				goto bad;
			key = parse_string(ps);
			if (!key)
				goto bad;
			skip_ws(ps);
			if (*ps->p != ':') {
				free(key);
				goto bad;
			}
			ps->p++;
		}
		kid = parse_value(ps);
		if (!kid || append(v, key, kid) < 0) {
			free(key);
			json_free(kid);
			goto bad;
		}
		skip_ws(ps);
		if (*ps->p == ',') {
			ps->p++;
			continue;
		}
		if (*ps->p == close) {
			ps->p++;
			break;
		}
		goto bad;
	}
	ps->depth--;
	return v;
bad:
	json_free(v);
	return NULL;
}

static struct vctl_json *parse_number(struct parser *ps)
{
	const char *s = ps->p, *p = ps->p;
	struct vctl_json *v;

	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return NULL;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return NULL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (*p < '0' || *p > '9')
			return NULL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	v = jnew(J_NUM);
	if (!v)
		return NULL;
	v->s = strndup(s, (size_t)(p - s));
	if (!v->s) {
		free(v);
		return NULL;
	}
	ps->p = p;
	return v;
}

static struct vctl_json *parse_value(struct parser *ps)
{
	struct vctl_json *v;

	skip_ws(ps);
	switch (*ps->p) {
	case '{':
		return parse_container(ps, true);
	case '[':
		return parse_container(ps, false);
	case '"':
		v = jnew(J_STR);
		if (!v)
			return NULL;
		v->s = parse_string(ps);
		if (!v->s) {
			free(v);
			return NULL;
		}
		return v;
	case 't':
		if (strncmp(ps->p, "true", 4))
			return NULL;
		ps->p += 4;
		v = jnew(J_BOOL);
		if (v)
			v->b = true;
		return v;
	case 'f':
		if (strncmp(ps->p, "false", 5))
			return NULL;
		ps->p += 5;
		return jnew(J_BOOL);
	case 'n':
		if (strncmp(ps->p, "null", 4))
			return NULL;
		ps->p += 4;
		return jnew(J_NULL);
	default:
		return parse_number(ps);
	}
}

struct vctl_json *json_parse(const char *text)
{
	struct parser ps = { .p = text, .depth = 0 };
	struct vctl_json *v;

	if (!text)
		return NULL;
	v = parse_value(&ps);
	if (!v)
		return NULL;
	skip_ws(&ps);
	if (*ps.p) {
		json_free(v);
		return NULL;
	}
	return v;
}

const struct vctl_json *json_get(const struct vctl_json *obj, const char *key)
{
	if (!obj || obj->type != J_OBJ)
		return NULL;
	for (size_t i = 0; i < obj->n; i++)
		if (!strcmp(obj->keys[i], key))
			return obj->kids[i];
	return NULL;
}

const char *json_get_str(const struct vctl_json *obj, const char *key)
{
	const struct vctl_json *v = json_get(obj, key);

	return v && v->type == J_STR ? v->s : NULL;
}

int json_get_u64(const struct vctl_json *obj, const char *key, uint64_t *out)
{
	const struct vctl_json *v = json_get(obj, key);
	unsigned long long x;

	if (!v || v->type != J_NUM || vctl_parse_ull(v->s, &x) < 0)
		return -EINVAL;
	*out = x;
	return 0;
}

int json_get_bool(const struct vctl_json *obj, const char *key, bool *out)
{
	const struct vctl_json *v = json_get(obj, key);

	if (!v || v->type != J_BOOL)
		return -EINVAL;
	*out = v->b;
	return 0;
}

void json_write(struct vctl_jbuf *b, const struct vctl_json *v)
{
	if (!v) {
		jb_raw(b, "null");
		return;
	}
	switch (v->type) {
	case J_NULL: jb_raw(b, "null"); break;
	case J_BOOL: jb_raw(b, v->b ? "true" : "false"); break;
	case J_NUM: jb_raw(b, v->s); break;
	case J_STR: jb_str(b, v->s); break;
	case J_ARR:
	case J_OBJ:
		jb_raw(b, v->type == J_OBJ ? "{" : "[");
		for (size_t i = 0; i < v->n; i++) {
			if (i)
				jb_raw(b, ",");
			if (v->type == J_OBJ) {
				jb_str(b, v->keys[i]);
				jb_raw(b, ":");
			}
			json_write(b, v->kids[i]);
		}
		jb_raw(b, v->type == J_OBJ ? "}" : "]");
		break;
	}
}
