/* config.c: the `[section]` / `key = value` configuration files of config.h.
 *
 * A Config is a flat list of entries (configs hold tens of keys, so lookups are linear scans), each with
 * its origin for messages and a `used` flag that getters set through a const Config: the flag lives in
 * the entry array, which the Config points to, so reading a key stays a const operation on the Config. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define CONFIG_MAX_FILE (16u << 20) /* larger files are not configs */
#define CONFIG_MAX_INCLUDE_DEPTH 16
#define CFG_CMDLINE (-1)

typedef struct CfgEntry {
    char *section, *key, *value;
    int file; /* index into Config.files, or CFG_CMDLINE */
    int line;
    int used;
} CfgEntry;

struct Config {
    CfgEntry *e;
    int n, cap;
    char **files; /* paths as the user or an include line named them */
    int nfiles, capfiles;
};

static char *dup_str(const char *s, size_t n) {
    char *d = mallocCheck(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

Config *config_new(void) {
    return callocCheck(1, sizeof(Config));
}

static void free_entry(CfgEntry *e) {
    free(e->section);
    free(e->key);
    free(e->value);
}

void config_free(Config *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++)
        free_entry(&c->e[i]);
    for (int i = 0; i < c->nfiles; i++)
        free(c->files[i]);
    free(c->e);
    free(c->files);
    free(c);
}

static int find(const Config *c, const char *section, const char *key) {
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->e[i].key, key) == 0 && strcmp(c->e[i].section, section) == 0) return i;
    return -1;
}

static CfgEntry *add_entry(Config *c, const char *section, const char *key, const char *value, int file,
                           int line) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 32;
        c->e = realloc(c->e, (size_t)c->cap * sizeof *c->e);
        if (!c->e) gk_die("out of host memory");
    }
    CfgEntry *e = &c->e[c->n++];
    e->section = dup_str(section, strlen(section));
    e->key = dup_str(key, strlen(key));
    e->value = dup_str(value, strlen(value));
    e->file = file;
    e->line = line;
    e->used = 0;
    return e;
}

/* "recipe.cfg:12" or "command line", for messages. */
static const char *origin(const Config *c, const CfgEntry *e, char *buf, size_t n) {
    if (e->file == CFG_CMDLINE)
        snprintf(buf, n, "command line");
    else
        snprintf(buf, n, "%s:%d", c->files[e->file], e->line);
    return buf;
}

/* "[train]", or the keys before any header. */
static const char *section_label(const char *section, char *buf, size_t n) {
    if (section[0])
        snprintf(buf, n, "[%s]", section);
    else
        snprintf(buf, n, "the top section (before any [section])");
    return buf;
}

static int name_char(int ch) {
    return isalnum(ch) || ch == '_' || ch == '-' || ch == '.';
}

/* The first character of s[0, n) not allowed in a key or section name, or -1. */
static int bad_name_char(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!name_char((unsigned char)s[i])) return (unsigned char)s[i];
    return -1;
}

static int is_space(char ch) {
    return ch == ' ' || ch == '\t';
}

/* Position of a comment start in s (a # or ; at the start or after whitespace), or len. */
static size_t comment_start(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if ((s[i] == '#' || s[i] == ';') && (i == 0 || is_space(s[i - 1]))) return i;
    return len;
}

/* ---- loading ------------------------------------------------------------------------------------------ */

typedef struct IncludeStack {
    const char *shown[CONFIG_MAX_INCLUDE_DEPTH];
    char *real[CONFIG_MAX_INCLUDE_DEPTH];
    int depth;
} IncludeStack;

