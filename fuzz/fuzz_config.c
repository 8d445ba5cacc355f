/* fuzz_config.c: the config parser (src/config.c, src/config_table.c) on
 * mutated INI text.
 *
 * Each input is loaded as a config file, and each of its lines is applied as
 * a `--set` override. Beyond "no crash, no sanitizer report" it checks the
 * contracts of config.h: a failed load or set leaves the config as it was
 * and says why; whatever was accepted formats to text that loads back to the
 * same bytes (sf_config_format() round-trips, as checkpoints rely on). */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "shardfit/config.h"

/* Formats cfg, loads the text over the defaults, and wants cfg back. */
static void check_round_trip(const SfConfig *cfg, const char *how)
{
    static SfConfig back;
    SfError err = {0};
    char *text = sf_config_format(cfg);
    if (!text)
        fuzz_fail("sf_config_format() returned NULL");
    const char *path = fuzz_write_file((const uint8_t *)text, strlen(text));
    sf_config_defaults(&back);
    if (sf_config_load(&back, path, &err) != 0)
        fuzz_fail("a config accepted by %s does not load back: %s\n%s", how,
                  err.msg, text);
    if (memcmp(&back, cfg, sizeof back) != 0)
        fuzz_fail("a config accepted by %s loads back different:\n%s", how, text);
    free(text);
}

/* Every line up to the first NUL as one --set override, in turn. */
static void apply_sets(const uint8_t *data, size_t size)
{
    static SfConfig cfg, before;
    const char *end = memchr(data, '\0', size);
    size_t len = end ? (size_t)(end - (const char *)data) : size;
    char *text = malloc(len + 1);
    if (!text)
        fuzz_fail("out of memory");
    memcpy(text, data, len);
    text[len] = '\0';
    sf_config_defaults(&cfg);
    int applied = 0;
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        SfError err = {0};
        memcpy(&before, &cfg, sizeof cfg); /* padding too: compared with memcmp */
        int rc = sf_config_set(&cfg, line, &err);
        fuzz_check_error("sf_config_set", rc, &err);
        if (rc != 0 && memcmp(&before, &cfg, sizeof cfg) != 0)
            fuzz_fail("a failed --set '%s' changed the config", line);
        applied += rc == 0;
    }
    if (applied)
        check_round_trip(&cfg, "--set");
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* static: SfConfig is ~14 KB, and libFuzzer runs with a small stack */
    static SfConfig cfg, defaults;
    SfError err = {0};
    sf_config_defaults(&defaults);
    memcpy(&cfg, &defaults, sizeof cfg);
    int rc = sf_config_load(&cfg, fuzz_write_file(data, size), &err);
    fuzz_check_error("sf_config_load", rc, &err);
    if (rc != 0 && memcmp(&cfg, &defaults, sizeof cfg) != 0)
        fuzz_fail("a failed load changed the config: %s", err.msg);
    if (rc == 0) {
        SfError check = {0};
        fuzz_check_error("sf_config_check", sf_config_check(&cfg, &check), &check);
        check_round_trip(&cfg, "sf_config_load");
    }
    apply_sets(data, size);
    return 0;
}
