/* json.c: the strict JSON parser and the serde_json-compatible string writer of json.h.
 *
 * Recursive descent over a byte span with an explicit depth bound; every read checks the remaining length
 * (the text need not be NUL-terminated, and may be a read-only file mapping). */
#include "json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_NUMBER_CHARS 512

typedef struct Parser {
    const unsigned char *s;
    size_t len, pos;
    int max_depth;
    long values, max_values;
    GkErr *err;
} Parser;

/* The byte at `at` for a message: 'x' when printable ASCII, else its hex value, or the end of the text. */
static const char *found_at(const Parser *p, size_t at, char *buf, size_t n) {
    if (at >= p->len) return "the end of the text";
    unsigned char c = p->s[at];
    if (c >= 0x20 && c < 0x7f)
        snprintf(buf, n, "'%c'", c);
    else
        snprintf(buf, n, "byte 0x%02x", c);
    return buf;
}

static int pfail(const Parser *p, size_t at, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int pfail(const Parser *p, size_t at, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return gk_fail(p->err, "at byte %zu: %s", at, what);
}

static int expected(const Parser *p, const char *what) {
    char buf[32];
    return pfail(p, p->pos, "expected %s, found %s", what, found_at(p, p->pos, buf, sizeof buf));
}

static void skip_ws(Parser *p) {
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

/* Length of the well-formed UTF-8 sequence starting at s (n bytes available), 0 if ill-formed
 * (Unicode 15, table 3-7). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        need = 1;
    else if (c == 0xe0)
        need = 2, lo = 0xa0;
    else if (c >= 0xe1 && c <= 0xec)
        need = 2;
    else if (c == 0xed)
        need = 2, hi = 0x9f;
    else if (c >= 0xee && c <= 0xef)
        need = 2;
    else if (c == 0xf0)
        need = 3, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3)
        need = 3;
    else if (c == 0xf4)
        need = 3, hi = 0x8f;
    else
        return 0;
    if (n < need + 1) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i <= need; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return need + 1;
}

int json_utf8_valid(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t k = utf8_seq(u + i, len - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

static int hex4(const Parser *p, size_t at, unsigned *out) {
    if (at + 4 > p->len) return pfail(p, at, "\\u escape needs 4 hex digits, found the end of the text");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p->s[at + (size_t)i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return pfail(p, at, "\\u escape needs 4 hex digits");
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* p->pos is at the opening quote. The decoded string is never longer than its escaped form, so one
 * allocation of the span's size suffices. */
static int parse_string(Parser *p, char **out, size_t *out_len) {
    size_t start = p->pos, i = start + 1;
    while (i < p->len && p->s[i] != '"')
        i += p->s[i] == '\\' ? 2 : 1;
    if (i >= p->len) return pfail(p, start, "unterminated string");
    size_t end = i;
    char *o = mallocCheck(end - start);
    size_t n = 0;
    i = start + 1;
    while (i < end) {
        unsigned char c = p->s[i];
        if (c < 0x20) {
            free(o);
            return pfail(p, i, "raw control character 0x%02x in a string (must be escaped)", c);
        }
        if (c == '\\') {
            unsigned char e = p->s[i + 1];
            const char *simple = strchr("\"\\/bfnrt", e);
            if (e && simple) {
                static const char repl[] = "\"\\/\b\f\n\r\t";
                o[n++] = repl[simple - "\"\\/bfnrt"];
                i += 2;
                continue;
            }
            if (e != 'u') {
                char buf[32];
                free(o);
                return pfail(p, i, "invalid escape '\\' followed by %s in a string",
                             found_at(p, i + 1, buf, 32));
            }
            unsigned cp;
            if (hex4(p, i + 2, &cp)) {
                free(o);
                return -1;
            }
            size_t esc_at = i;
            i += 6;
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                free(o);
                return pfail(p, esc_at, "unpaired UTF-16 low surrogate \\u%04x in a string", cp);
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned lo;
                if (i + 1 >= end || p->s[i] != '\\' || p->s[i + 1] != 'u') {
                    free(o);
                    return pfail(p, esc_at, "unpaired UTF-16 high surrogate \\u%04x in a string", cp);
                }
                if (hex4(p, i + 2, &lo)) {
                    free(o);
                    return -1;
                }
                if (lo < 0xdc00 || lo > 0xdfff) {
                    free(o);
                    return pfail(p, esc_at, "unpaired UTF-16 high surrogate \\u%04x in a string", cp);
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                i += 6;
            }
            if (cp == 0) {
                free(o);
                return pfail(p, esc_at, "\\u0000 in a string is not supported");
            }
            n += put_utf8(o + n, cp);
            continue;
        }
        size_t k = utf8_seq(p->s + i, end - i);
        if (!k) {
            free(o);
            return pfail(p, i, "invalid UTF-8 (byte 0x%02x) in the string starting at byte %zu", c, start);
        }
        memcpy(o + n, p->s + i, k);
        n += k;
        i += k;
    }
    o[n] = '\0';
    p->pos = end + 1;
    *out = o;
    *out_len = n;
    return 0;
}

static int parse_number(Parser *p, JsonValue *v) {
    size_t start = p->pos, i = start;
    const unsigned char *s = p->s;
    int neg = 0, is_int = 1, overflow = 0;
    uint64_t mag = 0;
    if (i < p->len && s[i] == '-') neg = 1, i++;
    if (i >= p->len || s[i] < '0' || s[i] > '9') return pfail(p, i, "invalid number: expected a digit");
    if (s[i] == '0') {
        i++;
        if (i < p->len && s[i] >= '0' && s[i] <= '9') return pfail(p, start, "invalid number: leading zero");
    } else {
        while (i < p->len && s[i] >= '0' && s[i] <= '9') {
            unsigned d = (unsigned)(s[i] - '0');
            if (mag > (UINT64_MAX - d) / 10)
                overflow = 1;
            else
                mag = mag * 10 + d;
            i++;
        }
    }
    if (i < p->len && s[i] == '.') {
        is_int = 0;
        i++;
        if (i >= p->len || s[i] < '0' || s[i] > '9')
            return pfail(p, i, "invalid number: expected a digit after '.'");
        while (i < p->len && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        is_int = 0;
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->len || s[i] < '0' || s[i] > '9')
            return pfail(p, i, "invalid number: expected a digit in the exponent");
        while (i < p->len && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i - start > JSON_MAX_NUMBER_CHARS)
        return pfail(p, start, "number longer than %d characters", JSON_MAX_NUMBER_CHARS);
    char buf[JSON_MAX_NUMBER_CHARS + 1];
    memcpy(buf, s + start, i - start);
    buf[i - start] = '\0';
    errno = 0;
    double d = strtod(buf, NULL);
    if (errno == ERANGE && (d > 1.0 || d < -1.0)) return pfail(p, start, "number %s out of range", buf);
    v->type = JSON_NUMBER;
    v->number = d;
    if (is_int && !overflow && (neg ? mag <= (uint64_t)INT64_MAX + 1 : mag <= (uint64_t)INT64_MAX)) {
        v->is_int = 1;
        v->integer = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    }
    p->pos = i;
    return 0;
}

static int parse_value(Parser *p, JsonValue *v, int depth);

/* Arrays and objects: items are parsed into a growing array; keys only for objects. */
static int parse_container(Parser *p, JsonValue *v, int depth, int is_object) {
    char close = is_object ? '}' : ']';
    if (depth > p->max_depth) return pfail(p, p->pos, "nesting deeper than %d levels", p->max_depth);
    v->type = is_object ? JSON_OBJECT : JSON_ARRAY;
    p->pos++;
    int cap = 0;
    char *key = NULL;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return 0;
    }
    for (;;) {
        skip_ws(p);
        if (is_object) {
            size_t klen;
            if (p->pos >= p->len || p->s[p->pos] != '"') {
                expected(p, v->n ? "a string key" : "a string key or '}'");
                goto fail;
            }
            if (parse_string(p, &key, &klen)) goto fail;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') {
                expected(p, "':' after an object key");
                goto fail;
            }
            p->pos++;
        }
        JsonValue item;
        if (parse_value(p, &item, depth)) goto fail;
        if (v->n == cap) {
            cap = cap ? 2 * cap : 4;
            JsonValue *items = realloc(v->items, (size_t)cap * sizeof *items);
            if (!items) gk_die("out of host memory parsing JSON");
            v->items = items;
            if (is_object) {
                char **keys = realloc(v->keys, (size_t)cap * sizeof *keys);
                if (!keys) gk_die("out of host memory parsing JSON");
                v->keys = keys;
            }
        }
        v->items[v->n] = item;
        if (is_object) v->keys[v->n] = key;
        key = NULL;
        v->n++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            return 0;
        }
        expected(p, is_object ? "',' or '}' after an object item" : "',' or ']' after an array item");
        goto fail;
    }
fail:
    free(key);
    json_free(v);
    return -1;
}

