/* How one configuration value is written: decimal numbers, sizes with
 * units, octal modes, booleans, lists of user or group names and ids.
 * Pure functions over the text (and jansson values), used by config.c's
 * option table; any thread. Private to config.c and config_value.c. */
#ifndef HC_CONFIG_VALUE_H
#define HC_CONFIG_VALUE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HC_LIST_ITEM_MAX 64 /* one user/group name or id */

bool hc__cfg_parse_u64(const char *s, size_t len, uint64_t *out);
bool hc__cfg_parse_size(const char *s, uint64_t *out);
bool hc__cfg_parse_mode(const char *s, uint64_t *out);
bool hc__cfg_parse_bool(const char *s, bool *out);
bool hc__cfg_list_add(const char *s, size_t len, char *out, size_t outlen);
bool hc__cfg_list_add_csv(const char *s, size_t len, char *out, size_t outlen);
int hc__cfg_parse_list(const json_t *j, const char *s, char **out);

#endif
