/* config_table.h: the table of config keys (private to src/).
 *
 * config_table.c owns what each key is: its type, default, range, help, and
 * how its text becomes a value in SfConfig and back. config.c owns where the
 * text comes from (INI file, --set) and what involves several keys. The table
 * is the single source of truth: defaults, parsing and formatting all read it. */
#ifndef SHARDFIT_CONFIG_TABLE_H
#define SHARDFIT_CONFIG_TABLE_H

#include <stddef.h>

#include "shardfit/config.h"

typedef enum {
    KEY_STRING,     /* char[SF_CONFIG_STR] */
    KEY_INT,        /* int64_t, within the row's bounds */
    KEY_UINT64,     /* uint64_t, any value */
    KEY_DOUBLE,     /* double, finite, within the row's bounds */
    KEY_BOOL,       /* int 0/1: true/false, yes/no, on/off, 1/0 */
    KEY_ENUM,       /* an enum stored as int: index into names */
    KEY_BATCH,      /* int64_t >= 1, or 'all' stored as 0 */
    KEY_MILESTONES, /* schedule.milestones and schedule.n_milestones */
    KEY_STEPS       /* FIRST:LAST, two int64_t, 1 <= FIRST <= LAST */
} ConfigKeyKind;

/* Bounds of an int or double key; none set means any finite value. */
enum {
    BOUND_LO = 1,       /* value >= lo */
    BOUND_LO_OPEN = 2,  /* with BOUND_LO: value > lo */
    BOUND_HI = 4,       /* value <= hi */
    BOUND_HI_OPEN = 8   /* with BOUND_HI: value < hi */
};

typedef struct ConfigKey {
    const char *section, *key;
    ConfigKeyKind kind;
    size_t offset;             /* of the value in SfConfig */
    const char *def;           /* default, as text: parsed like any value */
    unsigned bounds;
    double lo, hi;
    const char *const *names;  /* KEY_ENUM: spellings in enum order, NULL-ended */
    const char *help;          /* one line */
} ConfigKey;

/* The longest line an INI file may have: Debian's libinih is built with
 * INI_MAX_LINE 200, which holds 199 characters and the NUL. Every formatted
 * `key = value` line must fit, or sf_config_format() would not round-trip. */
#define CONFIG_MAX_LINE 199

#define CONFIG_NKEYS 59
/* Every key, grouped by section in the order SPEC §4 lists them. */
extern const ConfigKey config_keys[CONFIG_NKEYS];

/* Parses value as the key's type and range and stores it in cfg. On error
 * returns -1, leaves cfg unchanged, and sets err to
 * "section.key = 'value': what was expected". */
int config_key_parse(const ConfigKey *k, SfConfig *cfg, const char *value,
                     SfError *err);

/* Writes the key's value in cfg as text that config_key_parse() reads back
 * to the same bits. size must be at least CONFIG_MAX_LINE + 1. */
void config_key_text(const ConfigKey *k, const SfConfig *cfg, char *buf,
                     size_t size);

/* Edit distance between a and b, ignoring case. b must be shorter than 128
 * characters (a table name); a may be any length. */
size_t config_distance(const char *a, const char *b);

#endif