static int parse_literal(Parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return expected(p, "a value");
    p->pos += n;
    return 0;
}

static int parse_value(Parser *p, JsonValue *v, int depth) {
    memset(v, 0, sizeof *v);
    skip_ws(p);
    v->offset = p->pos;
    if (++p->values > p->max_values) return pfail(p, p->pos, "more than %ld values", p->max_values);
    if (p->pos >= p->len) return expected(p, "a value");
    unsigned char c = p->s[p->pos];
    switch (c) {
    case '{':
        return parse_container(p, v, depth + 1, 1);
    case '[':
        return parse_container(p, v, depth + 1, 0);
    case '"':
        v->type = JSON_STRING;
        return parse_string(p, &v->str, &v->len);
    case 't':
        v->type = JSON_BOOL, v->boolean = 1;
        return parse_literal(p, "true");
    case 'f':
        v->type = JSON_BOOL;
        return parse_literal(p, "false");
    case 'n':
        v->type = JSON_NULL;
        return parse_literal(p, "null");
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, v);
        return expected(p, "a value");
    }
}

int json_parse(const char *text, size_t len, int max_depth, long max_values, JsonValue *out, GkErr *err) {
    Parser p = {(const unsigned char *)text, len, 0, max_depth, 0, max_values, err};
    memset(out, 0, sizeof *out);
    if (parse_value(&p, out, 0)) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    skip_ws(&p);
    if (p.pos != len) {
        char buf[32];
        json_free(out);
        return pfail(&p, p.pos, "unexpected %s after the end of the JSON value",
                     found_at(&p, p.pos, buf, 32));
    }
    return 0;
}

