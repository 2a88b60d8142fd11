/* config.h: darknet-style configuration files: `[section]` headers and `key = value` lines.
 *
 *   # a recipe                      full-line comments start with # or ;
 *   model = gkavision_t             keys before any header belong to the section ""
 *   include = base.cfg              pulls in another file, relative to this one (cycles are refused)
 *   [train]
 *   batch-size = 256                keys are the command-line flag names without the dashes
 *   lr = 5e-4   ; trailing comment  a # or ; after whitespace starts a comment
 *   depths = 1, 3, 8, 4             comma lists
 *
 * The decision a reader must know: every value keeps the file and line it came from, and every getter marks
 * its key as read, so a malformed value is reported as "recipe.cfg:12: key 'lr' in [train]: expected ..."
 * and a key that no getter ever asked for (a typo) as "recipe.cfg:12: unknown key 'bach-size' in [train]".
 * A key set twice in one section, in one file or across included files, is an error; the command line
 * (config_set) is the one way to override a file. Lines are limited to 4096 characters. */
#ifndef GKA_CONFIG_H
#define GKA_CONFIG_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CONFIG_MAX_LINE 4096

typedef struct Config Config;

Config *config_new(void);
void config_free(Config *c);

/* Adds the keys of path (and of the files it includes). Errors name file:line and what was expected; on
 * failure the config is left as it was before the call. May be called for several files. */
int config_load(Config *c, const char *path, GkErr *err);

/* A command-line override: sets (or replaces) section/key whatever the files say, before or after loading.
 * Returns -1, changing nothing, when the section or key is not made of letters, digits, '_', '-', '.'
 * (the section may be empty), or when the value could not be written back to a file unchanged: a line
 * break, or a '#' or ';' at its start or after whitespace. Surrounding whitespace is trimmed. */
int config_set(Config *c, const char *section, const char *key, const char *value);

/* 1 if the key is present (does not count as reading it). */
int config_has(const Config *c, const char *section, const char *key);

/* Getters: return def when absent; a present but malformed value is an error naming file:line, the key and
 * the expected form. Each marks its key as read. Integers are decimal; floats finite; booleans are
 * true/false, yes/no, on/off or 1/0 (any case). */
int config_get_int(const Config *c, const char *section, const char *key, long def, long *out, GkErr *err);
int config_get_float(const Config *c, const char *section, const char *key, double def, double *out,
                     GkErr *err);
int config_get_bool(const Config *c, const char *section, const char *key, int def, int *out, GkErr *err);
/* The value, valid until config_free or a config_set of this key; def when absent. */
const char *config_get_str(const Config *c, const char *section, const char *key, const char *def);

/* Comma lists ("1, 3, 8, 4"), at most max items, their count in *n; an empty value is an empty list. When
 * absent, the n_def items of def are copied (n_def <= max). */
int config_get_list_int(const Config *c, const char *section, const char *key, const long *def, int n_def,
                        long *out, int max, int *n, GkErr *err);
int config_get_list_float(const Config *c, const char *section, const char *key, const double *def, int n_def,
                          double *out, int max, int *n, GkErr *err);

/* Fails on the first key never read by any getter, in file order: "recipe.cfg:12: unknown key 'bach-size'
 * in [train]", and counts (and names a few of) the others. */
int config_check_unused(const Config *c, GkErr *err);

/* Writes the resolved config (all keys, after overrides, includes flattened) in the same format, so that
 * config_load of the result gives the same values. Atomic: PATH.tmp, then rename. */
int config_write(const Config *c, const char *path, GkErr *err);

#ifdef __cplusplus
}
#endif
#endif