static int lfail(GkErr *err, const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static int lfail(GkErr *err, const char *file, int line, const char *fmt, ...) {
    char what[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return gk_fail(err, "%s:%d: %s", file, line, what);
}

/* A line shown in a message: at most 60 characters, control characters as '?'. */
static const char *excerpt(const char *s, size_t n, char *buf, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < cap && i < 60; i++)
        buf[o++] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    if (n > 60 && o + 4 < cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

static int load_file(Config *c, const char *path, IncludeStack *st, GkErr *err);

static int read_whole(const char *path, char **text, size_t *len, GkErr *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return gk_fail(err, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = mallocCheck(cap);
    for (;;) {
        if (n == cap) {
            if (cap >= CONFIG_MAX_FILE) {
                free(buf);
                fclose(fp);
                return gk_fail(err, "%s: larger than %u MiB, not a config file", path, CONFIG_MAX_FILE >> 20);
            }
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf) gk_die("out of host memory");
        }
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(fp), e = errno;
    fclose(fp);
    if (bad) {
        free(buf);
        return gk_fail(err, "%s: read failed: %s", path, strerror(e));
    }
    *text = buf;
    *len = n;
    return 0;
}

/* The file an include line names: absolute, or relative to the directory of the including file. */
static char *include_path(const char *from, const char *name) {
    const char *slash = strrchr(from, '/');
    if (name[0] == '/' || !slash) return dup_str(name, strlen(name));
    size_t dn = (size_t)(slash - from) + 1, nn = strlen(name);
    char *p = mallocCheck(dn + nn + 1);
    memcpy(p, from, dn);
    memcpy(p + dn, name, nn + 1);
    return p;
}

static int do_include(Config *c, const char *file, int line, const char *name, IncludeStack *st, GkErr *err) {
    if (!name[0]) return lfail(err, file, line, "include needs a file name: 'include = other.cfg'");
    if (st->depth >= CONFIG_MAX_INCLUDE_DEPTH)
        return lfail(err, file, line, "includes nested deeper than %d files", CONFIG_MAX_INCLUDE_DEPTH);
    char *path = include_path(file, name);
    char *real = realpath(path, NULL);
    if (!real) {
        int rc = lfail(err, file, line, "cannot open included file '%s' (looked for %s): %s", name, path,
                       strerror(errno));
        free(path);
        return rc;
    }
    for (int i = 0; i < st->depth; i++)
        if (strcmp(st->real[i], real) == 0) {
            char chain[700];
            size_t o = 0;
            for (int k = i; k < st->depth && o < sizeof chain; k++)
                o += (size_t)snprintf(chain + o, sizeof chain - o, "%s -> ", st->shown[k]);
            if (o < sizeof chain) snprintf(chain + o, sizeof chain - o, "%s", path);
            int rc = lfail(err, file, line, "include cycle: %s", chain);
            free(real);
            free(path);
            return rc;
        }
    free(real);
    int rc = load_file(c, path, st, err);
    free(path);
    return rc;
}

static int parse_line(Config *c, int fi, int line, const char *s, size_t len, char **section,
                      IncludeStack *st, GkErr *err) {
    const char *file = c->files[fi];
    char ex[80], sl[64];
    while (len && is_space(s[0]))
        s++, len--;
    while (len && is_space(s[len - 1]))
        len--;
    if (len == 0 || s[0] == '#' || s[0] == ';') return 0;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return lfail(err, file, line, "section header '%s' is missing its closing ']'",
                         excerpt(s, len, ex, 80));
        const char *name = s + 1, *rest = close + 1;
        size_t nn = (size_t)(close - name), rn = len - (size_t)(rest - s);
        while (nn && is_space(name[0]))
            name++, nn--;
        while (nn && is_space(name[nn - 1]))
            nn--;
        while (rn && is_space(rest[0]))
            rest++, rn--;
        if (nn == 0) return lfail(err, file, line, "empty section name '[]'");
        int bad = bad_name_char(name, nn);
        if (bad >= 0)
            return lfail(err, file, line,
                         "section name '%s' has the character '%c' (expected letters, digits, '_', '-', '.')",
                         excerpt(name, nn, ex, 80), bad < 0x20 ? '?' : bad);
        if (rn && rest[0] != '#' && rest[0] != ';')
            return lfail(err, file, line, "unexpected '%s' after the section header",
                         excerpt(rest, rn, ex, 80));
        free(*section);
        *section = dup_str(name, nn);
        return 0;
    }
    const char *eq = memchr(s, '=', len);
    if (!eq)
        return lfail(err, file, line, "expected 'key = value' or '[section]', found '%s'",
                     excerpt(s, len, ex, 80));
    size_t kn = (size_t)(eq - s);
    while (kn && is_space(s[kn - 1]))
        kn--;
    if (kn == 0) return lfail(err, file, line, "empty key before '='");
    int bad = bad_name_char(s, kn);
    if (bad >= 0)
        return lfail(err, file, line, "invalid key '%s' (expected letters, digits, '_', '-', '.')",
                     excerpt(s, kn, ex, 80));
    const char *v = eq + 1;
    size_t vn = len - (size_t)(v - s);
    while (vn && is_space(v[0]))
        v++, vn--;
    vn = comment_start(v, vn);
    while (vn && is_space(v[vn - 1]))
        vn--;
    char key[CONFIG_MAX_LINE + 1], value[CONFIG_MAX_LINE + 1];
    memcpy(key, s, kn);
    key[kn] = '\0';
    memcpy(value, v, vn);
    value[vn] = '\0';
    if (strcmp(key, "include") == 0) {
        char *saved = *section; /* an included file starts at the top section; ours continues after it */
        *section = dup_str("", 0);
        int rc = do_include(c, file, line, value, st, err);
        free(*section);
        *section = saved;
        return rc;
    }
    int at = find(c, *section, key);
    if (at >= 0 && c->e[at].file == CFG_CMDLINE) return 0; /* the command line wins */
    if (at >= 0) {
        char first[600];
        return lfail(err, file, line, "duplicate key '%s' in %s (first set at %s)", key,
                     section_label(*section, sl, sizeof sl), origin(c, &c->e[at], first, sizeof first));
    }
    add_entry(c, *section, key, value, fi, line);
    return 0;
}

static int load_file(Config *c, const char *path, IncludeStack *st, GkErr *err) {
    char *text = NULL;
    size_t len = 0;
    if (read_whole(path, &text, &len, err)) return -1;
    char *real = realpath(path, NULL);
    if (!real) {
        free(text);
        return gk_fail(err, "%s: cannot resolve the path: %s", path, strerror(errno));
    }
    if (c->nfiles == c->capfiles) {
        c->capfiles = c->capfiles ? 2 * c->capfiles : 8;
        c->files = realloc(c->files, (size_t)c->capfiles * sizeof *c->files);
        if (!c->files) gk_die("out of host memory");
    }
    int fi = c->nfiles++;
    c->files[fi] = dup_str(path, strlen(path));
    st->shown[st->depth] = c->files[fi];
    st->real[st->depth] = real;
    st->depth++;

    char *section = dup_str("", 0);
    int rc = 0, line = 0;
    size_t pos = 0;
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) pos = 3; /* a UTF-8 byte order mark */
    while (pos < len && rc == 0) {
        line++;
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (n && s[n - 1] == '\r') n--;
        if (memchr(s, '\0', n))
            rc = lfail(err, path, line, "NUL byte in the file (a binary file, not a config?)");
        else if (n > CONFIG_MAX_LINE)
            rc = lfail(err, path, line, "line longer than %d characters", CONFIG_MAX_LINE);
        else
            rc = parse_line(c, fi, line, s, n, &section, st, err);
    }
    free(section);
    free(text);
    st->depth--;
    free(st->real[st->depth]);
    return rc;
}

int config_load(Config *c, const char *path, GkErr *err) {
    int n0 = c->n, f0 = c->nfiles;
    IncludeStack st = {{0}, {0}, 0};
    if (load_file(c, path, &st, err) == 0) return 0;
    for (int i = n0; i < c->n; i++)
        free_entry(&c->e[i]);
    for (int i = f0; i < c->nfiles; i++)
        free(c->files[i]);
    c->n = n0;
    c->nfiles = f0;
    return -1;
}

int config_set(Config *c, const char *section, const char *key, const char *value) {
    size_t vn = strlen(value);
    while (vn && is_space(value[0]))
        value++, vn--;
    while (vn && is_space(value[vn - 1]))
        vn--;
    if (bad_name_char(section, strlen(section)) >= 0 || !key[0] || bad_name_char(key, strlen(key)) >= 0)
        return -1;
    if (strcmp(key, "include") == 0) return -1;
    if (memchr(value, '\n', vn) || memchr(value, '\r', vn) || comment_start(value, vn) != vn) return -1;
    char *v = dup_str(value, vn);
    int at = find(c, section, key);
    if (at >= 0) {
        free(c->e[at].value);
        c->e[at].value = v;
        c->e[at].file = CFG_CMDLINE;
        c->e[at].line = 0;
        return 0;
    }
    add_entry(c, section, key, v, CFG_CMDLINE, 0);
    free(v);
    return 0;
}

/* ---- getters ------------------------------------------------------------------------------------------ */

int config_has(const Config *c, const char *section, const char *key) {
    return find(c, section, key) >= 0;
}

/* The entry, marked as read; NULL when absent. */
static CfgEntry *lookup(const Config *c, const char *section, const char *key) {
    int at = find(c, section, key);
    if (at < 0) return NULL;
    c->e[at].used = 1;
    return &c->e[at];
}

static int value_fail(const Config *c, const CfgEntry *e, GkErr *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static int value_fail(const Config *c, const CfgEntry *e, GkErr *err, const char *fmt, ...) {
    char what[600], where[600], sl[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return gk_fail(err, "%s: key '%s' in %s: %s", origin(c, e, where, sizeof where), e->key,
                   section_label(e->section, sl, sizeof sl), what);
}

/* 0 ok, 1 not an integer, 2 out of range. */
static int parse_long(const char *s, size_t n, long *out) {
    char buf[CONFIG_MAX_LINE + 1];
    memcpy(buf, s, n);
    buf[n] = '\0';
    size_t i = buf[0] == '+' || buf[0] == '-';
    if (buf[i] == '\0') return 1;
    for (; buf[i]; i++)
        if (buf[i] < '0' || buf[i] > '9') return 1;
    errno = 0;
    long v = strtol(buf, NULL, 10);
    if (errno == ERANGE) return 2;
    *out = v;
    return 0;
}

static int parse_double(const char *s, size_t n, double *out) {
    char buf[CONFIG_MAX_LINE + 1];
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (n == 0 || isspace((unsigned char)buf[0])) return 1;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (*end != '\0') return 1;
    if (errno == ERANGE && fabs(v) > 1.0) return 2;
    if (!isfinite(v)) return 1;
    *out = v;
    return 0;
}

int config_get_int(const Config *c, const char *section, const char *key, long def, long *out, GkErr *err) {
    const CfgEntry *e = lookup(c, section, key);
    if (!e) {
        *out = def;
        return 0;
    }
    int rc = parse_long(e->value, strlen(e->value), out);
    if (rc == 1) return value_fail(c, e, err, "expected an integer, found '%s'", e->value);
    if (rc == 2) return value_fail(c, e, err, "integer '%s' is out of range", e->value);
    return 0;
}

int config_get_float(const Config *c, const char *section, const char *key, double def, double *out,
                     GkErr *err) {
    const CfgEntry *e = lookup(c, section, key);
    if (!e) {
        *out = def;
        return 0;
    }
    int rc = parse_double(e->value, strlen(e->value), out);
    if (rc == 1) return value_fail(c, e, err, "expected a finite number like 5e-4, found '%s'", e->value);
    if (rc == 2) return value_fail(c, e, err, "number '%s' is out of range", e->value);
    return 0;
}

int config_get_bool(const Config *c, const char *section, const char *key, int def, int *out, GkErr *err) {
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
    const CfgEntry *e = lookup(c, section, key);
    if (!e) {
        *out = def;
        return 0;
    }
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(e->value, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(e->value, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return value_fail(c, e, err, "expected a boolean (true/false, yes/no, on/off, 1/0), found '%s'",
                      e->value);
}

const char *config_get_str(const Config *c, const char *section, const char *key, const char *def) {
    const CfgEntry *e = lookup(c, section, key);
    return e ? e->value : def;
}

/* Splits e's value on commas; each trimmed item goes to item(ctx, index, text, len), which returns 0, 1 (not
 * a number) or 2 (out of range). */
static int get_list(const Config *c, const CfgEntry *e, int max, int *n, const char *kind,
                    int (*item)(void *ctx, int i, const char *s, size_t len), void *ctx, GkErr *err) {
    const char *s = e->value;
    *n = 0;
    if (!s[0]) return 0;
    for (int i = 0;; i++) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        const char *t = s;
        size_t tn = len;
        while (tn && is_space(t[0]))
            t++, tn--;
        while (tn && is_space(t[tn - 1]))
            tn--;
        if (i >= max)
            return value_fail(c, e, err, "more than %d items in '%s' (a comma list of at most %d %ss)", max,
                              e->value, max, kind);
        if (tn == 0)
            return value_fail(c, e, err,
                              "item %d of '%s' is empty (expected a comma list of %ss like 1, 3, 8, 4)",
                              i + 1, e->value, kind);
        int rc = item(ctx, i, t, tn);
        if (rc) {
            char bad[CONFIG_MAX_LINE + 1];
            memcpy(bad, t, tn);
            bad[tn] = '\0';
            return value_fail(c, e, err, "item %d '%s' %s (expected a comma list of %ss like 1, 3, 8, 4)",
                              i + 1, bad,
                              rc == 1 ? (strcmp(kind, "integer") ? "is not a number" : "is not an integer")
                                      : "is out of range",
                              kind);
        }
        *n = i + 1;
        if (!comma) return 0;
        s = comma + 1;
    }
}

static int long_item(void *ctx, int i, const char *s, size_t len) {
    return parse_long(s, len, (long *)ctx + i);
}
static int double_item(void *ctx, int i, const char *s, size_t len) {
    return parse_double(s, len, (double *)ctx + i);
}

int config_get_list_int(const Config *c, const char *section, const char *key, const long *def, int n_def,
                        long *out, int max, int *n, GkErr *err) {
    const CfgEntry *e = lookup(c, section, key);
    if (!e) {
        GK_CHECK(n_def >= 0 && n_def <= max, "config_get_list_int '%s': %d defaults for %d slots", key, n_def,
                 max);
        for (int i = 0; i < n_def; i++)
            out[i] = def[i];
        *n = n_def;
        return 0;
    }
    return get_list(c, e, max, n, "integer", long_item, out, err);
}

int config_get_list_float(const Config *c, const char *section, const char *key, const double *def, int n_def,
                          double *out, int max, int *n, GkErr *err) {
    const CfgEntry *e = lookup(c, section, key);
    if (!e) {
        GK_CHECK(n_def >= 0 && n_def <= max, "config_get_list_float '%s': %d defaults for %d slots", key,
                 n_def, max);
        for (int i = 0; i < n_def; i++)
            out[i] = def[i];
        *n = n_def;
        return 0;
    }
    return get_list(c, e, max, n, "number", double_item, out, err);
}

int config_check_unused(const Config *c, GkErr *err) {
    int first = -1, more = 0;
    char msg[1024], where[600], sl[64];
    size_t o = 0;
    for (int i = 0; i < c->n; i++) {
        if (c->e[i].used) continue;
        if (first < 0) {
            first = i;
            o = (size_t)snprintf(msg, sizeof msg, "%s: unknown key '%s' in %s",
                                 origin(c, &c->e[i], where, sizeof where), c->e[i].key,
                                 section_label(c->e[i].section, sl, sizeof sl));
            continue;
        }
        more++;
    }
    if (first < 0) return 0;
    if (more && o < sizeof msg) {
        o += (size_t)snprintf(msg + o, sizeof msg - o, " (and %d more:", more);
        int shown = 0;
        for (int i = first + 1; i < c->n && shown < 4 && o < sizeof msg; i++) {
            if (c->e[i].used) continue;
            o += (size_t)snprintf(msg + o, sizeof msg - o, "%s '%s' at %s", shown ? "," : "", c->e[i].key,
                                  origin(c, &c->e[i], where, sizeof where));
            shown++;
        }
        if (o < sizeof msg) snprintf(msg + o, sizeof msg - o, "%s)", more > shown ? ", ..." : "");
    }
    return gk_fail(err, "%s", msg);
}

/* ---- writing ------------------------------------------------------------------------------------------ */

int config_write(const Config *c, const char *path, GkErr *err) {
    size_t pn = strlen(path);
    char *tmp = mallocCheck(pn + 5);
    memcpy(tmp, path, pn);
    memcpy(tmp + pn, ".tmp", 5);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        int rc = gk_fail(err, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    fprintf(fp, "# resolved configuration: the files as loaded, then the command-line overrides\n");
    /* sections in order of first appearance, the top section first */
    for (int i = -1; i < c->n; i++) {
        const char *sec = i < 0 ? "" : c->e[i].section;
        if (i >= 0) {
            if (!sec[0]) continue;
            int seen = 0;
            for (int k = 0; k < i && !seen; k++)
                seen = strcmp(c->e[k].section, sec) == 0;
            if (seen) continue;
            fprintf(fp, "\n[%s]\n", sec);
        }
        for (int k = 0; k < c->n; k++)
            if (strcmp(c->e[k].section, sec) == 0)
                fprintf(fp, "%s =%s%s\n", c->e[k].key, c->e[k].value[0] ? " " : "", c->e[k].value);
    }
    int bad = fflush(fp) != 0 || ferror(fp) || fsync(fileno(fp)) != 0;
    int e = errno;
    if (fclose(fp) != 0) bad = 1;
    if (bad || rename(tmp, path) != 0) {
        int rc = gk_fail(err, "%s: writing %s failed: %s", path, tmp, strerror(bad ? e : errno));
        unlink(tmp);
        free(tmp);
        return rc;
    }
    free(tmp);
    return 0;
}