void json_free(JsonValue *v) {
    if (!v) return;
    for (int i = 0; i < v->n; i++) {
        json_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
    memset(v, 0, sizeof *v);
}

const JsonValue *json_get(const JsonValue *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    for (int i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

const char *json_type_name(JsonType t) {
    switch (t) {
    case JSON_NULL:
        return "null";
    case JSON_BOOL:
        return "a boolean";
    case JSON_NUMBER:
        return "a number";
    case JSON_STRING:
        return "a string";
    case JSON_ARRAY:
        return "an array";
    case JSON_OBJECT:
        return "an object";
    }
    return "an unknown value";
}

void jbuf_put(JsonBuf *b, const void *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) gk_die("out of host memory building a %zu-byte text", cap);
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void jbuf_puts(JsonBuf *b, const char *s) {
    jbuf_put(b, s, strlen(s));
}

void jbuf_printf(JsonBuf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    GK_CHECK(n >= 0, "jbuf_printf: bad format '%s'", fmt);
    if ((size_t)n < sizeof small) {
        jbuf_put(b, small, (size_t)n);
        return;
    }
    char *big = mallocCheck((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    jbuf_put(b, big, (size_t)n);
    free(big);
}

void jbuf_string(JsonBuf *b, const char *s) {
    jbuf_put(b, "\"", 1);
    const char *run = s;
    for (const char *q = s;; q++) {
        unsigned char c = (unsigned char)*q;
        if (c != 0 && c >= 0x20 && c != '"' && c != '\\') continue;
        jbuf_put(b, run, (size_t)(q - run));
        if (c == 0) break;
        char esc[8];
        switch (c) {
        case '"':
            jbuf_puts(b, "\\\"");
            break;
        case '\\':
            jbuf_puts(b, "\\\\");
            break;
        case '\b':
            jbuf_puts(b, "\\b");
            break;
        case '\f':
            jbuf_puts(b, "\\f");
            break;
        case '\n':
            jbuf_puts(b, "\\n");
            break;
        case '\r':
            jbuf_puts(b, "\\r");
            break;
        case '\t':
            jbuf_puts(b, "\\t");
            break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
            jbuf_puts(b, esc);
        }
        run = q + 1;
    }
    jbuf_put(b, "\"", 1);
}

void jbuf_free(JsonBuf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
