/* json.h: a small strict JSON parser (RFC 8259) for untrusted text such as safetensors headers, and the
 * string escaping the writers use.
 *
 * The decision a reader must know: the parser is strict where the RFC allows leeway (strings must be valid
 * UTF-8, a \u escape must not form a lone surrogate, \u0000 is refused because values come back as C
 * strings) and it keeps duplicate object keys in document order: whether a duplicate is an error is the
 * caller's call, and the caller can name the item in its message. Recursion depth is bounded by the
 * caller, so hostile nesting cannot exhaust the stack. */
#ifndef GKA_JSON_H
#define GKA_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { JSON_NULL = 0, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct JsonValue JsonValue;
struct JsonValue {
    JsonType type;
    size_t offset;   /* byte offset of the value in the parsed text, for messages */
    int boolean;     /* JSON_BOOL */
    double number;   /* JSON_NUMBER: the value as a double (strtod, C locale) */
    int is_int;      /* JSON_NUMBER: the literal has no fraction or exponent and fits in int64 */
    int64_t integer; /* JSON_NUMBER with is_int */
    char *str;       /* JSON_STRING: UTF-8, NUL-terminated, no embedded NUL */
    size_t len;      /* JSON_STRING: bytes, without the NUL */
    int n;           /* JSON_ARRAY, JSON_OBJECT: number of items */
    JsonValue *items;
    char **keys; /* JSON_OBJECT: the key of each item, in document order, duplicates kept */
};

/* Parses text[0, len) (which need not be NUL-terminated) into *out: one value, surrounded by optional
 * whitespace. Nesting deeper than max_depth arrays/objects, or more than max_values values in all, is
 * refused (a tree node is ~100 bytes, so hostile text could otherwise ask for 50x its size in memory).
 * On failure *out is left empty and err says "at byte N: <what was expected>, found <what>". */
int json_parse(const char *text, size_t len, int max_depth, long max_values, JsonValue *out, GkErr *err);
void json_free(JsonValue *v);

/* The first item of an object with this key, NULL if none (or if obj is not an object). */
const JsonValue *json_get(const JsonValue *obj, const char *key);

/* "an object", "a string", ... for messages. */
const char *json_type_name(JsonType t);

/* 1 if s[0, len) is well-formed UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF). */
int json_utf8_valid(const char *s, size_t len);

/* A growable byte buffer for writers. Allocation failure exits (mallocCheck semantics). */
typedef struct JsonBuf {
    char *p;
    size_t len, cap;
} JsonBuf;
void jbuf_put(JsonBuf *b, const void *s, size_t n);
void jbuf_puts(JsonBuf *b, const char *s);
void jbuf_printf(JsonBuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Appends s as a quoted JSON string, escaped as serde_json (and so Python's safetensors) does: \" \\ \b
 * \f \n \r \t, other control characters as \u00xx, everything else (non-ASCII UTF-8 included) as is. */
void jbuf_string(JsonBuf *b, const char *s);
void jbuf_free(JsonBuf *b);

#ifdef __cplusplus
}
#endif
#endif
